/* lua_json.c - the engine.json Lua module (see lua_json.h).
 *
 * decode parses with cJSON into a tree, then builds the Lua value inside a
 * protected call, so that a Lua error there (out of memory) cannot leak the
 * tree. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <lauxlib.h>
#include <lua.h>

#include "lua_json.h"
#include "json.h"

#define LUA_JSON_DEPTH 200 /* deeper documents are refused */

/* Pushes the Lua form of item; depth counts the nesting. */
static void push_item(lua_State *L, const cJSON *item, int depth) {
  const cJSON *c;
  int i = 0;

  luaL_checkstack(L, 4, "json.decode: nesting too deep");
  if (cJSON_IsString(item)) {
    lua_pushstring(L, item->valuestring);
  } else if (cJSON_IsNumber(item)) {
    lua_pushnumber(L, item->valuedouble);
  } else if (cJSON_IsBool(item)) {
    lua_pushboolean(L, cJSON_IsTrue(item));
  } else if (cJSON_IsArray(item)) {
    lua_createtable(L, cJSON_GetArraySize(item), 0);
    for (c = item->child; c != NULL; c = c->next) {
      push_item(L, c, depth + 1);
      lua_rawseti(L, -2, ++i);
    }
  } else if (cJSON_IsObject(item)) {
    lua_createtable(L, 0, cJSON_GetArraySize(item));
    for (c = item->child; c != NULL; c = c->next) {
      lua_pushstring(L, c->string);
      push_item(L, c, depth + 1);
      lua_rawset(L, -3);
    }
  } else {
    lua_pushlightuserdata(L, NULL); /* null */
  }
}

/* Protected: pushes the Lua form of the tree (light userdata argument 1). */
static int build(lua_State *L) {
  const cJSON *root = lua_touserdata(L, 1);

  push_item(L, root, 0);
  return 1;
}

/* Depth of the deepest nesting of item, stopping past limit. */
static int depth_of(const cJSON *item, int limit) {
  const cJSON *c;
  int d, max = 0;

  if (limit < 0) return 1;
  for (c = item->child; c != NULL; c = c->next) {
    d = depth_of(c, limit - 1);
    if (d > max) max = d;
  }
  return max + 1;
}

/* json.decode(text) -> value | nil, message */
static int json_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(s, len, &end, 0);
  int rc;

  if (root != NULL && end != NULL) {
    while (end < s + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
    if (end < s + len) { /* something after the value */
      cJSON_Delete(root);
      root = NULL;
    }
  }
  if (root == NULL) {
    lua_pushnil(L);
    lua_pushfstring(L, "json.decode: invalid JSON at byte %d",
                    end != NULL && end >= s ? (int)(end - s) + 1 : 1);
    return 2;
  }
  if (depth_of(root, LUA_JSON_DEPTH) > LUA_JSON_DEPTH) {
    cJSON_Delete(root);
    lua_pushnil(L);
    lua_pushfstring(L, "json.decode: nesting deeper than %d", LUA_JSON_DEPTH);
    return 2;
  }
  lua_pushcfunction(L, build);
  lua_pushlightuserdata(L, root);
  rc = lua_pcall(L, 1, 1, 0);
  cJSON_Delete(root);
  if (rc != 0) return lua_error(L); /* out of memory: raise it after freeing the tree */
  return 1;
}

/* json.encode(value) -> string | nil, message */
static int json_encode(lua_State *L) {
  strbuf_t b = {0};
  int rc;

  luaL_checkany(L, 1);
  lua_settop(L, 1);
  rc = json_add_lua(&b, L, 1);
  if (rc != 0) {
    strbuf_free(&b);
    lua_pushnil(L);
    lua_pushstring(L, rc < 0 ? "json.encode: out of memory"
                             : "json.encode: the value has no JSON form");
    return 2;
  }
  lua_pushlstring(L, b.data, b.len);
  strbuf_free(&b);
  return 1;
}

int lua_json_open(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"decode", json_decode},
      {"encode", json_encode},
      {NULL, NULL},
  };

  lua_newtable(L);
  luaL_register(L, NULL, fns);
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  return 1;
}
