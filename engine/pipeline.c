/* pipeline.c - the user's pipeline.lua: loading it, and the thread that runs
 * its filters, their hooks and timers, and its outputs (see pipeline.h).
 *
 * What one pipeline.lua becomes is a program: a Lua state (with its own
 * capped allocator), the filters and the outputs. The pipeline owns the
 * current program, the queue and the thread; a hot reload builds a new
 * program on the thread and swaps it in between two batches.
 *
 * Every call into Lua goes through pl_call_protected: a traceback handler
 * under the function, the runaway guard armed for filter calls, and the
 * error logged. A batch is processed by pl_run_batch, itself a protected call,
 * so running out of memory while building records cannot take the engine
 * down; inside it each filter is one more protected call. Hooks (init,
 * timers, shutdown) run the same way through pl_run_hook.
 *
 * This file: program load and free, the thread, its queue and timers,
 * reload, and the functions of pipeline.h. The rest is in pipeline_lua.c,
 * pipeline_config.c and pipeline_run.c (pipeline_internal.h). */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "log.h"
#include "output.h"
#include "pipeline.h"
#include "pipeline_internal.h"
#include "select.h"
#include "handles.h"

#ifndef ENGINE_LUA_DIR
#define ENGINE_LUA_DIR "lua"
#endif

#define PIPELINE_LOAD_TIMEOUT 10.0 /* seconds the top level of pipeline.lua may run */

/* The pipeline's monotonic clock: the simulated one of a test run
 * (pl_sim_*), else CLOCK_MONOTONIC. */
static int64_t now_mono(const pipeline_t *p) {
  return p->simulated ? p->sim_now : pl_clock_ns(CLOCK_MONOTONIC);
}

/* ---- loading ---- */

/* Runs the file and validates what it returns; leaves the normal form on
 * the stack. Returns 0, or -1 with the message in p->err. */
