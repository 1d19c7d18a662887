/* delivery.c - the loop side of the outputs (see delivery.h). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "delivery.h"
#include "log.h"
#include "handles.h"

#define TICK_MS 50
#define START_RETRY_MS 1000

typedef struct entry {
  output_t *o;
  int dropping;        /* a reload let it go */
  int closing;         /* output_close called; freed once closed */
  uint64_t deadline;   /* dropping: uv_now by which it must be empty */
  uint64_t next_start; /* not started: when to try again */
  char why[512];       /* not started: the last reason, logged once */
} entry_t;

struct delivery {
  uv_loop_t *loop;
  uint64_t grace_ms;
  uv_async_t wake;
  uv_timer_t tick;
  atomic_int reopen; /* delivery_reopen asked for it */
  int ticking;
  entry_t *e;
  size_t n, cap;
  /* the hand-over, under lock */
  pthread_mutex_t lock;
  output_t **add, **drop;
  size_t n_add, n_drop;
  /* the close */
  int closing, outputs_closed;
  uint64_t close_deadline;
  int handles;
  void (*closed)(void *);
  void *closed_ud;
};

static void on_tick(uv_timer_t *t);

static void ensure_tick(delivery_t *d) {
  if (d->ticking) return;
  d->ticking = 1;
  uv_timer_start(&d->tick, on_tick, TICK_MS, TICK_MS);
}

static int add_entry(delivery_t *d, output_t *o) {
  if (d->n == d->cap) {
    size_t cap = d->cap ? d->cap * 2 : 8;
    entry_t *n = realloc(d->e, cap * sizeof *n);
    if (!n) return -1;
    d->e = n;
    d->cap = cap;
  }
  memset(&d->e[d->n], 0, sizeof d->e[d->n]);
  d->e[d->n++].o = o;
  pthread_mutex_lock(&o->lock);
  o->wake = &d->wake;
  o->adopted = 1;
  pthread_mutex_unlock(&o->lock);
  return 0;
}

/* Starts entry i; a failure is logged once per reason and tried again. */
static void try_start(delivery_t *d, entry_t *en) {
  char err[512];
  if (output_start(en->o, d->loop, err, sizeof err) == 0) {
    if (en->why[0]) log_info(NULL, "output %s: started", en->o->name);
    en->why[0] = '\0';
    return;
  }
  if (strcmp(err, en->why) != 0) {
    log_error(NULL, "%s; trying again every %d s", err, START_RETRY_MS / 1000);
    snprintf(en->why, sizeof en->why, "%s", err);
  }
  en->next_start = uv_now(d->loop) + START_RETRY_MS;
  ensure_tick(d);
}

static void entry_closed(void *ud) { (void)ud; /* freed by sweep, which sees o->handles == 0 */ }

/* Frees entries whose output is closed, and ends the delivery when it is
 * closing and nothing is left. */
static void sweep(delivery_t *d) {
  size_t j = 0;
  for (size_t i = 0; i < d->n; i++) {
    entry_t *en = &d->e[i];
    if (en->closing && en->o->handles == 0) {
      output_free(en->o);
      continue;
    }
    d->e[j++] = *en;
  }
  d->n = j;
}

static void handle_closed(uv_handle_t *h) {
  delivery_t *d = h->data;
  handles_closed(h);
  if (--d->handles > 0) return;
  void (*cb)(void *) = d->closed;
  void *ud = d->closed_ud;
  pthread_mutex_destroy(&d->lock);
  free(d->add);
  free(d->drop);
  free(d->e);
  free(d);
  if (cb) cb(ud);
}

static void close_outputs(delivery_t *d) {
  d->outputs_closed = 1;
  for (size_t i = 0; i < d->n; i++) {
    entry_t *en = &d->e[i];
    if (en->closing) continue;
    en->closing = 1;
    output_close(en->o, NULL, entry_closed, en->o);
  }
}

static void take_handover(delivery_t *d) {
  pthread_mutex_lock(&d->lock);
  output_t **add = d->add, **drop = d->drop;
  size_t n_add = d->n_add, n_drop = d->n_drop;
  d->add = d->drop = NULL;
  d->n_add = d->n_drop = 0;
  pthread_mutex_unlock(&d->lock);
  for (size_t i = 0; i < n_drop; i++)
    for (size_t k = 0; k < d->n; k++)
      if (d->e[k].o == drop[i] && !d->e[k].dropping) {
        d->e[k].dropping = 1;
        d->e[k].deadline = uv_now(d->loop) + d->grace_ms;
        ensure_tick(d);
      }
  for (size_t i = 0; i < n_add; i++) {
    if (add_entry(d, add[i]) != 0) {
      log_error(NULL, "output %s: out of memory: it cannot start", add[i]->name);
      output_free(add[i]);
      continue;
    }
    if (!d->closing) try_start(d, &d->e[d->n - 1]);
  }
  free(add);
  free(drop);
}

/* One pass over the outputs: hand-over, what the pipeline wrote, starts
 * to retry, dropped outputs to close, the close. */
