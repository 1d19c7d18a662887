/* encode_otlp.c - OTLP/HTTP logs (POST /v1/logs): encode_otlp_proto
 * writes the protobuf form (Content-Type: application/x-protobuf, at the
 * end of this file), encode_otlp the JSON form (Content-Type:
 * application/json), an ExportLogsServiceRequest in the
 * protobuf JSON mapping OTLP specifies (lowerCamelCase names, 64-bit
 * integers as decimal strings, enums as numbers), see encode.h:
 *
 *   {"resourceLogs":[{
 *     "resource":{"attributes":[{"key":"service.name","value":{"stringValue":..}},
 *                               container.id, container.name,
 *                               container.image.name, container.label.<k>...]},
 *     "scopeLogs":[{"scope":{"name":"engine","version":..},"logRecords":[
 *       {"timeUnixNano":"<ns>","observedTimeUnixNano":"<ns>",
 *        "severityNumber":N,"severityText":"..",
 *        "body":{"stringValue":"<line>"},
 *        "attributes":[{"key":"log.iostream","value":{"stringValue":"stdout"}},
 *                      {"key":"log.record.uid","value":{"stringValue":"<id>"}},
 *                      {"key":"<field>","value":<AnyValue>},...]}]}]}]}
 *
 * Records share a resource when their container, name, image and labels
 * table are the same; resources come in the order of their first record.
 * severityText is the record's `severity` (else `level`) field, which is
 * then not repeated as an attribute; severityNumber is sent when that text
 * names a known level. Other fields become attributes in key order:
 * strings stringValue, integers intValue, other numbers doubleValue,
 * booleans boolValue, arrays arrayValue, tables kvlistValue, null an empty
 * AnyValue. log.record.uid is the record id (batch.h), left out for a
 * record without one (made by a filter, or made plain). Times before 1970 are sent as 0 (unknown). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <lua.h>

#include "encode.h"
#include "encode_record.h"
#include "protobuf.h"
#include "record.h"
#include "timestamp.h"

#ifndef ENGINE_VERSION
#define ENGINE_VERSION "unknown"
#endif

#define OTLP_MAX_DEPTH 32

static int add_any(strbuf_t *b, lua_State *L, int idx, int depth);

/* Appends {"key":"<key>","value":{"stringValue":"<s>"}}. Returns 0 or -1. */
static int add_string_attr(strbuf_t *b, const char *key, size_t klen, const char *s, size_t len) {
  if (encode_lit(b, "{\"key\":") < 0 || json_add_string(b, key, klen) < 0 ||
      encode_lit(b, ",\"value\":{\"stringValue\":") < 0 || json_add_string(b, s, len) < 0)
    return -1;
  return encode_lit(b, "}}");
}

static int add_array_value(strbuf_t *b, lua_State *L, int idx, size_t n, int depth) {
  size_t i;
  int rc = 0;

  if (encode_lit(b, "{\"arrayValue\":{\"values\":[") < 0) return -1;
  for (i = 1; i <= n && rc == 0; i++) {
    if (i > 1 && encode_lit(b, ",") < 0) return -1;
    lua_rawgeti(L, idx, (int)i);
    rc = add_any(b, L, lua_gettop(L), depth + 1);
    if (rc == 1) rc = encode_lit(b, "{}"); /* keep the positions */
    lua_pop(L, 1);
  }
  if (rc < 0) return -1;
  return encode_lit(b, "]}}");
}

/* Appends the members of the table at t as {"key":..,"value":..} objects,
 * comma separated, the keys sorted, values without a form left out.
 * Returns 0 or -1. */
static int add_key_values(strbuf_t *b, lua_State *L, int t, const char *const *skip, size_t n_skip,
                          int first, int depth) {
  encode_keys_t keys = {0};
  size_t i, mark;
  int rc = -1, r;

  if (encode_keys_collect(L, t, skip, n_skip, &keys) < 0) goto err;
  for (i = 0; i < keys.n; i++) {
    mark = b->len;
    if ((!first && encode_lit(b, ",") < 0) || encode_lit(b, "{\"key\":") < 0 ||
        json_add_string(b, keys.s[i], keys.len[i]) < 0 || encode_lit(b, ",\"value\":") < 0)
      goto err;
    encode_push_field(L, t, keys.s[i], keys.len[i]);
    r = add_any(b, L, lua_gettop(L), depth + 1);
    lua_pop(L, 1);
    if (r < 0 || (r == 0 && encode_lit(b, "}") < 0)) goto err;
    if (r == 1) {
      b->len = mark;
      continue;
    }
    first = 0;
  }
  rc = 0;
err:
  encode_keys_free(&keys);
  return rc;
}

