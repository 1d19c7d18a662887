/* engine.c - wiring the modules together, and the stop sequence.
 *
 * Start: docker client, registry, pipeline thread, discovery.
 * Stop (begin_stop, once): discovery and readers stop; when both are closed
 * the pipeline finishes what was handed to it and its thread exits; then
 * the docker client closes its handles, then the engine's own handles. The
 * loop ends when the last handle is closed. A stop timer bounds all of it
 * (on_stop_timer): the running filter is interrupted, then what is still
 * queued is dropped unacknowledged, and only a thread stuck in C makes
 * engine_run give up and return -1. */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include "checkpoint.h"
#include "discovery.h"
#include "inflight.h"
#include "output.h"
#include "engine.h"
#include "ledger.h"
#include "log.h"
#include "metrics.h"
#include "tap.h"
#include "reader.h"
#include "registry.h"
#include "status.h"
#include "timestamp.h"
#include "uvh.h"

#ifndef ENGINE_LUA_DIR
#define ENGINE_LUA_DIR "lua"
#endif

struct engine {
  config_t cfg;
  pipeline_t *pipeline;
  uv_loop_t loop;
  core_t core;
  discovery_t *discovery;
  tap_t *tap;               /* records for /tap, with the metrics endpoint */
  uv_async_t wake;          /* engine_stop from any thread, and reloads */
  pthread_mutex_t reload_mu;/* guards new_select */
  selection_t new_select;   /* a reload's selection, for the loop to apply */
  int have_new_select;
  uv_signal_t sigint, sigterm, sighup, sigusr1;
  char *path;               /* the pipeline file, for reloads */
  uint64_t stop_deadline;   /* uv_now() by which the stop must be done */
  uv_timer_t stop_timer;
  uv_timer_t stats_timer;   /* the periodic stats line */
  uv_timer_t backfill_timer;/* backfill: progress, and the end */
  unsigned backfill_ticks;
  metrics_t *metrics;       /* the metrics endpoint, or NULL */
  int handle_signals;
  atomic_int running;       /* the wake handle may be used by engine_stop */
  atomic_int senders;       /* engine_stop calls inside uv_async_send */
  atomic_int stop_requested;
  int stopping;
  int aborted;              /* the pipeline was told to abort */
  int pipeline_started;
  int discovery_closed, readers_stopped, pipeline_exited;
  unsigned long events_reconnects;
  int failed;
  char error[512];
  engine_stats_t final;     /* the counts at the end of engine_run */
};

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
static int load(engine_t *e, const char *path, const char *source, const char *lua_dir,
                char *err, size_t errlen) {
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

static void fail(engine_t *e, const char *msg) {
  if (!e->failed) snprintf(e->error, sizeof e->error, "%s", msg);
  e->failed = 1;
}

static void on_resume(void *ud) {
  engine_t *e = ud;
  registry_resume_paused(e->core.registry);
}

/* --- stop sequence ------------------------------------------------------ */

static void handle_closed(uv_handle_t *h) { uvh_closed(h); }

static void close_own_handles(engine_t *e) {
  /* No engine_stop may be inside uv_async_send when the handle closes. A
   * spin, not a mutex: engine_stop runs in signal handlers too. */
  atomic_store(&e->running, 0);
  while (atomic_load(&e->senders) > 0) sched_yield();
  uvh_close((uv_handle_t *)&e->wake, handle_closed);
  uvh_close((uv_handle_t *)&e->stop_timer, handle_closed);
  uvh_close((uv_handle_t *)&e->stats_timer, handle_closed);
  uvh_close((uv_handle_t *)&e->backfill_timer, handle_closed);
  metrics_close(e->metrics);
  e->metrics = NULL;
  if (e->handle_signals) {
    uvh_close((uv_handle_t *)&e->sigint, handle_closed);
    uvh_close((uv_handle_t *)&e->sigterm, handle_closed);
    uvh_close((uv_handle_t *)&e->sighup, handle_closed);
    uvh_close((uv_handle_t *)&e->sigusr1, handle_closed);
    /* Closing the handles restored the default actions: a second SIGINT
     * arriving now must not kill a stop that is finishing cleanly. */
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGUSR1, SIG_IGN);
  }
}

