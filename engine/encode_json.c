/* encode_json.c - the generic HTTP bodies: NDJSON and a JSON array of the
 * records (see encode.h). Elements that are not tables are skipped. With
 * with_id, a record that has a record id (record.h) is written with
 * "id":"<id>" as its first member. */
#include <string.h>

#include <lua.h>

#include "encode.h"
#include "encode_record.h"
#include "record.h"

/* Appends the record at rec (absolute) as JSON, with its id first when
 * with_id is set and it has one. Returns 0 or -1. */
static int add_record(strbuf_t *b, lua_State *L, int rec, int with_id) {
  char id[BATCH_ID_LEN + 1];
  size_t mark;

  if (!with_id || !record_id(L, rec, id)) return json_add_record(b, L, rec) < 0 ? -1 : 0;
  if (encode_lit(b, "{\"id\":\"") < 0 || strbuf_add(b, id, BATCH_ID_LEN) < 0 ||
      encode_lit(b, "\"") < 0)
    return -1;
  mark = b->len;
  if (json_add_record(b, L, rec) < 0) return -1;
  if (b->len - mark == 2) { /* "{}": nothing but the id */
    b->len = mark;
    return encode_lit(b, "}");
  }
  b->data[mark] = ','; /* the record's members follow the id */
  return 0;
}

int encode_ndjson(strbuf_t *b, lua_State *L, int idx, int with_id) {
  size_t i, count;
  int rc = 0;

  if (!with_id) return encode_lines(b, L, idx, 0);
  idx = encode_abs(L, idx);
  count = lua_objlen(L, idx);
  for (i = 1; i <= count && rc == 0; i++) {
    lua_rawgeti(L, idx, (int)i);
    if (lua_type(L, -1) == LUA_TTABLE)
      rc = add_record(b, L, lua_gettop(L), 1) < 0 || strbuf_add(b, "\n", 1) < 0 ? -1 : 0;
    lua_pop(L, 1);
  }
  return rc;
}

int encode_json_array(strbuf_t *b, lua_State *L, int idx, int with_id) {
  size_t i, count;
  int rc = 0, first = 1;

  idx = encode_abs(L, idx);
  if (!lua_checkstack(L, 4) || encode_lit(b, "[") < 0) return -1;
  count = lua_objlen(L, idx);
  for (i = 1; i <= count && rc == 0; i++) {
    lua_rawgeti(L, idx, (int)i);
    if (lua_type(L, -1) == LUA_TTABLE) {
      if (!first) rc = encode_lit(b, ",");
      if (rc == 0) rc = add_record(b, L, lua_gettop(L), with_id);
      first = 0;
    }
    lua_pop(L, 1);
  }
  if (rc < 0) return -1;
  return encode_lit(b, "]");
}

/* Appends the record at idx as a plain line: its `line` field and "\n".
 * A record without a string line writes nothing. */
static int add_plain(strbuf_t *b, lua_State *L, int idx) {
  const char *s;
  size_t len;
  int rc = 0;

  if (lua_type(L, idx) != LUA_TTABLE) return 0;
  lua_pushstring(L, "line");
  lua_rawget(L, idx);
  if (lua_type(L, -1) == LUA_TSTRING) {
    s = lua_tolstring(L, -1, &len);
    rc = strbuf_add(b, s, len) < 0 || strbuf_add(b, "\n", 1) < 0 ? -1 : 0;
  }
  lua_pop(L, 1);
  return rc;
}

int encode_lines(strbuf_t *b, lua_State *L, int idx, int plain) {
  size_t i, count;
  int rc = 0;

  if (idx < 0 && idx > LUA_REGISTRYINDEX) idx = lua_gettop(L) + idx + 1;
  count = lua_objlen(L, idx);
  for (i = 1; i <= count && rc == 0; i++) {
    lua_rawgeti(L, idx, (int)i);
    if (plain) rc = add_plain(b, L, lua_gettop(L));
    else if (lua_type(L, -1) == LUA_TTABLE)
      rc = json_add_record(b, L, -1) < 0 || strbuf_add(b, "\n", 1) < 0 ? -1 : 0;
    lua_pop(L, 1);
  }
  return rc;
}
