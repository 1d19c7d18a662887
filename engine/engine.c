/* engine.c - the engine as a library (engine.h): loading, wiring the
 * modules together on one loop, reloads and signals.
 *
 * engine_run starts, in order: the zygote of the filter processes (with
 * engine.filter_isolation = "process", before any thread), the daemons
 * (daemon.h) and the registry, the checkpoint, the outputs, the metrics
 * endpoint, the engine's own handles, then the pipeline thread and
 * discovery (start_* below). A step that fails starts the stop, which
 * closes whatever did start: one cleanup path (engine_stop.c). The rest of
 * the family: engine_backfill.c, engine_stats.c, all behind
 * engine_internal.h. */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include "checkpoint.h"
#include "daemon.h"
#include "discovery.h"
#include "engine_internal.h"
#include "inflight.h"
#include "retired.h"
#include "log.h"
#include "metrics.h"
#include "reader.h"
#include "registry.h"
#include "status.h"
#include "tap.h"
#include "timestamp.h"
#include "handles.h"

#ifndef ENGINE_LUA_DIR
#define ENGINE_LUA_DIR "lua"
#endif

const char *engine_version(void) { return ENGINE_VERSION; }

engine_t *engine_new(void) {
  engine_t *e = calloc(1, sizeof *e);
  if (!e) return NULL;
  config_defaults(&e->cfg);
  atomic_init(&e->stop_requested, 0);
  atomic_init(&e->running, 0);
  atomic_init(&e->senders, 0);
  pthread_mutex_init(&e->reload_mu, NULL);
  return e;
}

/* engine_load and engine_load_string: source NULL reads path. */
static int load(engine_t *e, const char *path, const char *source, const char *lua_dir, char *err,
                size_t errlen) {
  if (e->pipeline) {
    snprintf(err, errlen, "a pipeline is loaded already");
    return -1;
  }
  if (!lua_dir) lua_dir = getenv("ENGINE_LUA_DIR");
  if (!lua_dir || !*lua_dir) lua_dir = ENGINE_LUA_DIR;
  e->pipeline = source ? pipeline_load_source(path, source, lua_dir, &e->cfg, err, errlen)
                       : pipeline_load(path, lua_dir, &e->cfg, err, errlen);
  /* SIGHUP reloads a file; a pipeline given as a string has none */
  if (e->pipeline && !source && !(e->path = strdup(path))) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  return e->pipeline ? 0 : -1;
}

int engine_load(engine_t *e, const char *path, const char *lua_dir, char *err, size_t errlen) {
  return load(e, path, NULL, lua_dir, err, errlen);
}

int engine_check(const char *path, const char *lua_dir, char *err, size_t errlen) {
  if (!lua_dir) lua_dir = getenv("ENGINE_LUA_DIR");
  if (!lua_dir || !*lua_dir) lua_dir = ENGINE_LUA_DIR;
  return pipeline_check(path, lua_dir, err, errlen);
}

int engine_load_string(engine_t *e, const char *name, const char *source, const char *lua_dir,
                       char *err, size_t errlen) {
  return load(e, name ? name : "pipeline", source, lua_dir, err, errlen);
}

const char *engine_error(const engine_t *e) { return e->error; }

void engine_set_backfill(engine_t *e, int64_t since_ns, int64_t until_ns) {
  e->cfg.backfill = 1;
  e->cfg.backfill_since = since_ns;
  e->cfg.backfill_until = until_ns;
  free(e->cfg.state_dir); /* a backfill moves no cursor */
  e->cfg.state_dir = NULL;
}

int engine_set_state_dir(engine_t *e, const char *dir) {
  char *copy = dir && *dir ? strdup(dir) : NULL;
  if (dir && *dir && !copy) return -1;
  free(e->cfg.state_dir);
  e->cfg.state_dir = copy;
  return 0;
}

void engine_fail(engine_t *e, const char *msg) {
  if (!e->failed) snprintf(e->error, sizeof e->error, "%s", msg);
  e->failed = 1;
}

static void on_resume(void *ud) {
  engine_t *e = ud;
  registry_resume_paused(e->rt.registry);
}

static void engine_stop_wake(engine_t *e);

