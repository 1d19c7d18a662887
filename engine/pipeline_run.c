/* pipeline_run.c - one batch or hook through the filters and outputs (see
 * pipeline_internal.h): each filter in a protected call with its on_error
 * policy and dead letters, the records it emitted, routing, the outputs.
 *
 * Runs on the pipeline thread only. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "encode.h"
#include "log.h"
#include "json.h"
#include "output.h"
#include "pipeline_internal.h"
#include "record.h"
#include "select.h"
#include "tap.h"
#include "timestamp.h"

/* Sets t[key] = string at the table at idx without metamethods. */
static void raw_set_string(lua_State *L, int idx, const char *key, const char *val) {
  lua_pushstring(L, key);
  lua_pushstring(L, val);
  lua_rawset(L, idx);
}

/* Sets t[key] = registry[ref] at the table at idx without metamethods. */
static void raw_set_ref(lua_State *L, int idx, const char *key, int ref) {
  lua_pushstring(L, key);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  lua_rawset(L, idx);
}

/* Pushes a shallow copy of the array at idx (the records are shared). */
static void push_array_copy(lua_State *L, int idx) {
  size_t i, n = lua_objlen(L, idx);

  lua_createtable(L, n > INT32_MAX ? INT32_MAX : (int)n, 0);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, (int)i);
    lua_rawseti(L, -2, (int)i);
  }
}

/* Checks the records a filter left at idx: every item a table with a
 * string `line`. Returns 0, or -1 with a message in msg. */
static int check_records(lua_State *L, int idx, const filter_t *f, char *msg, size_t n) {
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
      snprintf(msg, n, "filter %s returned record %zu without a string `line` (got a %s)", f->name,
               i, lua_typename(L, t));
      return -1;
    }
  }
  return 0;
}

/* Writes one dead-letter line for the records at recs (an array, or 0 for
 * none): {"time","filter","container","name","error","records":[...]}. */
static void dead_letter(pipeline_t *p, program_t *g, filter_t *f, int recs, const container_t *c,
                        const char *msg) {
  strbuf_t *b = &p->dlbuf;
  char ts[TS_LEN + 1];
  size_t i, n = recs ? lua_objlen(g->L, recs) : 0;
  int rc;

  ts_format(ts_now(), ts);
  b->len = 0;
  rc = strbuf_add(b, "{\"time\":", 8) | json_add_string(b, ts, TS_LEN) |
       strbuf_add(b, ",\"filter\":", 10) | json_add_string(b, f->name, strlen(f->name)) |
       strbuf_add(b, ",\"container\":", 13) |
       json_add_string(b, c ? c->id : "", c ? strlen(c->id) : 0) | strbuf_add(b, ",\"name\":", 8) |
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
    pl_count(&p->stats->dead_letters, 1);
    pl_count(&f->n->dead_letters, 1);
  } else {
    pl_count(&p->stats->output_errors, 1);
    log_error(c ? c->name : NULL, "filter %s: cannot write to the dead-letter file %s: %s", f->name,
              f->dl_path, rc ? "out of memory" : strerror(errno));
  }
  if (b->cap > ((size_t)1 << 20)) strbuf_free(b);
}

/* The batch at recs failed filter f (or f is disabled): applies on_error.
 * Returns 1 when the batch goes on unchanged, 0 when it is dropped. */
static int apply_on_error(pipeline_t *p, program_t *g, filter_t *f, int recs, const container_t *c,
                          const char *msg) {
  if (f->on_error == ON_ERROR_DEAD_LETTER) dead_letter(p, g, f, recs, c, msg);
  return f->on_error == ON_ERROR_PASS;
}

static void count_failure(pipeline_t *p, filter_t *f, int rc) {
  pl_count(rc == CALL_TIMEOUT ? &p->stats->filter_timeouts : &p->stats->filter_errors, 1);
  pl_count(rc == CALL_TIMEOUT ? &f->n->timeouts : &f->n->errors, 1);
}

/* 1 when the filter takes batches of container c (NULL: records emitted by
 * a hook, which only filters without a selection take). */
static int filter_selects(const filter_t *f, const container_t *c) {
  if (f->sel == NULL) return 1;
  if (c == NULL) return 0;
  return selection_match(f->sel, c->id, c->name ? c->name : "", c->image ? c->image : "",
                         (const char *const *)c->label_pairs, c->n_labels);
}

