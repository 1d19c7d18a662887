/* pipeline.c - the user's pipeline.lua: loading it, and the thread that runs
 * its filters, their hooks and timers, and its outputs (see pipeline.h).
 *
 * What one pipeline.lua becomes is a program: a Lua state (with its own
 * capped allocator), the filters and the outputs. The pipeline owns the
 * current program, the queue and the thread; a hot reload builds a new
 * program on the thread and swaps it in between two batches.
 *
 * Every call into Lua goes through lua_call_protected: a traceback handler
 * under the function, the runaway guard armed for filter calls, and the
 * error logged. A batch is processed by run_batch, itself a protected call,
 * so running out of memory while building records cannot take the engine
 * down; inside it each filter is one more protected call. Hooks (init,
 * timers, shutdown) run the same way through run_hook. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>

#include "decode.h"
#include "log.h"
#include "lua_json.h"
#include "netout.h"
#include "output.h"
#include "pipeline.h"
#include "record.h"
#include "select.h"
#include "timestamp.h"
#include "uvh.h"

#ifndef ENGINE_LUA_DIR
#define ENGINE_LUA_DIR "lua"
#endif

#define GUARD_COUNT 1000 /* VM instructions between two guard checks */
#define PIPELINE_ERR_MAX 1024
#define PIPELINE_TB_MAX 4096
#define PIPELINE_LOAD_TIMEOUT 10.0 /* seconds the top level of pipeline.lua may run */
#define LUA_MEMORY_DEFAULT ((size_t)64 << 20)

enum { ON_ERROR_PASS, ON_ERROR_DROP, ON_ERROR_DEAD_LETTER };
enum { CALL_OK, CALL_ERROR, CALL_TIMEOUT };
enum { HOOK_INIT, HOOK_TIMER, HOOK_SHUTDOWN };

static const char *const on_error_names[] = { "pass", "drop", "dead_letter" };

typedef struct ltimer {
  double every;  /* seconds */
  int64_t due;   /* CLOCK_MONOTONIC ns */
  int ref;       /* the handler, in the registry */
} ltimer_t;

typedef struct filter {
  char *name;
  int on_error;
  int process_ref, init_ref, shutdown_ref; /* LUA_NOREF when absent */
  int state_ref;   /* ctx.state: a table private to the filter */
  ltimer_t *timers;
  size_t n_timers;
  selection_t *sel; /* NULL: every batch */
  char *dl_path;    /* dead-letter file, with on_error = "dead_letter" */
  int dl_fd;
  atomic_int disabled; /* its init failed */
  atomic_ullong calls, errors, timeouts, dead_letters;
  atomic_ullong buckets[PIPELINE_DURATION_BUCKETS + 1], duration_ns;
} filter_t;

/* The capped allocator's account. Written by the thread that runs the
 * state only; read by pipeline_stats. */
typedef struct lmem {
  atomic_size_t used;
  size_t limit;
  lua_Alloc base;  /* LuaJIT's own allocator, which does the work */
  void *base_ud;
} lmem_t;

/* What one pipeline.lua became. */
typedef struct program {
  lua_State *L;
  lmem_t mem;
  int handler_ref; /* traceback_handler closure */
  int run_ref;     /* run_batch */
  int hook_ref;    /* run_hook */
  int emit_ref;    /* the ctx.emit closure */
  int emitbuf_ref; /* the table ctx.emit appends to (its upvalue) */
  filter_t *filters;
  size_t n_filters;
  output_t **outputs;
  size_t n_outputs;
  int routing;     /* look at records' `output`: several outputs or a routed_only one */
  double filter_timeout;
  int report;      /* log errors of protected calls (not while loading) */
} program_t;

/* The runaway guard's view of the current call (pipeline thread only). */
typedef struct guard {
  int on;           /* a filter call: the deadline applies */
  int loading;      /* running a file's top level */
  double timeout;   /* the call's bound, for the message */
  int64_t deadline; /* CLOCK_MONOTONIC_COARSE ns; 0: none */
  int tripped;      /* the guard raised the error of this call */
} guard_t;

typedef struct pipeline_counters {
  atomic_ullong batches, records_in, records_out, filter_errors, filter_timeouts,
      output_errors, records_unrouted, dead_letters, reloads, reload_failures;
} pipeline_counters_t;

struct pipeline {
  void (*on_batch_done)(void *ud, batch_t *b); /* takes processed batches (pipeline_set_done) */
  ticket_t *ticket;         /* the batch being processed (pipeline thread) */
  void (*on_reload)(void *ud, selection_t *sel); /* pipeline_set_reloaded */
  void *reload_ud;
  void *batch_done_ud;
  program_t *prog;          /* swapped under prog_mu by the thread only */
  pthread_mutex_t prog_mu;
  char *lua_dir;

  guard_t guard;
  int escalated;            /* the hook runs on every instruction */
  atomic_int aborted;
  atomic_int discard;       /* pipeline_discard: queued batches are dropped */
  atomic_ullong discarded;  /* records dropped so */
  char err[PIPELINE_ERR_MAX]; /* message of the last failed call */
  char tb[PIPELINE_TB_MAX];   /* its traceback */

  /* ctx.emit's view of the running hook (pipeline thread only) */
  int emit_on;
  const container_t *emit_c; /* the batch's container; NULL in hooks */
  const filter_t *emit_f;
  size_t n_emitted;
  strbuf_t dlbuf;            /* dead-letter lines */

  pthread_mutex_t mu;
  pthread_cond_t cv;         /* on CLOCK_MONOTONIC, for timers */
  batch_t *head, *tail;      /* under mu */
  int finishing, exited;     /* under mu */
  char *reload_path;         /* under mu: a reload asked for */
  atomic_int reopen;
  atomic_int done;           /* the thread has finished its work */
  pthread_t thread;
  int thread_started, joined;
  uv_async_t async;
  int async_open, exit_called;
  void (*on_exit)(void *ud);
  void *ud;

  pipeline_counters_t stats;
};

/* The pipeline whose Lua state this thread is running, for the hook. */
static _Thread_local pipeline_t *guard_current;

