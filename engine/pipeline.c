/* pipeline.c - the user's pipeline.lua: loading it, and the thread that runs
 * its filters and outputs (see pipeline.h).
 *
 * Every call into Lua goes through lua_call_protected: a traceback handler
 * under the function, the runaway guard armed for filter calls, and the
 * error logged. A batch is processed by run_batch, itself a protected call,
 * so running out of memory while building records cannot take the engine
 * down; inside it each filter is one more protected call. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>

#include "decode.h"
#include "log.h"
#include "output.h"
#include "pipeline.h"
#include "select.h"
#include "timestamp.h"
#include "uvh.h"

#ifndef ENGINE_LUA_DIR
#define ENGINE_LUA_DIR "lua"
#endif

#define GUARD_COUNT 1000 /* VM instructions between two guard checks */
#define PIPELINE_ERR_MAX 1024
#define PIPELINE_TB_MAX 4096

enum { ON_ERROR_PASS, ON_ERROR_DROP };
enum { CALL_OK, CALL_ERROR, CALL_TIMEOUT };

typedef struct filter {
  char *name;
  int on_error;
  int ref; /* the process function, in the registry */
} filter_t;

/* The runaway guard's view of the current call (pipeline thread only). */
typedef struct guard {
  int on;          /* a filter call: the deadline applies */
  int64_t deadline; /* CLOCK_MONOTONIC_COARSE ns; 0: none */
  int tripped;     /* the guard raised the error of this call */
} guard_t;

typedef struct pipeline_counters {
  atomic_ullong batches, records_in, records_out, filter_errors,
      filter_timeouts, output_errors;
} pipeline_counters_t;

struct pipeline {
  void (*on_batch_done)(void *ud, batch_t *b); /* takes processed batches (pipeline_set_done) */
  void *batch_done_ud;
  int loading;              /* running the file's top level */
  lua_State *L;
  int handler_ref; /* traceback_handler closure */
  int run_ref;     /* run_batch */
  filter_t *filters;
  size_t n_filters;
  output_t **outputs;
  size_t n_outputs;
  double filter_timeout;

  guard_t guard;
  int escalated;      /* the hook runs on every instruction */
  atomic_int aborted;
  int report;         /* log errors of protected calls (not while loading) */
  char err[PIPELINE_ERR_MAX]; /* message of the last failed call */
  char tb[PIPELINE_TB_MAX];   /* its traceback */

