/* decode.c - libFuzzer target for the frame demultiplexer and the line
 * assembler (engine/decode.c).
 *
 * Input: byte 0 picks the mode (raw or multiplexed) and the limits, byte 1
 * seeds the slicing; the rest is the stream. The stream is decoded twice:
 * once in one piece, once cut into slices whose lengths come from the seed.
 * Both runs must give the same lines, the same status and the same end
 * (decoder_finish), and every line must respect the documented bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"

#define MAX_LINES 4096

typedef struct rec {
  int stream;
  int64_t ts;
  size_t len;
  uint64_t hash;
  unsigned flags;
} rec_t;

typedef struct run {
  const decoder_t *d;
  rec_t lines[MAX_LINES];
  size_t n;
  size_t dropped; /* lines past MAX_LINES: counted, not kept */
} run_t;

static uint64_t hash_bytes(const char *p, size_t n)
{
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)p[i];
    h *= 1099511628211ULL;
  }
  return h;
}

static void on_line(void *ud, const decode_line_t *l)
{
  run_t *r = ud;
  if (l->stream < DECODE_STDOUT || l->stream > DECODE_SYSERR)
    abort();
  if (l->len > r->d->line_max)
    abort(); /* a piece is never longer than line_max */
  if (l->len > 0 && l->data == NULL)
    abort();
  if (l->flags & ~(unsigned)(DECODE_TRUNCATED | DECODE_UNTERMINATED))
    abort();
  if (l->stream == DECODE_SYSERR && l->ts != 0)
    abort();
  if (r->n == MAX_LINES) {
    r->dropped++;
    return;
  }
  rec_t *rec = &r->lines[r->n++];
  rec->stream = l->stream;
  rec->ts = l->ts;
  rec->len = l->len;
  rec->hash = hash_bytes(l->data, l->len);
  rec->flags = l->flags;
}

/* The decoder's buffers never grow past their caps. */
static void check_bounds(const decoder_t *d)
{
  size_t frame_cap = d->frame_max > 64 ? d->frame_max : 64;
  if (d->frame.cap > frame_cap)
    abort();
  for (int s = 0; s < 3; s++)
    if (d->part[s].buf.cap > d->line_max + 1 || d->part[s].buf.len > d->line_max + 1)
      abort();
}

static const size_t line_maxes[8] = {1, 2, 3, 4, 7, 16, 100, 1024 * 1024};
static const size_t frame_maxes[4] = {16, 64, 300, 1024 * 1024};

/* Decodes data, in slices when seed != 0. Returns the feed status. */
static int decode(run_t *r, int raw, size_t line_max, size_t frame_max,
                  const uint8_t *data, size_t size, unsigned seed)
{
  decoder_t d;
  decoder_init(&d, raw, frame_max, line_max, on_line, r);
  r->d = &d;
  r->n = r->dropped = 0;
  int rc = 0;
  size_t pos = 0;
  while (pos < size && rc == 0) {
    size_t take = size - pos;
    if (seed) {
      seed = seed * 1103515245u + 12345u;
      take = 1 + (seed >> 16) % 37;
      if (take > size - pos)
        take = size - pos;
    }
    /* A copy of exactly the slice, so reads past it are caught. */
    char *slice = malloc(take);
    if (!slice)
      abort();
    memcpy(slice, data + pos, take);
    rc = decoder_feed(&d, slice, take);
    free(slice);
    check_bounds(&d);
    pos += take;
  }
  if (rc == 0) {
    decoder_finish(&d);
    if (decoder_pending_ts(&d) != INT64_MAX)
      abort(); /* nothing is pending after the end */
  } else if (d.error[0] == '\0') {
    abort(); /* an error always says what it is */
  }
  decoder_free(&d);
  return rc;
}

static int same(const rec_t *a, const rec_t *b)
{
  return a->stream == b->stream && a->ts == b->ts && a->len == b->len &&
         a->hash == b->hash && a->flags == b->flags;
}

static run_t whole, sliced;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 2)
    return 0;
  int raw = data[0] & 1;
  size_t line_max = line_maxes[(data[0] >> 1) & 7];
  size_t frame_max = frame_maxes[(data[0] >> 4) & 3];
  unsigned seed = data[1] | 1u;
  data += 2;
  size -= 2;

  int rc1 = decode(&whole, raw, line_max, frame_max, data, size, 0);
  int rc2 = decode(&sliced, raw, line_max, frame_max, data, size, seed);
  if (rc1 != rc2 || whole.n != sliced.n || whole.dropped != sliced.dropped)
    abort();
  for (size_t i = 0; i < whole.n; i++)
    if (!same(&whole.lines[i], &sliced.lines[i]))
      abort();
  return 0;
}
