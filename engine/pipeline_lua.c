/* pipeline_lua.c - the Lua state plumbing of a program (see
 * pipeline_internal.h): the capped allocator, the runaway guard, the
 * traceback handler and the protected call every call into Lua goes
 * through, the sandbox a new state is set up in, and ctx.emit.
 *
 * All of it runs on the thread that owns the program's state. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>

#include "log.h"
#include "lua_json.h"
#include "pipeline_internal.h"
#include "record.h"
#include "timestamp.h"

#define GUARD_COUNT 1000 /* VM instructions between two guard checks */

/* The pipeline whose Lua state this thread is running, for the hook. */
static _Thread_local pipeline_t *guard_current;

static int64_t now_coarse(void) { return pl_clock_ns(CLOCK_MONOTONIC_COARSE); }

/* The Lua allocator with a cap around LuaJIT's own allocator (faster than
 * malloc for the small objects a Lua state churns through): growing past
 * m->limit fails (LuaJIT raises LUA_ERRMEM in the call that allocated);
 * shrinking and freeing always succeed. */
void *pl_capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  lmem_t *m = ud;
  size_t used = atomic_load_explicit(&m->used, memory_order_relaxed);
  size_t old = ptr != NULL ? osize : 0;
  void *np;

  if (nsize == 0) {
    m->base(m->base_ud, ptr, osize, 0);
    atomic_store_explicit(&m->used, used - old, memory_order_relaxed);
    return NULL;
  }
  if (nsize > old && used - old + nsize > m->limit) return NULL;
  np = m->base(m->base_ud, ptr, osize, nsize);
  if (np == NULL) return nsize <= old ? ptr : NULL;
  atomic_store_explicit(&m->used, used - old + nsize, memory_order_relaxed);
  return np;
}

/* The count hook: raises an error in the running Lua code once the engine
 * aborts or the filter call's deadline passes. From then on it runs on every
 * instruction, so a filter that catches the error with pcall is stopped
 * again right away. */
static void guard_hook(lua_State *L, lua_Debug *ar) {
  pipeline_t *p = guard_current;
  char msg[96];

  if (p == NULL) return;
  if (atomic_load_explicit(&p->aborted, memory_order_relaxed))
    snprintf(msg, sizeof msg, "filter aborted: engine stopping");
  else if (p->guard.on && p->guard.deadline != 0 && now_coarse() >= p->guard.deadline)
    snprintf(msg, sizeof msg,
             p->guard.loading ? "still running after %g s while loading"
                              : "filter timed out after %g s",
             p->guard.timeout);
  else return;
  p->guard.tripped = 1;
  if (!p->escalated) {
    p->escalated = 1;
    lua_sethook(L, guard_hook, LUA_MASKCOUNT, 1);
  }
  if (ar && lua_getinfo(L, "Sl", ar) && ar->currentline > 0)
    luaL_error(L, "%s:%d: %s", ar->short_src, ar->currentline, msg);
  luaL_error(L, "%s", msg);
}

/* Message handler of every protected call: keeps the message (a string, or
 * a description of a non-string error object) and saves the traceback in
 * p->tb. Runs no Lua code. */
static int traceback_handler(lua_State *L) {
  pipeline_t *p = lua_touserdata(L, lua_upvalueindex(1));
  const char *tb;
  size_t len;

  if (lua_type(L, 1) != LUA_TSTRING && lua_type(L, 1) != LUA_TNUMBER) {
    lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    lua_replace(L, 1);
  }
  lua_settop(L, 1);
  luaL_traceback(L, L, NULL, 1);
  tb = lua_tolstring(L, -1, &len);
  if (len >= sizeof p->tb) len = sizeof p->tb - 1;
  memcpy(p->tb, tb, len);
  p->tb[len] = '\0';
  lua_pop(L, 1);
  return 1;
}

/* Logs a failed call: what failed, the message, and the traceback on the
 * same line ("; " between its frames). */
void pl_report_error(const char *what, const char *container, const char *msg, const char *tb) {
  char flat[PIPELINE_TB_MAX * 2];
  size_t i, n = 0;

  for (i = 0; tb[i] != '\0' && n + 3 < sizeof flat; i++) {
    if (tb[i] == '\t') continue;
    if (tb[i] == '\n') {
      flat[n++] = ';';
      flat[n++] = ' ';
      continue;
    }
    flat[n++] = tb[i];
  }
  flat[n] = '\0';
  log_error(container, "%s: %s%s%s", what, msg, n ? " | " : "", flat);
}

/* Calls the function under its nargs arguments on top of g->L, like
 * lua_pcall, with the traceback handler and, when guarded, the program's
 * filter deadline. On error the message is in p->err (and logged when the
 * program reports) and the stack holds neither the function, its arguments
 * nor a result. Returns CALL_OK, CALL_ERROR, or CALL_TIMEOUT when the guard
 * stopped it. The one way the engine calls into Lua. */