  pthread_mutex_t mu;
  pthread_cond_t cv;
  batch_t *head, *tail; /* under mu */
  int finishing, exited; /* under mu */
  atomic_int done;      /* the thread has finished its work */
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

static int64_t now_coarse(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void count(atomic_ullong *c, unsigned long long n)
{
  atomic_fetch_add_explicit(c, n, memory_order_relaxed);
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
    snprintf(msg, sizeof msg, p->loading ? "still running after %g s while loading"
                                         : "filter timed out after %g s", p->filter_timeout);
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
static void report_error(pipeline_t *p, const char *what, const char *container,
                         const char *msg, const char *tb)
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

/* Calls the function under its nargs arguments on top of p->L, like
 * lua_pcall, with the traceback handler and, when guarded, the filter
 * deadline. On error the message is in p->err (and logged unless loading)
 * and the stack holds neither the function, its arguments nor a result.
 * Returns CALL_OK, CALL_ERROR, or CALL_TIMEOUT when the guard stopped it. */
static int lua_call_protected(pipeline_t *p, int nargs, int nres, const char *what,
                              const char *container, int guarded)
{
  lua_State *L = p->L;
  int base = lua_gettop(L) - nargs; /* the function's index */
  pipeline_t *outer = guard_current;
  guard_t saved = p->guard;
  const char *msg;
  int rc, tripped;

  lua_rawgeti(L, LUA_REGISTRYINDEX, p->handler_ref);
  lua_insert(L, base); /* put the handler under the function and args */
  p->guard.on = guarded;
  p->guard.tripped = 0;
  p->guard.deadline = 0;
  if (guarded && p->filter_timeout > 0)
    p->guard.deadline = now_coarse() + (int64_t)(p->filter_timeout * 1e9);
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
  if (p->report)
    report_error(p, what, container, p->err, p->tb);
  return tripped ? CALL_TIMEOUT : CALL_ERROR;
}

/* ---- loading ---- */

static int pipeline_no_exit(lua_State *L)
{
  return luaL_error(L, "os.exit is not available to pipelines");
}

static int pipeline_no_jit(lua_State *L)
{
  return luaL_error(L, "jit.on is not available to pipelines (the runaway guard needs the JIT off)");
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
      luaL_addchar(&b, '\t');
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  log_info(NULL, "print: %s", lua_tostring(L, -1));
  return 0;
}

/* Protected: opens the libraries, turns the JIT compiler off, sets
 * package.path to the pipeline's folder and the engine's Lua folder, and
 * replaces os.exit, jit.on and print.
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
  lua_getglobal(L, "os");
  lua_pushcfunction(L, pipeline_no_exit);
  lua_setfield(L, -2, "exit");
  lua_getglobal(L, "jit");
  lua_pushcfunction(L, pipeline_no_jit);
  lua_setfield(L, -2, "on");
  lua_pushcfunction(L, pipeline_print);
  lua_setglobal(L, "print");
  return 0;
}

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

static void copy_filters(lua_State *L, int idx, pipeline_t *p)
{
  size_t i, n;
  filter_t *f;

  lua_getfield(L, idx, "filters");
  n = lua_objlen(L, -1);
  p->filters = calloc(n ? n : 1, sizeof *p->filters);
  if (p->filters == NULL)
    luaL_error(L, "out of memory");
  for (i = 1; i <= n; i++) {
    f = &p->filters[p->n_filters];
    f->ref = LUA_NOREF;
    p->n_filters++;
    lua_rawgeti(L, -1, (int)i);
    lua_getfield(L, -1, "name");
    f->name = dup_or_raise(L, lua_tostring(L, -1));
    lua_pop(L, 1);
    lua_getfield(L, -1, "on_error");
    f->on_error = strcmp(lua_tostring(L, -1), "drop") == 0 ? ON_ERROR_DROP : ON_ERROR_PASS;
    lua_pop(L, 1);
    lua_getfield(L, -1, "process");
    f->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static void copy_outputs(lua_State *L, int idx, pipeline_t *p)
{
  size_t i, n;
  output_t *o;

  lua_getfield(L, idx, "outputs");
  n = lua_objlen(L, -1);
  p->outputs = calloc(n ? n : 1, sizeof *p->outputs);
  if (p->outputs == NULL)
    luaL_error(L, "out of memory");
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, (int)i);
    lua_getfield(L, -1, "name");
    lua_getfield(L, -2, "format");
    o = output_stdout_new(lua_tostring(L, -2), lua_tostring(L, -1), 1);
    if (o == NULL)
      luaL_error(L, "out of memory");
    p->outputs[p->n_outputs++] = o;
    lua_pop(L, 3);
  }
  lua_pop(L, 1);
}

/* Protected: copies the validated table (argument 1) into the config
 * (argument 3) and the pipeline (argument 2). */
static int copy_config(lua_State *L)
{
  pipeline_t *p = lua_touserdata(L, 2);
  config_t *cfg = lua_touserdata(L, 3);
  const char *s;

  lua_getfield(L, 1, "docker");
  lua_getfield(L, -1, "host");
  if (lua_isstring(L, -1)) {
    free(cfg->docker_host);
    cfg->docker_host = NULL;
    cfg->docker_host = dup_or_raise(L, lua_tostring(L, -1));
  }
  lua_pop(L, 2);
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
  lua_getfield(L, 4, "log_level");
  s = lua_tostring(L, -1);
  if (s != NULL)
    cfg->log_level = log_parse_level(s);
  lua_pop(L, 2);
  copy_filters(L, 1, p);
  copy_outputs(L, 1, p);
  p->filter_timeout = cfg->filter_timeout;
  return 0;
}

static int run_batch(lua_State *L);

/* Runs the file and validates what it returns; leaves the normal form on
 * the stack. Returns 0, or -1 with the message in p->err. */
#define PIPELINE_LOAD_TIMEOUT 10.0 /* seconds the top level of pipeline.lua may run */

static int load_file(pipeline_t *p, const char *path)
{
  lua_State *L = p->L;

  if (luaL_loadfile(L, path) != 0) {
    snprintf(p->err, sizeof p->err, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  /* The file's top level runs under the runaway guard too, with a fixed
   * bound, so a loop there fails `engine check` instead of hanging it. */
  p->filter_timeout = PIPELINE_LOAD_TIMEOUT;
  p->loading = 1;
  int rc = lua_call_protected(p, 0, 1, path, NULL, 1);
  p->loading = 0;
  if (rc != CALL_OK)
    return -1;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "engine.pipeline");
  if (lua_call_protected(p, 1, 1, "require", NULL, 0) != CALL_OK) {
    lua_pop(L, 1); /* the file's result */
    return -1;
  }
  lua_getfield(L, -1, "validate");
  lua_replace(L, -2); /* the module */
  lua_insert(L, -2);  /* validate under the file's result */
  lua_pushstring(L, path);
  return lua_call_protected(p, 2, 1, "validate", NULL, 0) == CALL_OK ? 0 : -1;
}

/* Loads path (see pipeline.h). On failure cfg may hold some of the
 * pipeline's settings; config_free releases them as usual. */
pipeline_t *pipeline_load(const char *path, const char *lua_dir, config_t *cfg,
                          char *err, size_t errlen)
{
  pipeline_t *p = calloc(1, sizeof *p);
  lua_State *L;

  if (p == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  p->handler_ref = p->run_ref = LUA_NOREF;
  p->L = L = luaL_newstate();
  if (L == NULL) {
    snprintf(p->err, sizeof p->err, "cannot create a Lua state: out of memory");
    goto err;
  }
  lua_pushlightuserdata(L, p);
  lua_pushcclosure(L, traceback_handler, 1);
  p->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushcfunction(L, run_batch);
  p->run_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_sethook(L, guard_hook, LUA_MASKCOUNT, GUARD_COUNT);

  lua_pushcfunction(L, setup_state);
  lua_pushstring(L, path);
  lua_pushstring(L, lua_dir ? lua_dir : ENGINE_LUA_DIR);
  if (lua_call_protected(p, 2, 0, "setup", NULL, 0) != CALL_OK)
    goto err;
  if (load_file(p, path) < 0)
    goto err;
  lua_pushcfunction(L, copy_config);
  lua_insert(L, -2); /* under the validated table */
  lua_pushlightuserdata(L, p);
  lua_pushlightuserdata(L, cfg);
  if (lua_call_protected(p, 3, 0, "config", NULL, 0) != CALL_OK)
    goto err;
  lua_settop(L, 0);
  lua_gc(L, LUA_GCCOLLECT, 0);
  p->report = 1;
  return p;
err:
  snprintf(err, errlen, "%s", p->err);
  pipeline_free(p);
  return NULL;
}

/* ---- the pipeline thread ---- */

/* Pushes the batch's records: an array of tables, sharing one labels
 * table. */
static void push_records(lua_State *L, const batch_t *b)
{
  const container_t *c = b->container;
  char ts[TS_LEN + 1];
  int recs, id, name, image, labels, out, err;
  size_t i;

  lua_createtable(L, b->n > INT32_MAX ? INT32_MAX : (int)b->n, 0);
  recs = lua_gettop(L);
  lua_pushstring(L, c->id);
  id = lua_gettop(L);
  lua_pushstring(L, c->name ? c->name : "");
  name = lua_gettop(L);
  lua_pushstring(L, c->image ? c->image : "");
  image = lua_gettop(L);
  lua_createtable(L, 0, (int)c->n_labels);
  labels = lua_gettop(L);
  for (i = 0; i < c->n_labels; i++) {
    lua_pushstring(L, c->label_values[i]);
    lua_setfield(L, labels, c->label_keys[i]);
  }
  lua_pushliteral(L, "stdout");
  out = lua_gettop(L);
  lua_pushliteral(L, "stderr");
  err = lua_gettop(L);
  for (i = 0; i < b->n; i++) {
    const batch_rec_t *r = &b->recs[i];
    lua_createtable(L, 0, 8);
    lua_pushlstring(L, b->bytes + r->off, r->len);
    lua_setfield(L, -2, "line");
    lua_pushvalue(L, r->stream == DECODE_STDERR ? err : out);
    lua_setfield(L, -2, "stream");
    ts_format(r->ts, ts);
    lua_pushlstring(L, ts, TS_LEN);
    lua_setfield(L, -2, "time");
    lua_pushvalue(L, id);
    lua_setfield(L, -2, "container");
    lua_pushvalue(L, name);
    lua_setfield(L, -2, "name");
    lua_pushvalue(L, image);
    lua_setfield(L, -2, "image");
    lua_pushvalue(L, labels);
    lua_setfield(L, -2, "labels");
    if (r->flags & DECODE_TRUNCATED) {
      lua_pushboolean(L, 1);
      lua_setfield(L, -2, "truncated");
    }
    lua_rawseti(L, recs, (int)(i + 1));
  }
  lua_settop(L, recs);
}

/* Sets t[key] = string at the table at idx without metamethods. */
static void raw_set_string(lua_State *L, int idx, const char *key, const char *val)
{
  lua_pushstring(L, key);
  lua_pushstring(L, val);
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

/* Runs one filter on the records at recs. On success they are replaced by
 * what the filter returned (or its in-place edit of a copy of the array);
 * on failure they stay as they were. Returns 1 when the batch goes on, 0
 * when it is dropped. */
static int run_filter(pipeline_t *p, const filter_t *f, int recs, int ctx, const char *cname)
{
  lua_State *L = p->L;
  int top = lua_gettop(L), rc;
  char what[256], msg[512];

  snprintf(what, sizeof what, "filter %s (on_error=%s)", f->name,
           f->on_error == ON_ERROR_DROP ? "drop" : "pass");
  push_array_copy(L, recs); /* top + 1: the array the filter gets */
  raw_set_string(L, ctx, "filter", f->name);
  lua_rawgeti(L, LUA_REGISTRYINDEX, f->ref);
  lua_pushvalue(L, top + 1);
  lua_pushvalue(L, ctx);
  rc = lua_call_protected(p, 2, 1, what, cname, 1);
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
    if (rc == CALL_OK && check_records(L, top + 1, f, msg, sizeof msg) < 0)
      rc = CALL_ERROR;
    if (rc != CALL_OK)
      report_error(p, what, cname, msg, "");
  }
  if (rc == CALL_OK) {
    lua_replace(L, recs); /* the result becomes the batch */
    return 1;
  }
  lua_settop(L, top);
  count(rc == CALL_TIMEOUT ? &p->stats.filter_timeouts : &p->stats.filter_errors, 1);
  return f->on_error == ON_ERROR_PASS;
}

static void write_outputs(pipeline_t *p, int recs, const char *cname)
{
  char err[512];
  size_t i;

  count(&p->stats.records_out, lua_objlen(p->L, recs));
  for (i = 0; i < p->n_outputs; i++) {
    output_t *o = p->outputs[i];
    err[0] = '\0';
    if (o->write(o, p->L, recs, err, sizeof err) < 0) {
      count(&p->stats.output_errors, 1);
      log_error(cname, "output %s: %s", o->name, err);
    }
  }
}

/* Protected: turns the batch (argument 2) into records, runs the filters
 * unless the engine aborted, and hands the result to the outputs.
 * Argument 1 is the pipeline. */
static int run_batch(lua_State *L)
{
  pipeline_t *p = lua_touserdata(L, 1);
  batch_t *b = lua_touserdata(L, 2);
  const container_t *c = b->container;
  size_t i;
  int keep = 1;

  lua_settop(L, 2);
  push_records(L, b); /* 3 */
  lua_createtable(L, 0, 3); /* 4: ctx, shared by the filters of the batch */
  raw_set_string(L, 4, "name", c->name ? c->name : "");
  raw_set_string(L, 4, "container", c->id);
  for (i = 0; i < p->n_filters && keep; i++) {
    if (atomic_load_explicit(&p->aborted, memory_order_relaxed))
      break;
    keep = run_filter(p, &p->filters[i], 3, 4, c->name);
  }
  if (keep)
    write_outputs(p, 3, c->name);
  return 0;
}

static void process_batch(pipeline_t *p, batch_t *b)
{
  lua_State *L = p->L;
  int top = lua_gettop(L);

  count(&p->stats.batches, 1);
  count(&p->stats.records_in, b->n);
  if (b->n == 0)
    return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, p->run_ref);
  lua_pushlightuserdata(L, p);
  lua_pushlightuserdata(L, b);
  lua_call_protected(p, 2, 0, "pipeline", b->container->name, 0);
  lua_settop(L, top);
}

/* Takes the next batch, waiting for one; NULL once the input has ended and
 * the queue is empty (the thread then counts as exited for submitters). */
static batch_t *queue_pop(pipeline_t *p)
{
  batch_t *b;

  pthread_mutex_lock(&p->mu);
  while (p->head == NULL && !p->finishing)
    pthread_cond_wait(&p->cv, &p->mu);
  b = p->head;
  if (b != NULL) {
    p->head = b->next;
    if (p->head == NULL)
      p->tail = NULL;
    b->next = NULL;
  } else {
    p->exited = 1;
  }
  pthread_mutex_unlock(&p->mu);
  return b;
}

static void *pipeline_thread(void *arg)
{
  pipeline_t *p = arg;
  batch_t *b;
  char err[512];
  size_t i;

  while ((b = queue_pop(p)) != NULL) {
    process_batch(p, b);
    if (p->on_batch_done)
      p->on_batch_done(p->batch_done_ud, b); /* acknowledged by the engine, which frees it */
    else
      batch_free(b);
  }
  for (i = 0; i < p->n_outputs; i++) {
    output_t *o = p->outputs[i];
    err[0] = '\0';
    if (o->flush(o, err, sizeof err) < 0) {
      count(&p->stats.output_errors, 1);
      log_error(NULL, "output %s: flush: %s", o->name, err);
    }
  }
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
}

/* Frees batches never processed, the filters, the outputs and the Lua
 * state. */
void pipeline_free(pipeline_t *p)
{
  batch_t *b, *next;
  size_t i;

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
  for (i = 0; i < p->n_filters; i++)
    free(p->filters[i].name);
  free(p->filters);
  for (i = 0; i < p->n_outputs; i++)
    p->outputs[i]->free(p->outputs[i]);
  free(p->outputs);
  if (p->L != NULL)
    lua_close(p->L);
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
  free(p);
}
