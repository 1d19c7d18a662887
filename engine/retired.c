/* retired.c - per-container totals of finished readers (see retired.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "idtable.h"
#include "retired.h"

typedef struct lentry {
  idlink_t link; /* in the table, by container key */
  retired_counts_t t;
  struct lentry *older, *newer; /* retirement order */
} lentry_t;

struct retired {
  idtable_t entries; /* lentry_t by container id (entries.count) */
  lentry_t *oldest, *newest;
  size_t max;
};

static lentry_t *find(const retired_t *l, const char *id) {
  idlink_t *k = idtable_find(&l->entries, id);
  return k ? IDTABLE_ENTRY(k, lentry_t, link) : NULL;
}

retired_t *retired_new(size_t max) {
  retired_t *l = calloc(1, sizeof *l);
  if (l) l->max = max ? max : 1;
  return l;
}

static void unlink_order(retired_t *l, lentry_t *e) {
  if (e->older) e->older->newer = e->newer;
  else l->oldest = e->newer;
  if (e->newer) e->newer->older = e->older;
  else l->newest = e->older;
  e->older = e->newer = NULL;
}

static void link_newest(retired_t *l, lentry_t *e) {
  e->older = l->newest;
  if (l->newest) l->newest->newer = e;
  else l->oldest = e;
  l->newest = e;
}

static void drop(retired_t *l, lentry_t *e) {
  idtable_remove(&l->entries, &e->link);
  unlink_order(l, e);
  free(e);
}

void retired_add(retired_t *l, const container_t *c, uint64_t lines, uint64_t bytes,
                 uint64_t errors, uint64_t repeated, uint64_t recovered, int64_t newest) {
  const char *name = c->name;
  lentry_t *e = find(l, c->key);
  if (e) {
    unlink_order(l, e);
  } else {
    if (l->entries.count >= l->max) drop(l, l->oldest);
    if (!(e = calloc(1, sizeof *e))) return;
    snprintf(e->t.key, sizeof e->t.key, "%s", c->key);
    snprintf(e->t.host, sizeof e->t.host, "%s", c->host);
    snprintf(e->t.id, sizeof e->t.id, "%s", c->id);
    e->t.newest = -1;
    idtable_add(&l->entries, &e->link, e->t.key);
  }
  link_newest(l, e);
  snprintf(e->t.name, sizeof e->t.name, "%s", name ? name : "");
  e->t.lines += lines;
  e->t.bytes += bytes;
  e->t.errors += errors;
  e->t.repeated += repeated;
  e->t.recovered += recovered;
  if (newest > e->t.newest) e->t.newest = newest;
}

const retired_counts_t *retired_find(const retired_t *l, const char *id) {
  const lentry_t *e = find(l, id);
  return e ? &e->t : NULL;
}

void retired_each(const retired_t *l, void (*fn)(void *ud, const retired_counts_t *t), void *ud) {
  for (const lentry_t *e = l->oldest; e; e = e->newer) fn(ud, &e->t);
}

void retired_free(retired_t *l) {
  if (!l) return;
  for (lentry_t *e = l->oldest, *next; e; e = next) {
    next = e->newer; /* read before e is freed */
    free(e);
  }
  free(l);
}
