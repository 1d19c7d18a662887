/* inflight.c - batches in flight, in-order acknowledgement
 * and backpressure (see inflight.h). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "checkpoint.h"
#include "runtime.h"
#include "inflight.h"
#include "log.h"
#include "pipeline.h"
#include "handles.h"

/* --- batches in flight -------------------------------------------------- */

struct inflight {
  runtime_t *rt;
  size_t limit, bytes;
  int over; /* readers were told to pause */
  unsigned long long pauses;
  void (*resume)(void *);
  void *resume_ud;
  uv_async_t wake;
  pthread_mutex_t lock; /* guards done_head/done_tail */
  batch_t *done_head, *done_tail;
  batch_t *order_head, *order_tail; /* submitted, in order (loop thread) */
  char **held;                      /* containers whose acknowledgement stopped for
                               good: a batch of theirs came back undelivered */
  size_t n_held;
  int hold_all; /* out of memory in hold: nothing is acknowledged */
  void (*closed)(void *);
  void *closed_ud;
};

static size_t batch_bytes(const batch_t *b) {
  return sizeof *b + b->cap * sizeof *b->recs + b->bytes_cap;
}

static int in_list(char *const *ids, size_t n, const char *id) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(ids[i], id) == 0) return 1;
  return 0;
}

/* Stops acknowledging container id for the rest of the run. */
static void hold(inflight_t *f, const char *id) {
  if (in_list(f->held, f->n_held, id)) return;
  char **n = realloc(f->held, (f->n_held + 1) * sizeof *n);
  char *copy = strdup(id);
  if (!n || !copy) { /* nothing is acknowledged any more: safe, if wasteful */
    free(copy);
    if (n) f->held = n;
    if (!f->hold_all) log_error(NULL, "out of memory: no cursor moves any more in this run");
    f->hold_all = 1;
    return;
  }
  f->held = n;
  f->held[f->n_held++] = copy;
}

/* Acknowledges and frees the batches that came back, in submission order
 * per container. */
static void drain(inflight_t *f) {
  pthread_mutex_lock(&f->lock);
  batch_t *b = f->done_head;
  f->done_head = f->done_tail = NULL;
  pthread_mutex_unlock(&f->lock);
  if (!b) return;
  for (; b; b = b->next) b->finished = 1;

  /* Walk the batches in order; a container with a batch still out is
   * "waiting" for the rest of the walk (a small list: one per container
   * with a batch in the pipeline or an output queue). */
  const char **waiting = NULL;
  size_t n_waiting = 0, cap = 0;
  batch_t **link = &f->order_head, *prev = NULL;
  while ((b = *link)) {
    const char *id = b->container->id;
    int blocked = in_list((char *const *)waiting, n_waiting, id);
    if (!b->finished || blocked) {
      if (!blocked) {
        if (n_waiting == cap) {
          size_t ncap = cap ? cap * 2 : 16;
          const char **nw = realloc(waiting, ncap * sizeof *nw);
          if (!nw) break; /* try again at the next wake */
          waiting = nw;
          cap = ncap;
        }
        waiting[n_waiting++] = id;
      }
      prev = b;
      link = &b->order_next;
      continue;
    }
    *link = b->order_next;
    if (f->order_tail == b) f->order_tail = prev;
    if (b->undelivered) hold(f, id);
    else if (f->rt->checkpoint && !f->hold_all && !in_list(f->held, f->n_held, id))
      checkpoint_ack(f->rt->checkpoint, b);
    size_t n = batch_bytes(b);
    f->bytes = n > f->bytes ? 0 : f->bytes - n;
    batch_free(b);
  }
  free(waiting);
  if (f->over && f->bytes <= f->limit / 2) {
    f->over = 0;
    if (f->resume) f->resume(f->resume_ud);
  }
}

static void on_wake(uv_async_t *a) { drain(a->data); }

inflight_t *inflight_new(runtime_t *rt, size_t limit, void (*resume)(void *), void *ud) {
  inflight_t *f = calloc(1, sizeof *f);
  if (!f) return NULL;
  f->rt = rt;
  f->limit = limit;
  f->resume = resume;
  f->resume_ud = ud;
  pthread_mutex_init(&f->lock, NULL);
  uv_async_init(rt->loop, &f->wake, on_wake);
  handles_opened((uv_handle_t *)&f->wake);
  f->wake.data = f;
  return f;
}

void inflight_submit(inflight_t *f, batch_t *b) {
  f->bytes += batch_bytes(b);
  if (f->limit && f->bytes > f->limit) f->over = 1;
  b->order_next = NULL;
  b->finished = 0;
  if (f->order_tail) f->order_tail->order_next = b;
  else f->order_head = b;
  f->order_tail = b;
  pipeline_submit(f->rt->pipeline, b);
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
  handles_closed(h);
  pthread_mutex_destroy(&f->lock);
  for (size_t i = 0; i < f->n_held; i++) free(f->held[i]);
  free(f->held);
  free(f);
  if (cb) cb(ud);
}

void inflight_close(inflight_t *f, void (*closed)(void *), void *ud) {
  f->resume = NULL; /* nothing is resumed any more */
  drain(f);
  /* Every batch came back by now (the pipeline and the outputs are done);
   * any left was lost on the way and is freed unacknowledged. */
  for (batch_t *b = f->order_head, *next; b; b = next) {
    next = b->order_next;
    if (!b->finished) continue; /* not ours to free: still referenced elsewhere */
    batch_free(b);
  }
  f->order_head = f->order_tail = NULL;
  f->closed = closed;
  f->closed_ud = ud;
  handles_close((uv_handle_t *)&f->wake, wake_closed);
}