static void step(delivery_t *d) {
  uint64_t now = uv_now(d->loop);
  int busy = 0;
  take_handover(d);
  if (atomic_exchange(&d->reopen, 0))
    for (size_t i = 0; i < d->n; i++)
      if (d->e[i].o->started && !d->e[i].closing) output_reopen(d->e[i].o);
  for (size_t i = 0; i < d->n; i++) {
    entry_t *en = &d->e[i];
    if (en->closing) {
      busy = 1;
      continue;
    }
    if (!en->o->started && !d->closing) {
      busy = 1;
      if (now >= en->next_start) try_start(d, en);
    }
    if (d->closing || en->dropping) output_flush(en->o); /* batch_timeout no longer waited out */
    output_take(en->o);
    if (en->dropping) {
      busy = 1;
      size_t pending = output_pending(en->o);
      if (pending == 0 || now >= en->deadline) {
        if (pending)
          log_warn(NULL,
                   "output %s: dropped by a reload with %zu batches undelivered after %.1f s; "
                   "to its dead-letter file",
                   en->o->name, pending, (double)d->grace_ms / 1000);
        en->closing = 1;
        output_close(en->o, "the output was dropped by a reload before it delivered these records",
                     entry_closed, en->o);
      }
    }
  }
  sweep(d);
  if (d->closing && !d->outputs_closed && (delivery_pending(d) == 0 || now >= d->close_deadline)) {
    close_outputs(d);
    sweep(d);
  }
  if (d->closing && d->outputs_closed && d->n == 0) {
    uv_timer_stop(&d->tick);
    d->ticking = 0;
    handles_close((uv_handle_t *)&d->wake, handle_closed);
    handles_close((uv_handle_t *)&d->tick, handle_closed);
    return;
  }
  if (d->closing) busy = 1;
  if (!busy && d->ticking) {
    uv_timer_stop(&d->tick);
    d->ticking = 0;
  } else if (busy) {
    ensure_tick(d);
  }
}

static void on_wake(uv_async_t *a) {
  delivery_t *d = a->data;
  if (!uv_is_closing((uv_handle_t *)a)) step(d);
}

static void on_tick(uv_timer_t *t) { step(t->data); }

delivery_t *delivery_new(uv_loop_t *loop, uint64_t grace_ms) {
  delivery_t *d = calloc(1, sizeof *d);
  if (!d) return NULL;
  d->loop = loop;
  d->grace_ms = grace_ms;
  atomic_init(&d->reopen, 0);
  pthread_mutex_init(&d->lock, NULL);
  uv_async_init(loop, &d->wake, on_wake);
  handles_opened((uv_handle_t *)&d->wake);
  uv_timer_init(loop, &d->tick);
  handles_opened((uv_handle_t *)&d->tick);
  d->wake.data = d->tick.data = d;
  d->handles = 2;
  return d;
}

int delivery_start(delivery_t *d, output_t *const *outs, size_t n, char *err, size_t errlen) {
  int rc = 0;
  for (size_t i = 0; i < n; i++) {
    if (add_entry(d, outs[i]) != 0) {
      snprintf(err, errlen, "out of memory");
      for (size_t k = i; k < n; k++) output_free(outs[k]);
      return -1;
    }
    if (rc == 0 && output_start(outs[i], d->loop, err, errlen) != 0) rc = -1;
  }
  return rc;
}

static int append(output_t ***list, size_t *n, output_t *const *more, size_t k) {
  if (!k) return 0;
  output_t **l = realloc(*list, (*n + k) * sizeof(output_t *));
  if (!l) return -1;
  memcpy(l + *n, more, k * sizeof(output_t *));
  *list = l;
  *n += k;
  return 0;
}

void delivery_handover(delivery_t *d, output_t *const *add, size_t n_add, output_t *const *drop,
                       size_t n_drop) {
  pthread_mutex_lock(&d->lock);
  int bad = append(&d->add, &d->n_add, add, n_add) != 0;
  if (!bad && append(&d->drop, &d->n_drop, drop, n_drop) != 0) bad = 2;
  pthread_mutex_unlock(&d->lock);
  if (bad) log_error(NULL, "reload: out of memory handing the outputs over");
  if (bad == 1)
    for (size_t i = 0; i < n_add; i++) output_free(add[i]);
  uv_async_send(&d->wake);
}

void delivery_reopen(delivery_t *d) {
  atomic_store(&d->reopen, 1);
  uv_async_send(&d->wake);
}

size_t delivery_pending(delivery_t *d) {
  size_t n = 0;
  for (size_t i = 0; i < d->n; i++) n += output_pending(d->e[i].o);
  return n;
}

size_t delivery_outputs(delivery_t *d, output_t **out, size_t max) {
  size_t n = 0;
  for (size_t i = 0; i < d->n; i++) {
    if (d->e[i].dropping || d->e[i].closing) continue;
    if (n < max) out[n] = d->e[i].o;
    n++;
  }
  return n;
}

void delivery_close(delivery_t *d, uint64_t grace_ms, void (*closed)(void *), void *ud) {
  d->closing = 1;
  d->closed = closed;
  d->closed_ud = ud;
  d->close_deadline = uv_now(d->loop) + grace_ms;
  step(d);
}