/* Appends the emitted records to the filter's result at idx, in a new
 * array (the filter may keep the table it returned). */
static void append_emitted(pipeline_t *p, program_t *g, int idx) {
  lua_State *L = g->L;

  push_array_copy(L, idx);
  pl_take_emitted(p, g, lua_gettop(L));
  lua_replace(L, idx);
}

const double pipeline_duration_bounds[PIPELINE_DURATION_BUCKETS] = {
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5};

/* Counts one process call of ns nanoseconds in its duration bucket. */
static void record_duration(filter_t *f, int64_t ns) {
  double s = (double)ns / 1e9;
  size_t i = 0;
  while (i < PIPELINE_DURATION_BUCKETS && s > pipeline_duration_bounds[i]) i++;
  pl_count(&f->n->buckets[i], 1);
  pl_count(&f->n->duration_ns, ns > 0 ? (unsigned long long)ns : 0);
}

/* In the filter process: the engine watches the call of filter f begun at
 * now (CLOCK_MONOTONIC ns) and ends it when it runs past filter_timeout. */
static void call_begins(pipeline_t *p, const program_t *g, const filter_t *f, int64_t now) {
  if (!p->in_worker) return;
  atomic_store(&p->stats->call_started_ns, now);
  atomic_store(&p->stats->call_filter, (int)(f - g->filters));
}

static void call_ends(pipeline_t *p) {
  if (p->in_worker) atomic_store(&p->stats->call_filter, -1);
}

/* Runs one filter on the records at recs. On success they are replaced by
 * what the filter returned (or its in-place edit of a copy of the array),
 * followed by what it emitted; on failure they stay as they were and the
 * filter's on_error applies. Returns 1 when the batch goes on, 0 when it
 * is dropped. */
static int run_filter(pipeline_t *p, program_t *g, filter_t *f, int recs, int ctx,
                      const container_t *c) {
  lua_State *L = g->L;
  const char *cname = c ? c->name : NULL;
  int top = lua_gettop(L), rc;
  char what[256], msg[512];

  if (!filter_selects(f, c)) return 1;
  if (f->n->disabled) return apply_on_error(p, g, f, recs, c, "filter disabled: its init failed");
  if (f->process_ref == LUA_NOREF) return 1;
  pl_count(&f->n->calls, 1);
  snprintf(what, sizeof what, "filter %s (on_error=%s)", f->name, pl_on_error_names[f->on_error]);
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
  call_begins(p, g, f, (int64_t)t0.tv_sec * 1000000000LL + t0.tv_nsec);
  rc = pl_call_protected(p, g, 2, 1, what, cname, 1);
  call_ends(p);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  record_duration(f, (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec));
  p->emit_on = 0;
  if (rc == CALL_OK) {
    if (lua_istable(L, -1)) lua_replace(L, top + 1); /* the new array */
    else if (lua_isnil(L, -1)) lua_pop(L, 1);        /* keep the copy, as the filter left it */
    else {
      snprintf(msg, sizeof msg, "filter %s returned a %s, expected a table of records or nil",
               f->name, luaL_typename(L, -1));
      lua_pop(L, 1);
      rc = CALL_ERROR;
    }
    if (rc == CALL_OK && p->n_emitted > 0) append_emitted(p, g, top + 1);
    if (rc == CALL_OK && check_records(L, top + 1, f, msg, sizeof msg) < 0) rc = CALL_ERROR;
    if (rc != CALL_OK) {
      snprintf(p->err, sizeof p->err, "%s", msg);
      pl_report_error(what, cname, msg, "");
    }
  }
  pl_take_emitted(p, g, 0); /* what a failed call emitted */
  if (rc == CALL_OK) {
    lua_replace(L, recs); /* the result becomes the batch */
    return 1;
  }
  lua_settop(L, top);
  count_failure(p, f, rc);
  pl_collect_if_full(g); /* what a failed call left must not starve the outputs */
  return apply_on_error(p, g, f, recs, c, p->err);
}

/* 1 when the record at idx goes to output o: its `output` field (at vidx)
 * is nil and o takes unrouted records, or names o, or lists o's name. */
