/* engine_stop.c - the stop sequence (engine_internal.h: stop_phase_t).
 *
 * engine_begin_stop, once: discovery and readers stop; when both are closed
 * the pipeline finishes what was handed to it and its thread exits; the
 * outputs deliver what they hold until the deadline, then close, then the
 * in-flight ledger, the checkpoint, the docker client and the engine's own
 * handles, each from the previous one's close callback. The loop ends when
 * the last handle is closed. One timer bounds all of it (on_stop_timer):
 * the running filter is interrupted, then what is still queued is dropped
 * unacknowledged, and only a thread stuck in C makes engine_run give up. */
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include "checkpoint.h"
#include "daemon.h"
#include "discovery.h"
#include "engine_internal.h"
#include "inflight.h"
#include "log.h"
#include "metrics.h"
#include "output.h"
#include "registry.h"
#include "handles.h"

static const char *const phase_names[STOP_N_PHASES] = {
    [STOP_NONE] = "running",          [STOP_INPUT] = "input",
    [STOP_PIPELINE] = "pipeline",     [STOP_INTERRUPTED] = "interrupted",
    [STOP_DISCARDING] = "discarding", [STOP_DRAINING] = "draining",
    [STOP_CLOSING] = "closing",       [STOP_GAVE_UP] = "gave up",
};

void engine_set_stop_phase(engine_t *e, stop_phase_t to, const char *why) {
  stop_phase_t from = e->phase;
  if (to <= from) return;
  e->phase = to;
  e->rt.stopping = 1;
  log_debug(NULL, "stop: %s -> %s%s%s", phase_names[from], phase_names[to], why ? ": " : "",
            why ? why : "");
  switch (to) {
  case STOP_INPUT: log_info(NULL, "stopping (%s)", why); break;
  case STOP_INTERRUPTED:
  case STOP_DISCARDING: log_warn(NULL, "%s", why); break;
  case STOP_GAVE_UP: log_error(NULL, "%s", why); break;
  default: break;
  }
}

static void handle_closed(uv_handle_t *h) { handles_closed(h); }

static void close_own_handles(engine_t *e) {
  /* No engine_stop may be inside uv_async_send when the handle closes. A
   * spin, not a mutex: engine_stop runs in signal handlers too. */
  atomic_store(&e->running, 0);
  while (atomic_load(&e->senders) > 0) sched_yield();
  handles_close((uv_handle_t *)&e->wake, handle_closed);
  handles_close((uv_handle_t *)&e->stop_timer, handle_closed);
  handles_close((uv_handle_t *)&e->stats_timer, handle_closed);
  handles_close((uv_handle_t *)&e->backfill_timer, handle_closed);
  metrics_close(e->metrics);
  e->metrics = NULL;
  if (e->handle_signals) {
    handles_close((uv_handle_t *)&e->sigint, handle_closed);
    handles_close((uv_handle_t *)&e->sigterm, handle_closed);
    handles_close((uv_handle_t *)&e->sighup, handle_closed);
    handles_close((uv_handle_t *)&e->sigusr1, handle_closed);
    /* Closing the handles restored the default actions: a second SIGINT
     * arriving now must not kill a stop that is finishing cleanly. */
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGUSR1, SIG_IGN);
  }
}

/* Each daemon's client closed (handles counted, handles.h): the last one
 * closes the engine's own handles. */
static void docker_closed(void *ud) {
  engine_t *e = ud;
  if (++e->daemons_closed < e->rt.n_daemons) return;
  close_own_handles(e);
}

static void checkpoint_closed(void *ud) {
  engine_t *e = ud;
  e->daemons_closed = 0;
  if (e->rt.n_daemons == 0) {
    close_own_handles(e);
    return;
  }
  for (size_t i = 0; i < e->rt.n_daemons; i++) daemon_close(e->rt.daemons[i], docker_closed, e);
}

static void inflight_closed(void *ud) {
  engine_t *e = ud;
  e->rt.inflight = NULL;
  if (e->rt.checkpoint) checkpoint_close(e->rt.checkpoint, checkpoint_closed, e);
  else checkpoint_closed(e);
}

static void outputs_closed(void *ud) {
  engine_t *e = ud;
  inflight_close(e->rt.inflight, inflight_closed, e);
}

/* After the pipeline thread: the outputs deliver what they hold, until the
 * stop deadline; then they close (what is left stays unacknowledged). */
