/* ledger.h - what finished readers delivered, per container, so that the
 * metrics' per-container counters keep counting across a container's
 * restarts and keep their final value after it exits.
 *
 * A reader that is freed adds its counts to its container's entry
 * (reader.c, when core->ledger is set). The ledger keeps at most max
 * containers; past that the container retired longest ago is forgotten
 * (its series leaves /metrics). Loop thread only. */
#ifndef ENGINE_LEDGER_H
#define ENGINE_LEDGER_H

#include <stddef.h>
#include <stdint.h>

typedef struct ledger ledger_t;

typedef struct ledger_totals {
  char id[65];
  char name[256]; /* the name at the last retirement */
  uint64_t lines, bytes, errors;
  uint64_t repeated; /* lines the daemon repeated, dropped */
  int64_t newest;    /* newest delivered timestamp (ns), or -1 */
} ledger_totals_t;

/* Returns an empty ledger for at most max containers (at least 1), or NULL
 * when out of memory. */
ledger_t *ledger_new(size_t max);

/* Adds a finished reader's counts to container id. Out of memory: the
 * counts are lost (the metrics undercount), nothing else. */
void ledger_retire(ledger_t *l, const char *id, const char *name, uint64_t lines, uint64_t bytes,
                   uint64_t errors, uint64_t repeated, int64_t newest);

/* The totals of container id, or NULL. */
const ledger_totals_t *ledger_find(const ledger_t *l, const char *id);

/* Calls fn for each container, the one retired longest ago first. */
void ledger_each(const ledger_t *l, void (*fn)(void *ud, const ledger_totals_t *t), void *ud);

/* NULL is ignored. */
void ledger_free(ledger_t *l);

#endif