static int routed_to(lua_State *L, int vidx, const output_t *o) {
  size_t i, n;
  int hit = 0;

  switch (lua_type(L, vidx)) {
  case LUA_TNIL: return !o->routed_only;
  case LUA_TSTRING: return strcmp(lua_tostring(L, vidx), o->name) == 0;
  case LUA_TTABLE:
    n = lua_objlen(L, vidx);
    for (i = 1; i <= n && !hit; i++) {
      lua_rawgeti(L, vidx, (int)i);
      hit = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), o->name) == 0;
      lua_pop(L, 1);
    }
    return hit;
  default: return 0;
  }
}

/* Pushes the array of the records at recs that go to output o; counts in
 * *hits which records went somewhere (an array of flags, one per record). */
static void push_routed(lua_State *L, int recs, const output_t *o, unsigned char *hits) {
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
static int any_routed(lua_State *L, int recs) {
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

void pl_close_dead_letters(program_t *g) {
  for (size_t i = 0; i < g->n_filters; i++)
    if (g->filters[i].dl_fd >= 0) {
      close(g->filters[i].dl_fd);
      g->filters[i].dl_fd = -1;
    }
}

void pl_reopen_dead_letters(program_t *g) {
  size_t i;

  for (i = 0; i < g->n_filters; i++) {
    filter_t *f = &g->filters[i];
    int fd;
    if (f->dl_path == NULL) continue;
    fd = open(f->dl_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
      log_error(NULL, "filter %s: cannot reopen %s: %s", f->name, f->dl_path, strerror(errno));
      continue;
    }
    if (f->dl_fd >= 0) close(f->dl_fd);
    f->dl_fd = fd;
  }
}

/* Offers the records at idx to the tap's clients at point (tap.h). */
static void tap_records(pipeline_t *p, lua_State *L, int point, const char *name, int idx,
                        const char *cname) {
  strbuf_t b = {0};

  if (p->in_worker ? !pl_worker_tap_wanted(p, point, name)
                   : !tap_wanted(p->tap, point, name, cname))
    return;
  if (encode_ndjson(&b, L, idx, 0) == 0) {
    if (p->in_worker) pl_worker_tap(p, point, name, cname, b.data, b.len);
    else tap_offer(p->tap, point, name, cname, b.data, b.len);
  }
  strbuf_free(&b);
}

/* Writes the records at idx to output i of g (in the filter process: sends
 * them to the engine, pipeline_worker.c). */
static void write_output(pipeline_t *p, program_t *g, size_t i, lua_State *L, int idx,
                         const char *cname) {
  output_t *o = g->outputs[i];
  char err[512];
  int rc;

  if (p->fb_sent && p->fb_sent[i]) return; /* a fallback: the filter process wrote it already */
  tap_records(p, L, TAP_OUTPUT, o->name, idx, cname);
  err[0] = '\0';
  if (p->in_worker) {
    rc = pl_worker_write(p, g, o, L, idx);
    snprintf(err, sizeof err, "out of memory while encoding for %s", o->name);
  } else {
    rc = output_write(o, L, idx, p->ticket, err, sizeof err);
  }
  if (rc < 0) {
    pl_count(&p->stats->output_errors, 1);
    log_error(cname, "output %s: %s", o->name, err);
  }
}

/* Hands the records at recs to the outputs: all of them to every output,
 * unless the program routes and some record has an `output` field. */
static void write_outputs(pipeline_t *p, program_t *g, int recs, const char *cname) {
  lua_State *L = g->L;
  size_t i, n = lua_objlen(L, recs), reached = 0;
  unsigned char *hits;

  if (atomic_exchange(&p->reopen, 0)) pl_reopen_dead_letters(g);
  if (n == 0) return;
  if (!g->routing || !any_routed(L, recs)) {
    pl_count(&p->stats->records_out, n);
    for (i = 0; i < g->n_outputs; i++) write_output(p, g, i, L, recs, cname);
    return;
  }
  hits = lua_newuserdata(L, n); /* collected with the batch */
  memset(hits, 0, n);
  for (i = 0; i < g->n_outputs; i++) {
    push_routed(L, recs, g->outputs[i], hits);
    if (lua_objlen(L, -1) > 0) write_output(p, g, i, L, lua_gettop(L), cname);
    lua_pop(L, 1);
  }
  for (i = 0; i < n; i++) reached += hits[i];
  lua_pop(L, 1);
  pl_count(&p->stats->records_out, reached);
  if (reached < n) {
    pl_count(&p->stats->records_unrouted, n - reached);
    log_debug(cname, "%zu records named no existing output in `output`", n - reached);
  }
}

/* Runs the records at recs through filters from..n-1 (unless the engine
 * aborted) and the outputs. ctx: the table filters get. */
static void run_chain(pipeline_t *p, program_t *g, int recs, int ctx, size_t from,
                      const container_t *c) {
  size_t i;
  const char *cname = c ? c->name : NULL;

  if (from == 0) tap_records(p, g->L, TAP_INPUT, NULL, recs, cname);
  for (i = from; i < g->n_filters; i++) {
    if (atomic_load_explicit(&p->aborted, memory_order_relaxed)) break;
    if (!run_filter(p, g, &g->filters[i], recs, ctx, c)) return;
    tap_records(p, g->L, TAP_FILTER, g->filters[i].name, recs, cname);
  }
  write_outputs(p, g, recs, c ? c->name : NULL);
}

/* Pushes a new ctx: {emit} plus name and container when c is given, and
 * host when its records carry it (container.h: host_field). */
static void push_ctx(lua_State *L, program_t *g, const container_t *c) {
  lua_createtable(L, 0, 5);
  raw_set_ref(L, lua_gettop(L), "emit", g->emit_ref);
  if (c != NULL) {
    raw_set_string(L, lua_gettop(L), "name", c->name ? c->name : "");
    raw_set_string(L, lua_gettop(L), "container", c->id);
    if (c->host_field) raw_set_string(L, lua_gettop(L), "host", c->host);
  }
}

/* Protected: turns the batch (argument 3) into records and runs them
 * through the filters and outputs. Arguments 1, 2: pipeline, program. */
int pl_run_batch(lua_State *L) {
  pipeline_t *p = lua_touserdata(L, 1);
  program_t *g = lua_touserdata(L, 2);
  batch_t *b = lua_touserdata(L, 3);

  lua_settop(L, 3);
  record_push_batch(L, b);      /* 4 */
  push_ctx(L, g, b->container); /* 5: shared by the filters of the batch */
  run_chain(p, g, 4, 5, 0, b->container);
  return 0;
}

/* Protected: runs a hook of filter i (argument 3): kind (argument 4), timer
 * index (argument 5). What it emits goes through the filters after it.
 * Arguments 1, 2: pipeline, program. */
int pl_run_hook(lua_State *L) {
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
  pl_count(&f->n->calls, 1);
  call_begins(p, g, f, pl_clock_ns(CLOCK_MONOTONIC));
  rc = pl_call_protected(p, g, 1, 0, what, NULL, 1);
  call_ends(p);
  p->emit_on = 0;
  if (rc != CALL_OK) {
    pl_take_emitted(p, g, 0);
    count_failure(p, f, rc);
    if (kind == HOOK_INIT) {
      f->n->disabled = 1;
      log_error(NULL, "filter %s is disabled: its init failed; its batches follow on_error=%s",
                f->name, pl_on_error_names[f->on_error]);
    }
    return 0;
  }
  if (p->n_emitted == 0) return 0;
  lua_newtable(L); /* 7 */
  pl_take_emitted(p, g, 7);
  push_ctx(L, g, NULL); /* 8 */
  run_chain(p, g, 7, 8, i + 1, NULL);
  return 0;
}

/* Runs hook kind of filter i (timer t) in a protected call. */
void pl_call_hook(pipeline_t *p, program_t *g, size_t i, int kind, size_t t) {
  lua_State *L = g->L;
  int top = lua_gettop(L);

  lua_rawgeti(L, LUA_REGISTRYINDEX, g->hook_ref);
  lua_pushlightuserdata(L, p);
  lua_pushlightuserdata(L, g);
  lua_pushinteger(L, (lua_Integer)i);
  lua_pushinteger(L, kind);
  lua_pushinteger(L, (lua_Integer)t);
  pl_call_protected(p, g, 5, 0, "pipeline", NULL, 0);
  lua_settop(L, top);
}

/* Collects garbage when the state holds more than 3/4 of its limit: the
 * allocator cannot collect, so garbage would count against the limit. */
void pl_collect_if_full(program_t *g) {
  size_t used = atomic_load_explicit(&g->mem.used, memory_order_relaxed);

  if (used > g->mem.limit - g->mem.limit / 4) lua_gc(g->L, LUA_GCCOLLECT, 0);
}

/* Batches held by lazy records count against half of engine.lua_memory:
 * past that, once garbage is collected, the records filters still keep are
 * made plain tables, which frees their batches. */
static void limit_held(program_t *g) {
  lua_State *L = g->L;
  size_t limit = g->mem.limit / 2;

  if (record_held(L) <= limit) return;
  lua_gc(L, LUA_GCCOLLECT, 0);
  if (record_held(L) <= limit) return;
  if (!g->detached)
    log_info(NULL,
             "filters keep records holding %zu KiB of batches (over half of "
             "engine.lua_memory): kept records are made plain tables",
             record_held(L) / 1024);
  g->detached = 1;
  lua_pushcfunction(L, record_detach);
  if (lua_pcall(L, 0, 0, 0) != 0)
    lua_pop(L, 1); /* out of memory: the batches stay held until it passes */
  lua_gc(L, LUA_GCCOLLECT, 0);
}

void pl_process_batch(pipeline_t *p, program_t *g, batch_t *b) {
  lua_State *L = g->L;
  int top = lua_gettop(L);

  pl_count(&p->stats->records_in, b->n);
  if (b->n > 0) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, g->run_ref);
    lua_pushlightuserdata(L, p);
    lua_pushlightuserdata(L, g);
    lua_pushlightuserdata(L, b);
    pl_call_protected(p, g, 3, 0, "pipeline", b->container->name, 0);
    lua_settop(L, top);
    /* The records hold the batch's memory outside the Lua heap: collect in
     * proportion to it, as if it had been allocated in the state. */
    lua_gc(L, LUA_GCSTEP, (int)(b->bytes_cap / 1024));
    pl_collect_if_full(g);
    limit_held(g);
  }
  /* Counted last: a batch counts as processed once its outputs took it. */
  pl_count(&p->stats->batches, 1);
}