int pl_call_protected(pipeline_t *p, program_t *g, int nargs, int nres, const char *what,
                      const char *container, int guarded) {
  lua_State *L = g->L;
  int base = lua_gettop(L) - nargs; /* the function's index */
  pipeline_t *outer = guard_current;
  guard_t saved = p->guard;
  const char *msg;
  int rc, tripped;

  lua_rawgeti(L, LUA_REGISTRYINDEX, g->handler_ref);
  lua_insert(L, base); /* put the handler under the function and args */
  p->guard.on = guarded;
  p->guard.tripped = 0;
  p->guard.deadline = 0;
  p->guard.timeout = g->filter_timeout;
  if (guarded && g->filter_timeout > 0)
    p->guard.deadline = now_coarse() + (int64_t)(g->filter_timeout * 1e9);
  p->tb[0] = '\0';
  guard_current = p;
  rc = lua_pcall(L, nargs, nres, base);
  guard_current = outer;
  tripped = p->guard.tripped;
  p->guard = saved;
  if (p->escalated) {
    p->escalated = 0;
    lua_sethook(L, guard_hook, LUA_MASKCOUNT, GUARD_COUNT);
  }
  lua_remove(L, base); /* the handler */
  if (rc == 0) return CALL_OK;
  msg = lua_tostring(L, -1);
  snprintf(p->err, sizeof p->err, "%s", msg ? msg : "(no error message)");
  lua_pop(L, 1); /* the message */
  if (g->report) pl_report_error(what, container, p->err, p->tb);
  return tripped ? CALL_TIMEOUT : CALL_ERROR;
}

/* ---- the sandbox ---- */

static int pipeline_blocked(lua_State *L) {
  return luaL_error(L, "%s is not available to pipelines%s", lua_tostring(L, lua_upvalueindex(1)),
                    lua_tostring(L, lua_upvalueindex(2)));
}

/* Replaces module[field] with a function raising "<name> is not available
 * to pipelines<why>". Expects the module table at idx. */
static void block(lua_State *L, int idx, const char *field, const char *name, const char *why) {
  lua_pushstring(L, name);
  lua_pushstring(L, why);
  lua_pushcclosure(L, pipeline_blocked, 2);
  lua_setfield(L, idx, field);
}

