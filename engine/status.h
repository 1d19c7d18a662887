/* status.h - one snapshot of everything a running engine can tell about
 * itself, for the metrics endpoint (metrics.h) and its JSON views.
 *
 * status_collect runs on the loop thread and copies what it reads: the
 * snapshot stays valid after the readers, filters or outputs it describes
 * are gone, and it is freed with status_free. Counts are since the engine
 * started, except a reader's (since that reader started) and a filter's
 * (since the pipeline was last loaded or reloaded). */
#ifndef ENGINE_STATUS_H
#define ENGINE_STATUS_H

#include <stddef.h>
#include <stdint.h>
#include "runtime.h"
#include "output.h"
#include "pipeline.h"
#include "registry.h"

/* What the engine knows that runtime_t does not hold (engine.c fills it). */
typedef struct status_source {
  int pipeline_loaded; /* the pipeline thread runs */
  int stopping;
} status_source_t;

/* A followed container: one with a live reader, or (with rt->retired)
 * one whose readers all finished (state "finished"). Its counts add up
 * every reader the container had since the engine started (only the live
 * reader's without the retired table). */
typedef struct status_reader {
  char name[256]; /* the container name, without the leading '/' */
  char id[65];
  char host[CONTAINER_HOST_MAX]; /* its daemon's name (daemon.h) */
  const char *state;             /* reader_state_name, or "finished" */
  int live;                      /* it has a live reader */
  int64_t newest;                /* newest delivered timestamp (ns), or -1 */
  uint64_t lines, bytes, errors;
  uint64_t repeated;  /* lines the daemon sent twice in one stream, dropped */
  uint64_t recovered; /* lines a follow stream skipped, delivered late */
  int paused;         /* waits for the outputs (backpressure) */
} status_reader_t;

/* One followed daemon (daemon.h). */
typedef struct status_daemon {
  char name[CONTAINER_HOST_MAX];
  int ok;        /* its last answer to discovery was good */
  char why[300]; /* why not, when !ok */
  unsigned long events_reconnects;
  unsigned long long reads, rests; /* docker_reads, docker_rests */
} status_daemon_t;

typedef struct status_output {
  pipeline_output_info_t info;
  output_stats_t st;
} status_output_t;

typedef struct status {
  int64_t now_ns, start_ns; /* wall clock */
  registry_stats_t readers;
  status_reader_t *rd; /* containers, sorted by name */
  size_t n_rd;
  pipeline_stats_t pipeline;
  /* records_in - records_out when positive (filters dropped more than they
   * added), and records_out - records_in when positive: net amounts. */
  unsigned long long records_dropped, records_added;
  pipeline_filter_stats_t *filters;
  size_t n_filters;
  status_output_t *outputs;
  size_t n_outputs;
  size_t bytes_in_flight;
  unsigned long long reader_pauses;
  unsigned long long docker_reads, docker_rests;
  unsigned long events_reconnects; /* every daemon's */
  status_daemon_t *daemons;        /* in the order of the pipeline's docker list */
  size_t n_daemons;
  int daemons_list;      /* docker was given as a list: metrics carry host */
  int checkpoint_on;     /* cursors are saved */
  double checkpoint_age; /* checkpoint_age(), -1 when off */
  int docker_ok;         /* every daemon's last answer was good */
  char docker_why[600];  /* why not, when !docker_ok: each failing daemon,
                           "<name>: <why>" when several are followed */
  int pipeline_loaded, stopping;
  double stall_limit; /* seconds: filter_timeout + STATUS_STALL_MARGIN */
  long handles_open;
  unsigned long long tap_dropped; /* records a slow `engine tap` missed */
} status_t;

/* How much longer than filter_timeout the pipeline may go without finishing
 * a batch, while some wait, before /ready reports it stalled (seconds). */
#define STATUS_STALL_MARGIN 5.0

/* Takes a snapshot. Loop thread only. Returns NULL when out of memory. */
status_t *status_collect(runtime_t *rt, const status_source_t *src);

/* Frees a snapshot. NULL is ignored. */
void status_free(status_t *s);

#endif
