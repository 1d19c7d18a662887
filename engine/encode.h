/* encode.h - the wire formats of the network outputs.
 *
 * Each encoder appends to b the body of one request (or, for syslog, the
 * bytes of one send) carrying every record of the Lua array at stack index
 * idx, as filters left them. They run on the pipeline thread, never raise a
 * Lua error, never call Lua code (raw table access only), and leave the Lua
 * stack as they found it. Each returns 0, or -1 when out of memory (b then
 * holds a partial body to be discarded).
 *
 * Record fields: line, stream, time (RFC3339Nano string, exact), container,
 * name, image, labels, and whatever filters added. The nanosecond time is
 * taken from `time` as a string, never through a double. */
#ifndef ENGINE_ENCODE_H
#define ENGINE_ENCODE_H

#include <stddef.h>
#include "json.h"

struct lua_State;

/* The records as lines: JSON objects (json_add_record) or, with plain set,
 * their `line` field alone (records without a string line are skipped);
 * each followed by '\n'. */
int encode_lines(strbuf_t *b, struct lua_State *L, int idx, int plain);

/* One JSON object per record (json_add_record), each followed by '\n'.
 * with_id: a record with a record id (record.h) has "id":"<id>" first. */
int encode_ndjson(strbuf_t *b, struct lua_State *L, int idx, int with_id);

/* One JSON array of the records (with_id: as for encode_ndjson). */
int encode_json_array(strbuf_t *b, struct lua_State *L, int idx, int with_id);

/* ClickHouse `INSERT INTO <table> FORMAT JSONEachRow` body with the
 * documented layout: id (the record id, or a unique one), time_ns (UInt64 as a string), time (String), date
 * (Date, "YYYY-MM-DD"), stream, container, name, image, line, labels (a
 * JSON string), fields (a JSON string of every other field). */
int encode_clickhouse(strbuf_t *b, struct lua_State *L, int idx);

/* Loki push API body: records grouped into streams by the values of the
 * fields named in label_fields (missing ones left out), each stream
 * labelled with the static labels too, values [["<ns>", "<line>"], ...] in
 * record order; the line is the `line` field, or with json_line the whole
 * record as JSON. */
typedef struct encode_loki_opts {
  const char *const *label_fields; /* record fields */
  size_t n_labels;
  const char *const *static_names; /* fixed labels: names and values */
  const char *const *static_values;
  size_t n_static;
  int json_line;
} encode_loki_opts_t;
int encode_loki(strbuf_t *b, struct lua_State *L, int idx, const encode_loki_opts_t *opts);

/* Elasticsearch/OpenSearch _bulk body: {"create":{"_index":index,"_id":id}}
 * (no _id for a record without a record id) then the
 * record with "@timestamp" (RFC3339 with nanoseconds), per record. */
int encode_elasticsearch(strbuf_t *b, struct lua_State *L, int idx, const char *index);

/* Reads a _bulk reply as it arrives, in slices of any size, keeping only
 * each item's status and, for a failed item, its reason ("status N type:
 * reason"): a reply of any length is read in bounded memory per item. An
 * item whose reply has an error member but a 2xx status, or whose object
 * cannot be read, counts as status 500 (to be sent again). */
typedef struct es_item {
  int status;
  char *reason; /* NULL when the item succeeded */
} es_item_t;
typedef struct es_reply es_reply_t;

/* Returns NULL when out of memory. */
es_reply_t *es_reply_new(void);
void es_reply_feed(es_reply_t *r, const char *data, size_t len);
/* The items read so far, in order. Returns 0 when the reply was a whole
 * _bulk reply, -1 when it is not one (or memory ran out). */
int es_reply_items(const es_reply_t *r, const es_item_t **items, size_t *n);
void es_reply_free(es_reply_t *r);

/* OTLP/HTTP JSON logs body (/v1/logs): one resourceLogs per container with
 * service.name = the container name and container.* attributes, logRecords
 * with timeUnixNano (a string), observedTimeUnixNano, severityText when a
 * `level` or `severity` field exists, body.stringValue = line, attributes
 * for stream, the record id (log.record.uid) and the other fields. */
int encode_otlp(strbuf_t *b, struct lua_State *L, int idx);

/* The same request as encode_otlp in the protobuf binary form (OTLP/HTTP
 * with Content-Type: application/x-protobuf), see encode_otlp.c. */
int encode_otlp_proto(strbuf_t *b, struct lua_State *L, int idx);

/* RFC 5424 syslog messages, one per record:
 * <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG
 * with APP-NAME the container name (cut to 48 characters, no spaces),
 * severity 3 for stderr and 6 for stdout unless a `severity`/`level` field
 * says otherwise, and the line as MSG (newlines escaped as "\n" text).
 * octet_counting: TCP framing "<len> <msg>" (RFC 6587); else each message
 * is followed by '\n' (for UDP the caller sends one message per datagram:
 * use encode_syslog_one). */
int encode_syslog(strbuf_t *b, struct lua_State *L, int idx, const char *hostname, int facility,
                  int octet_counting);

/* One record (the table at idx) as one RFC 5424 message, no framing. */
int encode_syslog_one(strbuf_t *b, struct lua_State *L, int idx, const char *hostname,
                      int facility);

#endif
