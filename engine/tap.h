/* tap.h - a live sample of the records flowing through the pipeline, for
 * `engine tap` (the metrics endpoint's /tap).
 *
 * A client taps one point: the records as the filters get them (TAP_INPUT),
 * as a named filter left them (TAP_FILTER), or as a named output took them
 * (TAP_OUTPUT), optionally only those of containers whose name matches a
 * glob, and up to a number of records. The pipeline thread offers each
 * batch's records, as JSON lines, to the clients tapping where it is; the
 * loop thread takes them for each client's connection.
 *
 * The tap never slows the pipeline down: a point nobody taps costs one
 * atomic load; a client holds at most TAP_BUFFER_MAX bytes not taken yet,
 * and records offered beyond that are dropped for it and counted. At most
 * TAP_CLIENTS_MAX clients at once.
 *
 * Threads: tap_wanted and tap_offer on the pipeline thread (or any thread);
 * the rest on the loop thread. The hub's mutex guards the clients. */
#ifndef ENGINE_TAP_H
#define ENGINE_TAP_H

#include <stddef.h>

#define TAP_BUFFER_MAX (256 * 1024)
#define TAP_CLIENTS_MAX 8

enum tap_point { TAP_INPUT, TAP_FILTER, TAP_OUTPUT };

typedef struct tap tap_t;
typedef struct tap_client tap_client_t;

/* Returns a hub with no client, or NULL when out of memory. */
tap_t *tap_new(void);

/* Frees the hub and its clients. NULL is ignored. */
void tap_free(tap_t *t);

/* 1 when a client taps point (name: the filter's or output's; NULL for
 * TAP_INPUT) for records of container cname (NULL: records of no
 * container, which only clients without a glob take). */
int tap_wanted(tap_t *t, int point, const char *name, const char *cname);

/* Offers the records of one batch at point: data holds them as JSON lines
 * (one per record, each ending in '\n'). Each client tapping there takes
 * what fits its buffer and its limit. */
void tap_offer(tap_t *t, int point, const char *name, const char *cname, const char *data,
               size_t len);

/* A new client (NULL when TAP_CLIENTS_MAX are connected, or out of memory;
 * the strings are copied). glob: container names, or NULL for all; limit:
 * records at most, 0 for no limit. */
tap_client_t *tap_subscribe(tap_t *t, int point, const char *name, const char *glob, size_t limit);

/* The records buffered for c since the last take, as a malloc'ed buffer of
 * *len bytes (NULL when there are none, or out of memory). *done: c took
 * its limit of records and nothing more will come. *dropped: records
 * dropped for c so far. */
char *tap_take(tap_t *t, tap_client_t *c, size_t *len, int *done, unsigned long long *dropped);

/* Records dropped for clients that did not keep up, since the hub was
 * made (any thread). */
unsigned long long tap_dropped(tap_t *t);

/* Removes and frees c. */
void tap_unsubscribe(tap_t *t, tap_client_t *c);

#endif
