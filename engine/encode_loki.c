/* encode_loki.c - the Loki push API body (POST /loki/api/v1/push,
 * Content-Type: application/json), see encode.h:
 *
 *   {"streams":[{"stream":{"<label>":"<value>",...},
 *                "values":[["<unix ns>","<line>"],...]},...]}
 *
 * A label's value is the text of the record's field of that name (strings,
 * numbers, booleans; other values count as missing). Streams come in the
 * order of their first record, values in record order. Timestamps are
 * decimal nanoseconds in strings; times before 1970 are sent as 0. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <lua.h>

#include "encode.h"
#include "encode_record.h"
#include "timestamp.h"

/* 1 when label_fields[i] already appeared before i (sent once). */
static int label_repeated(const char *const *label_fields, size_t i)
{
  size_t j;

  for (j = 0; j < i; j++)
    if (strcmp(label_fields[j], label_fields[i]) == 0)
      return 1;
  return 0;
}

/* The label fields of one encode_loki call, and its time. */
typedef struct loki {
  const char *const *label_fields;
  size_t n_labels;
  int64_t now;
} loki_t;

/* Builds the grouping key of the record at rec: per label, "-" when
 * missing, else its length, ':' and its bytes. Returns 0 or -1. */
static int stream_key(strbuf_t *key, lua_State *L, int rec, void *ud)
{
  const loki_t *lk = ud;
  size_t i;

  for (i = 0; i < lk->n_labels; i++)
    if (encode_key_add_field(key, L, rec, lk->label_fields[i]) < 0)
      return -1;
  return 0;
}

/* Appends {"stream":{"label":"value",...},"values":[ for the stream of the
 * record at rec. Returns 0 or -1. */
static int add_stream_head(strbuf_t *b, lua_State *L, int rec, void *ud)
{
  const loki_t *lk = ud;
  char num[ENCODE_NUM_LEN];
  const char *s, *name;
  size_t i, len;
  int first = 1;

  if (encode_lit(b, "{\"stream\":{") < 0)
    return -1;
  for (i = 0; i < lk->n_labels; i++) {
    name = lk->label_fields[i];
    s = encode_field_text(L, rec, name, num, &len);
    if (s == NULL || label_repeated(lk->label_fields, i))
      continue;
    if ((!first && encode_lit(b, ",") < 0) || json_add_string(b, name, strlen(name)) < 0 ||
        encode_lit(b, ":") < 0 || json_add_string(b, s, len) < 0)
      return -1;
    first = 0;
  }
  return encode_lit(b, "},\"values\":[");
}

/* Appends ["<ns>","<line>"] for the record at rec. Returns 0 or -1. */
static int add_value(strbuf_t *b, lua_State *L, int rec, void *ud)
{
  const loki_t *lk = ud;
  char head[48];
  int64_t ns = encode_record_time(L, rec, lk->now);
  int n;

  if (ns < 0)
    ns = 0;
  n = snprintf(head, sizeof head, "[\"%" PRId64 "\",", ns);
  if (strbuf_add(b, head, (size_t)n) < 0 || encode_add_field_string(b, L, rec, "line") < 0)
    return -1;
  return encode_lit(b, "]");
}

int encode_loki(strbuf_t *b, lua_State *L, int idx, const char *const *label_fields,
                size_t n_labels)
{
  loki_t lk = { label_fields, n_labels, ts_now() };
  const encode_grouping_t how = {
    .open = "{\"streams\":[", .group_close = "]}", .close = "]}",
    .key = stream_key, .head = add_stream_head, .item = add_value, .ud = &lk,
  };

  return encode_grouped(b, L, idx, &how);
}