/* Pipeline thread, after a successful reload: hand the selection over. */
static void on_reloaded(void *ud, selection_t *sel) {
  engine_t *e = ud;
  pthread_mutex_lock(&e->reload_mu);
  if (e->have_new_select) selection_free(&e->new_select);
  e->new_select = *sel;
  e->have_new_select = 1;
  pthread_mutex_unlock(&e->reload_mu);
  engine_stop_wake(e);
}

static void stop_unselected(void *ud, reader_t *rd) {
  engine_t *e = ud;
  const container_t *c = reader_container(rd);
  if (!selection_match(&e->cfg.select, c->id, c->name, c->image,
                       (const char *const *)c->label_pairs, c->n_labels))
    reader_deselect(rd);
}

/* Loop thread: a reload changed the selection. Readers of containers no
 * longer selected stop; the next list attaches newly selected ones. */
static void apply_new_selection(engine_t *e) {
  pthread_mutex_lock(&e->reload_mu);
  int have = e->have_new_select;
  selection_t sel = e->new_select;
  e->have_new_select = 0;
  memset(&e->new_select, 0, sizeof e->new_select);
  pthread_mutex_unlock(&e->reload_mu);
  if (!have) return;
  if (e->phase != STOP_NONE) {
    selection_free(&sel);
    return;
  }
  selection_free(&e->cfg.select);
  e->cfg.select = sel;
  registry_each(e->rt.registry, stop_unselected, e);
  for (size_t i = 0; i < e->rt.n_daemons; i++)
    if (e->rt.daemons[i]->discovery) discovery_reconcile(e->rt.daemons[i]->discovery);
  log_info(NULL, "reload: the container selection is applied");
}

static void on_wake(uv_async_t *a) {
  engine_t *e = a->data;
  apply_new_selection(e);
  if (atomic_load(&e->stop_requested)) engine_begin_stop(e, "requested");
}

static void on_signal(uv_signal_t *s, int signum) {
  engine_t *e = s->data;
  if (signum == SIGHUP) {
    if (e->phase == STOP_NONE && e->path) {
      log_info(NULL, "SIGHUP: reloading %s", e->path);
      pipeline_reload(e->pipeline, e->path);
    }
    return;
  }
  if (signum == SIGUSR1) {
    log_info(NULL, "SIGUSR1: reopening the output files");
    pipeline_reopen(e->pipeline);
    return;
  }
  if (e->phase != STOP_NONE) {
    log_info(NULL, "already stopping (stop_timeout %g s)", e->cfg.stop_timeout);
    return;
  }
  engine_begin_stop(e, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

/* Wakes the loop through the wake handle (any thread). */
static void engine_stop_wake(engine_t *e) {
  atomic_fetch_add(&e->senders, 1);
  if (atomic_load(&e->running)) uv_async_send(&e->wake);
  atomic_fetch_sub(&e->senders, 1);
}

void engine_stop(engine_t *e) {
  if (atomic_exchange(&e->stop_requested, 1)) return;
  engine_stop_wake(e);
}

static void on_ready(void *ud, daemon_t *d, const char *error) {
  engine_t *e = ud;
  (void)d;
  if (!error) return;
  log_error(NULL, "%s", error);
  engine_fail(e, error);
  engine_begin_stop(e, "the Docker daemon cannot be used");
}

/* --- the metrics endpoint's snapshots ----------------------------------- */

static status_t *collect_status(void *ud) {
  engine_t *e = ud;
  status_source_t src = {e->pipeline_started && !e->pipeline_exited, e->phase != STOP_NONE};
  status_t *s = status_collect(&e->rt, &src);
  if (s) s->tap_dropped = tap_dropped(e->tap);
  return s;
}

/* --- open files --------------------------------------------------------- */

/* Descriptors kept for everything but the connections to the daemon: stdio,
 * the loop's own, signals, cursor files, the outputs' connections, the
 * metrics endpoint's clients. */
#define FD_RESERVE 64
/* Connections to the daemon kept for what is not a follow stream: the
 * events stream, the container list, inspects. */
#define CONN_RESERVE 8

/* Raises the soft limit of open files to the hard one, and fits the
 * connections to the daemon and max_readers (one follow stream each) into
 * it, saying so when the limit lowers max_readers. */
static void fit_open_files(engine_t *e) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  rlim_t was = rl.rlim_cur;
  if (rl.rlim_cur < rl.rlim_max) {
    struct rlimit up = rl;
    /* an unlimited hard limit: the kernel's default nr_open */
    up.rlim_cur = rl.rlim_max == RLIM_INFINITY ? 1048576 : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &up) == 0) rl.rlim_cur = up.rlim_cur;
  }
  if (rl.rlim_cur == RLIM_INFINITY) return;
  unsigned long long limit = rl.rlim_cur;
  /* every daemon keeps CONN_RESERVE for its own requests; the follow
   * streams of all daemons share the rest (max_readers is engine-wide) */
  unsigned long long reserve = (unsigned long long)CONN_RESERVE * e->rt.n_daemons;
  unsigned long long conns =
      limit > FD_RESERVE + reserve + CONN_RESERVE ? limit - FD_RESERVE : reserve + CONN_RESERVE;
  unsigned long long readers = conns - reserve;
  /* each daemon may take them all: the readers share max_readers */
  for (size_t i = 0; i < e->rt.n_daemons; i++)
    docker_set_max_connections(e->rt.daemons[i]->docker, (long)conns);
  char raised[64] = "";
  if (was != rl.rlim_cur)
    snprintf(raised, sizeof raised, ", raised from %llu", (unsigned long long)was);
  if (readers < e->cfg.max_readers) {
    log_warn(NULL,
             "open files: limit %llu%s (hard limit %llu): max_readers lowered from %zu to "
             "%llu, as each followed container needs a connection to the daemon; raise the "
             "limit (ulimit -n, LimitNOFILE=) to follow more",
             limit, raised, (unsigned long long)rl.rlim_max, e->cfg.max_readers, readers);
    e->cfg.max_readers = (size_t)readers;
  } else {
    log_info(NULL,
             "open files: limit %llu%s: up to %zu readers (max_readers), %llu connections "
             "to the daemon",
             limit, raised, e->cfg.max_readers, conns);
  }
}