/* io.lines with a file name; io.lines() would read the engine's stdin. */
static int pipeline_io_lines(lua_State *L) {
  if (lua_isnoneornil(L, 1))
    return luaL_error(L, "io.lines() without a file name is not available to pipelines "
                         "(it would read the engine's stdin)");
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

/* print() writes to the engine's log (stderr), not among the records on
 * stdout. */
static int pipeline_print(lua_State *L) {
  luaL_Buffer b;
  int i, n = lua_gettop(L);

  luaL_buffinit(L, &b);
  for (i = 1; i <= n; i++) {
    lua_getglobal(L, "tostring");
    lua_pushvalue(L, i);
    lua_call(L, 1, 1);
    if (!lua_isstring(L, -1)) return luaL_error(L, "'tostring' must return a string to 'print'");
    if (i > 1) luaL_addchar(&b, '\t'); // NOLINT(bugprone-branch-clone): inside LuaJIT's macro
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  log_info(NULL, "print: %s", lua_tostring(L, -1));
  return 0;
}

/* Protected: opens the libraries, turns the JIT compiler off, sets
 * package.path to the pipeline's folder and the engine's Lua folder,
 * preloads engine.json, and takes out what can hurt the engine: os.exit,
 * jit.on, debug.sethook, io.read/io.input/io.stdin and io.lines() on stdin.
 * Arguments: the pipeline's path, the engine's Lua folder. */
int pl_setup_state(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  const char *lua_dir = luaL_checkstring(L, 2);
  const char *slash = strrchr(path, '/');

  luaL_openlibs(L);
  /* after the libraries: opening the jit library turns the compiler on */
  luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
  lua_getglobal(L, "package");
  if (slash == NULL) lua_pushliteral(L, ".");
  else if (slash == path) lua_pushliteral(L, "");
  else lua_pushlstring(L, path, (size_t)(slash - path));
  lua_getfield(L, 3, "path");
  lua_pushfstring(L, "%s/?.lua;%s/?.lua;%s/?/init.lua;%s", lua_tostring(L, 4), lua_dir, lua_dir,
                  lua_tostring(L, 5));
  lua_setfield(L, 3, "path");
  lua_getfield(L, 3, "preload");
  lua_pushcfunction(L, lua_json_open);
  lua_setfield(L, -2, "engine.json");
  lua_settop(L, 2);
  lua_getglobal(L, "os"); /* 3 */
  block(L, 3, "exit", "os.exit", "");
  lua_getglobal(L, "jit"); /* 4 */
  block(L, 4, "on", "jit.on", " (the engine sets the JIT compiler: engine.filter_isolation)");
  lua_getglobal(L, "debug"); /* 5 */
  block(L, 5, "sethook", "debug.sethook", " (the runaway guard owns the hook)");
  lua_getglobal(L, "io"); /* 6 */
  block(L, 6, "read", "io.read", " (it would block on the engine's stdin)");
  block(L, 6, "input", "io.input", " (it would read the engine's stdin)");
  lua_pushnil(L);
  lua_setfield(L, 6, "stdin");
  lua_getfield(L, 6, "lines");
  lua_pushcclosure(L, pipeline_io_lines, 1);
  lua_setfield(L, 6, "lines");
  lua_pushcfunction(L, pipeline_print);
  lua_setglobal(L, "print");
  record_setup(L);
  return 0;
}

int pl_writable(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int is_dir = lua_toboolean(L, 2);
  struct stat st;
  char *dir, *slash;
  const char *folder;
  int ok;

  if (stat(path, &st) == 0) {
    if (is_dir && !S_ISDIR(st.st_mode)) lua_pushfstring(L, "%s is not a folder", path);
    else if (!is_dir && S_ISDIR(st.st_mode)) lua_pushfstring(L, "%s is a folder", path);
    else if (access(path, is_dir ? W_OK | X_OK : W_OK) != 0)
      lua_pushfstring(L, "%s is not writable: %s", path, strerror(errno));
    else lua_pushnil(L);
    return 1;
  }
  if (errno != ENOENT) {
    lua_pushfstring(L, "%s: %s", path, strerror(errno));
    return 1;
  }
  /* it would be created: in its folder */
  dir = strdup(path);
  if (dir == NULL) return luaL_error(L, "out of memory");
  slash = strrchr(dir, '/');
  folder = dir;
  if (slash == NULL) folder = ".";
  else if (slash == dir) dir[1] = '\0';
  else *slash = '\0';
  ok = stat(folder, &st) == 0 && S_ISDIR(st.st_mode);
  if (!ok) lua_pushfstring(L, "cannot be created: the folder %s does not exist", folder);
  else if (access(folder, W_OK | X_OK) != 0)
    lua_pushfstring(L, "cannot be created: the folder %s is not writable", folder);
  else lua_pushnil(L);
  free(dir);
  return 1;
}

/* ---- ctx.emit ---- */

/* Sets t[key] = val (a string) at the table at idx when t[key] is nil. */
static void default_string(lua_State *L, int idx, const char *key, const char *val) {
  lua_pushstring(L, key);
  lua_rawget(L, idx);
  if (lua_isnil(L, -1)) {
    lua_pushstring(L, key);
    lua_pushstring(L, val);
    lua_rawset(L, idx);
  }
  lua_pop(L, 1);
}

/* ctx.emit(record): checks the record (a table with a string line), fills
 * the fields it lacks (time: now; stream: "stdout"; container, name, image:
 * the batch's container, or "", the filter's name and "" in a hook) and
 * appends it to the emit buffer (upvalue 2). Upvalue 1: the pipeline. */
static int lua_emit(lua_State *L) {
  pipeline_t *p = lua_touserdata(L, lua_upvalueindex(1));
  const container_t *c = p->emit_c;
  char ts[TS_LEN + 1];

  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  if (!p->emit_on)
    return luaL_error(L, "ctx.emit works in process, timers and shutdown (not in init "
                         "or outside a filter call)");
  lua_pushliteral(L, "line");
  lua_rawget(L, 1);
  if (lua_type(L, -1) != LUA_TSTRING) return luaL_argerror(L, 1, "a record needs a string `line`");
  lua_pop(L, 1);
  record_materialize(L, 1); /* a record of a batch keeps its own fields */
  ts_format(ts_now(), ts);
  default_string(L, 1, "time", ts);
  default_string(L, 1, "stream", "stdout");
  default_string(L, 1, "container", c ? c->id : "");
  default_string(L, 1, "name", c ? (c->name ? c->name : "") : p->emit_f->name);
  default_string(L, 1, "image", c && c->image ? c->image : "");
  lua_rawseti(L, lua_upvalueindex(2), (int)++p->n_emitted);
  return 0;
}

/* Moves the emitted records to the end of the array at dest (0: discards
 * them) and empties the buffer. */
void pl_take_emitted(pipeline_t *p, program_t *g, int dest) {
  lua_State *L = g->L;
  size_t i, n = dest ? lua_objlen(L, dest) : 0;

  lua_rawgeti(L, LUA_REGISTRYINDEX, g->emitbuf_ref);
  for (i = 1; i <= p->n_emitted; i++) {
    if (dest) {
      lua_rawgeti(L, -1, (int)i);
      lua_rawseti(L, dest, (int)(n + i));
    }
    lua_pushnil(L);
    lua_rawseti(L, -2, (int)i);
  }
  lua_pop(L, 1);
  p->n_emitted = 0;
}

/* Registers the engine's functions in a new state (before any Lua code
 * runs; the state is nearly empty, so this cannot run out of memory). */
void pl_program_register(pipeline_t *p, program_t *g) {
  lua_State *L = g->L;

  lua_pushlightuserdata(L, p);
  lua_pushcclosure(L, traceback_handler, 1);
  g->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushcfunction(L, pl_run_batch);
  g->run_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushcfunction(L, pl_run_hook);
  g->hook_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  lua_pushvalue(L, -1);
  g->emitbuf_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushlightuserdata(L, p);
  lua_insert(L, -2);
  lua_pushcclosure(L, lua_emit, 2);
  g->emit_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_sethook(L, guard_hook, LUA_MASKCOUNT, GUARD_COUNT);
}
