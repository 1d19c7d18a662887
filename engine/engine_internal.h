/* engine_internal.h - the engine's own family: engine.c (wiring, start,
 * reloads, signals), engine_stop.c (the stop sequence), engine_backfill.c
 * (a backfill's progress and end) and engine_stats.c (the counts and the
 * periodic stats line). No other file includes this header.
 *
 * Everything here runs on the loop thread, except where marked. */
#ifndef ENGINE_ENGINE_INTERNAL_H
#define ENGINE_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "runtime.h"
#include "engine.h"
#include "pipeline.h"

struct metrics;
struct tap;

/* The stop, in the order it goes. The phase only moves forward, and only
 * through engine_set_stop_phase, which logs each change. */
typedef enum stop_phase {
  STOP_NONE,        /* running */
  STOP_INPUT,       /* discovery and the readers stop */
  STOP_PIPELINE,    /* the pipeline thread finishes what it was handed */
  STOP_INTERRUPTED, /* the stop took long (60% of stop_timeout): the running
                       filter was interrupted; what is queued goes to the
                       outputs unfiltered */
  STOP_DISCARDING,  /* about to run out of time (85%): what is queued is
                       dropped unacknowledged (the next run reads it again) */
  STOP_DRAINING,    /* the pipeline thread has exited: the outputs deliver
                       what they hold, until the deadline */
  STOP_CLOSING,     /* the outputs, the in-flight ledger, the checkpoint, the
                       docker client and the engine's own handles close, one
                       after the other; the loop ends with the last */
  STOP_GAVE_UP,     /* the deadline passed with the pipeline thread stuck in
                       a C function: engine_run returns -1 */
  STOP_N_PHASES
} stop_phase_t;

struct engine {
  config_t cfg;
  pipeline_t *pipeline;
  uv_loop_t loop;
  runtime_t rt;
  struct tap *tap;           /* records for /tap, with the metrics endpoint */
  uv_async_t wake;           /* engine_stop from any thread, and reloads */
  pthread_mutex_t reload_mu; /* guards new_select */
  selection_t new_select;    /* a reload's selection, for the loop to apply */
  int have_new_select;
  uv_signal_t sigint, sigterm, sighup, sigusr1;
  char *path;             /* the pipeline file, for reloads */
  uint64_t stop_deadline; /* uv_now() by which the stop must be done */
  uv_timer_t stop_timer;
  uv_timer_t stats_timer;    /* the periodic stats line */
  uv_timer_t backfill_timer; /* backfill: progress, and the end */
  unsigned backfill_ticks;
  struct metrics *metrics; /* the metrics endpoint, or NULL */
  int handle_signals;
  atomic_int running;                     /* the wake handle may be used by engine_stop */
  atomic_int senders;                     /* engine_stop calls inside uv_async_send */
  atomic_int stop_requested;              /* any thread: engine_stop was called */
  stop_phase_t phase;                     /* engine_set_stop_phase */
  int pipeline_started;                   /* the pipeline thread was started */
  int pipeline_exited;                    /* ... and has exited (or never will start) */
  size_t daemons_stopped, daemons_closed; /* discoveries stopped, clients closed */
  int discovery_closed, readers_stopped;
  int failed;
  char error[512];
  engine_stats_t final; /* the counts at the end of engine_run */
};

/* engine.c: records the first error engine_run will report. */
void engine_fail(engine_t *e, const char *msg);

/* engine_stop.c */
/* Moves the stop to phase `to` (never back) and logs it; why says what
 * moved it. */
void engine_set_stop_phase(engine_t *e, stop_phase_t to, const char *why);
/* Starts the stop once (later calls do nothing): discovery and readers stop
 * first, then the pipeline, the outputs and the rest, bounded by
 * stop_timeout. */
void engine_begin_stop(engine_t *e, const char *why);
/* The pipeline's on_exit (pipeline_start): its thread has exited, or never
 * started; the outputs drain. */
void engine_pipeline_exited(void *ud);

/* engine_backfill.c */
/* Every 200 ms of a backfill: progress on a terminal, and the stop once
 * every selected container's history is read. */
void engine_backfill_tick(uv_timer_t *t);
/* At the end of a backfill: fails the run when anything was not
 * delivered. */
void engine_backfill_check_delivered(engine_t *e);

/* engine_stats.c */
/* The counts now (loop thread, while the engine runs). */
void engine_snapshot(engine_t *e, engine_stats_t *out);
/* The periodic stats line (engine.stats_interval). */
void engine_stats_tick(uv_timer_t *t);
/* The line logged when engine_run ends. */
void engine_log_stopped(const engine_stats_t *s);

#endif
