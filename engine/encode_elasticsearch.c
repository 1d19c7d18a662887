/* encode_elasticsearch.c - the _bulk API body (POST /_bulk,
 * Content-Type: application/x-ndjson) and its reply (see encode.h).
 *
 * Per record, two lines:
 *   {"create":{"_index":"<index>","_id":"<record id>"}}
 *   {"@timestamp":"<RFC3339 with nanoseconds, UTC>","time":...,...}
 * `create` works for plain indices and for data streams alike (which accept
 * nothing else). `_id` is the record id (batch.h), so a record sent again
 * (a retry after a lost reply, a replay after a restart) finds its first
 * copy and is answered 409, which counts as delivered: each record is
 * indexed once. A record without an id (one a filter made, or made plain:
 * record.h) gets none, and Elasticsearch makes one up. The document is the record as the JSON output writes it,
 * with "@timestamp" first unless the record has its own. The body ends with
 * a newline, as _bulk requires. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <lua.h>

#include "encode.h"
#include "encode_record.h"
#include "record.h"
#include "timestamp.h"

/* Appends the document line of the record at rec. Returns 0 or -1. */
static int add_document(strbuf_t *b, lua_State *L, int rec, int64_t now) {
  char ts[TS_LEN + 1];
  size_t mark;
  int own;

  encode_push_field(L, rec, "@timestamp", 10);
  own = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (own) return json_add_record(b, L, rec) < 0 || encode_lit(b, "\n") < 0 ? -1 : 0;
  ts_format(encode_record_time(L, rec, now), ts);
  if (encode_lit(b, "{\"@timestamp\":\"") < 0 || strbuf_add(b, ts, TS_LEN) < 0 ||
      encode_lit(b, "\"") < 0)
    return -1;
  mark = b->len;
  if (json_add_record(b, L, rec) < 0) return -1;
  if (b->len - mark == 2) { /* "{}": nothing but the timestamp */
    b->len = mark;
    return encode_lit(b, "}\n");
  }
  b->data[mark] = ','; /* the record's members follow the timestamp */
  return encode_lit(b, "\n");
}

int encode_elasticsearch(strbuf_t *b, lua_State *L, int idx, const char *index) {
  strbuf_t action = {0};
  int64_t now = ts_now();
  size_t i, count;
  int rc = -1;

  idx = encode_abs(L, idx);
  if (!lua_checkstack(L, 8)) return -1;
  if (encode_lit(&action, "{\"create\":{\"_index\":") < 0 ||
      json_add_string(&action, index, strlen(index)) < 0)
    goto err;
  rc = 0;
  count = lua_objlen(L, idx);
  for (i = 1; i <= count && rc == 0; i++) {
    char id[BATCH_ID_LEN + 1];
    lua_rawgeti(L, idx, (int)i);
    if (lua_type(L, -1) == LUA_TTABLE) {
      rc = strbuf_add(b, action.data, action.len);
      if (rc == 0 && record_id(L, lua_gettop(L), id))
        rc = encode_lit(b, ",\"_id\":\"") | strbuf_add(b, id, BATCH_ID_LEN) | encode_lit(b, "\"");
      rc = rc < 0 || encode_lit(b, "}}\n") < 0 ? -1 : add_document(b, L, lua_gettop(L), now);
    }
    lua_pop(L, 1);
  }
err:
  strbuf_free(&action);
  return rc;
}

/* Formats the reason of a failed item into err: "status N type: reason". */
static void item_reason(const cJSON *result, char *err, size_t errlen) {
  const cJSON *status = cJSON_GetObjectItemCaseSensitive(result, "status");
  const cJSON *error = cJSON_GetObjectItemCaseSensitive(result, "error");
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(error, "type");
  const cJSON *reason = cJSON_GetObjectItemCaseSensitive(error, "reason");
  int code = cJSON_IsNumber(status) ? status->valueint : 0;

  if (errlen == 0) return;
  if (cJSON_IsString(error)) snprintf(err, errlen, "status %d: %s", code, error->valuestring);
  else
    snprintf(err, errlen, "status %d %s: %s", code,
             cJSON_IsString(type) ? type->valuestring : "error",
             cJSON_IsString(reason) ? reason->valuestring : "no reason given");
}

/* 1 when the item's result (the object under its action name) reports a
 * failure: an "error" member or a status outside 2xx. */