/* --- run ---------------------------------------------------------------- */

static void init_handle(uv_handle_t *h, void *data) {
  h->data = data;
  handles_opened(h);
}

static void log_leftover(uv_handle_t *h, void *arg) {
  (void)arg;
  log_error(NULL, "libuv handle left open at stop: %s", uv_handle_type_name(h->type));
}

/* Closes the daemons' clients made so far (a start that failed). */
static void close_daemons(engine_t *e) {
  for (size_t i = 0; i < e->rt.n_daemons; i++) daemon_close(e->rt.daemons[i], NULL, NULL);
}

/* The daemons (each with its docker client) and the registry. Returns 0, or
 * -1 having closed what it made (nothing else has started: engine_run
 * returns at once). */
static int start_docker(engine_t *e) {
  char err[512] = "out of memory";
  size_t n = e->cfg.n_daemons;
  int ok = n > 0 && e->cfg.daemons[0].name;
  e->rt.daemons = ok ? calloc(n, sizeof(daemon_t *)) : NULL;
  e->rt.registry = registry_new(&e->rt);
  ok = e->rt.daemons && e->rt.registry;
  for (size_t i = 0; ok && i < n; i++) {
    daemon_t *d = daemon_new(&e->loop, i, &e->cfg.daemons[i], err, sizeof err);
    if (!d) ok = 0;
    else {
      e->rt.daemons[e->rt.n_daemons++] = d;
      docker_set_read_delay(d->docker, (unsigned)(e->cfg.read_delay * 1000 + 0.5));
    }
  }
  if (ok) {
    fit_open_files(e);
    return 0;
  }
  engine_fail(e, err);
  log_error(NULL, "%s", e->error);
  close_daemons(e);
  registry_free(e->rt.registry);
  e->rt.registry = NULL;
  return -1;
}

/* The saved cursors (state_dir), the in-flight ledger, and the pipeline's
 * hooks into them. Cannot fail: without a checkpoint cursors stay in
 * memory. */
