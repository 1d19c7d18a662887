/* tap.c - records for `engine tap` (see tap.h). */
#include <fnmatch.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "tap.h"

struct tap_client {
  int point;
  char *name;   /* the filter's or output's, or NULL */
  char *glob;   /* container names, or NULL */
  size_t limit; /* records; 0: none */
  size_t taken; /* records put in buf so far */
  unsigned long long dropped;
  char *buf; /* JSON lines not taken yet */
  size_t len;
  struct tap_client *next;
};

struct tap {
  pthread_mutex_t lock;
  atomic_int n_clients;  /* read without the lock: the fast "nobody taps" */
  atomic_ullong dropped; /* over every client, ever */
  tap_client_t *clients;
};

tap_t *tap_new(void) {
  tap_t *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  if (pthread_mutex_init(&t->lock, NULL) != 0) {
    free(t);
    return NULL;
  }
  atomic_init(&t->n_clients, 0);
  atomic_init(&t->dropped, 0);
  return t;
}

static void client_free(tap_client_t *c) {
  free(c->name);
  free(c->glob);
  free(c->buf);
  free(c);
}

void tap_free(tap_t *t) {
  if (!t) return;
  for (tap_client_t *c = t->clients, *next; c; c = next) {
    next = c->next;
    client_free(c);
  }
  pthread_mutex_destroy(&t->lock);
  free(t);
}

/* Does c tap point/name for container cname? Under the lock. */
static int matches(const tap_client_t *c, int point, const char *name, const char *cname) {
  if (c->point != point) return 0;
  if (point != TAP_INPUT && (!name || !c->name || strcmp(c->name, name) != 0)) return 0;
  if (c->limit && c->taken >= c->limit) return 0;
  if (!c->glob) return 1;
  return cname && fnmatch(c->glob, cname, 0) == 0;
}

int tap_wanted(tap_t *t, int point, const char *name, const char *cname) {
  if (!t || atomic_load_explicit(&t->n_clients, memory_order_relaxed) == 0) return 0;
  int want = 0;
  pthread_mutex_lock(&t->lock);
  for (const tap_client_t *c = t->clients; c && !want; c = c->next)
    want = matches(c, point, name, cname);
  pthread_mutex_unlock(&t->lock);
  return want;
}

/* Bytes of data's first n lines (all of it when it has fewer). */
static size_t first_lines(const char *data, size_t len, size_t n, size_t *lines) {
  size_t at = 0;
  *lines = 0;
  while (at < len && *lines < n) {
    const char *nl = memchr(data + at, '\n', len - at);
    at = nl ? (size_t)(nl - data) + 1 : len;
    (*lines)++;
  }
  return at;
}

static size_t count_lines(const char *data, size_t len) {
  size_t n = 0;
  for (const char *p = data; (p = memchr(p, '\n', len - (size_t)(p - data))) != NULL; p++) n++;
  return n;
}

void tap_offer(tap_t *t, int point, const char *name, const char *cname, const char *data,
               size_t len) {
  if (!t || !len || atomic_load_explicit(&t->n_clients, memory_order_relaxed) == 0) return;
  size_t records = count_lines(data, len);
  pthread_mutex_lock(&t->lock);
  for (tap_client_t *c = t->clients; c; c = c->next) {
    if (!matches(c, point, name, cname)) continue;
    size_t lines = records, take = len;
    if (c->limit && c->limit - c->taken < records)
      take = first_lines(data, len, c->limit - c->taken, &lines);
    char *grown = c->len + take <= TAP_BUFFER_MAX ? realloc(c->buf, c->len + take) : NULL;
    if (!grown) {
      c->dropped += records;
      atomic_fetch_add(&t->dropped, records);
      continue;
    }
    memcpy(grown + c->len, data, take);
    c->buf = grown;
    c->len += take;
    c->taken += lines;
  }
  pthread_mutex_unlock(&t->lock);
}

tap_client_t *tap_subscribe(tap_t *t, int point, const char *name, const char *glob, size_t limit) {
  tap_client_t *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->point = point;
  c->limit = limit;
  if ((name && !(c->name = strdup(name))) || (glob && *glob && !(c->glob = strdup(glob)))) {
    client_free(c);
    return NULL;
  }
  pthread_mutex_lock(&t->lock);
  int n = atomic_load(&t->n_clients);
  if (n >= TAP_CLIENTS_MAX) {
    pthread_mutex_unlock(&t->lock);
    client_free(c);
    return NULL;
  }
  c->next = t->clients;
  t->clients = c;
  atomic_store(&t->n_clients, n + 1);
  pthread_mutex_unlock(&t->lock);
  return c;
}

char *tap_take(tap_t *t, tap_client_t *c, size_t *len, int *done, unsigned long long *dropped) {
  pthread_mutex_lock(&t->lock);
  char *buf = c->buf;
  *len = c->len;
  c->buf = NULL;
  c->len = 0;
  *done = c->limit && c->taken >= c->limit;
  *dropped = c->dropped;
  pthread_mutex_unlock(&t->lock);
  return buf;
}

unsigned long long tap_dropped(tap_t *t) { return t ? atomic_load(&t->dropped) : 0; }

void tap_unsubscribe(tap_t *t, tap_client_t *c) {
  pthread_mutex_lock(&t->lock);
  for (tap_client_t **p = &t->clients; *p; p = &(*p)->next)
    if (*p == c) {
      *p = c->next;
      atomic_store(&t->n_clients, atomic_load(&t->n_clients) - 1);
      break;
    }
  pthread_mutex_unlock(&t->lock);
  client_free(c);
}