static int item_failed(const cJSON *result) {
  const cJSON *status = cJSON_GetObjectItemCaseSensitive(result, "status");

  if (cJSON_GetObjectItemCaseSensitive(result, "error") != NULL) return 1;
  return cJSON_IsNumber(status) && (status->valueint < 200 || status->valueint > 299);
}

/* --- the _bulk reply, read as it arrives ------------------------------- */

#define ITEM_MAX (64 * 1024) /* one item's reply; a longer one is not read */

struct es_reply {
  int depth, in_str, esc;
  char key[16]; /* the last string at depth 1 (a key of the root) */
  size_t key_len;
  int key_open; /* that string is being read */
  int in_items; /* inside the root's "items" array */
  int seen_items;
  int collecting; /* copying one item's object */
  strbuf_t item;
  int item_overflow;
  es_item_t *items;
  size_t n, cap;
  int oom;
};

es_reply_t *es_reply_new(void) { return calloc(1, sizeof(es_reply_t)); }

void es_reply_free(es_reply_t *r) {
  if (r == NULL) return;
  for (size_t i = 0; i < r->n; i++) free(r->items[i].reason);
  free(r->items);
  strbuf_free(&r->item);
  free(r);
}

/* Reads the item object collected in r->item into a new entry. */
static void end_item(es_reply_t *r) {
  es_item_t it = {0, NULL};
  cJSON *root = r->item_overflow ? NULL : cJSON_ParseWithLength(r->item.data, r->item.len);
  const cJSON *result = root != NULL && cJSON_IsObject(root) ? root->child : NULL;
  char reason[300];

  if (cJSON_IsObject(result)) {
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(result, "status");
    it.status = cJSON_IsNumber(status) ? status->valueint : 0;
    if (item_failed(result) || it.status == 0) {
      item_reason(result, reason, sizeof reason);
      it.reason = strdup(reason);
      if (it.status >= 200 && it.status <= 299)
        it.status = 500; /* an error member with a 2xx status: try again */
    }
  } else {
    snprintf(reason, sizeof reason, "an item of the reply could not be read");
    it.reason = strdup(reason);
  }
  cJSON_Delete(root);
  r->item.len = 0;
  r->item_overflow = 0;
  if (r->n == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 64;
    es_item_t *n = realloc(r->items, cap * sizeof *n);
    if (n == NULL) {
      free(it.reason);
      r->oom = 1;
      return;
    }
    r->items = n;
    r->cap = cap;
  }
  r->items[r->n++] = it;
}

void es_reply_feed(es_reply_t *r, const char *data, size_t len) {
  for (size_t i = 0; i < len; i++) {
    char c = data[i];
    if (r->collecting && !r->item_overflow) {
      if (r->item.len >= ITEM_MAX || strbuf_add(&r->item, &c, 1) < 0) r->item_overflow = 1;
    }
    if (r->in_str) {
      if (r->esc) r->esc = 0;
      else if (c == '\\') r->esc = 1;
      else if (c == '"') r->in_str = r->key_open = 0;
      if (r->key_open && r->in_str && !r->esc && r->key_len < sizeof r->key - 1)
        r->key[r->key_len++] = c;
      continue;
    }
    switch (c) {
    case '"':
      r->in_str = 1;
      if (r->depth == 1) {
        r->key_open = 1;
        r->key_len = 0;
      }
      break;
    case '{':
    case '[':
      r->depth++;
      if (c == '[' && r->depth == 2) {
        r->key[r->key_len] = '\0';
        r->in_items = strcmp(r->key, "items") == 0;
        r->seen_items |= r->in_items;
      }
      if (c == '{' && r->in_items && r->depth == 3 && !r->collecting) {
        r->collecting = 1;
        r->item.len = 0;
        r->item_overflow = strbuf_add(&r->item, "{", 1) < 0;
      }
      break;
    case '}':
    case ']':
      if (c == '}' && r->collecting && r->depth == 3) {
        r->collecting = 0;
        end_item(r);
      }
      if (r->depth == 2) r->in_items = 0;
      if (r->depth > 0) r->depth--;
      break;
    default: break;
    }
  }
}

int es_reply_items(const es_reply_t *r, const es_item_t **items, size_t *n) {
  *items = r->items;
  *n = r->n;
  if (r->oom) return -1;
  return r->seen_items && r->depth == 0 && !r->in_str ? 0 : -1;
}