static void start_checkpoint(engine_t *e) {
  char err[512];
  if (e->cfg.state_dir) {
    e->rt.checkpoint =
        checkpoint_open(&e->loop, e->cfg.state_dir, e->cfg.checkpoint_interval, e->cfg.fsync,
                        (int64_t)(e->cfg.resume_margin * 1e9), e->rt.daemons[0]->name,
                        !e->cfg.daemons_list, err, sizeof err);
    if (!e->rt.checkpoint)
      log_warn(NULL, "%s; cursors are kept in memory only (a restart reads history again)", err);
  }
  e->rt.inflight = inflight_new(&e->rt, e->cfg.max_buffered, on_resume, e);
  pipeline_set_done(e->pipeline, inflight_done, e->rt.inflight);
  pipeline_set_reloaded(e->pipeline, on_reloaded, e);
}

/* The outputs. Returns 0, or -1 (started or not, they close at stop). */
static int start_outputs(engine_t *e) {
  char err[512];
  if (pipeline_start_outputs(e->pipeline, &e->loop, err, sizeof err) == 0) return 0;
  log_error(NULL, "%s", err);
  engine_fail(e, err);
  return -1;
}

/* The metrics endpoint, with the finished readers' totals and the tap. Returns
 * 0, or -1. */
static int start_metrics(engine_t *e) {
  char err[512];
  if (!e->cfg.metrics_listen) return 0;
  if (!e->rt.retired) /* per-container counts outlive readers */
    e->rt.retired =
        retired_new(e->cfg.metrics_max_containers > 1024 ? e->cfg.metrics_max_containers : 1024);
  if (!e->tap && (e->tap = tap_new()))
    pipeline_set_tap(e->pipeline, e->tap); /* before its thread starts */
  e->metrics = metrics_start(&e->loop, e->cfg.metrics_listen, e->cfg.metrics_max_containers,
                             collect_status, e, err, sizeof err);
  if (!e->metrics) {
    log_error(NULL, "%s", err);
    engine_fail(e, err);
    return -1;
  }
  metrics_set_tap(e->metrics, e->tap);
  return 0;
}

static void start_signal(engine_t *e, uv_signal_t *s, int signum) {
  uv_signal_init(&e->loop, s);
  init_handle((uv_handle_t *)s, e);
  uv_signal_start(s, on_signal, signum);
}

/* The engine's own handles: the wake handle, the stop, stats and backfill
 * timers, and the signals. Cannot fail. */
static void start_own_handles(engine_t *e, int handle_signals) {
  uv_async_init(&e->loop, &e->wake, on_wake);
  init_handle((uv_handle_t *)&e->wake, e);
  uv_timer_init(&e->loop, &e->stop_timer);
  init_handle((uv_handle_t *)&e->stop_timer, e);
  uv_timer_init(&e->loop, &e->stats_timer);
  init_handle((uv_handle_t *)&e->stats_timer, e);
  uv_timer_init(&e->loop, &e->backfill_timer);
  init_handle((uv_handle_t *)&e->backfill_timer, e);
  if (e->cfg.backfill) uv_timer_start(&e->backfill_timer, engine_backfill_tick, 200, 200);
  if (e->cfg.stats_interval > 0) {
    uint64_t every = (uint64_t)(e->cfg.stats_interval * 1000);
    uv_timer_start(&e->stats_timer, engine_stats_tick, every, every);
  }
  e->handle_signals = handle_signals;
  if (handle_signals) {
    start_signal(e, &e->sigint, SIGINT);
    start_signal(e, &e->sigterm, SIGTERM);
    start_signal(e, &e->sighup, SIGHUP);
    start_signal(e, &e->sigusr1, SIGUSR1);
  }
  atomic_store(&e->running, 1); /* engine_stop may use the wake handle from now on */
}

/* The pipeline thread, then discovery (which starts the readers). Returns
 * 0, or -1. */
