/* lua_json.h - the engine.json Lua module: JSON decoding backed by cJSON,
 * encoding by the engine's own encoder (json.c), so filters produce the same
 * JSON as the outputs.
 *
 *   local json = require("engine.json")
 *   json.decode(text)  -> value, or nil and a message (never raises on bad input)
 *   json.encode(value) -> string, or nil and a message
 *   json.null          -> the value of JSON null (a NULL light userdata)
 *
 * Numbers are doubles (integers beyond 2^53 lose precision). Objects become
 * tables with string keys, arrays tables with keys 1..n; null becomes
 * json.null so arrays keep their positions. */
#ifndef ENGINE_LUA_JSON_H
#define ENGINE_LUA_JSON_H

struct lua_State;

/* The module's loader (a lua_CFunction for package.preload): returns the
 * module table. */
int lua_json_open(struct lua_State *L);

#endif
