/* validate.c - libFuzzer target for the pipeline loader's option checks
 * (validate in lua/engine/pipeline.lua).
 *
 * The input is read as a small program that builds one Lua value (mostly
 * tables, keyed with the option names the loader knows, holding numbers,
 * strings, booleans, functions and nested tables). validate(value,
 * "fuzz.lua") runs under lua_pcall: it must return a table, or raise a
 * string that starts with "fuzz.lua: ". Anything else, or a fault, is a
 * bug. FUZZ_LUA_DIR (set by mk/fuzz.mk) is the lua/ folder. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#ifndef FUZZ_LUA_DIR
#define FUZZ_LUA_DIR "lua"
#endif

#define MAX_DEPTH 5
#define MAX_ITEMS 10

static const char *const words[] = {
  "docker", "host", "select", "include", "exclude", "name", "id", "label", "image",
  "history", "all", "start", "batch", "max_lines", "max_bytes", "flush_interval",
  "filters", "process", "on_error", "pass", "drop", "outputs", "type", "stdout",
  "format", "json", "plain", "engine", "cycle", "stop_timeout", "filter_timeout",
  "reconcile_interval", "backoff_initial", "backoff_max", "resume_margin",
  "line_max", "frame_max", "stats_interval", "log_level", "error", "warn", "info",
  "debug", "unix:///var/run/docker.sock", "", "=", "=x", "web-*", "\xff\xfe", "a\0b",
};
#define N_WORDS (sizeof words / sizeof words[0])

static const double numbers[] = {
  0, 1, 2, -1, 0.5, 1e-9, 3, 10, 2147483647, 2147483648.0, 1e300, -1e300, 1.5,
};
#define N_NUMBERS (sizeof numbers / sizeof numbers[0])

typedef struct input {
  const uint8_t *p;
  size_t n;
} input_t;

static unsigned take(input_t *in)
{
  if (in->n == 0)
    return 0;
  in->n--;
  return *in->p++;
}

static void push_value(lua_State *L, input_t *in, int depth);

static void push_word(lua_State *L, input_t *in)
{
  unsigned w = take(in);
  if (w < 0xF0) {
    const char *s = words[w % N_WORDS];
    lua_pushlstring(L, s, strcmp(s, "a") == 0 ? 3 : strlen(s));
    return;
  }
  size_t len = take(in) % 16; /* raw bytes from the input */
  if (len > in->n)
    len = in->n;
  lua_pushlstring(L, (const char *)in->p, len);
  in->p += len;
  in->n -= len;
}

/* A table of up to MAX_ITEMS entries: an array part, then keyed ones. */
static void push_table(lua_State *L, input_t *in, int depth)
{
  unsigned shape = take(in);
  unsigned n_array = shape & 3, n_keyed = (shape >> 2) % (MAX_ITEMS - 3);
  lua_createtable(L, (int)n_array, (int)n_keyed);
  for (unsigned i = 1; i <= n_array; i++) {
    push_value(L, in, depth + 1);
    lua_rawseti(L, -2, (int)i);
  }
  for (unsigned i = 0; i < n_keyed && in->n > 0; i++) {
    unsigned kind = take(in) % 8;
    if (kind < 6)
      push_word(L, in);
    else if (kind == 6)
      lua_pushnumber(L, numbers[take(in) % N_NUMBERS]);
    else
      lua_pushboolean(L, 1);
    push_value(L, in, depth + 1);
    lua_rawset(L, -3);
  }
}

static void push_value(lua_State *L, input_t *in, int depth)
{
  unsigned kind = take(in) % 10;
  if (depth >= MAX_DEPTH && kind >= 6)
    kind = 0;
  switch (kind) {
  case 0: lua_pushnil(L); break;
  case 1: lua_pushboolean(L, (int)(take(in) & 1)); break;
  case 2: lua_pushnumber(L, numbers[take(in) % N_NUMBERS]); break;
  case 3: {
    double special[] = {NAN, INFINITY, -INFINITY, 0.1 * (double)take(in)};
    lua_pushnumber(L, special[take(in) % 4]);
    break;
  }
  case 4: case 5: push_word(L, in); break;
  case 6: lua_getglobal(L, "fuzz_filter"); break;
  default: push_table(L, in, depth); break;
  }
}

static lua_State *L0;

static lua_State *state(void)
{
  if (L0)
    return L0;
  lua_State *L = luaL_newstate();
  if (!L)
    abort();
  luaL_openlibs(L);
  const char *boot =
      "package.path = '" FUZZ_LUA_DIR "/?.lua;' .. package.path\n"
      "fuzz_validate = require('engine.pipeline').validate\n"
      "fuzz_filter = function(batch) return batch end\n";
  if (luaL_dostring(L, boot) != 0)
    abort();
  L0 = L;
  return L;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  lua_State *L = state();
  input_t in = {data, size};
  int top = lua_gettop(L);
  lua_getglobal(L, "fuzz_validate");
  push_value(L, &in, 0);
  lua_pushstring(L, "fuzz.lua");
  int rc = lua_pcall(L, 2, 1, 0);
  if (rc == 0) {
    if (!lua_istable(L, -1))
      abort(); /* validate returns the normal form */
  } else {
    size_t len;
    const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    if (rc != LUA_ERRRUN || !msg || len < 10 || memcmp(msg, "fuzz.lua: ", 10) != 0)
      abort(); /* raised something else than the loader's message */
  }
  lua_settop(L, top);
  lua_gc(L, LUA_GCSTEP, 0);
  return 0;
}
