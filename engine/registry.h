/* registry.h - every reader the engine has, and every container cursor.
 *
 * The registry owns the readers and the cursors. A container known to the
 * engine has one entry: its cursor (kept after its reader finishes, so a
 * restarted container resumes where it stopped) and at most one live reader.
 * Containers are known by their key (container.h: daemon name and id), so
 * two daemons' containers never collide; d, the container's daemon, is
 * the one its reader reads from. registry_attach is idempotent per key:
 * attaching a container whose reader is live does nothing.
 *
 * Counts: readers live, started, stopped (closed for any reason), cycled,
 * and how many are in each state. Readers report their state changes
 * through registry_state_changed (called from reader_set_state only).
 * Loop thread only. */
#ifndef ENGINE_REGISTRY_H
#define ENGINE_REGISTRY_H

#include <stddef.h>
#include <stdint.h>
#include "container.h"
#include "runtime.h"
#include "reader.h"

typedef struct registry registry_t;
struct reader;

/* The latency from a container's start event to its logs request being
 * written, in seconds: the histogram's upper bounds. */
#define REGISTRY_START_BUCKETS 10
extern const double registry_start_bounds[REGISTRY_START_BUCKETS];

typedef struct registry_stats {
  uint64_t live, started, stopped, cycled;
  /* attach streams of --rm containers (reader.h): in place before the
   * start; answered too late (the log was read instead); refused */
  uint64_t attach[READER_ATTACH_N_RESULTS]; /* by reader_attach_result_t */
  uint64_t by_state[READER_N_STATES];       /* indexed by reader_state_t */
  /* start event to logs request: counts per bucket (not cumulative; the
   * last one counts the slower ones) and the sum in ns */
  uint64_t start_buckets[REGISTRY_START_BUCKETS + 1];
  uint64_t start_ns;
} registry_stats_t;

/* Returns a new, empty registry, or NULL when out of memory. */
registry_t *registry_new(runtime_t *rt);

/* Starts following c unless a reader for it is live. since_ns is where a
 * container with no cursor yet starts (-1: all history). event_ns: the
 * uv_hrtime at which the container's start event arrived, for the latency
 * histogram (0: not started by an event). Returns 0 (also when a reader was
 * live already), or -1 when out of memory or stopping. */
int registry_attach(registry_t *r, daemon_t *d, container_t *c, int64_t since_ns,
                    uint64_t event_ns);

/* Like registry_attach for a --rm container that is created and not started
 * yet: its reader reads an attach stream (reader.h). A later
 * registry_attach for its start event finds that reader live. */
int registry_attach_created(registry_t *r, daemon_t *d, container_t *c, int64_t since_ns);

/* The live reader of a container (its key, container.h), or NULL. */
struct reader *registry_find(registry_t *r, const char *key);

/* Forgets a removed container (its key): its cursor, once its reader is
 * gone. */
void registry_forget(registry_t *r, const char *key);

/* Stops every reader (reader_stop). done() runs on the loop once the last
 * reader has closed (at once when there is none). Idempotent. */
void registry_stop_all(registry_t *r, void (*done)(void *ud), void *ud);

void registry_stats(const registry_t *r, registry_stats_t *out);

/* Frees the registry; every reader must be closed. */
void registry_free(registry_t *r);

/* Resumes every reader paused for backpressure. */
void registry_resume_paused(registry_t *r);

/* Calls fn for each live reader (for /readers-style reports). */
void registry_each(registry_t *r, void (*fn)(void *ud, struct reader *rd), void *ud);

#endif
