/* core.h - what the loop-side modules of a running engine share.
 *
 * Owned by engine.c; every field is set before the loop starts and lives
 * until the loop has closed. Loop thread only, except the pipeline, whose
 * submit is thread-safe. */
#ifndef ENGINE_CORE_H
#define ENGINE_CORE_H

#include <stdint.h>
#include <uv.h>
#include "config.h"
#include "docker.h"
#include "pipeline.h"

struct registry;
struct inflight;
struct checkpoint;
struct ledger;

typedef struct core {
  uv_loop_t *loop;
  const config_t *cfg;
  docker_t *docker;
  pipeline_t *pipeline;
  struct registry *registry;
  struct inflight *inflight;     /* batches between readers and acknowledgement */
  struct checkpoint *checkpoint; /* NULL: cursors are not saved */
  struct ledger *ledger;         /* NULL: finished readers' counts are not kept
                                    (kept for the metrics endpoint, ledger.h) */
  int64_t start_ns;              /* wall clock at engine start */
  int stopping;                  /* set once stop has begun: nothing new may start */
} core_t;

#endif