static void snapshot(engine_t *e, engine_stats_t *out);

static void docker_closed(void *ud) {
  engine_t *e = ud;
  e->core.docker = NULL;
  close_own_handles(e);
}

static void checkpoint_closed(void *ud) {
  engine_t *e = ud;
  docker_close(e->core.docker, docker_closed, e);
}

static void inflight_closed(void *ud) {
  engine_t *e = ud;
  e->core.inflight = NULL;
  if (e->core.checkpoint) checkpoint_close(e->core.checkpoint, checkpoint_closed, e);
  else checkpoint_closed(e);
}

static void outputs_closed(void *ud) {
  engine_t *e = ud;
  inflight_close(e->core.inflight, inflight_closed, e);
}

/* A backfill succeeds only when everything was delivered. */
static void check_backfill_delivered(engine_t *e) {
  unsigned long long undelivered = 0, dead = 0;
  output_t **outs = NULL;
  size_t n = pipeline_outputs(e->pipeline, NULL, 0);
  if (n && (outs = calloc(n, sizeof(output_t *)))) {
    size_t got = pipeline_outputs(e->pipeline, outs, n);
    if (got < n) n = got;
  }
  for (size_t i = 0; outs && i < n; i++) {
    output_stats_t st;
    output_stats(outs[i], &st);
    undelivered += st.pending;
    dead += st.dead_letters;
  }
  free(outs);
  pipeline_stats_t ps;
  pipeline_stats(e->pipeline, &ps);
  if (undelivered || dead || ps.output_errors) {
    char msg[200];
    snprintf(msg, sizeof msg, "backfill: not everything was delivered (%llu batches pending, "
             "%llu dead-lettered, %llu output errors)", undelivered, dead,
             (unsigned long long)ps.output_errors);
    log_error(NULL, "%s", msg);
    fail(e, msg);
  }
}

/* After the pipeline thread: the outputs deliver what they hold, until the
 * stop deadline; then they close (what is left stays unacknowledged). */
static void on_drain_tick(uv_timer_t *t) {
  engine_t *e = t->data;
  if (pipeline_outputs_pending(e->pipeline) && uv_now(&e->loop) < e->stop_deadline) return;
  uv_timer_stop(&e->stop_timer);
  if (e->cfg.backfill) check_backfill_delivered(e);
  pipeline_close_outputs(e->pipeline, 0, outputs_closed, e);
}

/* The drain sends at once what an output's batch_timeout holds back (out
 * of memory: it goes when its batch_timeout is up). */
static void flush_outputs(engine_t *e) {
  size_t n = pipeline_outputs(e->pipeline, NULL, 0);
  output_t **outs = n ? calloc(n, sizeof(output_t *)) : NULL;
  if (!outs) return;
  size_t got = pipeline_outputs(e->pipeline, outs, n);
  for (size_t i = 0; i < got && i < n; i++) output_flush(outs[i]);
  free(outs);
}

static void on_pipeline_exit(void *ud) {
  engine_t *e = ud;
  e->pipeline_exited = 1;
  if (e->pipeline_started) pipeline_close(e->pipeline); /* joins: no batch comes back now */
  flush_outputs(e);
  snapshot(e, &e->final);
  uv_timer_stop(&e->stop_timer);
  uv_timer_start(&e->stop_timer, on_drain_tick, 0, 50);
}

static void maybe_finish_pipeline(engine_t *e) {
  if (!e->discovery_closed || !e->readers_stopped) return;
  if (e->pipeline_started) pipeline_finish(e->pipeline);
  else on_pipeline_exit(e);
}

static void on_discovery_closed(void *ud) {
  engine_t *e = ud;
  e->discovery = NULL;
  e->discovery_closed = 1;
  maybe_finish_pipeline(e);
}

static void on_readers_stopped(void *ud) {
  engine_t *e = ud;
  e->readers_stopped = 1;
  maybe_finish_pipeline(e);
}

/* The stop's deadline, in steps: at 60% of stop_timeout the running filter is
 * interrupted (what is queued still goes through the outputs unfiltered); at
 * 85% what is still queued is dropped unacknowledged (the next run reads it
 * again from the saved cursors); at 100% the engine gives up, which only a
 * filter stuck inside one C call can cause. */
