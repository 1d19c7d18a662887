/* batch.c - batches of lines (see batch.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "batch.h"
#include "hash.h"

batch_t *batch_new(container_t *c) {
  batch_t *b = calloc(1, sizeof *b);
  if (!b) return NULL;
  atomic_init(&b->refs, 1);
  b->container = container_ref(c);
  b->floor_ts = INT64_MAX;
  return b;
}

int batch_reserve(batch_t *b, size_t lines, size_t bytes) {
  if (lines > SIZE_MAX / sizeof *b->recs - b->n || bytes > UINT32_MAX - b->used) return -1;
  if (b->n + lines > b->cap) {
    batch_rec_t *r = realloc(b->recs, (b->n + lines) * sizeof *r);
    if (!r) return -1;
    b->recs = r;
    b->cap = b->n + lines;
  }
  if (b->used + bytes > b->bytes_cap) {
    char *p = realloc(b->bytes, b->used + bytes);
    if (!p) return -1;
    b->bytes = p;
    b->bytes_cap = b->used + bytes;
  }
  return 0;
}

int batch_add(batch_t *b, int64_t ts, int stream, unsigned flags, const char *data, size_t len) {
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
  b->recs[b->n++] = (batch_rec_t){.ts = ts,
                                  .off = (uint32_t)b->used,
                                  .len = (uint32_t)len,
                                  .stream = (uint8_t)stream,
                                  .flags = (uint8_t)flags};
  b->used += len;
  return 0;
}

/* Appends v as n little-endian bytes to p; returns the next position. */
static unsigned char *put_le(unsigned char *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++) *p++ = (unsigned char)(v >> (8 * i));
  return p;
}

/* A 64-bit avalanche finish (every input bit reaches every output bit). */
static uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBULL;
  x ^= x >> 31;
  return x;
}

void batch_rec_id(const batch_t *b, size_t i, char out[BATCH_ID_LEN + 1]) {
  static const char hex[] = "0123456789abcdef";
  const batch_rec_t *r = &b->recs[i];
  const char *cid = b->container ? b->container->id : "";
  uint64_t hash = r->hash;
  if (hash == 0) hash = hash_fnv64(HASH_FNV64_OFFSET, b->bytes + r->off, r->len);
  /* ts, stream, len, hash, occ: 8 + 1 + 4 + 8 + 4 bytes */
  unsigned char v[25], *p = v;
  p = put_le(p, (uint64_t)r->ts, 8);
  p = put_le(p, r->stream, 1);
  p = put_le(p, r->len, 4);
  p = put_le(p, hash, 8);
  put_le(p, r->occ, 4);
  /* The lanes after the container id (with its NUL), kept per thread for
   * the last id: the records of a batch share it. */
  static _Thread_local char last_id[sizeof b->container->id];
  static _Thread_local uint64_t last_a, last_c;
  static _Thread_local int have_last;
  size_t clen = strlen(cid);
  uint64_t a, c;
  if (have_last && clen < sizeof last_id && memcmp(last_id, cid, clen + 1) == 0) {
    a = last_a;
    c = last_c;
  } else {
    a = hash_fnv64(HASH_FNV64_OFFSET, cid, clen + 1);
    c = hash_fnv64(0x6c62272e07bb0142ULL, cid, clen + 1);
    if (clen < sizeof last_id) {
      memcpy(last_id, cid, clen + 1);
      last_a = a;
      last_c = c;
      have_last = 1;
    }
  }
  a = hash_fnv64(a, v, sizeof v);
  c = hash_fnv64(c, v, sizeof v);
  uint64_t hi = mix64(a), lo = mix64(c ^ (hi * 0x9E3779B97F4A7C15ULL));
  for (int k = 0; k < 16; k++) {
    out[k] = hex[(hi >> (60 - 4 * k)) & 15];
    out[16 + k] = hex[(lo >> (60 - 4 * k)) & 15];
  }
  out[BATCH_ID_LEN] = '\0';
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
