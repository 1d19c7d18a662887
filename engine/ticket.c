/* ticket.c - a batch's hold on its acknowledgement (see ticket.h). */
#include <stdatomic.h>
#include <stdlib.h>
#include "ticket.h"

struct ticket {
  atomic_int refs;
  atomic_int abandoned; /* a holder gave up on it: no acknowledgement */
  batch_t *batch;
  void (*done)(void *, batch_t *);
  void *ud;
};

ticket_t *ticket_new(batch_t *b, void (*done)(void *, batch_t *), void *ud) {
  ticket_t *t = malloc(sizeof *t);
  if (!t) return NULL;
  atomic_init(&t->refs, 1);
  atomic_init(&t->abandoned, 0);
  t->batch = b;
  t->done = done;
  t->ud = ud;
  return t;
}

void ticket_ref(ticket_t *t) { atomic_fetch_add(&t->refs, 1); }

void ticket_release(ticket_t *t) {
  if (atomic_fetch_sub(&t->refs, 1) != 1) return;
  if (t->batch) {
    t->batch->undelivered = atomic_load(&t->abandoned);
    if (t->done) t->done(t->ud, t->batch);
    else batch_free(t->batch);
  }
  free(t);
}

void ticket_abandon(ticket_t *t) {
  atomic_store(&t->abandoned, 1);
  ticket_release(t);
}
