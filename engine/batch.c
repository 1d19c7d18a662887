/* batch.c - batches of lines (see batch.h). */
#include <stdlib.h>
#include <string.h>
#include "batch.h"

batch_t *batch_new(container_t *c) {
  batch_t *b = calloc(1, sizeof *b);
  if (!b) return NULL;
  atomic_init(&b->refs, 1);
  b->container = container_ref(c);
  b->floor_ts = INT64_MAX;
  return b;
}

int batch_add(batch_t *b, int64_t ts, int stream, unsigned flags, const char *data,
              size_t len) {
  if (len > UINT32_MAX || b->used + len > UINT32_MAX) return -1;
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 16;
    batch_rec_t *r = realloc(b->recs, cap * sizeof *r);
    if (!r) return -1;
    b->recs = r;
    b->cap = cap;
  }
  if (b->used + len > b->bytes_cap) {
    size_t cap = b->bytes_cap ? b->bytes_cap : 1024;
    while (cap < b->used + len) cap *= 2;
    char *p = realloc(b->bytes, cap);
    if (!p) return -1;
    b->bytes = p;
    b->bytes_cap = cap;
  }
  if (len) memcpy(b->bytes + b->used, data, len);
  b->recs[b->n++] = (batch_rec_t){.ts = ts, .off = (uint32_t)b->used,
                                  .len = (uint32_t)len, .stream = (uint8_t)stream,
                                  .flags = (uint8_t)flags};
  b->used += len;
  return 0;
}

batch_t *batch_ref(batch_t *b) {
  atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
  return b;
}

void batch_free(batch_t *b) {
  if (!b) return;
  if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1) return;
  container_unref(b->container);
  free(b->recs);
  free(b->bytes);
  free(b);
}