/* Appends the value at idx (absolute) as an AnyValue. Returns 0, 1 when it
 * has no form (nothing appended), or -1 when out of memory. */
static int add_any(strbuf_t *b, lua_State *L, int idx, int depth) {
  char num[64];
  const char *s;
  size_t len, n;
  double v;

  switch (lua_type(L, idx)) {
  case LUA_TSTRING:
    s = lua_tolstring(L, idx, &len);
    if (encode_lit(b, "{\"stringValue\":") < 0 || json_add_string(b, s, len) < 0) return -1;
    return encode_lit(b, "}");
  case LUA_TNUMBER:
    v = lua_tonumber(L, idx);
    if (isnan(v) || isinf(v)) return 1;
    if (v == floor(v) && fabs(v) < 9.2e18)
      n = (size_t)snprintf(num, sizeof num, "{\"intValue\":\"%lld\"}", (long long)v);
    else n = (size_t)snprintf(num, sizeof num, "{\"doubleValue\":%.17g}", v);
    return strbuf_add(b, num, n);
  case LUA_TBOOLEAN:
    return lua_toboolean(L, idx) ? encode_lit(b, "{\"boolValue\":true}")
                                 : encode_lit(b, "{\"boolValue\":false}");
  case LUA_TLIGHTUSERDATA: return lua_touserdata(L, idx) == NULL ? encode_lit(b, "{}") : 1;
  case LUA_TTABLE:
    if (depth >= OTLP_MAX_DEPTH) return encode_lit(b, "{}");
    if (!lua_checkstack(L, 4)) return -1;
    n = json_array_len(L, idx);
    if (n > 0) return add_array_value(b, L, idx, n, depth);
    if (encode_lit(b, "{\"kvlistValue\":{\"values\":[") < 0 ||
        add_key_values(b, L, idx, NULL, 0, 1, depth) < 0)
      return -1;
    return encode_lit(b, "]}}");
  default: return 1;
  }
}

/* The resource key of the record at rec: its container, name and image
 * texts, and the identity of its labels table. Returns 0 or -1. */
static int resource_key(strbuf_t *key, lua_State *L, int rec, void *ud) {
  static const char *const fields[] = {"container", "name", "image"};
  char tmp[48];
  size_t i;
  int n;

  for (i = 0; i < 3; i++)
    if (encode_key_add_field(key, L, rec, fields[i]) < 0) return -1;
  encode_push_field(L, rec, "labels", 6);
  n = snprintf(tmp, sizeof tmp, "%p", lua_type(L, -1) == LUA_TTABLE ? lua_topointer(L, -1) : NULL);
  lua_pop(L, 1);
  return strbuf_add(key, tmp, (size_t)n);
}

/* Calls attr(b, key, klen, value, len, ud) for each string attribute of
 * the resource of the record at rec: service.name, container.id,
 * container.name, container.image.name, then container.label.<k> for each
 * of its labels in key order. Stops at the first that returns -1. Returns
 * 0 or -1. Both wire forms write their resource through it. */
typedef int (*resource_attr_fn)(strbuf_t *b, const char *key, size_t klen, const char *s,
                                size_t len, void *ud);

static int each_resource_attr(strbuf_t *b, lua_State *L, int rec, resource_attr_fn attr, void *ud) {
  static const char *const attrs[][2] = {
      {"service.name", "name"},
      {"container.id", "container"},
      {"container.name", "name"},
      {"container.image.name", "image"},
  };
  char num[ENCODE_NUM_LEN];
  encode_keys_t keys = {0};
  strbuf_t name = {0};
  const char *s;
  size_t i, len;
  int rc = -1;

  for (i = 0; i < sizeof attrs / sizeof attrs[0]; i++) {
    s = encode_field_text(L, rec, attrs[i][1], num, &len);
    if (s != NULL && attr(b, attrs[i][0], strlen(attrs[i][0]), s, len, ud) < 0) return -1;
  }
  encode_push_field(L, rec, "labels", 6);
  if (lua_type(L, -1) == LUA_TTABLE) {
    if (encode_keys_collect(L, lua_gettop(L), NULL, 0, &keys) < 0) goto err;
    for (i = 0; i < keys.n; i++) {
      lua_pushlstring(L, keys.s[i], keys.len[i]);
      lua_rawget(L, -2);
      s = encode_value_text(L, -1, num, &len);
      name.len = 0;
      if (s != NULL && (encode_lit(&name, "container.label.") < 0 ||
                        strbuf_add(&name, keys.s[i], keys.len[i]) < 0 ||
                        attr(b, name.data, name.len, s, len, ud) < 0)) {
        lua_pop(L, 1);
        goto err;
      }
      lua_pop(L, 1);
    }
  }
  rc = 0;
err:
  lua_pop(L, 1); /* labels */
  encode_keys_free(&keys);
  strbuf_free(&name);
  return rc;
}

