/* encode_elasticsearch.c - the _bulk API body (POST /_bulk,
 * Content-Type: application/x-ndjson) and its reply (see encode.h).
 *
 * Per record, two lines:
 *   {"create":{"_index":"<index>"}}
 *   {"@timestamp":"<RFC3339 with nanoseconds, UTC>","time":...,...}
 * `create` works for plain indices and for data streams alike (which accept
 * nothing else). The document is the record as the JSON output writes it,
 * with "@timestamp" first unless the record has its own. The body ends with
 * a newline, as _bulk requires. */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <lua.h>

#include "encode.h"
#include "encode_record.h"
#include "timestamp.h"

/* Appends the document line of the record at rec. Returns 0 or -1. */
static int add_document(strbuf_t *b, lua_State *L, int rec, int64_t now)
{
  char ts[TS_LEN + 1];
  size_t mark;
  int own;

  encode_push_field(L, rec, "@timestamp", 10);
  own = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (own)
    return json_add_record(b, L, rec) < 0 || encode_lit(b, "\n") < 0 ? -1 : 0;
  ts_format(encode_record_time(L, rec, now), ts);
  if (encode_lit(b, "{\"@timestamp\":\"") < 0 || strbuf_add(b, ts, TS_LEN) < 0 ||
      encode_lit(b, "\"") < 0)
    return -1;
  mark = b->len;
  if (json_add_record(b, L, rec) < 0)
    return -1;
  if (b->len - mark == 2) { /* "{}": nothing but the timestamp */
    b->len = mark;
    return encode_lit(b, "}\n");
  }
  b->data[mark] = ','; /* the record's members follow the timestamp */
  return encode_lit(b, "\n");
}

int encode_elasticsearch(strbuf_t *b, lua_State *L, int idx, const char *index)
{
  strbuf_t action = { 0 };
  int64_t now = ts_now();
  size_t i, count;
  int rc = -1;

  idx = encode_abs(L, idx);
  if (!lua_checkstack(L, 8))
    return -1;
  if (encode_lit(&action, "{\"create\":{\"_index\":") < 0 ||
      json_add_string(&action, index, strlen(index)) < 0 || encode_lit(&action, "}}\n") < 0)
    goto err;
  rc = 0;
  count = lua_objlen(L, idx);
  for (i = 1; i <= count && rc == 0; i++) {
    lua_rawgeti(L, idx, (int)i);
    if (lua_type(L, -1) == LUA_TTABLE)
      rc = strbuf_add(b, action.data, action.len) < 0 ? -1 : add_document(b, L, lua_gettop(L), now);
    lua_pop(L, 1);
  }
err:
  strbuf_free(&action);
  return rc;
}

/* Formats the reason of a failed item into err: "status N type: reason". */
static void item_reason(const cJSON *result, char *err, size_t errlen)
{
  const cJSON *status = cJSON_GetObjectItemCaseSensitive(result, "status");
  const cJSON *error = cJSON_GetObjectItemCaseSensitive(result, "error");
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(error, "type");
  const cJSON *reason = cJSON_GetObjectItemCaseSensitive(error, "reason");
  int code = cJSON_IsNumber(status) ? status->valueint : 0;

  if (errlen == 0)
    return;
  if (cJSON_IsString(error))
    snprintf(err, errlen, "status %d: %s", code, error->valuestring);
  else
    snprintf(err, errlen, "status %d %s: %s", code,
             cJSON_IsString(type) ? type->valuestring : "error",
             cJSON_IsString(reason) ? reason->valuestring : "no reason given");
}

/* 1 when the item's result (the object under its action name) reports a
 * failure: an "error" member or a status outside 2xx. */
static int item_failed(const cJSON *result)
{
  const cJSON *status = cJSON_GetObjectItemCaseSensitive(result, "status");

  if (cJSON_GetObjectItemCaseSensitive(result, "error") != NULL)
    return 1;
  return cJSON_IsNumber(status) && (status->valueint < 200 || status->valueint > 299);
}

int elasticsearch_bulk_errors(const char *body, size_t len, char *err, size_t errlen)
{
  const cJSON *items, *item, *result;
  cJSON *root;
  int failed = 0;

  if (errlen > 0)
    err[0] = '\0';
  root = cJSON_ParseWithLength(body, len);
  items = cJSON_GetObjectItemCaseSensitive(root, "items");
  if (!cJSON_IsObject(root) || !cJSON_IsArray(items)) {
    if (errlen > 0)
      snprintf(err, errlen, "not a _bulk reply");
    cJSON_Delete(root);
    return -1;
  }
  cJSON_ArrayForEach(item, items) {
    result = cJSON_IsObject(item) ? item->child : NULL;
    if (!cJSON_IsObject(result))
      continue;
    if (item_failed(result)) {
      if (failed == 0)
        item_reason(result, err, errlen);
      failed++;
    }
  }
  if (failed == 0 && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "errors"))) {
    if (errlen > 0)
      snprintf(err, errlen, "the reply says \"errors\":true but names no failed item");
    failed = 1;
  }
  cJSON_Delete(root);
  return failed;
}
