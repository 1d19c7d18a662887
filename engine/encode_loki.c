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

/* Builds the grouping key of the record at rec into key: per label, "-"
 * when missing, else its length, ':' and its bytes. Returns 0 or -1. */
static int stream_key(strbuf_t *key, lua_State *L, int rec, const char *const *label_fields,
                      size_t n_labels)
{
  char num[ENCODE_NUM_LEN], len_text[32];
  const char *s;
  size_t i, len;
  int n;

  key->len = 0;
  for (i = 0; i < n_labels; i++) {
    s = encode_field_text(L, rec, label_fields[i], num, &len);
    if (s == NULL) {
      if (encode_lit(key, "-") < 0)
        return -1;
      continue;
    }
    n = snprintf(len_text, sizeof len_text, "%zu:", len);
    if (strbuf_add(key, len_text, (size_t)n) < 0 || strbuf_add(key, s, len) < 0)
      return -1;
  }
  return 0;
}

/* Appends {"label":"value",...} for the record at rec. Returns 0 or -1. */
static int add_labels(strbuf_t *b, lua_State *L, int rec, const char *const *label_fields,
                      size_t n_labels)
{
  char num[ENCODE_NUM_LEN];
  const char *s;
  size_t i, len;
  int first = 1;

  if (encode_lit(b, "{") < 0)
    return -1;
  for (i = 0; i < n_labels; i++) {
    s = encode_field_text(L, rec, label_fields[i], num, &len);
    if (s == NULL || label_repeated(label_fields, i))
      continue;
    if ((!first && encode_lit(b, ",") < 0) ||
        json_add_string(b, label_fields[i], strlen(label_fields[i])) < 0 ||
        encode_lit(b, ":") < 0 || json_add_string(b, s, len) < 0)
      return -1;
    first = 0;
  }
  return encode_lit(b, "}");
}

/* Appends ["<ns>","<line>"] for the record at rec. Returns 0 or -1. */
static int add_value(strbuf_t *b, lua_State *L, int rec, int64_t now)
{
  char head[48];
  int64_t ns = encode_record_time(L, rec, now);
  int n;

  if (ns < 0)
    ns = 0;
  n = snprintf(head, sizeof head, "[\"%" PRId64 "\",", ns);
  if (strbuf_add(b, head, (size_t)n) < 0 || encode_add_field_string(b, L, rec, "line") < 0)
    return -1;
  return encode_lit(b, "]");
}

/* Appends the group's stream object. Returns 0 or -1. */
static int add_stream(strbuf_t *b, lua_State *L, int idx, const encode_groups_t *g, size_t gi,
                      const char *const *label_fields, size_t n_labels, int64_t now)
{
  size_t r;
  int rc;

  if (encode_lit(b, "{\"stream\":") < 0)
    return -1;
  lua_rawgeti(L, idx, (int)g->first[gi] + 1);
  rc = add_labels(b, L, lua_gettop(L), label_fields, n_labels);
  lua_pop(L, 1);
  if (rc < 0 || encode_lit(b, ",\"values\":[") < 0)
    return -1;
  for (r = g->first[gi]; r != SIZE_MAX; r = g->next[r]) {
    if (r != g->first[gi] && encode_lit(b, ",") < 0)
      return -1;
    lua_rawgeti(L, idx, (int)r + 1);
    rc = add_value(b, L, lua_gettop(L), now);
    lua_pop(L, 1);
    if (rc < 0)
      return -1;
  }
  return encode_lit(b, "]}");
}

int encode_loki(strbuf_t *b, lua_State *L, int idx, const char *const *label_fields,
                size_t n_labels)
{
  encode_groups_t g = { 0 };
  strbuf_t key = { 0 };
  int64_t now = ts_now();
  size_t i, count;
  int rc = -1, is_table;

  idx = encode_abs(L, idx);
  if (!lua_checkstack(L, 8))
    return -1;
  count = lua_objlen(L, idx);
  for (i = 0; i < count; i++) {
    lua_rawgeti(L, idx, (int)i + 1);
    is_table = lua_type(L, -1) == LUA_TTABLE;
    rc = is_table ? stream_key(&key, L, lua_gettop(L), label_fields, n_labels) : 0;
    lua_pop(L, 1);
    if (rc < 0 || (is_table && encode_groups_add(&g, i, key.data, key.len) < 0))
      goto err;
  }
  rc = -1;
  if (encode_lit(b, "{\"streams\":[") < 0)
    goto err;
  for (i = 0; i < g.n; i++) {
    if ((i > 0 && encode_lit(b, ",") < 0) ||
        add_stream(b, L, idx, &g, i, label_fields, n_labels, now) < 0)
      goto err;
  }
  rc = encode_lit(b, "]}");
err:
  encode_groups_free(&g);
  strbuf_free(&key);
  return rc;
}
