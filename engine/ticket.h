/* ticket.h - a batch's hold on its acknowledgement.
 *
 * The pipeline takes each batch under a ticket (inflight.h): one reference
 * for itself while it runs the filters, one for each output body holding
 * the batch's records (output.h). The last release hands the batch to the
 * ticket's done callback, on whichever thread released it.
 *
 * Thread-safe: references are atomic. */
#ifndef ENGINE_TICKET_H
#define ENGINE_TICKET_H

#include "batch.h"

typedef struct ticket ticket_t;

/* A ticket for b (NULL: records of a timer, acknowledged by nobody) holding
 * one reference. When the last reference is released, done(ud, b) runs on
 * the releasing thread, with b->undelivered set when a holder abandoned it;
 * without done, b is freed. Returns NULL when out of memory. */
ticket_t *ticket_new(batch_t *b, void (*done)(void *ud, batch_t *b), void *ud);
void ticket_ref(ticket_t *t);
void ticket_release(ticket_t *t);

/* Releases a reference whose holder did not deliver the records (at stop):
 * the batch will not be acknowledged. */
void ticket_abandon(ticket_t *t);

#endif
