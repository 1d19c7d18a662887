/* encode_loki.c - the Loki push API body (POST /loki/api/v1/push,
 * Content-Type: application/json), see encode.h:
 *
 *   {"streams":[{"stream":{"<label>":"<value>",...},
 *                "values":[["<unix ns>","<line>"],...]},...]}
 *
 * Static labels (fixed name and value) come first, then the field labels:
 * a field label's value is the text of the record's field of that name
 * (strings, numbers, booleans; other values count as missing). Every name
 * is made a valid Loki label name ([a-zA-Z_][a-zA-Z0-9_]*): every other
 * byte becomes '_', and a leading digit (or an empty name) gets a '_' in
 * front; of labels whose names come out the same, the first one with a
 * value is sent (a static label before any field). A stream that would
 * have no label at all (Loki rejects an empty label set) is sent as
 * {"job":"engine"}. Streams come in the order of their first record,
 * values in record order. Timestamps are decimal nanoseconds in strings;
 * times before 1970 are sent as 0. The line is the record's `line` field,
 * or with json_line the whole record as a JSON object (json_add_record). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <lua.h>

#include "encode.h"
#include "encode_record.h"
#include "timestamp.h"

/* Replaces name's text with the Loki label name of field (see above).
 * Returns 0, or -1 when out of memory. */
static int label_name(strbuf_t *name, const char *field) {
  size_t i, n = strlen(field);

  name->len = 0;
  if ((n == 0 || (field[0] >= '0' && field[0] <= '9')) && strbuf_add(name, "_", 1) < 0) return -1;
  if (strbuf_reserve(name, n) < 0) return -1;
  for (i = 0; i < n; i++) {
    char c = field[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) c = '_';
    name->data[name->len++] = c;
  }
  return 0;
}

/* Whether the label name[0..len) is in the list of names sent (the names
 * back to back, each followed by a NUL). */
static int label_sent(const strbuf_t *sent, const char *name, size_t len) {
  size_t off = 0;

  while (off < sent->len) {
    size_t l = strlen(sent->data + off);
    if (l == len && memcmp(sent->data + off, name, len) == 0) return 1;
    off += l + 1;
  }
  return 0;
}

/* The options of one encode_loki call, its time, and a scratch buffer
 * for JSON lines. */
typedef struct loki {
  const encode_loki_opts_t *o;
  int64_t now;
  strbuf_t tmp;
} loki_t;

/* Builds the grouping key of the record at rec: per label, "-" when
 * missing, else its length, ':' and its bytes. Returns 0 or -1. */
static int stream_key(strbuf_t *key, lua_State *L, int rec, void *ud) {
  const loki_t *lk = ud;
  size_t i;

  for (i = 0; i < lk->o->n_labels; i++)
    if (encode_key_add_field(key, L, rec, lk->o->label_fields[i]) < 0) return -1;
  return 0;
}

/* Appends "name":"value" for the label named (before label_name) raw,
 * unless a label of the same valid name was sent already (sent: the names
 * back to back, each followed by a NUL). Returns 0 or -1. */
static int add_label(strbuf_t *b, strbuf_t *name, strbuf_t *sent, const char *raw,
                     const char *value, size_t len) {
  if (label_name(name, raw) < 0) return -1;
  if (label_sent(sent, name->data, name->len)) return 0;
  if ((sent->len > 0 && encode_lit(b, ",") < 0) || strbuf_add(sent, name->data, name->len) < 0 ||
      strbuf_add(sent, "", 1) < 0 || json_add_string(b, name->data, name->len) < 0 ||
      encode_lit(b, ":") < 0 || json_add_string(b, value, len) < 0)
    return -1;
  return 0;
}

/* Appends {"stream":{"label":"value",...},"values":[ for the stream of the
 * record at rec. Returns 0 or -1. */
static int add_stream_head(strbuf_t *b, lua_State *L, int rec, void *ud) {
  const loki_t *lk = ud;
  const encode_loki_opts_t *o = lk->o;
  char num[ENCODE_NUM_LEN];
  strbuf_t name = {0}, sent = {0};
  const char *s;
  size_t i, len;
  int rc = -1;

  if (encode_lit(b, "{\"stream\":{") < 0) return -1;
  for (i = 0; i < o->n_static; i++)
    if (add_label(b, &name, &sent, o->static_names[i], o->static_values[i],
                  strlen(o->static_values[i])) < 0)
      goto done;
  for (i = 0; i < o->n_labels; i++) {
    s = encode_field_text(L, rec, o->label_fields[i], num, &len);
    if (s != NULL && add_label(b, &name, &sent, o->label_fields[i], s, len) < 0) goto done;
  }
  if (sent.len == 0 && encode_lit(b, "\"job\":\"engine\"") < 0) goto done;
  rc = encode_lit(b, "},\"values\":[");
done:
  strbuf_free(&name);
  strbuf_free(&sent);
  return rc;
}

/* Appends ["<ns>","<line>"] for the record at rec. Returns 0 or -1. */
static int add_value(strbuf_t *b, lua_State *L, int rec, void *ud) {
  loki_t *lk = ud;
  char head[48];
  int64_t ns = encode_record_time(L, rec, lk->now);
  int n;

  if (ns < 0) ns = 0;
  n = snprintf(head, sizeof head, "[\"%" PRId64 "\",", ns);
  if (strbuf_add(b, head, (size_t)n) < 0) return -1;
  if (lk->o->json_line) {
    lk->tmp.len = 0;
    if (json_add_record(&lk->tmp, L, rec) < 0 || json_add_string(b, lk->tmp.data, lk->tmp.len) < 0)
      return -1;
  } else if (encode_add_field_string(b, L, rec, "line") < 0) {
    return -1;
  }
  return encode_lit(b, "]");
}

int encode_loki(strbuf_t *b, lua_State *L, int idx, const encode_loki_opts_t *opts) {
  loki_t lk = {opts, ts_now(), {0}};
  const encode_grouping_t how = {
      .open = "{\"streams\":[",
      .group_close = "]}",
      .close = "]}",
      .key = stream_key,
      .head = add_stream_head,
      .item = add_value,
      .ud = &lk,
  };
  int rc = encode_grouped(b, L, idx, &how);

  strbuf_free(&lk.tmp);
  return rc;
}
