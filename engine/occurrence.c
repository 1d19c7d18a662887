/* occurrence.c - counts of equal lines (see occurrence.h). */
#include <stdlib.h>
#include <string.h>
#include "decode.h"
#include "occurrence.h"

/* One key's count; n 0: a free slot. */
typedef struct slot {
  uint64_t hash;
  uint32_t len;
  uint32_t n;
} slot_t;

/* The keys of one stream's newest timestamp: an open-addressing table of
 * cap slots (a power of two, at most half used), or none (cap 0). */
typedef struct block {
  int64_t ts;
  slot_t *slot;
  size_t cap, used;
} block_t;

struct occurrence {
  block_t b[2]; /* stdout, stderr */
};

#define SMALL 16 /* slots a block keeps when it moves on; a bigger table is freed */

occurrence_t *occurrence_new(void) { return calloc(1, sizeof(occurrence_t)); }

void occurrence_clear(occurrence_t *o) {
  for (int i = 0; i < 2; i++) {
    free(o->b[i].slot);
    o->b[i] = (block_t){0};
  }
}

void occurrence_free(occurrence_t *o) {
  if (!o) return;
  occurrence_clear(o);
  free(o);
}

/* Starts the block of timestamp ts. */
static void block_reset(block_t *b, int64_t ts) {
  if (b->cap > SMALL) {
    free(b->slot);
    b->slot = NULL;
    b->cap = 0;
  } else if (b->used) {
    memset(b->slot, 0, b->cap * sizeof *b->slot);
  }
  b->used = 0;
  b->ts = ts;
}

static slot_t *find(slot_t *slot, size_t cap, uint64_t hash, uint32_t len) {
  size_t i = (size_t)(hash ^ (hash >> 29) ^ len) & (cap - 1);
  while (slot[i].n && (slot[i].hash != hash || slot[i].len != len)) i = (i + 1) & (cap - 1);
  return &slot[i];
}

/* Makes room for one more key. Returns 0, or -1 when out of memory. */
static int grow(block_t *b) {
  if (b->cap && (b->used + 1) * 2 <= b->cap) return 0;
  size_t cap = b->cap ? b->cap * 2 : SMALL;
  slot_t *slot = calloc(cap, sizeof *slot);
  if (!slot) return -1;
  for (size_t i = 0; i < b->cap; i++)
    if (b->slot[i].n) *find(slot, cap, b->slot[i].hash, b->slot[i].len) = b->slot[i];
  free(b->slot);
  b->slot = slot;
  b->cap = cap;
  return 0;
}

int occurrence_count(occurrence_t *o, const cursor_key_t *k, uint32_t *n) {
  block_t *b = &o->b[k->stream == DECODE_STDERR];
  *n = 0;
  if (b->cap == 0 || k->ts > b->ts) block_reset(b, k->ts);
  else if (k->ts < b->ts) return 0;
  if (grow(b) != 0) return -1;
  slot_t *s = find(b->slot, b->cap, k->hash, k->len);
  if (!s->n) {
    s->hash = k->hash;
    s->len = k->len;
    b->used++;
  }
  *n = s->n++;
  return 0;
}

int occurrence_seen(occurrence_t *o, cursor_t *c, const cursor_key_t *k, unsigned flags,
                    uint32_t *n, int *oom) {
  int seen = cursor_seen(c, k, flags);
  *n = 0;
  if (seen != CURSOR_REPEATED && occurrence_count(o, k, n) != 0) *oom = 1;
  return seen;
}