static int64_t clock_ns(clockid_t id)
{
  struct timespec ts;

  clock_gettime(id, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t now_coarse(void)
{
  return clock_ns(CLOCK_MONOTONIC_COARSE);
}

static int64_t now_mono(void)
{
  return clock_ns(CLOCK_MONOTONIC);
}

static void count(atomic_ullong *c, unsigned long long n)
{
  atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* The Lua allocator with a cap around LuaJIT's own allocator (faster than
 * malloc for the small objects a Lua state churns through): growing past
 * m->limit fails (LuaJIT raises LUA_ERRMEM in the call that allocated);
 * shrinking and freeing always succeed. */
static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
  lmem_t *m = ud;
  size_t used = atomic_load_explicit(&m->used, memory_order_relaxed);
  size_t old = ptr != NULL ? osize : 0;
  void *np;

  if (nsize == 0) {
    m->base(m->base_ud, ptr, osize, 0);
    atomic_store_explicit(&m->used, used - old, memory_order_relaxed);
    return NULL;
  }
  if (nsize > old && used - old + nsize > m->limit)
    return NULL;
  np = m->base(m->base_ud, ptr, osize, nsize);
  if (np == NULL)
    return nsize <= old ? ptr : NULL;
  atomic_store_explicit(&m->used, used - old + nsize, memory_order_relaxed);
  return np;
}

/* The count hook: raises an error in the running Lua code once the engine
 * aborts or the filter call's deadline passes. From then on it runs on every
 * instruction, so a filter that catches the error with pcall is stopped
 * again right away. */
static void guard_hook(lua_State *L, lua_Debug *ar)
{
  pipeline_t *p = guard_current;
  char msg[96];

  if (p == NULL)
    return;
  if (atomic_load_explicit(&p->aborted, memory_order_relaxed))
    snprintf(msg, sizeof msg, "filter aborted: engine stopping");
  else if (p->guard.on && p->guard.deadline != 0 && now_coarse() >= p->guard.deadline)
    snprintf(msg, sizeof msg, p->guard.loading ? "still running after %g s while loading"
                                               : "filter timed out after %g s", p->guard.timeout);
  else
    return;
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
static int traceback_handler(lua_State *L)
{
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
  if (len >= sizeof p->tb)
    len = sizeof p->tb - 1;
  memcpy(p->tb, tb, len);
  p->tb[len] = '\0';
  lua_pop(L, 1);
  return 1;
}

/* Logs a failed call: what failed, the message, and the traceback on the
 * same line ("; " between its frames). */
static void report_error(const char *what, const char *container, const char *msg,
                         const char *tb)
{
  char flat[PIPELINE_TB_MAX * 2];
  size_t i, n = 0;

  for (i = 0; tb[i] != '\0' && n + 3 < sizeof flat; i++) {
    if (tb[i] == '\t')
      continue;
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
static int lua_call_protected(pipeline_t *p, program_t *g, int nargs, int nres,
                              const char *what, const char *container, int guarded)
{
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
  if (rc == 0)
    return CALL_OK;
  msg = lua_tostring(L, -1);
  snprintf(p->err, sizeof p->err, "%s", msg ? msg : "(no error message)");
  lua_pop(L, 1); /* the message */
  if (g->report)
    report_error(what, container, p->err, p->tb);
  return tripped ? CALL_TIMEOUT : CALL_ERROR;
}

/* ---- the sandbox ---- */

static int pipeline_blocked(lua_State *L)
{
  return luaL_error(L, "%s is not available to pipelines%s", lua_tostring(L, lua_upvalueindex(1)),
                    lua_tostring(L, lua_upvalueindex(2)));
}

/* Replaces module[field] with a function raising "<name> is not available
 * to pipelines<why>". Expects the module table at idx. */
static void block(lua_State *L, int idx, const char *field, const char *name, const char *why)
{
  lua_pushstring(L, name);
  lua_pushstring(L, why);
  lua_pushcclosure(L, pipeline_blocked, 2);
  lua_setfield(L, idx, field);
}

/* io.lines with a file name; io.lines() would read the engine's stdin. */
static int pipeline_io_lines(lua_State *L)
{
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
static int pipeline_print(lua_State *L)
{
  luaL_Buffer b;
  int i, n = lua_gettop(L);

  luaL_buffinit(L, &b);
  for (i = 1; i <= n; i++) {
    lua_getglobal(L, "tostring");
    lua_pushvalue(L, i);
    lua_call(L, 1, 1);
    if (!lua_isstring(L, -1))
      return luaL_error(L, "'tostring' must return a string to 'print'");
    if (i > 1)
      luaL_addchar(&b, '\t'); // NOLINT(bugprone-branch-clone): inside LuaJIT's macro
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
static int setup_state(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  const char *lua_dir = luaL_checkstring(L, 2);
  const char *slash = strrchr(path, '/');

  luaL_openlibs(L);
  /* after the libraries: opening the jit library turns the compiler on */
  luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
  lua_getglobal(L, "package");
  if (slash == NULL)
    lua_pushliteral(L, ".");
  else if (slash == path)
    lua_pushliteral(L, "");
  else
    lua_pushlstring(L, path, (size_t)(slash - path));
  lua_getfield(L, 3, "path");
  lua_pushfstring(L, "%s/?.lua;%s/?.lua;%s/?/init.lua;%s", lua_tostring(L, 4), lua_dir,
                  lua_dir, lua_tostring(L, 5));
  lua_setfield(L, 3, "path");
  lua_getfield(L, 3, "preload");
  lua_pushcfunction(L, lua_json_open);
  lua_setfield(L, -2, "engine.json");
  lua_settop(L, 2);
  lua_getglobal(L, "os"); /* 3 */
  block(L, 3, "exit", "os.exit", "");
  lua_getglobal(L, "jit"); /* 4 */
  block(L, 4, "on", "jit.on", " (the runaway guard needs the JIT off)");
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

/* ---- ctx.emit ---- */

/* Sets t[key] = val (a string) at the table at idx when t[key] is nil. */
static void default_string(lua_State *L, int idx, const char *key, const char *val)
{
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
static int lua_emit(lua_State *L)
{
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
  if (lua_type(L, -1) != LUA_TSTRING)
    return luaL_argerror(L, 1, "a record needs a string `line`");
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
static void take_emitted(pipeline_t *p, program_t *g, int dest)
{
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

/* ---- loading ---- */

/* Field key of the table at idx as a number, if present. */
static void opt_number(lua_State *L, int idx, const char *key, double *out)
{
  lua_getfield(L, idx, key);
  if (lua_type(L, -1) == LUA_TNUMBER)
    *out = lua_tonumber(L, -1);
  lua_pop(L, 1);
}

static void opt_size(lua_State *L, int idx, const char *key, size_t *out)
{
  double v = -1;

  opt_number(L, idx, key, &v);
  if (v >= 1)
    *out = (size_t)v;
}

static char *dup_or_raise(lua_State *L, const char *s)
{
  char *d = strdup(s);

  if (d == NULL)
    luaL_error(L, "out of memory");
  return d;
}

/* Adds the rules of one list (select.include or select.exclude). */
static void copy_rules(lua_State *L, int idx, const char *which, int exclude, selection_t *sel)
{
  static const struct {
    const char *key;
    int kind;
  } kinds[] = {
    { "name", SELECT_NAME }, { "id", SELECT_ID },
    { "label", SELECT_LABEL }, { "image", SELECT_IMAGE },
  };
  size_t k, i, n;

  lua_getfield(L, idx, which);
  for (k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    lua_getfield(L, -1, kinds[k].key);
    n = lua_objlen(L, -1);
    for (i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, (int)i);
      if (selection_add(sel, exclude, kinds[k].kind, lua_tostring(L, -1)) < 0)
        luaL_error(L, "out of memory");
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* Stores field key of the table at idx (a function or nil) in the registry;
 * LUA_NOREF when nil. */
static int ref_field(lua_State *L, int idx, const char *key)
{
  lua_getfield(L, idx, key);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return LUA_NOREF;
  }
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

static void copy_timers(lua_State *L, int idx, filter_t *f)
{
  size_t i, n;

  lua_getfield(L, idx, "timers");
  n = lua_objlen(L, -1);
  if (n > 0 && (f->timers = calloc(n, sizeof *f->timers)) == NULL)
    luaL_error(L, "out of memory");
  for (i = 1; i <= n; i++) {
    ltimer_t *t = &f->timers[f->n_timers];
    lua_rawgeti(L, -1, (int)i);
    t->ref = LUA_NOREF;
    f->n_timers++;
    opt_number(L, lua_gettop(L), "every", &t->every);
    t->ref = ref_field(L, lua_gettop(L), "handler");
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* Copies the filter table at idx (normal form) into f. */
static void copy_filter(lua_State *L, int idx, filter_t *f)
{
  const char *s;
  int i;

  lua_getfield(L, idx, "name");
  f->name = dup_or_raise(L, lua_tostring(L, -1));
  lua_getfield(L, idx, "on_error");
  s = lua_tostring(L, -1);
  for (i = 0; i < 3; i++)
    if (strcmp(s, on_error_names[i]) == 0)
      f->on_error = i;
  lua_pop(L, 2);
  f->process_ref = ref_field(L, idx, "process");
  f->init_ref = ref_field(L, idx, "init");
  f->shutdown_ref = ref_field(L, idx, "shutdown");
  lua_newtable(L);
  f->state_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  copy_timers(L, idx, f);
  lua_getfield(L, idx, "select");
  if (!lua_isnil(L, -1)) {
    if ((f->sel = calloc(1, sizeof *f->sel)) == NULL)
      luaL_error(L, "out of memory");
    copy_rules(L, lua_gettop(L), "include", 0, f->sel);
    copy_rules(L, lua_gettop(L), "exclude", 1, f->sel);
  }
  lua_pop(L, 1);
  lua_getfield(L, idx, "dead_letter");
  if (lua_isstring(L, -1)) {
    f->dl_path = dup_or_raise(L, lua_tostring(L, -1));
    f->dl_fd = open(f->dl_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (f->dl_fd < 0)
      luaL_error(L, "filter %s: cannot open the dead-letter file %s: %s", f->name, f->dl_path,
                 strerror(errno));
  }
  lua_pop(L, 1);
}

static void copy_filters(lua_State *L, int idx, program_t *g)
{
  size_t i, n;
  filter_t *f;

  lua_getfield(L, idx, "filters");
  n = lua_objlen(L, -1);
  g->filters = calloc(n ? n : 1, sizeof *g->filters);
  if (g->filters == NULL) {
    luaL_error(L, "out of memory"); /* does not return */
    return;
  }
  for (i = 1; i <= n; i++) {
    f = &g->filters[g->n_filters];
    f->process_ref = f->init_ref = f->shutdown_ref = f->state_ref = LUA_NOREF;
    f->dl_fd = -1;
    g->n_filters++;
    lua_rawgeti(L, -1, (int)i);
    copy_filter(L, lua_gettop(L), f);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static int netout_kind(const char *type)
{
  static const char *const kinds[] = {"http", "clickhouse", "loki", "elasticsearch", "otlp",
                                      "syslog"};
  for (int i = 0; i < (int)(sizeof kinds / sizeof *kinds); i++)
    if (strcmp(type, kinds[i]) == 0)
      return i;
  return -1;
}

static char *opt_strdup(lua_State *L, int idx, const char *key)
{
  lua_getfield(L, idx, key);
  const char *s = lua_tostring(L, -1);
  char *copy = s ? strdup(s) : NULL;
  lua_pop(L, 1);
  return copy;
}

/* Copies the strings of the list at idx.key (a validated list of strings). */
static char **opt_list(lua_State *L, int idx, const char *key, size_t *n)
{
  lua_getfield(L, idx, key);
  size_t len = lua_istable(L, -1) ? lua_objlen(L, -1) : 0;
  char **out = calloc(len ? len : 1, sizeof *out);
  *n = 0;
  for (size_t i = 1; out && i <= len; i++) {
    lua_rawgeti(L, -1, (int)i);
    const char *s = lua_tostring(L, -1);
    if (s && (out[*n] = strdup(s)))
      (*n)++;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return out;
}

/* A network output (netout.h) from its validated table at idx. */
static output_t *new_netout(lua_State *L, int idx, const char *type, const char *name)
{
  netout_config_t c = {0};
  double num = 0;
  output_t *o;

  c.kind = netout_kind(type);
  c.url = opt_strdup(L, idx, "url");
  lua_getfield(L, idx, "format");
  c.json_array = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "json") == 0;
  lua_pop(L, 1);
  c.headers = opt_list(L, idx, "headers", &c.n_headers);
  c.user_env = opt_strdup(L, idx, "user_env");
  c.password_env = opt_strdup(L, idx, "password_env");
  c.bearer_env = opt_strdup(L, idx, "bearer_env");
  c.ca_file = opt_strdup(L, idx, "ca_file");
  lua_getfield(L, idx, "tls_verify");
  c.tls_verify = lua_isnil(L, -1) || lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, idx, "gzip");
  c.gzip = lua_toboolean(L, -1);
  lua_pop(L, 1);
  c.timeout = 30;
  opt_number(L, idx, "timeout", &c.timeout);
  num = -1;
  opt_number(L, idx, "retry_max", &num);
  c.retry_max = (long)num;
  c.backoff_initial = 0.5;
  c.backoff_max = 30;
  opt_number(L, idx, "backoff_initial", &c.backoff_initial);
  opt_number(L, idx, "backoff_max", &c.backoff_max);
  c.dead_letter = opt_strdup(L, idx, "dead_letter");
  c.table = opt_strdup(L, idx, "table");
  c.labels = opt_list(L, idx, "labels", &c.n_labels);
  c.index = opt_strdup(L, idx, "index");
  c.hostname = opt_strdup(L, idx, "hostname");
  num = 1;
  opt_number(L, idx, "facility", &num);
  c.facility = (int)num;
  o = netout_new(name, &c);
  netout_config_free(&c);
  if (o == NULL)
    luaL_error(L, "out of memory");
  return o;
}

/* Creates the output described by the table on top of the stack. */
static output_t *new_output(lua_State *L)
{
  int idx = lua_gettop(L);
  const char *type, *name, *format, *path;
  double keep = 0;
  size_t max_bytes = 0;
  output_t *o;
  char err[512];

  lua_getfield(L, idx, "type");
  lua_getfield(L, idx, "name");
  lua_getfield(L, idx, "format");
  lua_getfield(L, idx, "path");
  type = lua_tostring(L, -4);
  name = lua_tostring(L, -3);
  format = lua_tostring(L, -2);
  path = lua_tostring(L, -1);
  opt_number(L, idx, "keep", &keep);
  opt_size(L, idx, "max_bytes", &max_bytes);
  if (netout_kind(type) >= 0) {
    o = new_netout(L, idx, type, name);
  } else if (strcmp(type, "null") == 0) {
    o = output_null_new(name);
    if (o == NULL)
      luaL_error(L, "out of memory");
  } else if (strcmp(type, "file") == 0) {
    o = output_file_new(name, path, format, max_bytes, (int)keep, err, sizeof err);
    if (o == NULL)
      luaL_error(L, "output %s: %s", name, err);
  } else {
    o = output_stdout_new(name, format, 1);
    if (o == NULL)
      luaL_error(L, "out of memory");
  }
  lua_settop(L, idx);
  return o;
}

static void copy_outputs(lua_State *L, int idx, program_t *g)
{
  size_t i, n;
  output_t *o;

  lua_getfield(L, idx, "outputs");
  n = lua_objlen(L, -1);
  g->outputs = calloc(n ? n : 1, sizeof(output_t *));
  if (g->outputs == NULL) {
    luaL_error(L, "out of memory"); /* does not return */
    return;
  }
  g->routing = n > 1;
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, (int)i);
    o = new_output(L);
    g->outputs[g->n_outputs++] = o;
    lua_getfield(L, -1, "routed_only");
    o->routed_only = lua_toboolean(L, -1);
    g->routing |= o->routed_only;
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
}

/* Protected: copies the validated table (argument 1) into the config
 * (argument 3) and the program (argument 2). */
static int copy_config(lua_State *L)
{
  program_t *g = lua_touserdata(L, 2);
  config_t *cfg = lua_touserdata(L, 3);
  size_t lua_memory = LUA_MEMORY_DEFAULT;
  const char *s;

  lua_getfield(L, 1, "docker");
  lua_getfield(L, -1, "host");
  if (lua_isstring(L, -1)) {
    free(cfg->docker_host);
    cfg->docker_host = NULL;
    cfg->docker_host = dup_or_raise(L, lua_tostring(L, -1));
  }
  lua_pop(L, 1);
  opt_number(L, lua_gettop(L), "read_delay", &cfg->read_delay);
  lua_pop(L, 1);
  lua_getfield(L, 1, "select");
  copy_rules(L, lua_gettop(L), "include", 0, &cfg->select);
  copy_rules(L, lua_gettop(L), "exclude", 1, &cfg->select);
  lua_pop(L, 1);
  lua_getfield(L, 1, "history");
  if (lua_isstring(L, -1))
    cfg->since_start = strcmp(lua_tostring(L, -1), "start") == 0;
  lua_pop(L, 1);
  lua_getfield(L, 1, "batch");
  opt_size(L, 4, "max_lines", &cfg->batch_max_lines);
  opt_size(L, 4, "max_bytes", &cfg->batch_max_bytes);
  opt_number(L, 4, "flush_interval", &cfg->flush_interval);
  lua_pop(L, 1);
  lua_getfield(L, 1, "engine");
  opt_number(L, 4, "cycle", &cfg->cycle);
  opt_number(L, 4, "stop_timeout", &cfg->stop_timeout);
  opt_number(L, 4, "filter_timeout", &cfg->filter_timeout);
  opt_number(L, 4, "reconcile_interval", &cfg->reconcile_interval);
  opt_number(L, 4, "backoff_initial", &cfg->backoff_initial);
  opt_number(L, 4, "backoff_max", &cfg->backoff_max);
  opt_number(L, 4, "resume_margin", &cfg->resume_margin);
  opt_number(L, 4, "stats_interval", &cfg->stats_interval);
  opt_size(L, 4, "line_max", &cfg->line_max);
  opt_size(L, 4, "frame_max", &cfg->frame_max);
  opt_size(L, 4, "lua_memory", &lua_memory);
  opt_number(L, 4, "checkpoint_interval", &cfg->checkpoint_interval);
  opt_size(L, 4, "max_buffered", &cfg->max_buffered);
  opt_size(L, 4, "max_readers", &cfg->max_readers);
  opt_size(L, 4, "max_events_per_second", &cfg->max_events_per_second);
  lua_getfield(L, 4, "fsync");
  if (lua_isboolean(L, -1))
    cfg->fsync = lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, 4, "state_dir");
  if (lua_isboolean(L, -1) || lua_isstring(L, -1)) {
    free(cfg->state_dir);
    cfg->state_dir = lua_isstring(L, -1) ? strdup(lua_tostring(L, -1)) : NULL;
  }
  lua_pop(L, 1);
  lua_getfield(L, 4, "log_level");
  s = lua_tostring(L, -1);
  if (s != NULL)
    cfg->log_level = log_parse_level(s);
  lua_pop(L, 1);
  lua_getfield(L, 4, "metrics"); /* validated: { listen = "host:port", max_containers } */
  if (lua_istable(L, -1)) {
    lua_getfield(L, 5, "listen");
    if (lua_isstring(L, -1)) {
      free(cfg->metrics_listen);
      cfg->metrics_listen = NULL;
      cfg->metrics_listen = dup_or_raise(L, lua_tostring(L, -1));
    }
    lua_pop(L, 1);
    opt_size(L, 5, "max_containers", &cfg->metrics_max_containers);
  }
  lua_pop(L, 2);
  copy_filters(L, 1, g);
  copy_outputs(L, 1, g);
  g->filter_timeout = cfg->filter_timeout;
  g->mem.limit = lua_memory;
  return 0;
}

static int run_batch(lua_State *L);
static int run_hook(lua_State *L);

/* Runs the file and validates what it returns; leaves the normal form on
 * the stack. Returns 0, or -1 with the message in p->err. */
static int load_file(pipeline_t *p, program_t *g, const char *path)
{
  lua_State *L = g->L;
  int rc;

  if (luaL_loadfile(L, path) != 0) {
    snprintf(p->err, sizeof p->err, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  /* The file's top level runs under the runaway guard too, with a fixed
   * bound, so a loop there fails `engine check` instead of hanging it. */
  g->filter_timeout = PIPELINE_LOAD_TIMEOUT;
  p->guard.loading = 1;
  rc = lua_call_protected(p, g, 0, 1, path, NULL, 1);
  p->guard.loading = 0;
  if (rc != CALL_OK)
    return -1;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "engine.pipeline");
  if (lua_call_protected(p, g, 1, 1, "require", NULL, 0) != CALL_OK) {
    lua_pop(L, 1); /* the file's result */
    return -1;
  }
  lua_getfield(L, -1, "validate");
  lua_replace(L, -2); /* the module */
  lua_insert(L, -2);  /* validate under the file's result */
  lua_pushstring(L, path);
  return lua_call_protected(p, g, 2, 1, "validate", NULL, 0) == CALL_OK ? 0 : -1;
}

/* Frees the filters, outputs and Lua state. NULL is ignored. */
static void program_free(program_t *g)
{
  size_t i;

  if (g == NULL)
    return;
  for (i = 0; i < g->n_filters; i++) {
    filter_t *f = &g->filters[i];
    free(f->name);
    free(f->timers);
    if (f->sel != NULL) {
      selection_free(f->sel);
      free(f->sel);
    }
    if (f->dl_fd >= 0)
      close(f->dl_fd);
    free(f->dl_path);
  }
  free(g->filters);
  for (i = 0; i < g->n_outputs; i++)
    g->outputs[i]->free(g->outputs[i]);
  free(g->outputs);
  if (g->L != NULL)
    lua_close(g->L);
  free(g);
}

/* Registers the engine's functions in a new state (before any Lua code
 * runs; the state is nearly empty, so this cannot run out of memory). */
static void program_register(pipeline_t *p, program_t *g)
{
  lua_State *L = g->L;

  lua_pushlightuserdata(L, p);
  lua_pushcclosure(L, traceback_handler, 1);
  g->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushcfunction(L, run_batch);
  g->run_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushcfunction(L, run_hook);
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

/* Loads path into a new program (see pipeline_load). Returns NULL with the
 * message in err. Runs on the caller's thread, or on the pipeline thread
 * for a reload. */
static program_t *program_load(pipeline_t *p, const char *path, config_t *cfg, char *err,
                               size_t errlen)
{
  program_t *g = calloc(1, sizeof *g);
  lua_State *L;

  if (g == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  g->mem.limit = LUA_MEMORY_DEFAULT;
  g->L = L = luaL_newstate();
  if (L == NULL) {
    snprintf(p->err, sizeof p->err, "cannot create a Lua state: out of memory");
    goto err;
  }
  g->mem.base = lua_getallocf(L, &g->mem.base_ud);
  g->mem.used = (size_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + (size_t)lua_gc(L, LUA_GCCOUNTB, 0);
  lua_setallocf(L, capped_alloc, &g->mem);
  program_register(p, g);
  lua_pushcfunction(L, setup_state);
  lua_pushstring(L, path);
  lua_pushstring(L, p->lua_dir);
  if (lua_call_protected(p, g, 2, 0, "setup", NULL, 0) != CALL_OK)
    goto err;
  if (load_file(p, g, path) < 0)
    goto err;
  lua_pushcfunction(L, copy_config);
  lua_insert(L, -2); /* under the validated table */
  lua_pushlightuserdata(L, g);
  lua_pushlightuserdata(L, cfg);
  if (lua_call_protected(p, g, 3, 0, "config", NULL, 0) != CALL_OK)
    goto err;
  lua_settop(L, 0);
  lua_gc(L, LUA_GCCOLLECT, 0);
  g->report = 1;
  return g;
err:
  snprintf(err, errlen, "%s", p->err);
  program_free(g);
  return NULL;
}

/* Loads path (see pipeline.h). On failure cfg may hold some of the
 * pipeline's settings; config_free releases them as usual. */
pipeline_t *pipeline_load(const char *path, const char *lua_dir, config_t *cfg,
                          char *err, size_t errlen)
{
  pipeline_t *p = calloc(1, sizeof *p);
  pthread_condattr_t attr;

  if (p == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  pthread_mutex_init(&p->mu, NULL);
  pthread_mutex_init(&p->prog_mu, NULL);
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&p->cv, &attr);
  pthread_condattr_destroy(&attr);
  p->lua_dir = strdup(lua_dir ? lua_dir : ENGINE_LUA_DIR);
  if (p->lua_dir == NULL) {
    snprintf(err, errlen, "out of memory");
    goto err;
  }
  p->prog = program_load(p, path, cfg, err, errlen);
  if (p->prog == NULL)
    goto err;
  return p;
err:
  pipeline_free(p);
  return NULL;
}

/* ---- the pipeline thread ---- */

/* Sets t[key] = string at the table at idx without metamethods. */
static void raw_set_string(lua_State *L, int idx, const char *key, const char *val)
{
  lua_pushstring(L, key);
  lua_pushstring(L, val);
  lua_rawset(L, idx);
}

/* Sets t[key] = registry[ref] at the table at idx without metamethods. */
static void raw_set_ref(lua_State *L, int idx, const char *key, int ref)
{
  lua_pushstring(L, key);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  lua_rawset(L, idx);
}

/* Pushes a shallow copy of the array at idx (the records are shared). */
static void push_array_copy(lua_State *L, int idx)
{
  size_t i, n = lua_objlen(L, idx);

  lua_createtable(L, n > INT32_MAX ? INT32_MAX : (int)n, 0);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, (int)i);
    lua_rawseti(L, -2, (int)i);
  }
}

/* Checks the records a filter left at idx: every item a table with a
 * string `line`. Returns 0, or -1 with a message in msg. */
static int check_records(lua_State *L, int idx, const filter_t *f, char *msg, size_t n)
{
  size_t i, count = lua_objlen(L, idx);
  int t;

  for (i = 1; i <= count; i++) {
    lua_rawgeti(L, idx, (int)i);
    if (lua_type(L, -1) != LUA_TTABLE) {
      snprintf(msg, n, "filter %s returned a %s as record %zu, expected a table", f->name,
               luaL_typename(L, -1), i);
      lua_pop(L, 1);
      return -1;
    }
    lua_pushliteral(L, "line");
    lua_rawget(L, -2);
    t = lua_type(L, -1);
    lua_pop(L, 2);
    if (t != LUA_TSTRING) {
      snprintf(msg, n, "filter %s returned record %zu without a string `line` (got a %s)",
               f->name, i, lua_typename(L, t));
      return -1;
    }
  }
  return 0;
}

/* Writes one dead-letter line for the records at recs (an array, or 0 for
 * none): {"time","filter","container","name","error","records":[...]}. */
static void dead_letter(pipeline_t *p, program_t *g, filter_t *f, int recs,
                        const container_t *c, const char *msg)
{
  strbuf_t *b = &p->dlbuf;
  char ts[TS_LEN + 1];
  size_t i, n = recs ? lua_objlen(g->L, recs) : 0;
  int rc;

  ts_format(ts_now(), ts);
  b->len = 0;
  rc = strbuf_add(b, "{\"time\":", 8) | json_add_string(b, ts, TS_LEN) |
       strbuf_add(b, ",\"filter\":", 10) | json_add_string(b, f->name, strlen(f->name)) |
       strbuf_add(b, ",\"container\":", 13) |
       json_add_string(b, c ? c->id : "", c ? strlen(c->id) : 0) |
       strbuf_add(b, ",\"name\":", 8) |
       json_add_string(b, c && c->name ? c->name : "", c && c->name ? strlen(c->name) : 0) |
       strbuf_add(b, ",\"error\":", 9) | json_add_string(b, msg, strlen(msg)) |
       strbuf_add(b, ",\"records\":[", 12);
  for (i = 1; i <= n && rc == 0; i++) {
    lua_rawgeti(g->L, recs, (int)i);
    record_materialize(g->L, lua_gettop(g->L));
    rc = (i > 1 ? strbuf_add(b, ",", 1) : 0) | json_add_record(b, g->L, -1);
    lua_pop(g->L, 1);
  }
  rc |= strbuf_add(b, "]}\n", 3);
  if (rc == 0 && write(f->dl_fd, b->data, b->len) == (ssize_t)b->len) {
    count(&p->stats.dead_letters, 1);
    count(&f->dead_letters, 1);
  } else {
    count(&p->stats.output_errors, 1);
    log_error(c ? c->name : NULL, "filter %s: cannot write to the dead-letter file %s: %s",
              f->name, f->dl_path, rc ? "out of memory" : strerror(errno));
  }
  if (b->cap > ((size_t)1 << 20))
    strbuf_free(b);
}

/* The batch at recs failed filter f (or f is disabled): applies on_error.
 * Returns 1 when the batch goes on unchanged, 0 when it is dropped. */
static int apply_on_error(pipeline_t *p, program_t *g, filter_t *f, int recs,
                          const container_t *c, const char *msg)
{
  if (f->on_error == ON_ERROR_DEAD_LETTER)
    dead_letter(p, g, f, recs, c, msg);
  return f->on_error == ON_ERROR_PASS;
}

static void count_failure(pipeline_t *p, filter_t *f, int rc)
{
  count(rc == CALL_TIMEOUT ? &p->stats.filter_timeouts : &p->stats.filter_errors, 1);
  count(rc == CALL_TIMEOUT ? &f->timeouts : &f->errors, 1);
}

/* 1 when the filter takes batches of container c (NULL: records emitted by
 * a hook, which only filters without a selection take). */
static int filter_selects(const filter_t *f, const container_t *c)
{
  if (f->sel == NULL)
    return 1;
  if (c == NULL)
    return 0;
  return selection_match(f->sel, c->id, c->name ? c->name : "", c->image ? c->image : "",
                         (const char *const *)c->label_pairs, c->n_labels);
}

/* Appends the emitted records to the filter's result at idx, in a new
 * array (the filter may keep the table it returned). */
static void append_emitted(pipeline_t *p, program_t *g, int idx)
{
  lua_State *L = g->L;

  push_array_copy(L, idx);
  take_emitted(p, g, lua_gettop(L));
  lua_replace(L, idx);
}

/* Runs one filter on the records at recs. On success they are replaced by
 * what the filter returned (or its in-place edit of a copy of the array),
 * followed by what it emitted; on failure they stay as they were and the
 * filter's on_error applies. Returns 1 when the batch goes on, 0 when it
 * is dropped. */
const double pipeline_duration_bounds[PIPELINE_DURATION_BUCKETS] = {
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5};

/* Counts one process call of ns nanoseconds in its duration bucket. */
static void record_duration(filter_t *f, int64_t ns)
{
  double s = (double)ns / 1e9;
  size_t i = 0;
  while (i < PIPELINE_DURATION_BUCKETS && s > pipeline_duration_bounds[i])
    i++;
  count(&f->buckets[i], 1);
  count(&f->duration_ns, ns > 0 ? (unsigned long long)ns : 0);
}

static void collect_if_full(program_t *g);

static int run_filter(pipeline_t *p, program_t *g, filter_t *f, int recs, int ctx,
                      const container_t *c)
{
  lua_State *L = g->L;
  const char *cname = c ? c->name : NULL;
  int top = lua_gettop(L), rc;
  char what[256], msg[512];

  if (!filter_selects(f, c))
    return 1;
  if (f->disabled)
    return apply_on_error(p, g, f, recs, c, "filter disabled: its init failed");
  if (f->process_ref == LUA_NOREF)
    return 1;
  count(&f->calls, 1);
  snprintf(what, sizeof what, "filter %s (on_error=%s)", f->name, on_error_names[f->on_error]);
  push_array_copy(L, recs); /* top + 1: the array the filter gets */
  raw_set_string(L, ctx, "filter", f->name);
  raw_set_ref(L, ctx, "state", f->state_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, f->process_ref);
  lua_pushvalue(L, top + 1);
  lua_pushvalue(L, ctx);
  p->emit_on = 1;
  p->emit_c = c;
  p->emit_f = f;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  rc = lua_call_protected(p, g, 2, 1, what, cname, 1);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  record_duration(f, (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec));
  p->emit_on = 0;
  if (rc == CALL_OK) {
    if (lua_istable(L, -1))
      lua_replace(L, top + 1); /* the new array */
    else if (lua_isnil(L, -1))
      lua_pop(L, 1); /* keep the copy, as the filter left it */
    else {
      snprintf(msg, sizeof msg, "filter %s returned a %s, expected a table of records or nil",
               f->name, luaL_typename(L, -1));
      lua_pop(L, 1);
      rc = CALL_ERROR;
    }
    if (rc == CALL_OK && p->n_emitted > 0)
      append_emitted(p, g, top + 1);
    if (rc == CALL_OK && check_records(L, top + 1, f, msg, sizeof msg) < 0)
      rc = CALL_ERROR;
    if (rc != CALL_OK) {
      snprintf(p->err, sizeof p->err, "%s", msg);
      report_error(what, cname, msg, "");
    }
  }
  take_emitted(p, g, 0); /* what a failed call emitted */
  if (rc == CALL_OK) {
    lua_replace(L, recs); /* the result becomes the batch */
    return 1;
  }
  lua_settop(L, top);
  count_failure(p, f, rc);
  collect_if_full(g); /* what a failed call left must not starve the outputs */
  return apply_on_error(p, g, f, recs, c, p->err);
}

/* 1 when the record at idx goes to output o: its `output` field (at vidx)
 * is nil and o takes unrouted records, or names o, or lists o's name. */
static int routed_to(lua_State *L, int vidx, const output_t *o)
{
  size_t i, n;
  int hit = 0;

  switch (lua_type(L, vidx)) {
  case LUA_TNIL:
    return !o->routed_only;
  case LUA_TSTRING:
    return strcmp(lua_tostring(L, vidx), o->name) == 0;
  case LUA_TTABLE:
    n = lua_objlen(L, vidx);
    for (i = 1; i <= n && !hit; i++) {
      lua_rawgeti(L, vidx, (int)i);
      hit = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), o->name) == 0;
      lua_pop(L, 1);
    }
    return hit;
  default:
    return 0;
  }
}

/* Pushes the array of the records at recs that go to output o; counts in
 * *hits which records went somewhere (an array of flags, one per record). */
static void push_routed(lua_State *L, int recs, const output_t *o, unsigned char *hits)
{
  size_t i, k = 0, n = lua_objlen(L, recs);

  lua_newtable(L);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, recs, (int)i);
    lua_pushliteral(L, "output");
    lua_rawget(L, -2);
    if (routed_to(L, lua_gettop(L), o)) {
      lua_pop(L, 1);
      lua_rawseti(L, -2, (int)++k);
      hits[i - 1] = 1;
    } else {
      lua_pop(L, 2);
    }
  }
}

/* 1 when some record at recs has an `output` field. */
static int any_routed(lua_State *L, int recs)
{
  size_t i, n = lua_objlen(L, recs);
  int found = 0;

  for (i = 1; i <= n && !found; i++) {
    lua_rawgeti(L, recs, (int)i);
    lua_pushliteral(L, "output");
    lua_rawget(L, -2);
    found = !lua_isnil(L, -1);
    lua_pop(L, 2);
  }
  return found;
}

static void reopen_outputs(pipeline_t *p, program_t *g)
{
  char err[512];
  size_t i;

  for (i = 0; i < g->n_outputs; i++) {
    output_t *o = g->outputs[i];
    if (o->reopen != NULL && o->reopen(o, err, sizeof err) < 0) {
      count(&p->stats.output_errors, 1);
      log_error(NULL, "output %s: reopen: %s", o->name, err);
    }
  }
  for (i = 0; i < g->n_filters; i++) {
    filter_t *f = &g->filters[i];
    int fd;
    if (f->dl_path == NULL)
      continue;
    fd = open(f->dl_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      log_error(NULL, "filter %s: cannot reopen %s: %s", f->name, f->dl_path, strerror(errno));
      continue;
    }
    close(f->dl_fd);
    f->dl_fd = fd;
  }
}

static void write_output(pipeline_t *p, output_t *o, lua_State *L, int idx, const char *cname)
{
  char err[512];

  err[0] = '\0';
  if (netout_is(o) ? netout_write(o, L, idx, p->ticket, err, sizeof err) < 0
                   : o->write(o, L, idx, err, sizeof err) < 0) {
    count(&p->stats.output_errors, 1);
    log_error(cname, "output %s: %s", o->name, err);
  }
}

/* Hands the records at recs to the outputs: all of them to every output,
 * unless the program routes and some record has an `output` field. */
static void write_outputs(pipeline_t *p, program_t *g, int recs, const char *cname)
{
  lua_State *L = g->L;
  size_t i, n = lua_objlen(L, recs), reached = 0;
  unsigned char *hits;

  if (atomic_exchange(&p->reopen, 0))
    reopen_outputs(p, g);
  if (n == 0)
    return;
  for (i = 0; i < g->n_outputs; i++)
    if (!g->outputs[i]->lazy_ok) {
      record_materialize_all(L, recs);
      break;
    }
  if (!g->routing || !any_routed(L, recs)) {
    count(&p->stats.records_out, n);
    for (i = 0; i < g->n_outputs; i++)
      write_output(p, g->outputs[i], L, recs, cname);
    return;
  }
  hits = lua_newuserdata(L, n); /* collected with the batch */
  memset(hits, 0, n);
  for (i = 0; i < g->n_outputs; i++) {
    push_routed(L, recs, g->outputs[i], hits);
    if (lua_objlen(L, -1) > 0)
      write_output(p, g->outputs[i], L, lua_gettop(L), cname);
    lua_pop(L, 1);
  }
  for (i = 0; i < n; i++)
    reached += hits[i];
  lua_pop(L, 1);
  count(&p->stats.records_out, reached);
  if (reached < n) {
    count(&p->stats.records_unrouted, n - reached);
    log_debug(cname, "%zu records named no existing output in `output`", n - reached);
  }
}

/* Runs the records at recs through filters from..n-1 (unless the engine
 * aborted) and the outputs. ctx: the table filters get. */
static void run_chain(pipeline_t *p, program_t *g, int recs, int ctx, size_t from,
                      const container_t *c)
{
  size_t i;

  for (i = from; i < g->n_filters; i++) {
    if (atomic_load_explicit(&p->aborted, memory_order_relaxed))
      break;
    if (!run_filter(p, g, &g->filters[i], recs, ctx, c))
      return;
  }
  write_outputs(p, g, recs, c ? c->name : NULL);
}

/* Pushes a new ctx: {emit} plus name and container when c is given. */
static void push_ctx(lua_State *L, program_t *g, const container_t *c)
{
  lua_createtable(L, 0, 5);
  raw_set_ref(L, lua_gettop(L), "emit", g->emit_ref);
  if (c != NULL) {
    raw_set_string(L, lua_gettop(L), "name", c->name ? c->name : "");
    raw_set_string(L, lua_gettop(L), "container", c->id);
  }
}

/* Protected: turns the batch (argument 3) into records and runs them
 * through the filters and outputs. Arguments 1, 2: pipeline, program. */
static int run_batch(lua_State *L)
{
  pipeline_t *p = lua_touserdata(L, 1);
  program_t *g = lua_touserdata(L, 2);
  batch_t *b = lua_touserdata(L, 3);

  lua_settop(L, 3);
  record_push_batch(L, b); /* 4 */
  push_ctx(L, g, b->container); /* 5: shared by the filters of the batch */
  run_chain(p, g, 4, 5, 0, b->container);
  return 0;
}

/* Protected: runs a hook of filter i (argument 3): kind (argument 4), timer
 * index (argument 5). What it emits goes through the filters after it.
 * Arguments 1, 2: pipeline, program. */
static int run_hook(lua_State *L)
{
  pipeline_t *p = lua_touserdata(L, 1);
  program_t *g = lua_touserdata(L, 2);
  size_t i = (size_t)lua_tointeger(L, 3), t = (size_t)lua_tointeger(L, 5);
  int kind = (int)lua_tointeger(L, 4), ref, rc;
  filter_t *f = &g->filters[i];
  char what[256];

  if (kind == HOOK_INIT) {
    ref = f->init_ref;
    snprintf(what, sizeof what, "filter %s: init", f->name);
  } else if (kind == HOOK_SHUTDOWN) {
    ref = f->shutdown_ref;
    snprintf(what, sizeof what, "filter %s: shutdown", f->name);
  } else {
    ref = f->timers[t].ref;
    snprintf(what, sizeof what, "filter %s: timer %zu", f->name, t + 1);
  }
  lua_settop(L, 5);
  push_ctx(L, g, NULL); /* 6 */
  raw_set_string(L, 6, "filter", f->name);
  raw_set_ref(L, 6, "state", f->state_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  lua_pushvalue(L, 6);
  p->emit_on = kind != HOOK_INIT;
  p->emit_c = NULL;
  p->emit_f = f;
  count(&f->calls, 1);
  rc = lua_call_protected(p, g, 1, 0, what, NULL, 1);
  p->emit_on = 0;
  if (rc != CALL_OK) {
    take_emitted(p, g, 0);
    count_failure(p, f, rc);
    if (kind == HOOK_INIT) {
      f->disabled = 1;
      log_error(NULL, "filter %s is disabled: its init failed; its batches follow on_error=%s",
                f->name, on_error_names[f->on_error]);
    }
    return 0;
  }
  if (p->n_emitted == 0)
    return 0;
  lua_newtable(L); /* 7 */
  take_emitted(p, g, 7);
  push_ctx(L, g, NULL); /* 8 */
  run_chain(p, g, 7, 8, i + 1, NULL);
  return 0;
}

/* Runs hook kind of filter i (timer t) in a protected call. */
static void call_hook(pipeline_t *p, program_t *g, size_t i, int kind, size_t t)
{
  lua_State *L = g->L;
  int top = lua_gettop(L);

  lua_rawgeti(L, LUA_REGISTRYINDEX, g->hook_ref);
  lua_pushlightuserdata(L, p);
  lua_pushlightuserdata(L, g);
  lua_pushinteger(L, (lua_Integer)i);
  lua_pushinteger(L, kind);
  lua_pushinteger(L, (lua_Integer)t);
  lua_call_protected(p, g, 5, 0, "pipeline", NULL, 0);
  lua_settop(L, top);
}

/* Collects garbage when the state holds more than 3/4 of its limit: the
 * allocator cannot collect, so garbage would count against the limit. */
static void collect_if_full(program_t *g)
{
  size_t used = atomic_load_explicit(&g->mem.used, memory_order_relaxed);

  if (used > g->mem.limit - g->mem.limit / 4)
    lua_gc(g->L, LUA_GCCOLLECT, 0);
}

/* Runs the init hooks in order and arms the timers. */
static void program_start(pipeline_t *p, program_t *g)
{
  int64_t now = now_mono();
  size_t i, t;

  for (i = 0; i < g->n_filters; i++) {
    filter_t *f = &g->filters[i];
    if (f->init_ref != LUA_NOREF)
      call_hook(p, g, i, HOOK_INIT, 0);
    for (t = 0; t < f->n_timers; t++)
      f->timers[t].due = now + (int64_t)(f->timers[t].every * 1e9);
  }
  collect_if_full(g);
}

/* Runs the shutdown hooks in order (not after an abort), then flushes the
 * outputs. */
static void program_stop(pipeline_t *p, program_t *g)
{
  char err[512];
  size_t i;

  for (i = 0; i < g->n_filters; i++) {
    filter_t *f = &g->filters[i];
    if (f->shutdown_ref != LUA_NOREF && !f->disabled && !atomic_load(&p->aborted))
      call_hook(p, g, i, HOOK_SHUTDOWN, 0);
  }
  for (i = 0; i < g->n_outputs; i++) {
    output_t *o = g->outputs[i];
    err[0] = '\0';
    if (o->flush(o, err, sizeof err) < 0) {
      count(&p->stats.output_errors, 1);
      log_error(NULL, "output %s: flush: %s", o->name, err);
    }
  }
}

/* The earliest due time of the program's timers, or 0 when none. */
static int64_t next_due(const program_t *g)
{
  int64_t due = 0;
  size_t i, t;

  for (i = 0; i < g->n_filters; i++) {
    const filter_t *f = &g->filters[i];
    if (f->disabled)
      continue;
    for (t = 0; t < f->n_timers; t++)
      if (due == 0 || f->timers[t].due < due)
        due = f->timers[t].due;
  }
  return due;
}

/* Runs the timers that are due, each once (a late timer does not catch
 * up), and schedules them again from now. */
static void run_timers(pipeline_t *p, program_t *g)
{
  int64_t now = now_mono();
  size_t i, t;
  int ran = 0;

  for (i = 0; i < g->n_filters; i++) {
    filter_t *f = &g->filters[i];
    for (t = 0; t < f->n_timers && !f->disabled; t++) {
      if (f->timers[t].due > now)
        continue;
      call_hook(p, g, i, HOOK_TIMER, t);
      ran = 1;
      f->timers[t].due = now_mono() + (int64_t)(f->timers[t].every * 1e9);
    }
  }
  if (ran)
    collect_if_full(g);
}

static void process_batch(pipeline_t *p, program_t *g, batch_t *b)
{
  lua_State *L = g->L;
  int top = lua_gettop(L);

  count(&p->stats.batches, 1);
  count(&p->stats.records_in, b->n);
  if (b->n == 0)
    return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->run_ref);
  lua_pushlightuserdata(L, p);
  lua_pushlightuserdata(L, g);
  lua_pushlightuserdata(L, b);
  lua_call_protected(p, g, 3, 0, "pipeline", b->container->name, 0);
  lua_settop(L, top);
  /* The records hold the batch's memory outside the Lua heap: collect in
   * proportion to it, as if it had been allocated in the state. */
  lua_gc(L, LUA_GCSTEP, (int)(b->bytes_cap / 1024));
  collect_if_full(g);
}

static int program_has_netouts(const program_t *g)
{
  for (size_t i = 0; i < g->n_outputs; i++)
    if (netout_is(g->outputs[i]))
      return 1;
  return 0;
}

/* Loads path in a new program and swaps it in (see pipeline_reload). */
static void reload(pipeline_t *p, const char *path)
{
  program_t *old = p->prog, *g;
  config_t cfg;
  char err[PIPELINE_ERR_MAX];

  config_defaults(&cfg);
  g = program_load(p, path, &cfg, err, sizeof err);
  if (g == NULL) {
    config_free(&cfg);
    count(&p->stats.reload_failures, 1);
    log_error(NULL, "reload: %s; the running pipeline stays", err);
    return;
  }
  if (program_has_netouts(old) || program_has_netouts(g)) {
    config_free(&cfg);
    program_free(g);
    count(&p->stats.reload_failures, 1);
    log_error(NULL, "reload: network outputs change only at a restart; the running pipeline stays");
    return;
  }
  if (p->on_reload) { /* the new selection goes to the engine, which owns it now */
    p->on_reload(p->reload_ud, &cfg.select);
    memset(&cfg.select, 0, sizeof cfg.select);
  }
  config_free(&cfg);
  program_stop(p, old);
  pthread_mutex_lock(&p->prog_mu);
  p->prog = g;
  pthread_mutex_unlock(&p->prog_mu);
  program_free(old);
  program_start(p, g);
  count(&p->stats.reloads, 1);
  log_info(NULL, "reload: %s is running", path);
}

/* Waits for work: a batch (returned), a reload request (*reload), a timer
 * due at due (0: none), or the end of the input (*end; the thread then
 * counts as exited for submitters). */
static batch_t *queue_wait(pipeline_t *p, int64_t due, char **reload_path, int *end)
{
  struct timespec ts;
  batch_t *b;

  pthread_mutex_lock(&p->mu);
  while (p->head == NULL && !p->finishing && p->reload_path == NULL &&
         (due == 0 || now_mono() < due)) {
    if (due == 0) {
      pthread_cond_wait(&p->cv, &p->mu);
      continue;
    }
    ts.tv_sec = (time_t)(due / 1000000000);
    ts.tv_nsec = (long)(due % 1000000000);
    pthread_cond_timedwait(&p->cv, &p->mu, &ts);
  }
  b = p->head;
  if (b != NULL) {
    p->head = b->next;
    if (p->head == NULL)
      p->tail = NULL;
    b->next = NULL;
  }
  *reload_path = p->reload_path;
  p->reload_path = NULL;
  if (b == NULL && *reload_path == NULL && p->finishing) {
    p->exited = 1;
    *end = 1;
  }
  pthread_mutex_unlock(&p->mu);
  return b;
}

static void *pipeline_thread(void *arg)
{
  pipeline_t *p = arg;
  char *path;
  batch_t *b;
  int end = 0, aborted;

  program_start(p, p->prog);
  while (!end) {
    aborted = atomic_load(&p->aborted);
    b = queue_wait(p, aborted ? 0 : next_due(p->prog), &path, &end);
    if (path != NULL) {
      reload(p, path);
      free(path);
    }
    if (!atomic_load(&p->aborted))
      run_timers(p, p->prog);
    if (b != NULL && atomic_load(&p->discard)) {
      /* out of time at stop: not processed, not acknowledged, so the next
       * run reads these lines again from the saved cursors */
      count(&p->discarded, b->n);
      batch_free(b);
      continue;
    }
    if (b != NULL) {
      /* The batch is acknowledged (by the engine, which frees it) once the
       * network outputs that took it released their references too. */
      ticket_t *t = ticket_new(b, p->on_batch_done, p->batch_done_ud);
      p->ticket = t;
      process_batch(p, p->prog, b);
      p->ticket = NULL;
      if (t != NULL)
        ticket_release(t);
      else if (p->on_batch_done)
        p->on_batch_done(p->batch_done_ud, b);
      else
        batch_free(b);
    }
  }
  if (atomic_load(&p->discarded))
    log_warn(NULL, "stop ran out of time: %llu records were not delivered; the next run reads "
             "them again from the saved cursors", (unsigned long long)atomic_load(&p->discarded));
  program_stop(p, p->prog);
  atomic_store(&p->done, 1);
  uv_async_send(&p->async);
  return NULL;
}

static void pipeline_async_cb(uv_async_t *h)
{
  pipeline_t *p = h->data;

  if (!atomic_load(&p->done) || p->exit_called)
    return;
  p->exit_called = 1;
  if (p->on_exit != NULL)
    p->on_exit(p->ud);
}

static void pipeline_async_closed(uv_handle_t *h)
{
  uvh_closed(h);
}

/* Starts the thread with the asynchronous signals blocked: they belong to
 * the loop thread. */
int pipeline_start(pipeline_t *p, uv_loop_t *loop, void (*on_exit)(void *ud), void *ud)
{
  sigset_t all, old;
  int rc;

  if (p->thread_started || p->async_open)
    return -1;
  p->on_exit = on_exit;
  p->ud = ud;
  if (uv_async_init(loop, &p->async, pipeline_async_cb) != 0)
    return -1;
  uvh_opened((uv_handle_t *)&p->async);
  p->async.data = p;
  p->async_open = 1;
  sigfillset(&all);
  sigdelset(&all, SIGSEGV);
  sigdelset(&all, SIGBUS);
  sigdelset(&all, SIGFPE);
  sigdelset(&all, SIGILL);
  sigdelset(&all, SIGABRT);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  rc = pthread_create(&p->thread, NULL, pipeline_thread, p);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    log_error(NULL, "pipeline: cannot start its thread: %s", strerror(rc));
    p->async_open = 0;
    uvh_close((uv_handle_t *)&p->async, pipeline_async_closed);
    return -1;
  }
  p->thread_started = 1;
  return 0;
}

void pipeline_set_reloaded(pipeline_t *p, void (*cb)(void *ud, selection_t *sel), void *ud)
{
  p->on_reload = cb;
  p->reload_ud = ud;
}

size_t pipeline_outputs(pipeline_t *p, output_t **out, size_t max)
{
  size_t n = 0;
  pthread_mutex_lock(&p->prog_mu);
  for (size_t i = 0; p->prog && i < p->prog->n_outputs && n < max; i++)
    out[n++] = p->prog->outputs[i];
  pthread_mutex_unlock(&p->prog_mu);
  return n;
}

void pipeline_set_done(pipeline_t *p, void (*done)(void *ud, batch_t *b), void *ud)
{
  p->on_batch_done = done;
  p->batch_done_ud = ud;
}

void pipeline_submit(pipeline_t *p, batch_t *b)
{
  if (b == NULL)
    return;
  b->next = NULL;
  pthread_mutex_lock(&p->mu);
  if (p->exited) {
    pthread_mutex_unlock(&p->mu);
    log_warn(b->container ? b->container->name : NULL,
             "pipeline: %zu lines arrived after the pipeline ended; dropped", b->n);
    batch_free(b);
    return;
  }
  if (p->tail != NULL)
    p->tail->next = b;
  else
    p->head = b;
  p->tail = b;
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

void pipeline_finish(pipeline_t *p)
{
  pthread_mutex_lock(&p->mu);
  p->finishing = 1;
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

/* Also ends the input, as pipeline_finish does. */
void pipeline_abort(pipeline_t *p)
{
  atomic_store(&p->aborted, 1);
  pipeline_finish(p);
}

void pipeline_discard(pipeline_t *p)
{
  atomic_store(&p->discard, 1);
  pipeline_abort(p);
}

int pipeline_reload(pipeline_t *p, const char *path)
{
  char *copy = strdup(path);

  if (copy == NULL)
    return -1;
  pthread_mutex_lock(&p->mu);
  free(p->reload_path);
  p->reload_path = copy;
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
  return 0;
}

void pipeline_reopen(pipeline_t *p)
{
  atomic_store(&p->reopen, 1);
}

/* Ends the input too, so it cannot wait forever on a thread still running. */
void pipeline_close(pipeline_t *p)
{
  if (p->thread_started && !p->joined) {
    pipeline_finish(p);
    pthread_join(p->thread, NULL);
    p->joined = 1;
  }
  if (p->async_open) {
    p->async_open = 0;
    uvh_close((uv_handle_t *)&p->async, pipeline_async_closed);
  }
}

void pipeline_stats(pipeline_t *p, pipeline_stats_t *out)
{
  out->batches = atomic_load(&p->stats.batches);
  out->records_in = atomic_load(&p->stats.records_in);
  out->records_out = atomic_load(&p->stats.records_out);
  out->filter_errors = atomic_load(&p->stats.filter_errors);
  out->filter_timeouts = atomic_load(&p->stats.filter_timeouts);
  out->output_errors = atomic_load(&p->stats.output_errors);
  out->records_unrouted = atomic_load(&p->stats.records_unrouted);
  out->dead_letters = atomic_load(&p->stats.dead_letters);
  out->reloads = atomic_load(&p->stats.reloads);
  out->reload_failures = atomic_load(&p->stats.reload_failures);
  pthread_mutex_lock(&p->prog_mu);
  out->lua_bytes = p->prog ? atomic_load_explicit(&p->prog->mem.used, memory_order_relaxed) : 0;
  pthread_mutex_unlock(&p->prog_mu);
}

size_t pipeline_filter_stats(pipeline_t *p, pipeline_filter_stats_t *out, size_t max)
{
  size_t i, n;

  pthread_mutex_lock(&p->prog_mu);
  n = p->prog ? p->prog->n_filters : 0;
  for (i = 0; i < n && i < max; i++) {
    filter_t *f = &p->prog->filters[i];
    snprintf(out[i].name, sizeof out[i].name, "%s", f->name);
    out[i].calls = atomic_load(&f->calls);
    out[i].errors = atomic_load(&f->errors);
    out[i].timeouts = atomic_load(&f->timeouts);
    out[i].dead_letters = atomic_load(&f->dead_letters);
    for (size_t b = 0; b <= PIPELINE_DURATION_BUCKETS; b++)
      out[i].buckets[b] = atomic_load(&f->buckets[b]);
    out[i].duration_ns = atomic_load(&f->duration_ns);
    out[i].disabled = f->disabled;
    snprintf(out[i].on_error, sizeof out[i].on_error, "%s", on_error_names[f->on_error]);
  }
  pthread_mutex_unlock(&p->prog_mu);
  return n;
}

size_t pipeline_output_info(pipeline_t *p, pipeline_output_info_t *out, size_t max)
{
  size_t i, n;

  pthread_mutex_lock(&p->prog_mu);
  n = p->prog ? p->prog->n_outputs : 0;
  for (i = 0; i < n && i < max; i++) {
    const output_t *o = p->prog->outputs[i];
    snprintf(out[i].name, sizeof out[i].name, "%s", o->name ? o->name : "");
    snprintf(out[i].type, sizeof out[i].type, "%s", o->type ? o->type : "");
    out[i].routed_only = o->routed_only;
  }
  pthread_mutex_unlock(&p->prog_mu);
  return n;
}

/* Frees batches never processed, the program and the pipeline. */
void pipeline_free(pipeline_t *p)
{
  batch_t *b, *next;

  if (p == NULL)
    return;
  if (p->thread_started && !p->joined) {
    pipeline_finish(p);
    pthread_join(p->thread, NULL);
  }
  for (b = p->head; b != NULL; b = next) {
    next = b->next;
    batch_free(b);
  }
  program_free(p->prog);
  free(p->reload_path);
  free(p->lua_dir);
  strbuf_free(&p->dlbuf);
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
  pthread_mutex_destroy(&p->prog_mu);
  free(p);
}