static void on_stop_timer(uv_timer_t *t) {
  engine_t *e = t->data;
  uint64_t step = (uint64_t)(e->cfg.stop_timeout * 1000);
  if (e->aborted == 0) {
    e->aborted = 1;
    log_warn(NULL, "stop is taking long: interrupting the running filter");
    pipeline_abort(e->pipeline);
    uv_timer_start(&e->stop_timer, on_stop_timer, step * 25 / 100, 0);
    return;
  }
  if (e->aborted == 1) {
    e->aborted = 2;
    log_warn(NULL, "stop is about to run out of time: dropping what the outputs have not taken yet");
    pipeline_discard(e->pipeline);
    uv_timer_start(&e->stop_timer, on_stop_timer, step * 15 / 100, 0);
    return;
  }
  char msg[200];
  snprintf(msg, sizeof msg, "stop did not complete within stop_timeout (%g s): the pipeline "
           "thread is stuck in a C function", e->cfg.stop_timeout);
  log_error(NULL, "%s", msg);
  fail(e, msg);
  uv_stop(&e->loop);
}

static void begin_stop(engine_t *e, const char *why) {
  if (e->stopping) return;
  e->stopping = 1;
  e->core.stopping = 1;
  log_info(NULL, "stopping (%s)", why);
  uv_timer_stop(&e->stats_timer);
  uv_timer_stop(&e->backfill_timer);
  e->stop_deadline = uv_now(&e->loop) + (uint64_t)(e->cfg.stop_timeout * 1000);
  uv_timer_start(&e->stop_timer, on_stop_timer, (uint64_t)(e->cfg.stop_timeout * 600), 0);
  if (e->discovery) {
    e->events_reconnects = discovery_reconnects(e->discovery);
    discovery_stop(e->discovery, on_discovery_closed, e);
  }
  else e->discovery_closed = 1;
  registry_stop_all(e->core.registry, on_readers_stopped, e);
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
  if (e->stopping) {
    selection_free(&sel);
    return;
  }
  selection_free(&e->cfg.select);
  e->cfg.select = sel;
  registry_each(e->core.registry, stop_unselected, e);
  if (e->discovery) discovery_reconcile(e->discovery);
  log_info(NULL, "reload: the container selection is applied");
}

static void on_wake(uv_async_t *a) {
  engine_t *e = a->data;
  apply_new_selection(e);
  if (atomic_load(&e->stop_requested)) begin_stop(e, "requested");
}

