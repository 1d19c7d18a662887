/* discovery.h - finding the containers to follow.
 *
 * At start: negotiate the API version (/_ping), note the time, list the
 * running containers, and follow /events from that time, so a container
 * that starts between the list and the subscription is still seen (the
 * daemon replays events since then). Each container id is handled
 * idempotently: inspect, check the pipeline's selection, attach a reader.
 * A container is inspected when it is created (a create event) and held
 * until it starts (at most 1024 are held; a destroy event lets one go), so
 * that at its start event the selection is checked and its reader attached
 * at once, its logs request written before anything else: a `docker run
 * --rm` job may be gone moments after it starts. A rename event gives the
 * held container or the live reader its new name (readers keep following a
 * container whatever it is renamed to); a container neither held nor
 * followed is inspected again, as its new name may be selected.
 * Every reconcile_interval the list is read again, because the daemon drops
 * events for slow listeners. The list holds every container (running or
 * not); only running ones are followed (every one in a backfill), and it
 * tells the checkpoint which of this daemon's containers still exist
 * (checkpoint_reconcile, with a grace of two reconcile intervals). The events stream reconnects with backoff and
 * jitter, without limit, from the last event it saw.
 *
 * Loop thread only. Owns its requests and one timer. */
#ifndef ENGINE_DISCOVERY_H
#define ENGINE_DISCOVERY_H

#include <stddef.h>
#include "runtime.h"

typedef struct discovery discovery_t;

/* Starts discovery of one daemon (daemon.h: its client and name; the
 * containers it finds carry its name, container_set_host). ready(ud,
 * daemon, NULL) runs once the daemon answered and the first list was
 * handled. When the daemon cannot be reached, refuses the API version or
 * the first list at start: with retry_start, the ping is tried again with
 * backoff (as the events stream is) and ready runs at the first success;
 * without it, ready(ud, daemon, message) runs and nothing is retried.
 * Returns NULL when out of memory. */
discovery_t *discovery_start(runtime_t *rt, daemon_t *daemon, int retry_start,
                             void (*ready)(void *ud, daemon_t *daemon, const char *error),
                             void *ud);

/* The first list was handled and every inspection it started is done (a
 * backfill is complete once, besides, no reader is live). */
int discovery_settled(const discovery_t *d);

/* Lists the containers now (as the periodic reconcile does), e.g. after the
 * selection changed. */
void discovery_reconcile(discovery_t *d);

/* Events-stream reconnects since start (for metrics and tests). */
unsigned long discovery_reconnects(const discovery_t *d);

/* Was the daemon's last answer to discovery's own requests (ping, list,
 * events stream) a success? 0 before the first answer and after a failed
 * ping or list or a broken events stream, until the next success. The
 * reason of the last failure goes into why (n bytes) when not NULL. */
int discovery_docker_ok(const discovery_t *d, char *why, size_t n);

/* Cancels every request and closes the timer. closed(ud) runs once the timer
 * is closed; d is freed by then. Idempotent. */
void discovery_stop(discovery_t *d, void (*closed)(void *ud), void *ud);

#endif