/* A JSON attribute of the resource, after a ',' but for the first (*ud
 * set: the first is still to come). */
static int json_resource_attr(strbuf_t *b, const char *key, size_t klen, const char *s, size_t len,
                              void *ud) {
  int *first = ud;

  if (!*first && encode_lit(b, ",") < 0) return -1;
  *first = 0;
  return add_string_attr(b, key, klen, s, len);
}

/* Appends the resource's attributes from the record at rec (no braces).
 * Returns 0 or -1. */
static int add_resource_attrs(strbuf_t *b, lua_State *L, int rec) {
  int first = 1;

  return each_resource_attr(b, L, rec, json_resource_attr, &first);
}

/* Appends the logRecord of the record at rec; ud points to the time of
 * the encode_otlp call. Returns 0 or -1. */
static int add_log_record(strbuf_t *b, lua_State *L, int rec, void *ud) {
  int64_t now = *(const int64_t *)ud;
  const char *skip[9] = {"time", "stream", "container", "name", "image",
                         "line", "labels", "output",    NULL};
  char head[128], num[ENCODE_NUM_LEN], id[BATCH_ID_LEN + 1];
  encode_severity_t sev;
  int64_t ns = encode_record_time(L, rec, now);
  const char *s;
  size_t len, n_skip = 8;
  int n, first = 1;

  if (ns < 0) ns = 0;
  n = snprintf(head, sizeof head,
               "{\"timeUnixNano\":\"%" PRId64 "\",\"observedTimeUnixNano\":\"%" PRId64 "\"", ns,
               now);
  if (strbuf_add(b, head, (size_t)n) < 0) return -1;
  encode_record_severity(L, rec, &sev);
  if (sev.otlp > 0) {
    n = snprintf(head, sizeof head, ",\"severityNumber\":%d", sev.otlp);
    if (strbuf_add(b, head, (size_t)n) < 0) return -1;
  }
  if (sev.text != NULL) {
    skip[n_skip++] = sev.field;
    if (encode_lit(b, ",\"severityText\":") < 0 || json_add_string(b, sev.text, sev.len) < 0)
      return -1;
  }
  if (encode_lit(b, ",\"body\":{\"stringValue\":") < 0 ||
      encode_add_field_string(b, L, rec, "line") < 0 || encode_lit(b, "},\"attributes\":[") < 0)
    return -1;
  s = encode_field_text(L, rec, "stream", num, &len);
  if (s != NULL) {
    if (add_string_attr(b, "log.iostream", 12, s, len) < 0) return -1;
    first = 0;
  }
  if (record_id(L, rec, id)) {
    if ((!first && encode_lit(b, ",") < 0) ||
        add_string_attr(b, "log.record.uid", 14, id, BATCH_ID_LEN) < 0)
      return -1;
    first = 0;
  }
  if (add_key_values(b, L, rec, skip, n_skip, first, 0) < 0) return -1;
  return encode_lit(b, "]}");
}

/* Appends the head of the resourceLogs object of the record at rec's
 * resource, up to its logRecords. Returns 0 or -1. */
static int add_resource_head(strbuf_t *b, lua_State *L, int rec, void *ud) {
  if (encode_lit(b, "{\"resource\":{\"attributes\":[") < 0 || add_resource_attrs(b, L, rec) < 0 ||
      encode_lit(b, "]},\"scopeLogs\":[{\"scope\":") < 0 ||
      encode_lit(b, "{\"name\":\"engine\",\"version\":") < 0 ||
      json_add_string(b, ENGINE_VERSION, strlen(ENGINE_VERSION)) < 0)
    return -1;
  return encode_lit(b, "},\"logRecords\":[");
}

int encode_otlp(strbuf_t *b, lua_State *L, int idx) {
  int64_t now = ts_now();
  const encode_grouping_t how = {
      .open = "{\"resourceLogs\":[",
      .group_close = "]}]}",
      .close = "]}",
      .key = resource_key,
      .head = add_resource_head,
      .item = add_log_record,
      .ud = &now,
  };

  return encode_grouped(b, L, idx, &how);
}

