/* runtime.h - what the loop-side modules of a running engine share.
 *
 * Owned by engine.c; every field is set before the loop starts and lives
 * until the loop has closed. Loop thread only, except the pipeline, whose
 * submit is thread-safe. */
#ifndef ENGINE_RUNTIME_H
#define ENGINE_RUNTIME_H

#include <stdint.h>
#include <uv.h>
#include "config.h"
#include "daemon.h"
#include "pipeline.h"

struct registry;
struct inflight;
struct checkpoint;
struct retired;

typedef struct rt {
  uv_loop_t *loop;
  const config_t *cfg;
  daemon_t **daemons; /* the followed daemons (daemon.h), at least one */
  size_t n_daemons;
  pipeline_t *pipeline;
  struct registry *registry;
  struct inflight *inflight;     /* batches between readers and acknowledgement */
  struct checkpoint *checkpoint; /* NULL: cursors are not saved */
  struct retired *retired;       /* NULL: finished readers' counts are not kept
                                    (kept for the metrics endpoint, retired.h) */
  int64_t start_ns;              /* wall clock at engine start */
  int stopping;                  /* set once stop has begun: nothing new may start */
} runtime_t;

#endif