/* Protected: the batch (argument 3) after the filter process failed on it:
 * on_error of filter argument 4 (-1: pass) with message argument 5.
 * Arguments 1, 2: pipeline, program. */
static int run_fallback(lua_State *L) {
  pipeline_t *p = lua_touserdata(L, 1);
  program_t *g = lua_touserdata(L, 2);
  batch_t *b = lua_touserdata(L, 3);
  int f = (int)lua_tointeger(L, 4);
  const char *msg = lua_tostring(L, 5);
  int policy = f >= 0 ? g->filters[f].on_error : ON_ERROR_PASS;

  lua_settop(L, 5);
  record_push_batch(L, b); /* 6 */
  if (policy == ON_ERROR_DEAD_LETTER)
    dead_letter(p, g, &g->filters[f], 6, b->container, msg ? msg : "");
  else if (policy == ON_ERROR_PASS) write_outputs(p, g, 6, b->container->name);
  return 0;
}

void pl_fallback_batch(pipeline_t *p, program_t *g, batch_t *b, int f, const char *msg,
                       const unsigned char *sent) {
  lua_State *L = g->L;
  int top = lua_gettop(L);

  if (b->n == 0) return;
  p->fb_sent = sent;
  lua_pushcfunction(L, run_fallback);
  lua_pushlightuserdata(L, p);
  lua_pushlightuserdata(L, g);
  lua_pushlightuserdata(L, b);
  lua_pushinteger(L, f);
  lua_pushstring(L, msg);
  pl_call_protected(p, g, 5, 0, "pipeline", b->container->name, 0);
  lua_settop(L, top);
  p->fb_sent = NULL;
  lua_gc(L, LUA_GCSTEP, (int)(b->bytes_cap / 1024));
  pl_collect_if_full(g);
}

int pl_first_filter(const program_t *g, const container_t *c) {
  size_t i;

  for (i = 0; i < g->n_filters; i++)
    if (filter_selects(&g->filters[i], c) && g->filters[i].process_ref != LUA_NOREF) return (int)i;
  return -1;
}