/* --- protobuf ------------------------------------------------------------
 *
 * The same request in the protobuf binary form (encode_otlp_proto), field
 * numbers from the OTLP protocol:
 *
 *   ExportLogsServiceRequest: resource_logs 1
 *   ResourceLogs: resource 1, scope_logs 2     Resource: attributes 1
 *   ScopeLogs: scope 1, log_records 2          InstrumentationScope: name 1, version 2
 *   LogRecord: time_unix_nano 1 (fixed64), severity_number 2,
 *              severity_text 3, body 5, attributes 6,
 *              observed_time_unix_nano 11 (fixed64)
 *   KeyValue: key 1, value 2                   KeyValueList, ArrayValue: values 1
 *   AnyValue: string_value 1, bool_value 2, int_value 3, double_value 4,
 *             array_value 5, kvlist_value 6
 *
 * Same records, grouping, attributes and order as the JSON form; strings
 * carry invalid UTF-8 as U+FFFD, like the JSON form. */

typedef struct pb_state {
  int64_t now;
  size_t resource_logs, scope_logs; /* marks of the open messages */
} pb_state_t;

static int pb_any(strbuf_t *b, lua_State *L, int idx, int depth);

/* Appends KeyValue field `field` {key, {string_value: s}}. Returns 0 or -1. */
static int pb_string_kv(strbuf_t *b, unsigned field, const char *key, size_t klen, const char *s,
                        size_t len) {
  size_t kv, any;

  if (pb_open(b, field, &kv) < 0 || pb_add_string(b, 1, key, klen) < 0 || pb_open(b, 2, &any) < 0 ||
      pb_add_string(b, 1, s, len) < 0 || pb_close(b, any) < 0)
    return -1;
  return pb_close(b, kv);
}

/* Appends the members of the table at t as KeyValue fields `field`, as
 * add_key_values does. Returns 0 or -1. */
static int pb_key_values(strbuf_t *b, lua_State *L, int t, const char *const *skip, size_t n_skip,
                         unsigned field, int depth) {
  encode_keys_t keys = {0};
  size_t i, mark, kv, any;
  int rc = -1, r;

  if (encode_keys_collect(L, t, skip, n_skip, &keys) < 0) goto err;
  for (i = 0; i < keys.n; i++) {
    mark = b->len;
    if (pb_open(b, field, &kv) < 0 || pb_add_string(b, 1, keys.s[i], keys.len[i]) < 0 ||
        pb_open(b, 2, &any) < 0)
      goto err;
    encode_push_field(L, t, keys.s[i], keys.len[i]);
    r = pb_any(b, L, lua_gettop(L), depth + 1);
    lua_pop(L, 1);
    if (r < 0) goto err;
    if (r == 1) {
      b->len = mark;
      continue;
    }
    if (pb_close(b, any) < 0 || pb_close(b, kv) < 0) goto err;
  }
  rc = 0;
err:
  encode_keys_free(&keys);
  return rc;
}

/* Appends the fields of the AnyValue of the value at idx (absolute).
 * Returns 0, 1 when it has no form (nothing appended), or -1. */
static int pb_any(strbuf_t *b, lua_State *L, int idx, int depth) {
  const char *s;
  size_t len, n, i, mark, item;
  double v;
  int r;

  switch (lua_type(L, idx)) {
  case LUA_TSTRING: s = lua_tolstring(L, idx, &len); return pb_add_string(b, 1, s, len);
  case LUA_TNUMBER:
    v = lua_tonumber(L, idx);
    if (isnan(v) || isinf(v)) return 1;
    if (v == floor(v) && fabs(v) < 9.2e18) return pb_add_uint(b, 3, (uint64_t)(int64_t)v);
    return pb_add_double(b, 4, v);
  case LUA_TBOOLEAN: return pb_add_uint(b, 2, lua_toboolean(L, idx) ? 1 : 0);
  case LUA_TLIGHTUSERDATA: return lua_touserdata(L, idx) == NULL ? 0 : 1;
  case LUA_TTABLE:
    if (depth >= OTLP_MAX_DEPTH) return 0;
    if (!lua_checkstack(L, 4)) return -1;
    n = json_array_len(L, idx);
    if (n > 0) {
      if (pb_open(b, 5, &mark) < 0) return -1;
      for (i = 1; i <= n; i++) {
        if (pb_open(b, 1, &item) < 0) return -1;
        lua_rawgeti(L, idx, (int)i);
        r = pb_any(b, L, lua_gettop(L), depth + 1); /* no form: an empty value */
        lua_pop(L, 1);
        if (r < 0 || pb_close(b, item) < 0) return -1;
      }
      return pb_close(b, mark);
    }
    if (pb_open(b, 6, &mark) < 0 || pb_key_values(b, L, idx, NULL, 0, 1, depth) < 0) return -1;
    return pb_close(b, mark);
  default: return 1;
  }
}

