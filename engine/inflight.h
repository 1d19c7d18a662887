/* inflight.h - batches between the readers and the acknowledgement, and the
 * memory they hold.
 *
 * Readers hand their batches over with inflight_submit (loop thread). The
 * pipeline takes each batch under a ticket: one reference for itself while
 * it runs the filters, one for each output body that holds the batch's
 * records (output.h). When the last reference goes (on whichever thread),
 * the batch comes back through inflight_done, which wakes the loop through
 * a uv_async_t. On the loop a returned batch is acknowledged to the
 * checkpoint (when there is one), freed, and its bytes leave the count.
 *
 * Acknowledgement is in order: a container's batch is acknowledged only
 * once every batch of that container submitted before it came back, so a
 * saved cursor never passes a line an output has not taken. A batch that
 * came back undelivered (an output abandoned it at stop, or the stop
 * dropped it unprocessed) is not acknowledged, and neither is any later
 * batch of its container: the next run reads them again.
 *
 * Backpressure: while the bytes in flight exceed the limit, inflight_over()
 * is true and readers pause their Docker streams (the daemon keeps the lines
 * in its log files) instead of reading on; once the bytes fall to half the
 * limit, resume(ud) runs on the loop so the paused readers go on. */
#ifndef ENGINE_INFLIGHT_H
#define ENGINE_INFLIGHT_H

#include <stddef.h>
#include "batch.h"

struct rt;

typedef struct inflight inflight_t;

/* Returns NULL when out of memory. limit: bytes (0: no limit). */
inflight_t *inflight_new(struct rt *rt, size_t limit, void (*resume)(void *ud), void *ud);

/* Loop thread: counts the batch and passes it to the pipeline. */
void inflight_submit(inflight_t *f, batch_t *b);

/* Any thread (the pipeline's): the batch went through filters and outputs.
 * f is an inflight_t; the signature fits pipeline_set_done. */
void inflight_done(void *f, batch_t *b);

/* Loop thread: more bytes in flight than the limit. */
int inflight_over(const inflight_t *f);

/* Loop thread: the counts. */
size_t inflight_bytes(const inflight_t *f);
unsigned long long inflight_pauses(const inflight_t *f);

/* Loop thread: a reader paused because of the limit (for the count). */
void inflight_paused(inflight_t *f);

/* Loop thread, once no more batches can come back (the pipeline thread has
 * exited): handles what is queued and closes the async handle. closed(ud)
 * runs once it is closed; f is freed by then. */
void inflight_close(inflight_t *f, void (*closed)(void *ud), void *ud);

#endif