static void on_signal(uv_signal_t *s, int signum) {
  engine_t *e = s->data;
  if (signum == SIGHUP) {
    if (!e->stopping && e->path) {
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
  if (e->stopping) {
    log_info(NULL, "already stopping (stop_timeout %g s)", e->cfg.stop_timeout);
    return;
  }
  begin_stop(e, signum == SIGINT ? "SIGINT" : "SIGTERM");
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

static void on_ready(void *ud, const char *error) {
  engine_t *e = ud;
  if (!error) return;
  log_error(NULL, "%s", error);
  fail(e, error);
  begin_stop(e, "the Docker daemon cannot be used");
}

/* --- backfill ------------------------------------------------------------ */

static void print_progress(void *ud, reader_t *rd) {
  char ts[TS_LEN + 1] = "-";
  int64_t newest = reader_newest(rd);
  if (newest >= 0) ts_format(newest, ts);
  fprintf(stderr, "backfill: %-24s %10llu lines %12llu bytes  reached %s\n",
          reader_container(rd)->name, (unsigned long long)reader_lines(rd),
          (unsigned long long)reader_bytes(rd), ts);
}

static void on_backfill_tick(uv_timer_t *t) {
  engine_t *e = t->data;
  registry_stats_t r;
  registry_stats(e->core.registry, &r);
  if (++e->backfill_ticks % 5 == 0 && isatty(STDERR_FILENO) && r.live)
    registry_each(e->core.registry, print_progress, NULL);
  if (e->discovery && discovery_settled(e->discovery) && r.live == 0) {
    log_info(NULL, "backfill: every selected container's history is read (%llu readers)",
             (unsigned long long)r.started);
    begin_stop(e, "backfill done");
  }
}

/* --- the stats line ----------------------------------------------------- */

static void on_stats(uv_timer_t *t) {
  engine_t *e = t->data;
  engine_stats_t s;
  registry_stats_t r;
  snapshot(e, &s);
  registry_stats(e->core.registry, &r);
  log_info(NULL,
           "stats: readers live %llu (connecting %llu, streaming %llu, draining %llu, "
           "backoff %llu), started %llu, stopped %llu, cycled %llu; records in %llu, out %llu; "
           "filter errors %llu, timeouts %llu; events reconnects %lu; handles %ld; "
           "bytes in flight %llu, reader pauses %llu",
           (unsigned long long)s.readers_live, (unsigned long long)r.by_state[READER_CONNECTING],
           (unsigned long long)r.by_state[READER_STREAMING],
           (unsigned long long)r.by_state[READER_DRAINING],
           (unsigned long long)r.by_state[READER_BACKOFF], (unsigned long long)s.readers_started,
           (unsigned long long)s.readers_stopped, (unsigned long long)s.readers_cycled,
           (unsigned long long)s.records_in, (unsigned long long)s.records_out,
           (unsigned long long)s.filter_errors, (unsigned long long)s.filter_timeouts,
           s.events_reconnects, s.handles_open, (unsigned long long)s.bytes_in_flight,
           (unsigned long long)s.reader_pauses);
}

/* --- the metrics endpoint's snapshots ----------------------------------- */

static status_t *collect_status(void *ud) {
  engine_t *e = ud;
  status_source_t src = {e->discovery, e->events_reconnects,
                         e->pipeline_started && !e->pipeline_exited, e->stopping};
  if (e->discovery) src.events_reconnects = discovery_reconnects(e->discovery);
  status_t *s = status_collect(&e->core, &src);
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
  unsigned long long conns = limit > FD_RESERVE + 2 * CONN_RESERVE ? limit - FD_RESERVE
                                                                   : 2 * CONN_RESERVE;
  unsigned long long readers = conns - CONN_RESERVE;
  docker_set_max_connections(e->core.docker, (long)conns);
  char raised[64] = "";
  if (was != rl.rlim_cur) snprintf(raised, sizeof raised, ", raised from %llu", (unsigned long long)was);
  if (readers < e->cfg.max_readers) {
    log_warn(NULL, "open files: limit %llu%s (hard limit %llu): max_readers lowered from %zu to "
             "%llu, as each followed container needs a connection to the daemon; raise the "
             "limit (ulimit -n, LimitNOFILE=) to follow more",
             limit, raised, (unsigned long long)rl.rlim_max, e->cfg.max_readers, readers);
    e->cfg.max_readers = (size_t)readers;
  } else {
    log_info(NULL, "open files: limit %llu%s: up to %zu readers (max_readers), %llu connections "
             "to the daemon", limit, raised, e->cfg.max_readers, conns);
  }
}

/* --- run ---------------------------------------------------------------- */

static void init_handle(uv_handle_t *h, void *data) {
  h->data = data;
  uvh_opened(h);
}

static void log_leftover(uv_handle_t *h, void *arg) {
  log_error(NULL, "libuv handle left open at stop: %s", uv_handle_type_name(h->type));
}

int engine_run(engine_t *e, int handle_signals) {
  char err[512];
  if (!e->pipeline) {
    fail(e, "no pipeline loaded");
    return -1;
  }
  if (e->cfg.log_level >= 0 && log_get_level() == LOG_INFO) log_set_level(e->cfg.log_level);
  srand((unsigned)time(NULL) ^ (unsigned)(uintptr_t)e);
  if (uv_loop_init(&e->loop) != 0) {
    fail(e, "cannot create the event loop");
    return -1;
  }
  e->core.loop = &e->loop;
  e->core.cfg = &e->cfg;
  e->core.pipeline = e->pipeline;
  e->core.start_ns = ts_now();
  docker_tls_t tls = {e->cfg.docker_tls_ca, e->cfg.docker_tls_cert, e->cfg.docker_tls_key};
  e->core.docker = docker_new(&e->loop, e->cfg.docker_host, &tls, err, sizeof err);
  e->core.registry = registry_new(&e->core);
  if (e->core.docker) {
    docker_set_read_delay(e->core.docker, (unsigned)(e->cfg.read_delay * 1000 + 0.5));
    fit_open_files(e);
  }
  if (!e->core.docker || !e->core.registry) {
    fail(e, e->core.docker ? "out of memory" : err);
    log_error(NULL, "%s", e->error);
    if (e->core.docker) docker_close(e->core.docker, NULL, NULL);
    registry_free(e->core.registry);
    e->core.registry = NULL;
    uv_run(&e->loop, UV_RUN_DEFAULT);
    uv_loop_close(&e->loop);
    e->pipeline_exited = 1; /* it never started: engine_free may free everything */
    e->core.loop = NULL; /* nothing ran: engine_free frees everything */
    return -1;
  }
  if (e->cfg.state_dir) {
    e->core.checkpoint = checkpoint_open(&e->loop, e->cfg.state_dir, e->cfg.checkpoint_interval,
                                         e->cfg.fsync, (int64_t)(e->cfg.resume_margin * 1e9),
                                         err, sizeof err);
    if (!e->core.checkpoint)
      log_warn(NULL, "%s; cursors are kept in memory only (a restart reads history again)", err);
  }
  e->core.inflight = inflight_new(&e->core, e->cfg.max_buffered, on_resume, e);
  pipeline_set_done(e->pipeline, inflight_done, e->core.inflight);
  pipeline_set_reloaded(e->pipeline, on_reloaded, e);
  const char *start_failure = NULL;
  if (pipeline_start_outputs(e->pipeline, &e->loop, err, sizeof err) != 0) {
    log_error(NULL, "%s", err); /* started or not, the outputs are closed at stop */
    fail(e, err);
    start_failure = "an output cannot start";
  }
  if (e->cfg.metrics_listen && !e->core.ledger) /* per-container counts outlive readers */
    e->core.ledger = ledger_new(e->cfg.metrics_max_containers > 1024 ? e->cfg.metrics_max_containers
                                                                      : 1024);
  if (e->cfg.metrics_listen && !e->tap && (e->tap = tap_new()))
    pipeline_set_tap(e->pipeline, e->tap); /* before its thread starts */
  if (!start_failure && e->cfg.metrics_listen &&
      !(e->metrics = metrics_start(&e->loop, e->cfg.metrics_listen, e->cfg.metrics_max_containers,
                                   collect_status, e, err, sizeof err))) {
    log_error(NULL, "%s", err);
    fail(e, err);
    start_failure = "the metrics endpoint cannot start";
  }
  if (e->metrics) metrics_set_tap(e->metrics, e->tap);
  uv_async_init(&e->loop, &e->wake, on_wake);
  init_handle((uv_handle_t *)&e->wake, e);
  uv_timer_init(&e->loop, &e->stop_timer);
  init_handle((uv_handle_t *)&e->stop_timer, e);
  uv_timer_init(&e->loop, &e->stats_timer);
  init_handle((uv_handle_t *)&e->stats_timer, e);
  uv_timer_init(&e->loop, &e->backfill_timer);
  init_handle((uv_handle_t *)&e->backfill_timer, e);
  if (e->cfg.backfill) uv_timer_start(&e->backfill_timer, on_backfill_tick, 200, 200);
  if (e->cfg.stats_interval > 0) {
    uint64_t every = (uint64_t)(e->cfg.stats_interval * 1000);
    uv_timer_start(&e->stats_timer, on_stats, every, every);
  }
  e->handle_signals = handle_signals;
  if (handle_signals) {
    uv_signal_init(&e->loop, &e->sigint);
    init_handle((uv_handle_t *)&e->sigint, e);
    uv_signal_start(&e->sigint, on_signal, SIGINT);
    uv_signal_init(&e->loop, &e->sigterm);
    init_handle((uv_handle_t *)&e->sigterm, e);
    uv_signal_start(&e->sigterm, on_signal, SIGTERM);
    uv_signal_init(&e->loop, &e->sighup);
    init_handle((uv_handle_t *)&e->sighup, e);
    uv_signal_start(&e->sighup, on_signal, SIGHUP);
    uv_signal_init(&e->loop, &e->sigusr1);
    init_handle((uv_handle_t *)&e->sigusr1, e);
    uv_signal_start(&e->sigusr1, on_signal, SIGUSR1);
  }
  atomic_store(&e->running, 1); /* engine_stop may use the wake handle from now on */
  if (start_failure) {
    begin_stop(e, start_failure);
  } else if (pipeline_start(e->pipeline, &e->loop, on_pipeline_exit, e) != 0) {
    fail(e, "cannot start the pipeline thread");
    begin_stop(e, "start failed");
  } else {
    e->pipeline_started = 1;
    e->discovery = discovery_start(&e->core, on_ready, e);
    if (!e->discovery) {
      fail(e, "out of memory");
      begin_stop(e, "start failed");
    }
  }
  if (atomic_load(&e->stop_requested)) begin_stop(e, "requested");
  uv_run(&e->loop, UV_RUN_DEFAULT);
  if (!e->pipeline_exited) { /* gave up: the loop cannot be closed */
    snapshot(e, &e->final);
    return -1;
  }
  if (uv_loop_close(&e->loop) != 0) {
    uv_walk(&e->loop, log_leftover, NULL);
    fail(e, "libuv handles were left open at stop");
    return -1;
  }
  registry_free(e->core.registry);
  e->core.registry = NULL;
  if (e->core.checkpoint) {
    if (checkpoint_save_now(e->core.checkpoint, err, sizeof err) != 0) {
      log_error(NULL, "%s", err);
      fail(e, err);
    }
    checkpoint_free(e->core.checkpoint);
    e->core.checkpoint = NULL;
  }
  engine_stats_t *s = &e->final;
  log_info(NULL,
           "stopped: readers live %llu, started %llu, stopped %llu, cycled %llu; "
           "batches %llu, records in %llu, out %llu; filter errors %llu, timeouts %llu; "
           "reader pauses %llu; docker reads %llu, rests %llu",
           (unsigned long long)s->readers_live, (unsigned long long)s->readers_started,
           (unsigned long long)s->readers_stopped, (unsigned long long)s->readers_cycled,
           (unsigned long long)s->batches, (unsigned long long)s->records_in,
           (unsigned long long)s->records_out, (unsigned long long)s->filter_errors,
           (unsigned long long)s->filter_timeouts, (unsigned long long)s->reader_pauses,
           (unsigned long long)s->docker_reads, (unsigned long long)s->docker_rests);
  return e->failed ? -1 : 0;
}

static void snapshot(engine_t *e, engine_stats_t *out) {
  memset(out, 0, sizeof *out);
  if (e->core.registry) {
    registry_stats_t r;
    registry_stats(e->core.registry, &r);
    out->readers_live = r.live;
    out->readers_started = r.started;
    out->readers_stopped = r.stopped;
    out->readers_cycled = r.cycled;
  }
  if (e->pipeline) {
    pipeline_stats_t p;
    pipeline_stats(e->pipeline, &p);
    out->batches = p.batches;
    out->records_in = p.records_in;
    out->records_out = p.records_out;
    out->filter_errors = p.filter_errors;
    out->filter_timeouts = p.filter_timeouts;
  }
  if (e->core.inflight) {
    out->reader_pauses = inflight_pauses(e->core.inflight);
    out->bytes_in_flight = inflight_bytes(e->core.inflight);
  }
  out->events_reconnects = e->discovery ? discovery_reconnects(e->discovery) : e->events_reconnects;
  if (e->core.docker) {
    out->docker_reads = docker_reads(e->core.docker);
    out->docker_rests = docker_rests(e->core.docker);
  }
  out->handles_open = uvh_live();
}

void engine_stats(engine_t *e, engine_stats_t *out) {
  if (e->core.loop && !e->pipeline_exited) snapshot(e, out);
  else {
    *out = e->final;
    out->handles_open = uvh_live();
  }
}

void engine_free(engine_t *e) {
  if (!e) return;
  if (e->pipeline && !e->pipeline_exited && e->core.loop) return; /* running, or stuck */
  registry_free(e->core.registry);
  ledger_free(e->core.ledger);
  pipeline_free(e->pipeline);
  tap_free(e->tap); /* after the pipeline thread and the metrics endpoint */
  config_free(&e->cfg);
  if (e->have_new_select) selection_free(&e->new_select);
  pthread_mutex_destroy(&e->reload_mu);
  free(e->path);
  free(e);
}
