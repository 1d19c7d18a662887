/* batch.h - a batch of lines from one container, on its way to the filters.
 *
 * A batch is built on the loop thread by the container's reader, then handed
 * whole to the pipeline thread (pipeline_submit), which owns and frees it.
 * Lines are stored back to back in one byte buffer, with a small record per
 * line, so a batch is two allocations whatever its size.
 *
 * A batch is reference-counted (atomic counts): the Lua records made from it
 * (record.h) hold a reference while the Lua state holds any of them, so
 * their lines are read from the batch itself, never copied. A batch is not
 * changed once submitted. */
#ifndef ENGINE_BATCH_H
#define ENGINE_BATCH_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "container.h"

typedef struct batch_rec {
  int64_t ts;    /* UTC ns */
  uint64_t hash; /* the line's cursor key hash (0 when not from a reader) */
  uint32_t off;  /* offset of the line in bytes */
  uint32_t len;
  uint32_t occ;   /* lines with the same ts, stream, len and hash that the
                      stream returned before this one (reader.c) */
  uint8_t stream; /* DECODE_STDOUT or DECODE_STDERR */
  uint8_t flags;  /* DECODE_* flags */
} batch_rec_t;

typedef struct batch {
  atomic_int refs;        /* use batch_ref/batch_free */
  struct batch *next;     /* queue link, owned by whoever queues it */
  container_t *container; /* one reference held by the batch */
  batch_rec_t *recs;
  size_t n, cap;
  char *bytes;
  size_t used, bytes_cap;
  int64_t floor_ts;         /* oldest line still being assembled when the batch
                              was cut (INT64_MAX: none); a resume starts there */
  int undelivered;          /* came back from the pipeline without every output
                              taking it (inflight.h): not to be acknowledged */
  struct batch *order_next; /* inflight.c's list in submission order */
  int finished;             /* inflight.c: came back (loop thread) */
} batch_t;

/* Returns an empty batch holding a new reference to c, or NULL when out of
 * memory. */
batch_t *batch_new(container_t *c);
/* Makes room for lines more lines of bytes more bytes in all, so that
 * adding them allocates nothing (a reader sizes each batch like its last
 * one: growing a batch by doubling copies its lines about once more and
 * leaves up to half of its buffer unused). Returns 0, or -1 when out of
 * memory (the batch is then unchanged; batch_add still grows it). */
int batch_reserve(batch_t *b, size_t lines, size_t bytes);

/* Appends a line. Returns 0, or -1 when out of memory (the batch is then
 * unchanged). */
int batch_add(batch_t *b, int64_t ts, int stream, unsigned flags, const char *data, size_t len);

/* The record id of a line: BATCH_ID_LEN lowercase hex digits naming it
 * wherever and however often it is read. It is a 128-bit hash of the
 * container's full id, the line's timestamp (ns), its stream, its length,
 * the hash of its bytes (the cursor key hash, or when the line did not come
 * from a reader (hash 0) a 64-bit FNV-1a of the bytes) and its occurrence
 * (batch_rec_t.occ): two FNV-1a lanes with different offset bases over
 * those values in a fixed little-endian layout, each finished with a
 * 64-bit avalanche mix, written high lane first. Not cryptographic: it
 * tells lines apart, it does not authenticate them. */
#define BATCH_ID_LEN 32

/* Writes line i's id and a NUL into out. Can't fail. */
void batch_rec_id(const batch_t *b, size_t i, char out[BATCH_ID_LEN + 1]);

/* Takes another reference to b. Returns b. */
batch_t *batch_ref(batch_t *b);

/* Drops a reference; the last one frees the batch and drops its container
 * reference. NULL is ignored. */
void batch_free(batch_t *b);

#endif