static void on_drain_tick(uv_timer_t *t) {
  engine_t *e = t->data;
  if (pipeline_outputs_pending(e->pipeline) && uv_now(&e->loop) < e->stop_deadline) return;
  uv_timer_stop(&e->stop_timer);
  if (e->cfg.backfill) engine_backfill_check_delivered(e);
  engine_set_stop_phase(e, STOP_CLOSING, NULL);
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

void engine_pipeline_exited(void *ud) {
  engine_t *e = ud;
  e->pipeline_exited = 1;
  if (e->pipeline_started) pipeline_close(e->pipeline); /* joins: no batch comes back now */
  flush_outputs(e);
  engine_snapshot(e, &e->final);
  engine_set_stop_phase(e, STOP_DRAINING, NULL);
  uv_timer_stop(&e->stop_timer);
  uv_timer_start(&e->stop_timer, on_drain_tick, 0, 50);
}

static void maybe_finish_pipeline(engine_t *e) {
  if (!e->discovery_closed || !e->readers_stopped) return;
  engine_set_stop_phase(e, STOP_PIPELINE, "discovery and readers are closed");
  if (e->pipeline_started) pipeline_finish(e->pipeline);
  else engine_pipeline_exited(e);
}

static void on_discovery_closed(void *ud) {
  engine_t *e = ud;
  if (++e->daemons_stopped < e->rt.n_daemons) return;
  e->discovery_closed = 1;
  maybe_finish_pipeline(e);
}

static void on_readers_stopped(void *ud) {
  engine_t *e = ud;
  e->readers_stopped = 1;
  maybe_finish_pipeline(e);
}

/* The stop's deadline, in steps: at 60% of stop_timeout the running filter is
 * interrupted; at 85% what is still queued is dropped unacknowledged; at
 * 100% the engine gives up, which only a filter stuck inside one C call can
 * cause. (Once the pipeline thread has exited the timer paces the drain
 * instead: engine_pipeline_exited.) */
static void on_stop_timer(uv_timer_t *t) {
  engine_t *e = t->data;
  uint64_t step = (uint64_t)(e->cfg.stop_timeout * 1000);
  if (e->phase < STOP_INTERRUPTED) {
    engine_set_stop_phase(e, STOP_INTERRUPTED,
                          "stop is taking long: interrupting the running filter");
    pipeline_abort(e->pipeline);
    uv_timer_start(&e->stop_timer, on_stop_timer, step * 25 / 100, 0);
    return;
  }
  if (e->phase < STOP_DISCARDING) {
    engine_set_stop_phase(e, STOP_DISCARDING,
                          "stop is about to run out of time: dropping what "
                          "the outputs have not taken yet");
    pipeline_discard(e->pipeline);
    uv_timer_start(&e->stop_timer, on_stop_timer, step * 15 / 100, 0);
    return;
  }
  char msg[200];
  snprintf(msg, sizeof msg,
           "stop did not complete within stop_timeout (%g s): the pipeline "
           "thread is stuck in a C function",
           e->cfg.stop_timeout);
  engine_set_stop_phase(e, STOP_GAVE_UP, msg);
  engine_fail(e, msg);
  uv_stop(&e->loop);
}

void engine_begin_stop(engine_t *e, const char *why) {
  if (e->phase != STOP_NONE) return;
  engine_set_stop_phase(e, STOP_INPUT, why);
  uv_timer_stop(&e->stats_timer);
  uv_timer_stop(&e->backfill_timer);
  e->stop_deadline = uv_now(&e->loop) + (uint64_t)(e->cfg.stop_timeout * 1000);
  uv_timer_start(&e->stop_timer, on_stop_timer, (uint64_t)(e->cfg.stop_timeout * 600), 0);
  e->daemons_stopped = 0;
  if (e->rt.n_daemons == 0) e->discovery_closed = 1;
  for (size_t i = 0; i < e->rt.n_daemons; i++)
    if (e->rt.daemons[i]->discovery) {
      discovery_t *d = e->rt.daemons[i]->discovery;
      e->rt.daemons[i]->discovery = NULL; /* stopping: no longer asked anything */
      discovery_stop(d, on_discovery_closed, e);
    } else {
      on_discovery_closed(e);
    }
  registry_stop_all(e->rt.registry, on_readers_stopped, e);
}
