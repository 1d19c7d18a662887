/* inflight.c - batches in flight and backpressure (see inflight.h). */
#include <pthread.h>
#include <stdlib.h>
#include "checkpoint.h"
#include "inflight.h"
#include "uvh.h"

struct inflight {
  core_t *core;
  size_t limit, bytes;
  int over;                 /* readers were told to pause */
  unsigned long long pauses;
  void (*resume)(void *);
  void *resume_ud;
  uv_async_t wake;
  pthread_mutex_t lock;     /* guards done_head/done_tail */
  batch_t *done_head, *done_tail;
  void (*closed)(void *);
  void *closed_ud;
};

static size_t batch_bytes(const batch_t *b) {
  return sizeof *b + b->cap * sizeof *b->recs + b->bytes_cap;
}

/* Acknowledges and frees the batches handed back so far. */
static void drain(inflight_t *f) {
  pthread_mutex_lock(&f->lock);
  batch_t *b = f->done_head;
  f->done_head = f->done_tail = NULL;
  pthread_mutex_unlock(&f->lock);
  while (b) {
    batch_t *next = b->next;
    size_t n = batch_bytes(b);
    f->bytes = n > f->bytes ? 0 : f->bytes - n;
    if (f->core->checkpoint) checkpoint_ack(f->core->checkpoint, b);
    batch_free(b);
    b = next;
  }
  if (f->over && f->bytes <= f->limit / 2) {
    f->over = 0;
    if (f->resume) f->resume(f->resume_ud);
  }
}

static void on_wake(uv_async_t *a) { drain(a->data); }

inflight_t *inflight_new(core_t *core, size_t limit, void (*resume)(void *), void *ud) {
  inflight_t *f = calloc(1, sizeof *f);
  if (!f) return NULL;
  f->core = core;
  f->limit = limit;
  f->resume = resume;
  f->resume_ud = ud;
  pthread_mutex_init(&f->lock, NULL);
  uv_async_init(core->loop, &f->wake, on_wake);
  uvh_opened((uv_handle_t *)&f->wake);
  f->wake.data = f;
  return f;
}

void inflight_submit(inflight_t *f, batch_t *b) {
  f->bytes += batch_bytes(b);
  if (f->limit && f->bytes > f->limit) f->over = 1;
  pipeline_submit(f->core->pipeline, b);
}

void inflight_done(void *arg, batch_t *b) {
  inflight_t *f = arg;
  b->next = NULL;
  pthread_mutex_lock(&f->lock);
  if (f->done_tail) f->done_tail->next = b;
  else f->done_head = b;
  f->done_tail = b;
  pthread_mutex_unlock(&f->lock);
  uv_async_send(&f->wake);
}

int inflight_over(const inflight_t *f) { return f->over; }

size_t inflight_bytes(const inflight_t *f) { return f->bytes; }

unsigned long long inflight_pauses(const inflight_t *f) { return f->pauses; }

void inflight_paused(inflight_t *f) { f->pauses++; }

static void wake_closed(uv_handle_t *h) {
  inflight_t *f = h->data;
  void (*cb)(void *) = f->closed;
  void *ud = f->closed_ud;
  uvh_closed(h);
  pthread_mutex_destroy(&f->lock);
  free(f);
  if (cb) cb(ud);
}

void inflight_close(inflight_t *f, void (*closed)(void *), void *ud) {
  f->resume = NULL; /* nothing is resumed any more */
  drain(f);
  f->closed = closed;
  f->closed_ud = ud;
  uvh_close((uv_handle_t *)&f->wake, wake_closed);
}
