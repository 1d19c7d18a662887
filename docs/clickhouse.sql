-- The table the `clickhouse` output inserts into, with
--   INSERT INTO logs FORMAT JSONEachRow
-- one row per record (engine/encode_clickhouse.c writes the rows).
--
-- id       the record id: 32 hex digits naming the log line (its container,
--          timestamp, stream, bytes and occurrence; README "Delivery"),
--          the same each time the line is sent; a record a filter made
--          has a unique id starting with "u"
-- time_ns  the record's time, nanoseconds since the Unix epoch (exact; the
--          row carries it as a quoted number, so it never goes through a
--          double)
-- time     the same time as text, RFC 3339 UTC with nine fraction digits
-- date     the day of that time, for partitioning
-- stream   "stdout" or "stderr"
-- container, name, image
--          the container's full id, its name, its image
-- line     the log line (invalid UTF-8 arrives as U+FFFD)
-- labels   the container's labels, a JSON object as text
-- fields   every other field a filter set, a JSON object as text
--
-- A row sent twice (a retry after a lost reply, the lines an engine killed
-- with SIGKILL had sent but not yet saved in its checkpoint) has the id of
-- its first copy: ReplacingMergeTree keeps one row per sorting key, which
-- ends with id, when it merges parts. Until a merge, both copies may be
-- stored; read with FINAL (or count distinct ids) to see each line once:
--   SELECT count() FROM logs FINAL;
--   SELECT uniqExact(id) FROM logs;
--   OPTIMIZE TABLE logs FINAL;   -- merges now (heavy on big tables)
--
-- This form works on ClickHouse 18.16 (Debian 12's clickhouse-server),
-- which has no DateTime64, and on every later version.
CREATE TABLE IF NOT EXISTS logs
(
    id        String,
    time_ns   UInt64,
    time      String,
    date      Date,
    stream    String,
    container String,
    name      String,
    image     String,
    line      String,
    labels    String,
    fields    String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(date)
ORDER BY (container, time_ns, id)
SETTINGS index_granularity = 8192;

-- A table made with the earlier layout (MergeTree without id) takes the
-- rows once it has the column; it keeps its duplicates (it has no
-- collapsing engine), count them with uniqExact(id):
--   ALTER TABLE logs ADD COLUMN id String;

-- Reading the nanosecond time back as a number on 18.16:
--   SELECT time_ns, time, line FROM logs WHERE container = '...' ORDER BY time_ns;
--
-- On current ClickHouse (DateTime64 and LowCardinality exist since 20.x),
-- the same rows go into this variant, which adds a typed timestamp computed
-- from time_ns (a MATERIALIZED column is not part of the insert) and stores
-- the repetitive columns as dictionaries:
--
-- CREATE TABLE IF NOT EXISTS logs
-- (
--     id        String,
--     time_ns   UInt64,
--     time      String,
--     date      Date,
--     stream    LowCardinality(String),
--     container LowCardinality(String),
--     name      LowCardinality(String),
--     image     LowCardinality(String),
--     line      String,
--     labels    String,
--     fields    String,
--     ts        DateTime64(9, 'UTC') MATERIALIZED fromUnixTimestamp64Nano(toInt64(time_ns))
-- )
-- ENGINE = ReplacingMergeTree
-- PARTITION BY toYYYYMM(date)
-- ORDER BY (container, time_ns, id);
