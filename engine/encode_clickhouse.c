/* encode_clickhouse.c - rows for `INSERT INTO <table> FORMAT JSONEachRow`
 * (see encode.h and docs/clickhouse.sql for the table).
 *
 * One JSON object per record and line, every column present:
 *   {"id":"<record id>","time_ns":"<ns>","time":"<RFC3339Nano>","date":"YYYY-MM-DD",
 *    "stream":..,"container":..,"name":..,"image":..,"line":..,
 *    "labels":"<JSON object>","fields":"<JSON object>"}
 * time_ns is quoted (ClickHouse reads quoted numbers in JSON, and the value
 * does not pass through a double anywhere). time is the record's time in
 * the canonical UTC form; times before 1970 are stored as the epoch (UInt64
 * and Date cannot hold them). Missing string columns are "".
 *
 * id is the record id (batch.h): a row sent again (a retry after a lost
 * reply, a replay after a restart) has the id of its first copy, and the
 * documented table (ReplacingMergeTree ordered by id) keeps one row per
 * id. A record without an id (made by a filter, or made plain: record.h)
 * gets a unique one of the same form, "u" + 31 hex digits, so that it is
 * never merged with another row. */
#include <stdatomic.h>
#include <unistd.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <lua.h>

#include "encode.h"
#include "encode_record.h"
#include "record.h"
#include "timestamp.h"

/* The fields that have a column of their own; `output` is the routing
 * field, never stored. */
static const char *const own_columns[] = {
    "time", "stream", "container", "name", "image", "line", "labels", "output",
};
#define N_OWN (sizeof own_columns / sizeof own_columns[0])

/* Appends the JSON text of the other fields of the record as one JSON
 * string literal. Returns 0 or -1. */
static int add_fields(strbuf_t *b, strbuf_t *tmp, lua_State *L, int rec) {
  encode_keys_t keys = {0};
  size_t i, mark;
  int rc = -1, first = 1, r;

  tmp->len = 0;
  if (encode_keys_collect(L, rec, own_columns, N_OWN, &keys) < 0) goto err;
  if (encode_lit(tmp, "{") < 0) goto err;
  for (i = 0; i < keys.n; i++) {
    mark = tmp->len;
    if ((!first && encode_lit(tmp, ",") < 0) || json_add_string(tmp, keys.s[i], keys.len[i]) < 0 ||
        encode_lit(tmp, ":") < 0)
      goto err;
    encode_push_field(L, rec, keys.s[i], keys.len[i]);
    r = json_add_lua(tmp, L, -1);
    lua_pop(L, 1);
    if (r < 0) goto err;
    if (r == 1) {
      tmp->len = mark; /* no JSON form: leave the key out */
      continue;
    }
    first = 0;
  }
  if (encode_lit(tmp, "}") < 0) goto err;
  rc = json_add_string(b, tmp->data, tmp->len);
err:
  encode_keys_free(&keys);
  return rc;
}

/* Appends the labels table as one JSON string literal ("{}" when the record
 * has none). Returns 0 or -1. */
static int add_labels(strbuf_t *b, strbuf_t *tmp, lua_State *L, int rec) {
  int rc;

  tmp->len = 0;
  encode_push_field(L, rec, "labels", 6);
  rc = lua_type(L, -1) == LUA_TTABLE ? json_add_lua(tmp, L, -1) : 1;
  lua_pop(L, 1);
  if (rc < 0) return -1;
  /* an empty table encodes as {} already; anything else becomes {} */
  if (rc == 1 || tmp->len == 0 || tmp->data[0] != '{') {
    tmp->len = 0;
    if (encode_lit(tmp, "{}") < 0) return -1;
  }
  return json_add_string(b, tmp->data, tmp->len);
}

static uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

/* Writes a unique id for a record that has none into id: "u" and 31 hex
 * digits from the time, the process id and a counter. */
static void unique_id(char id[BATCH_ID_LEN + 1], int64_t now) {
  static atomic_uint_fast64_t counter;
  uint64_t n = atomic_fetch_add(&counter, 1);
  uint64_t hi = mix64((uint64_t)now ^ ((uint64_t)getpid() << 40)), lo = mix64(n ^ hi);

  snprintf(id, BATCH_ID_LEN + 1, "u%015" PRIx64 "%016" PRIx64, hi >> 4, lo);
}

static int add_row(strbuf_t *b, strbuf_t *tmp, lua_State *L, int rec, int64_t now) {
  static const char *const text_columns[] = {"stream", "container", "name", "image", "line"};
  char ts[TS_LEN + 1], head[160], id[BATCH_ID_LEN + 1];
  int64_t ns = encode_record_time(L, rec, now);
  size_t i;
  int n;

  if (ns < 0) ns = 0;
  ts_format(ns, ts);
  if (!record_id(L, rec, id)) unique_id(id, now);
  n = snprintf(head, sizeof head,
               "{\"id\":\"%s\",\"time_ns\":\"%" PRId64 "\",\"time\":\"%s\",\"date\":\"%.10s\"", id,
               ns, ts, ts);
  if (n < 0 || (size_t)n >= sizeof head || strbuf_add(b, head, (size_t)n) < 0) return -1;
  for (i = 0; i < sizeof text_columns / sizeof text_columns[0]; i++) {
    if (encode_lit(b, ",\"") < 0 || strbuf_add(b, text_columns[i], strlen(text_columns[i])) < 0 ||
        encode_lit(b, "\":") < 0 || encode_add_field_string(b, L, rec, text_columns[i]) < 0)
      return -1;
  }
  if (encode_lit(b, ",\"labels\":") < 0 || add_labels(b, tmp, L, rec) < 0) return -1;
  if (encode_lit(b, ",\"fields\":") < 0 || add_fields(b, tmp, L, rec) < 0) return -1;
  return encode_lit(b, "}\n");
}

int encode_clickhouse(strbuf_t *b, lua_State *L, int idx) {
  strbuf_t tmp = {0};
  int64_t now = ts_now();
  size_t i, count;
  int rc = 0;

  idx = encode_abs(L, idx);
  if (!lua_checkstack(L, 8)) return -1;
  count = lua_objlen(L, idx);
  for (i = 1; i <= count && rc == 0; i++) {
    lua_rawgeti(L, idx, (int)i);
    if (lua_type(L, -1) == LUA_TTABLE) rc = add_row(b, &tmp, L, lua_gettop(L), now);
    lua_pop(L, 1);
  }
  strbuf_free(&tmp);
  return rc;
}
