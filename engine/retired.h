/* retired.h - what finished readers delivered, per container, so that the
 * metrics' per-container counters keep counting across a container's
 * restarts and keep their final value after it exits.
 *
 * A reader that is freed adds its counts to its container's entry
 * (reader.c, when rt->retired is set). The table keeps at most max
 * containers; past that the container retired longest ago is forgotten
 * (its series leaves /metrics). Loop thread only. */
#ifndef ENGINE_RETIRED_H
#define ENGINE_RETIRED_H

#include <stddef.h>
#include <stdint.h>
#include "container.h"

typedef struct retired retired_t;

typedef struct retired_counts {
  char key[CONTAINER_KEY_MAX];   /* the container's key (container.h) */
  char host[CONTAINER_HOST_MAX]; /* its daemon's name */
  char id[65];
  char name[256]; /* the name at the last retirement */
  uint64_t lines, bytes, errors;
  uint64_t repeated;  /* lines the daemon repeated, dropped */
  uint64_t recovered; /* lines a follow stream skipped, delivered late */
  int64_t newest;     /* newest delivered timestamp (ns), or -1 */
} retired_counts_t;

/* Returns an empty table for at most max containers (at least 1), or NULL
 * when out of memory. */
retired_t *retired_new(size_t max);

/* Adds a finished reader's counts to container c (by its key). Out of
 * memory: the counts are lost (the metrics undercount), nothing else. */
void retired_add(retired_t *l, const container_t *c, uint64_t lines, uint64_t bytes,
                 uint64_t errors, uint64_t repeated, uint64_t recovered, int64_t newest);

/* The totals of the container of key, or NULL. */
const retired_counts_t *retired_find(const retired_t *l, const char *key);

/* Calls fn for each container, the one retired longest ago first. */
void retired_each(const retired_t *l, void (*fn)(void *ud, const retired_counts_t *t), void *ud);

/* NULL is ignored. */
void retired_free(retired_t *l);

#endif