static int load_file(pipeline_t *p, program_t *g, const char *path, const char *source) {
  lua_State *L = g->L;
  int rc;

  if (source != NULL) {
    /* "@name": messages say "name:line:" as they would for a file */
    lua_pushfstring(L, "@%s", path);
    rc = luaL_loadbuffer(L, source, strlen(source), lua_tostring(L, -1));
    lua_remove(L, -2);
  } else {
    rc = luaL_loadfile(L, path);
  }
  if (rc != 0) {
    snprintf(p->err, sizeof p->err, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  /* The file's top level runs under the runaway guard too, with a fixed
   * bound, so a loop there fails `engine check` instead of hanging it. */
  g->filter_timeout = PIPELINE_LOAD_TIMEOUT;
  p->guard.loading = 1;
  rc = pl_call_protected(p, g, 0, 1, path, NULL, 1);
  p->guard.loading = 0;
  if (rc != CALL_OK) return -1;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "engine.pipeline");
  if (pl_call_protected(p, g, 1, 1, "require", NULL, 0) != CALL_OK) {
    lua_pop(L, 1); /* the file's result */
    return -1;
  }
  lua_getfield(L, -1, "validate");
  lua_replace(L, -2); /* the module */
  lua_insert(L, -2);  /* validate under the file's result */
  lua_pushstring(L, path);
  if (source != NULL) lua_pushstring(L, source);
  else lua_pushnil(L); /* validate reads the file for the lines of its messages */
  /* pipeline_check: the checks of what opening would find */
  lua_createtable(L, 0, 1);
  if (g->check_only) {
    lua_pushcfunction(L, pl_writable);
    lua_setfield(L, -2, "writable");
  }
  return pl_call_protected(p, g, 4, 1, "validate", NULL, 0) == CALL_OK ? 0 : -1;
}

/* 1 when o is one of g's outputs. */
static int has_output(const program_t *g, const output_t *o) {
  for (size_t i = 0; g != NULL && i < g->n_outputs; i++)
    if (g->outputs[i] == o) return 1;
  return 0;
}

/* Frees the filters, the outputs (unless a delivery took them, and but
 * those of keep, which a failed reload shares with the running program) and
 * the Lua state. NULL is ignored. */
void pl_program_free(program_t *g, const program_t *keep) {
  size_t i;

  if (g == NULL) return;
  for (i = 0; i < g->n_filters; i++) {
    filter_t *f = &g->filters[i];
    free(f->name);
    free(f->timers);
    if (f->sel != NULL) {
      selection_free(f->sel);
      free(f->sel);
    }
    if (f->dl_fd >= 0) close(f->dl_fd);
    free(f->dl_path);
  }
  free(g->filters);
  pl_shared_free(g->counts);
  for (i = 0; i < g->n_outputs && !g->outputs_taken; i++)
    if (!has_output(keep, g->outputs[i])) output_free(g->outputs[i]);
  free(g->outputs);
  if (g->L != NULL) lua_close(g->L);
  free(g);
}

program_t *pl_program_load(pipeline_t *p, const char *path, const char *source, config_t *cfg,
                           char *err, size_t errlen) {
  program_t *g = calloc(1, sizeof *g);
  lua_State *L;

  if (g == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  g->mem.limit = LUA_MEMORY_DEFAULT;
  g->reuse = p->prog; /* NULL unless this is a reload */
  g->check_only = p->check_only;
  g->L = L = luaL_newstate();
  if (L == NULL) {
    snprintf(p->err, sizeof p->err, "cannot create a Lua state: out of memory");
    goto err;
  }
  g->mem.base = lua_getallocf(L, &g->mem.base_ud);
  g->mem.used = (size_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + (size_t)lua_gc(L, LUA_GCCOUNTB, 0);
  lua_setallocf(L, pl_capped_alloc, &g->mem);
  pl_program_register(p, g);
  lua_pushcfunction(L, pl_setup_state);
  lua_pushstring(L, path);
  lua_pushstring(L, p->lua_dir);
  if (pl_call_protected(p, g, 2, 0, "setup", NULL, 0) != CALL_OK) goto err;
  if (load_file(p, g, path, source) < 0) goto err;
  lua_pushcfunction(L, pl_copy_config);
  lua_insert(L, -2); /* under the validated table */
  lua_pushlightuserdata(L, g);
  lua_pushlightuserdata(L, cfg);
  if (pl_call_protected(p, g, 3, 0, "config", NULL, 0) != CALL_OK) goto err;
  lua_settop(L, 0);
  lua_gc(L, LUA_GCCOLLECT, 0);
  g->report = 1;
  return g;
err:
  snprintf(err, errlen, "%s", p->err);
  pl_program_free(g, p->prog);
  return NULL;
}

pipeline_t *pl_load(const char *path, const char *source, const char *lua_dir, int check_only,
                    config_t *cfg, char *err, size_t errlen) {
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
  p->check_only = check_only;
  if ((p->stats = pl_shared_calloc(1, sizeof *p->stats)) == NULL) {
    snprintf(err, errlen, "out of memory");
    goto err;
  }
  atomic_store(&p->stats->call_filter, -1);
  if (source != NULL) p->source = strdup(source);
  if (p->lua_dir == NULL || (source != NULL && p->source == NULL)) {
    snprintf(err, errlen, "out of memory");
    goto err;
  }
  p->prog = pl_program_load(p, path, p->source, cfg, err, errlen);
  if (p->prog == NULL) goto err;
  return p;
err:
  pipeline_free(p);
  return NULL;
}

pipeline_t *pipeline_load(const char *path, const char *lua_dir, config_t *cfg, char *err,
                          size_t errlen) {
  return pl_load(path, NULL, lua_dir, 0, cfg, err, errlen);
}

pipeline_t *pipeline_load_source(const char *name, const char *source, const char *lua_dir,
                                 config_t *cfg, char *err, size_t errlen) {
  return pl_load(name, source, lua_dir, 0, cfg, err, errlen);
}

int pipeline_check(const char *path, const char *lua_dir, char *err, size_t errlen) {
  config_t cfg;
  pipeline_t *p;
  int rc;

  config_defaults(&cfg);
  p = pl_load(path, NULL, lua_dir, 1, &cfg, err, errlen);
  rc = p != NULL ? 0 : -1;
  pipeline_free(p);
  config_free(&cfg);
  return rc;
}

/* ---- the pipeline thread ---- */

/* Runs the init hooks in order and arms the timers. */
void pl_program_start(pipeline_t *p, program_t *g) {
  int64_t now = now_mono(p);
  size_t i, t;

  for (i = 0; i < g->n_filters; i++) {
    filter_t *f = &g->filters[i];
    if (f->init_ref != LUA_NOREF) pl_call_hook(p, g, i, HOOK_INIT, 0);
    for (t = 0; t < f->n_timers; t++) f->timers[t].due = now + (int64_t)(f->timers[t].every * 1e9);
  }
  pl_collect_if_full(g);
}

/* Runs the shutdown hooks in order (not after an abort). */
void pl_program_stop(pipeline_t *p, program_t *g) {
  size_t i;

  for (i = 0; i < g->n_filters; i++) {
    filter_t *f = &g->filters[i];
    if (f->shutdown_ref != LUA_NOREF && !f->n->disabled && !atomic_load(&p->aborted))
      pl_call_hook(p, g, i, HOOK_SHUTDOWN, 0);
  }
}

/* The earliest due time of the program's timers, or 0 when none. */
int64_t pl_next_due(const program_t *g) {
  int64_t due = 0;
  size_t i, t;

  for (i = 0; i < g->n_filters; i++) {
    const filter_t *f = &g->filters[i];
    if (f->n->disabled) continue;
    for (t = 0; t < f->n_timers; t++)
      if (due == 0 || f->timers[t].due < due) due = f->timers[t].due;
  }
  return due;
}

/* Runs the timers that are due, each once (a late timer does not catch
 * up), and schedules them again from now. */
void pl_run_timers(pipeline_t *p, program_t *g) {
  int64_t now = now_mono(p);
  size_t i, t;
  int ran = 0;

  for (i = 0; i < g->n_filters; i++) {
    filter_t *f = &g->filters[i];
    for (t = 0; t < f->n_timers && !f->n->disabled; t++) {
      if (f->timers[t].due > now) continue;
      pl_call_hook(p, g, i, HOOK_TIMER, t);
      ran = 1;
      f->timers[t].due = now_mono(p) + (int64_t)(f->timers[t].every * 1e9);
    }
  }
  if (ran) pl_collect_if_full(g);
}

/* Hands the outputs a reload changed to the delivery: the new program's
 * that the old one did not have, and the old one's that the new one
 * dropped. Out of memory: logged by the delivery. */
static void hand_over_outputs(pipeline_t *p, program_t *old, program_t *g) {
  output_t **add = calloc(g->n_outputs + 1, sizeof(output_t *));
  output_t **drop = calloc(old->n_outputs + 1, sizeof(output_t *));
  size_t n_add = 0, n_drop = 0, i;

  if (add == NULL || drop == NULL) {
    log_error(NULL, "reload: out of memory handing the outputs over");
  } else {
    for (i = 0; i < g->n_outputs; i++)
      if (!has_output(old, g->outputs[i])) add[n_add++] = g->outputs[i];
    for (i = 0; i < old->n_outputs; i++)
      if (!has_output(g, old->outputs[i])) drop[n_drop++] = old->outputs[i];
    if (n_add || n_drop)
      log_info(NULL, "reload: %zu outputs kept, %zu started, %zu dropped", g->n_outputs - n_add,
               n_add, n_drop);
    delivery_handover(p->delivery, add, n_add, drop, n_drop);
  }
  free(add);
  free(drop);
  old->outputs_taken = g->outputs_taken = 1;
}

/* ---- the filter process (engine.filter_isolation = "process") ---- */

/* Whether g's filters run in the filter process: isolation is on and there
 * are filters (without any, the records only need encoding: the thread
 * does it). */
static int isolated(const pipeline_t *p, const program_t *g) {
  return p->isolate && g->n_filters > 0;
}

/* Starts the filter process for g; on failure batches follow their first
 * filter's on_error until a start, tried once a second, succeeds. */
static void start_worker(pipeline_t *p, program_t *g) {
  p->worker_tried = pl_clock_ns(CLOCK_MONOTONIC);
  if (pl_worker_start(p, g) != 0)
    log_error(NULL, "the filter process could not start: batches follow their first filter's "
                    "on_error until it does (tried again each second)");
}

/* Runs batch b (under ticket t) through the filter process, or, when that
 * fails, through the failed filter's on_error; restarts the process. */
static void process_isolated(pipeline_t *p, program_t *g, batch_t *b, ticket_t *t) {
  unsigned char *sent;
  char msg[256];
  int f;

  if (atomic_load(&p->aborted)) { /* stopping: unfiltered, here (run_chain skips filters) */
    pl_process_batch(p, g, b);
    return;
  }
  if (p->worker == NULL && pl_clock_ns(CLOCK_MONOTONIC) - p->worker_tried >= 1000000000LL)
    start_worker(p, g);
  sent = calloc(g->n_outputs + 1, 1);
  if (p->worker == NULL || sent == NULL) {
    pl_count(&p->stats->records_in, b->n);
    pl_fallback_batch(p, g, b, pl_first_filter(g, b->container),
                      sent ? "no filter process" : "out of memory", NULL);
    pl_count(&p->stats->batches, 1);
    free(sent);
    return;
  }
  if (pl_worker_batch(p, g, b, t, sent, msg, sizeof msg, &f) != 0) {
    pl_fallback_batch(p, g, b, f, msg, sent);
    pl_count(&p->stats->batches, 1);
    if (!atomic_load(&p->aborted)) {
      log_warn(NULL, "restarting the filter process: the init hooks run again; state kept in Lua "
                     "is lost");
      start_worker(p, g);
    }
  }
  free(sent);
}

/* Runs the filter process's timers when due. */
static void tick_worker(pipeline_t *p, program_t *g) {
  int64_t due = pl_worker_due(p);

  if (p->worker == NULL || due == 0 || now_mono(p) < due) return;
  if (pl_worker_tick(p, g) != 0 && !atomic_load(&p->aborted)) start_worker(p, g);
}

/* The text of the file at path (NUL-terminated, a first line that starts
 * with '#' blanked as luaL_loadfile skips it), or NULL with errno set. */
static char *read_text(const char *path) {
  FILE *f = fopen(path, "rb");
  char *text = NULL;
  size_t len = 0, cap = 0, n;

  if (f == NULL) return NULL;
  do {
    if (cap - len < 4096) {
      char *t = realloc(text, cap = cap ? cap * 2 : 8192);
      if (t == NULL) {
        free(text);
        fclose(f);
        errno = ENOMEM;
        return NULL;
      }
      text = t;
    }
    n = fread(text + len, 1, cap - len - 1, f);
    len += n;
  } while (n > 0);
  if (ferror(f)) {
    free(text);
    fclose(f);
    errno = EIO;
    return NULL;
  }
  fclose(f);
  text[len] = '\0';
  if (text[0] == '#')
    for (n = 0; n < len && text[n] != '\n'; n++) text[n] = ' ';
  return text;
}

/* Loads path in a new program and swaps it in (see pipeline_reload). */
static void reload(pipeline_t *p, const char *path) {
  program_t *old = p->prog, *g;
  config_t cfg;
  char err[PIPELINE_ERR_MAX];
  /* the file's text, read once: the zygote loads the very same */
  char *text = p->source == NULL ? read_text(path) : NULL;
  const char *source = p->source != NULL ? p->source : text;

  if (source == NULL) snprintf(err, sizeof err, "cannot open %s: %s", path, strerror(errno));
  config_defaults(&cfg);
  g = source != NULL ? pl_program_load(p, path, source, &cfg, err, sizeof err) : NULL;
  if (g != NULL && p->isolate && p->zygote_pid > 0) pl_zygote_load(p, g, path, source);
  free(text);
  if (g == NULL) {
    config_free(&cfg);
    pl_count(&p->stats->reload_failures, 1);
    log_error(NULL, "reload: %s; the running pipeline stays", err);
    return;
  }
  if (p->on_reload) { /* the new selection goes to the engine, which owns it now */
    p->on_reload(p->reload_ud, &cfg.select);
    memset(&cfg.select, 0, sizeof cfg.select);
  }
  config_free(&cfg);
  /* its shutdown hooks may still write to its outputs */
  if (isolated(p, old)) pl_worker_stop(p, old, 1);
  else pl_program_stop(p, old);
  pthread_mutex_lock(&p->prog_mu);
  p->prog = g;
  pthread_mutex_unlock(&p->prog_mu);
  g->reuse = NULL;
  if (p->delivery != NULL) hand_over_outputs(p, old, g);
  pl_program_free(old, g);
  if (isolated(p, g)) start_worker(p, g);
  else pl_program_start(p, g);
  pl_count(&p->stats->reloads, 1);
  log_info(NULL, "reload: %s is running", path);
}

/* Waits for work: a batch (returned), a reload request (*reload), a timer
 * due at due (0: none), or the end of the input (*end; the thread then
 * counts as exited for submitters). */
static batch_t *queue_wait(pipeline_t *p, int64_t due, char **reload_path, int *end) {
  struct timespec ts;
  batch_t *b;

  pthread_mutex_lock(&p->mu);
  while (p->head == NULL && !p->finishing && p->reload_path == NULL &&
         (due == 0 || now_mono(p) < due)) {
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
    if (p->head == NULL) p->tail = NULL;
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

static void *pipeline_thread(void *arg) {
  pipeline_t *p = arg;
  char *path;
  batch_t *b;
  int end = 0, aborted;

  if (isolated(p, p->prog)) start_worker(p, p->prog);
  else pl_program_start(p, p->prog);
  while (!end) {
    aborted = atomic_load(&p->aborted);
    b = queue_wait(p,
                   aborted                ? 0
                   : isolated(p, p->prog) ? pl_worker_due(p)
                                          : pl_next_due(p->prog),
                   &path, &end);
    if (path != NULL) {
      reload(p, path);
      free(path);
    }
    if (!atomic_load(&p->aborted)) {
      if (isolated(p, p->prog)) tick_worker(p, p->prog);
      else pl_run_timers(p, p->prog);
    }
    if (b != NULL && atomic_load(&p->discard)) {
      /* out of time at stop: not processed, not acknowledged, so the next
       * run reads these lines again from the saved cursors */
      pl_count(&p->discarded, b->n);
      b->undelivered = 1;
      if (p->on_batch_done) p->on_batch_done(p->batch_done_ud, b);
      else batch_free(b);
      atomic_store(&p->stats->progress_ns, pl_clock_ns(CLOCK_MONOTONIC));
      pl_count(&p->stats->settled, 1);
      continue;
    }
    if (b != NULL) {
      /* The batch is acknowledged (by the engine, which frees it) once the
       * outputs that took it released their references too. */
      ticket_t *t = ticket_new(b, p->on_batch_done, p->batch_done_ud);
      p->ticket = t;
      if (isolated(p, p->prog)) process_isolated(p, p->prog, b, t);
      else pl_process_batch(p, p->prog, b);
      p->ticket = NULL;
      if (t != NULL) ticket_release(t);
      else if (p->on_batch_done) p->on_batch_done(p->batch_done_ud, b);
      else batch_free(b);
      atomic_store(&p->stats->progress_ns, pl_clock_ns(CLOCK_MONOTONIC));
      pl_count(&p->stats->settled, 1);
    }
  }
  if (atomic_load(&p->discarded))
    log_warn(NULL,
             "stop ran out of time: %llu records were not delivered; left unacknowledged "
             "(with a state_dir, the next run reads them again from the saved cursors)",
             (unsigned long long)atomic_load(&p->discarded));
  if (isolated(p, p->prog)) pl_worker_stop(p, p->prog, !atomic_load(&p->aborted));
  else pl_program_stop(p, p->prog);
  pl_zygote_stop(p);
  atomic_store(&p->done, 1);
  uv_async_send(&p->async);
  return NULL;
}

static void pipeline_async_cb(uv_async_t *h) {
  pipeline_t *p = h->data;

  if (!atomic_load(&p->done) || p->exit_called) return;
  p->exit_called = 1;
  if (p->on_exit != NULL) p->on_exit(p->ud);
}

static void pipeline_async_closed(uv_handle_t *h) { handles_closed(h); }

/* Starts the thread with the asynchronous signals blocked: they belong to
 * the loop thread. */
int pipeline_start(pipeline_t *p, uv_loop_t *loop, void (*on_exit)(void *ud), void *ud) {
  sigset_t all, old;
  int rc;

  if (p->thread_started || p->async_open) return -1;
  pipeline_prefork(p); /* before the outputs start threads (libuv's pool, libraries') */
  if (p->delivery == NULL && pipeline_start_outputs(p, loop, p->err, sizeof p->err) != 0) {
    log_error(NULL, "%s", p->err);
    return -1;
  }
  p->on_exit = on_exit;
  p->ud = ud;
  p->isolate = p->prog->isolate; /* until the engine restarts */
  if (uv_async_init(loop, &p->async, pipeline_async_cb) != 0) return -1;
  handles_opened((uv_handle_t *)&p->async);
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
    handles_close((uv_handle_t *)&p->async, pipeline_async_closed);
    return -1;
  }
  p->thread_started = 1;
  return 0;
}

int pipeline_start_outputs(pipeline_t *p, uv_loop_t *loop, char *err, size_t errlen) {
  if (p->delivery != NULL) return 0;
  if ((p->delivery = delivery_new(loop, PIPELINE_RELOAD_GRACE_MS)) == NULL) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  p->prog->outputs_taken = 1;
  return delivery_start(p->delivery, p->prog->outputs, p->prog->n_outputs, err, errlen);
}

size_t pipeline_outputs_pending(pipeline_t *p) {
  return p->delivery != NULL ? delivery_pending(p->delivery) : 0;
}

size_t pipeline_outputs(pipeline_t *p, output_t **out, size_t max) {
  return p->delivery != NULL ? delivery_outputs(p->delivery, out, max) : 0;
}

void pipeline_close_outputs(pipeline_t *p, uint64_t grace_ms, void (*closed)(void *ud), void *ud) {
  delivery_t *d = p->delivery;

  p->delivery = NULL;
  if (d != NULL) delivery_close(d, grace_ms, closed, ud);
  else if (closed != NULL) closed(ud);
}

void pipeline_set_reloaded(pipeline_t *p, void (*cb)(void *ud, selection_t *sel), void *ud) {
  p->on_reload = cb;
  p->reload_ud = ud;
}

void pipeline_set_tap(pipeline_t *p, struct tap *tap) { p->tap = tap; }

void pipeline_set_done(pipeline_t *p, void (*done)(void *ud, batch_t *b), void *ud) {
  p->on_batch_done = done;
  p->batch_done_ud = ud;
}

void pipeline_submit(pipeline_t *p, batch_t *b) {
  if (b == NULL) return;
  b->next = NULL;
  pthread_mutex_lock(&p->mu);
  if (p->exited) {
    pthread_mutex_unlock(&p->mu);
    log_warn(b->container ? b->container->name : NULL,
             "pipeline: %zu lines arrived after the pipeline ended; dropped", b->n);
    batch_free(b);
    return;
  }
  if (p->tail != NULL) p->tail->next = b;
  else p->head = b;
  p->tail = b;
  if (atomic_load(&p->stats->submitted) == atomic_load(&p->stats->settled))
    atomic_store(&p->stats->progress_ns, pl_clock_ns(CLOCK_MONOTONIC)); /* it was idle */
  pl_count(&p->stats->submitted, 1);
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

void pipeline_finish(pipeline_t *p) {
  pthread_mutex_lock(&p->mu);
  p->finishing = 1;
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

/* Also ends the input, as pipeline_finish does. */
void pipeline_abort(pipeline_t *p) {
  atomic_store(&p->aborted, 1);
  pipeline_finish(p);
}

void pipeline_discard(pipeline_t *p) {
  atomic_store(&p->discard, 1);
  pipeline_abort(p);
}

int pipeline_reload(pipeline_t *p, const char *path) {
  char *copy = strdup(path);

  if (copy == NULL) return -1;
  pthread_mutex_lock(&p->mu);
  free(p->reload_path);
  p->reload_path = copy;
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
  return 0;
}

void pipeline_reopen(pipeline_t *p) {
  atomic_store(&p->reopen, 1);
  if (p->delivery != NULL) delivery_reopen(p->delivery);
}

/* Ends the input too, so it cannot wait forever on a thread still running. */
void pipeline_close(pipeline_t *p) {
  if (p->thread_started && !p->joined) {
    pipeline_finish(p);
    pthread_join(p->thread, NULL);
    p->joined = 1;
  }
  if (p->async_open) {
    p->async_open = 0;
    handles_close((uv_handle_t *)&p->async, pipeline_async_closed);
  }
}

void pipeline_stats(pipeline_t *p, pipeline_stats_t *out) {
  out->batches = atomic_load(&p->stats->batches);
  out->records_in = atomic_load(&p->stats->records_in);
  out->records_out = atomic_load(&p->stats->records_out);
  out->filter_errors = atomic_load(&p->stats->filter_errors);
  out->filter_timeouts = atomic_load(&p->stats->filter_timeouts);
  out->output_errors = atomic_load(&p->stats->output_errors);
  out->records_unrouted = atomic_load(&p->stats->records_unrouted);
  out->dead_letters = atomic_load(&p->stats->dead_letters);
  out->reloads = atomic_load(&p->stats->reloads);
  out->reload_failures = atomic_load(&p->stats->reload_failures);
  /* in this order: a batch counted in submitted set progress_ns before */
  unsigned long long submitted = atomic_load(&p->stats->submitted);
  int64_t progress = atomic_load(&p->stats->progress_ns);
  unsigned long long settled = atomic_load(&p->stats->settled);
  out->batches_pending = submitted > settled ? submitted - settled : 0;
  out->stalled_for = 0;
  if (out->batches_pending) {
    int64_t d = pl_clock_ns(CLOCK_MONOTONIC) - progress;
    out->stalled_for = d > 0 ? (double)d / 1e9 : 0;
  }
  pthread_mutex_lock(&p->prog_mu);
  out->lua_bytes = p->prog == NULL ? 0
                   : isolated(p, p->prog)
                       ? atomic_load(&p->stats->child_lua_bytes)
                       : atomic_load_explicit(&p->prog->mem.used, memory_order_relaxed);
  pthread_mutex_unlock(&p->prog_mu);
}

size_t pipeline_filter_stats(pipeline_t *p, pipeline_filter_stats_t *out, size_t max) {
  size_t i, n;

  pthread_mutex_lock(&p->prog_mu);
  n = p->prog ? p->prog->n_filters : 0;
  for (i = 0; i < n && i < max; i++) {
    filter_t *f = &p->prog->filters[i];
    snprintf(out[i].name, sizeof out[i].name, "%s", f->name);
    out[i].calls = atomic_load(&f->n->calls);
    out[i].errors = atomic_load(&f->n->errors);
    out[i].timeouts = atomic_load(&f->n->timeouts);
    out[i].dead_letters = atomic_load(&f->n->dead_letters);
    for (size_t b = 0; b <= PIPELINE_DURATION_BUCKETS; b++)
      out[i].buckets[b] = atomic_load(&f->n->buckets[b]);
    out[i].duration_ns = atomic_load(&f->n->duration_ns);
    out[i].disabled = f->n->disabled;
    snprintf(out[i].on_error, sizeof out[i].on_error, "%s", pl_on_error_names[f->on_error]);
  }
  pthread_mutex_unlock(&p->prog_mu);
  return n;
}

/* Frees batches never processed, the program and the pipeline. */
void pipeline_free(pipeline_t *p) {
  batch_t *b, *next;

  if (p == NULL) return;
  if (p->thread_started && !p->joined) {
    pipeline_finish(p);
    pthread_join(p->thread, NULL);
  }
  pl_zygote_stop(p);
  for (b = p->head; b != NULL; b = next) {
    next = b->next;
    batch_free(b);
  }
  pl_program_free(p->prog, NULL);
  free(p->reload_path);
  free(p->lua_dir);
  free(p->source);
  strbuf_free(&p->dlbuf);
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
  pthread_mutex_destroy(&p->prog_mu);
  pl_shared_free(p->stats);
  free(p);
}

/* ---- memory shared with the filter process ---- */

/* The mapping's length is kept in front of the memory handed out. */
#define SHARED_HEAD 64

void *pl_shared_calloc(size_t n, size_t size) {
  size_t len;
  char *m;

  if (size != 0 && n > (SIZE_MAX - SHARED_HEAD) / size) return NULL;
  len = SHARED_HEAD + n * size;
  m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return NULL;
  memcpy(m, &len, sizeof len); /* mmap's memory is zeroed */
  return m + SHARED_HEAD;
}

void *pl_shared_fd_calloc(size_t n, size_t size, int *fd) {
  size_t len;
  char *m;

  *fd = -1;
  if (size != 0 && n > (SIZE_MAX - SHARED_HEAD) / size) return NULL;
  len = SHARED_HEAD + n * size;
  if ((*fd = memfd_create("engine-counts", MFD_CLOEXEC)) < 0) return NULL;
  if (ftruncate(*fd, (off_t)len) != 0 ||
      (m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0)) == MAP_FAILED) {
    close(*fd);
    *fd = -1;
    return NULL;
  }
  memcpy(m, &len, sizeof len); /* the file is zeroed */
  return m + SHARED_HEAD;
}

void *pl_shared_map(int fd, size_t n, size_t size) {
  struct stat st;
  size_t len;
  char *m;

  if (size != 0 && n > (SIZE_MAX - SHARED_HEAD) / size) return NULL;
  len = SHARED_HEAD + n * size;
  if (fstat(fd, &st) != 0 || st.st_size < 0 || (size_t)st.st_size != len) return NULL;
  m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  return m == MAP_FAILED ? NULL : m + SHARED_HEAD;
}

void pl_shared_free(void *ptr) {
  size_t len;
  char *m = ptr;

  if (ptr == NULL) return;
  m -= SHARED_HEAD;
  memcpy(&len, m, sizeof len);
  munmap(m, len);
}

/* ---- a simulated run (pipeline_internal.h) ---- */

void pl_sim_start(pipeline_t *p, int64_t now) {
  p->simulated = 1;
  p->sim_now = now;
  pl_program_start(p, p->prog);
}

int pl_sim_advance(pipeline_t *p, int64_t to) {
  int64_t due;
  long rounds = 0;

  while ((due = pl_next_due(p->prog)) != 0 && due <= to) {
    if (++rounds > PL_SIM_MAX_ROUNDS) return -1;
    if (due > p->sim_now) p->sim_now = due;
    pl_run_timers(p, p->prog);
  }
  if (to > p->sim_now) p->sim_now = to;
  return 0;
}

void pl_sim_stop(pipeline_t *p) { pl_program_stop(p, p->prog); }
