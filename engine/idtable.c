/* idtable.c - entries by container id (see idtable.h). */
#include <string.h>
#include "check.h"
#include "hash.h"
#include "idtable.h"

static unsigned bucket_of(const char *id) {
  return (unsigned)(hash_fnv64(HASH_FNV64_OFFSET, id, strlen(id)) % IDTABLE_BUCKETS);
}

void idtable_add(idtable_t *t, idlink_t *l, const char *id) {
  ENGINE_CHECK(!idtable_find(t, id)); /* one entry per id */
  unsigned b = bucket_of(id);
  l->id = id;
  l->next = t->buckets[b];
  t->buckets[b] = l;
  t->count++;
}

idlink_t *idtable_find(const idtable_t *t, const char *id) {
  for (idlink_t *l = t->buckets[bucket_of(id)]; l; l = l->next)
    if (strcmp(l->id, id) == 0) return l;
  return NULL;
}

void idtable_remove(idtable_t *t, idlink_t *l) {
  idlink_t **p = &t->buckets[bucket_of(l->id)];
  while (*p && *p != l) p = &(*p)->next;
  if (!*p) return;
  *p = l->next;
  l->next = NULL;
  t->count--;
}

static idlink_t *from_bucket(const idtable_t *t, unsigned b) {
  for (; b < IDTABLE_BUCKETS; b++)
    if (t->buckets[b]) return t->buckets[b];
  return NULL;
}

idlink_t *idtable_first(const idtable_t *t) { return from_bucket(t, 0); }

idlink_t *idtable_next(const idtable_t *t, const idlink_t *l) {
  return l->next ? l->next : from_bucket(t, bucket_of(l->id) + 1);
}
