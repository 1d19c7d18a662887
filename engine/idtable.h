/* idtable.h - a hash table of entries keyed by container id: the
 * registry's readers, the checkpoint's cursors, the retired readers' totals.
 *
 * Intrusive: an entry embeds an idlink_t and keeps its id itself (the link
 * points at it); the table never allocates, so adding cannot fail. Chained
 * buckets on an FNV-1a hash of the id. Not thread-safe: one thread at a
 * time. */
#ifndef ENGINE_IDTABLE_H
#define ENGINE_IDTABLE_H

#include <stddef.h>

#define IDTABLE_BUCKETS 1024

typedef struct idlink {
  struct idlink *next;
  const char *id; /* the entry's own id, which must outlive the link */
} idlink_t;

typedef struct idtable {
  idlink_t *buckets[IDTABLE_BUCKETS];
  size_t count;
} idtable_t;

/* The entry of type `type` whose member `member` is the link l. */
#define IDTABLE_ENTRY(l, type, member) ((type *)(void *)((char *)(l)-offsetof(type, member)))

/* Adds l under id (an id not in the table yet; id must be the entry's). */
void idtable_add(idtable_t *t, idlink_t *l, const char *id);

/* The link under id, or NULL. */
idlink_t *idtable_find(const idtable_t *t, const char *id);

/* Takes l (in the table) out. */
void idtable_remove(idtable_t *t, idlink_t *l);

/* Every link, in no particular order: first, then next until NULL. The
 * current link may be removed once its next was taken. */
idlink_t *idtable_first(const idtable_t *t);
idlink_t *idtable_next(const idtable_t *t, const idlink_t *l);

#endif