/* A Resource attribute: KeyValue field 1. */
static int pb_resource_attr(strbuf_t *b, const char *key, size_t klen, const char *s, size_t len,
                            void *ud) {
  (void)ud;
  return pb_string_kv(b, 1, key, klen, s, len);
}

/* Opens the ResourceLogs of the record at rec's resource and its ScopeLogs,
 * up to its log records. Returns 0 or -1. */
static int pb_resource_head(strbuf_t *b, lua_State *L, int rec, void *ud) {
  pb_state_t *st = ud;
  size_t resource, scope;

  if (pb_open(b, 1, &st->resource_logs) < 0 || pb_open(b, 1, &resource) < 0 ||
      each_resource_attr(b, L, rec, pb_resource_attr, NULL) < 0 || pb_close(b, resource) < 0 ||
      pb_open(b, 2, &st->scope_logs) < 0 || pb_open(b, 1, &scope) < 0 ||
      pb_add_string(b, 1, "engine", 6) < 0 ||
      pb_add_string(b, 2, ENGINE_VERSION, strlen(ENGINE_VERSION)) < 0)
    return -1;
  return pb_close(b, scope);
}

static int pb_resource_tail(strbuf_t *b, lua_State *L, int rec, void *ud) {
  pb_state_t *st = ud;

  (void)L;
  (void)rec;
  if (pb_close(b, st->scope_logs) < 0) return -1;
  return pb_close(b, st->resource_logs);
}

/* Appends the LogRecord of the record at rec, with the content
 * add_log_record gives it. Returns 0 or -1. */
static int pb_log_record(strbuf_t *b, lua_State *L, int rec, void *ud) {
  const pb_state_t *st = ud;
  const char *skip[9] = {"time", "stream", "container", "name", "image",
                         "line", "labels", "output",    NULL};
  char num[ENCODE_NUM_LEN], id[BATCH_ID_LEN + 1];
  encode_severity_t sev;
  int64_t ns = encode_record_time(L, rec, st->now);
  const char *s;
  size_t len, n_skip = 8, mark, body;

  if (ns < 0) ns = 0;
  if (pb_open(b, 2, &mark) < 0 || pb_add_fixed64(b, 1, (uint64_t)ns) < 0 ||
      pb_add_fixed64(b, 11, (uint64_t)st->now) < 0)
    return -1;
  encode_record_severity(L, rec, &sev);
  if (sev.otlp > 0 && pb_add_uint(b, 2, (uint64_t)sev.otlp) < 0) return -1;
  if (sev.text != NULL) {
    skip[n_skip++] = sev.field;
    if (pb_add_string(b, 3, sev.text, sev.len) < 0) return -1;
  }
  s = encode_field_text(L, rec, "line", num, &len);
  if (pb_open(b, 5, &body) < 0 || pb_add_string(b, 1, s ? s : "", s ? len : 0) < 0 ||
      pb_close(b, body) < 0)
    return -1;
  s = encode_field_text(L, rec, "stream", num, &len);
  if (s != NULL && pb_string_kv(b, 6, "log.iostream", 12, s, len) < 0) return -1;
  if (record_id(L, rec, id) && pb_string_kv(b, 6, "log.record.uid", 14, id, BATCH_ID_LEN) < 0)
    return -1;
  if (pb_key_values(b, L, rec, skip, n_skip, 6, 0) < 0) return -1;
  return pb_close(b, mark);
}

int encode_otlp_proto(strbuf_t *b, lua_State *L, int idx) {
  pb_state_t st = {.now = ts_now()};
  const encode_grouping_t how = {
      .open = "",
      .group_close = "",
      .close = "",
      .sep = "",
      .key = resource_key,
      .head = pb_resource_head,
      .item = pb_log_record,
      .tail = pb_resource_tail,
      .ud = &st,
  };

  return encode_grouped(b, L, idx, &how);
}