static int start_pipeline_and_discovery(engine_t *e) {
  if (pipeline_start(e->pipeline, &e->loop, engine_pipeline_exited, e) != 0) {
    engine_fail(e, "cannot start the pipeline thread");
    return -1;
  }
  e->pipeline_started = 1;
  /* With several daemons one that cannot be reached at start is retried
   * (daemon.h); one daemon, or a backfill, stops the engine then. */
  int retry = e->rt.n_daemons > 1 && !e->cfg.backfill;
  for (size_t i = 0; i < e->rt.n_daemons; i++)
    if (!(e->rt.daemons[i]->discovery =
              discovery_start(&e->rt, e->rt.daemons[i], retry, on_ready, e))) {
      engine_fail(e, "out of memory");
      return -1;
    }
  return 0;
}

/* Frees the daemons (their clients closed). */
static void free_daemons(engine_t *e) {
  for (size_t i = 0; i < e->rt.n_daemons; i++) daemon_free(e->rt.daemons[i]);
  free(e->rt.daemons);
  e->rt.daemons = NULL;
  e->rt.n_daemons = 0;
}

/* After the loop ended with the pipeline thread gone: frees the registry
 * and saves the cursors a last time. */
static void finish_run(engine_t *e) {
  char err[512];
  registry_free(e->rt.registry);
  e->rt.registry = NULL;
  free_daemons(e);
  if (e->rt.checkpoint) {
    if (checkpoint_save_now(e->rt.checkpoint, err, sizeof err) != 0) {
      log_error(NULL, "%s", err);
      engine_fail(e, err);
    }
    checkpoint_free(e->rt.checkpoint);
    e->rt.checkpoint = NULL;
  }
  engine_log_stopped(&e->final);
}

int engine_run(engine_t *e, int handle_signals) {
  if (!e->pipeline) {
    engine_fail(e, "no pipeline loaded");
    return -1;
  }
  if (e->cfg.log_level >= 0 && log_get_level() == LOG_INFO) log_set_level(e->cfg.log_level);
  /* first, while this is the only thread: the filter processes' zygote */
  pipeline_prefork(e->pipeline);
  srand((unsigned)time(NULL) ^ (unsigned)(uintptr_t)e);
  if (uv_loop_init(&e->loop) != 0) {
    engine_fail(e, "cannot create the event loop");
    return -1;
  }
  e->rt.loop = &e->loop;
  e->rt.cfg = &e->cfg;
  e->rt.pipeline = e->pipeline;
  e->rt.start_ns = ts_now();
  if (start_docker(e) != 0) {
    uv_run(&e->loop, UV_RUN_DEFAULT);
    uv_loop_close(&e->loop);
    free_daemons(e);
    e->pipeline_exited = 1; /* it never started: engine_free may free everything */
    e->rt.loop = NULL;      /* nothing ran: engine_free frees everything */
    return -1;
  }
  start_checkpoint(e);
  const char *failure = NULL;
  if (start_outputs(e) != 0) failure = "an output cannot start";
  else if (start_metrics(e) != 0) failure = "the metrics endpoint cannot start";
  start_own_handles(e, handle_signals);
  if (!failure && start_pipeline_and_discovery(e) != 0) failure = "start failed";
  if (failure) engine_begin_stop(e, failure);
  if (atomic_load(&e->stop_requested)) engine_begin_stop(e, "requested");
  uv_run(&e->loop, UV_RUN_DEFAULT);
  if (!e->pipeline_exited) { /* gave up: the loop cannot be closed */
    engine_snapshot(e, &e->final);
    return -1;
  }
  if (uv_loop_close(&e->loop) != 0) {
    uv_walk(&e->loop, log_leftover, NULL);
    engine_fail(e, "libuv handles were left open at stop");
    return -1;
  }
  finish_run(e);
  return e->failed ? -1 : 0;
}

void engine_free(engine_t *e) {
  if (!e) return;
  if (e->pipeline && !e->pipeline_exited && e->rt.loop) return; /* running, or stuck */
  registry_free(e->rt.registry);
  retired_free(e->rt.retired);
  pipeline_free(e->pipeline);
  tap_free(e->tap); /* after the pipeline thread and the metrics endpoint */
  config_free(&e->cfg);
  if (e->have_new_select) selection_free(&e->new_select);
  pthread_mutex_destroy(&e->reload_mu);
  free(e->path);
  free(e);
}
