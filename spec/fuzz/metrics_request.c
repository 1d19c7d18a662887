/* metrics_request.c - libFuzzer target for the metrics endpoint's request
 * parser (engine/metrics_request.c).
 *
 * Input: byte 0 seeds the slicing; the rest (up to METRICS_REQ_MAX bytes) is
 * what a client sends. The bytes are fed as the server reads them: appended
 * to a fixed buffer, the parser called after each read until it answers.
 * The feed runs three times: in one piece, one byte at a time and in slices
 * whose lengths come from the seed. The three must give the same answer
 * (code, path, HEAD or not), and every answer must be one of the documented
 * ones. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

typedef struct run {
  metrics_request_t r;
  size_t used; /* bytes fed when the parser answered (or all of them) */
  int done;
} run_t;

static void check(const metrics_request_t *r, int rc, size_t len)
{
  if (rc != r->code)
    abort();
  switch (r->code) {
  case 200:
    if (r->path < METRICS_PATH_HEALTH || r->path > METRICS_PATH_TAP)
      abort();
    if (r->query_len && r->query + r->query_len > len)
      abort(); /* the query lies inside the head */
    break;
  case 431:
    if (len < METRICS_REQ_MAX)
      abort();
    /* fall through */
  case 400:
  case 404:
  case 405:
    if (r->path != 0)
      abort();
    break;
  default:
    abort();
  }
  if ((r->code == 400 || r->code == 405 || r->code == 431) && r->head_only)
    abort(); /* HEAD is only noted for a request that got as far as its path */
}

/* Feeds data in slices (step 0: one piece; else lengths from the seed). */
static void feed(run_t *run, const uint8_t *data, size_t n, unsigned seed, int bytewise)
{
  static char buf[METRICS_REQ_MAX];
  size_t len = 0;
  memset(run, 0, sizeof *run);
  while (len < n) {
    size_t step = n - len;
    if (bytewise) {
      step = 1;
    } else if (seed) {
      seed = seed * 1103515245u + 12345u;
      size_t s = 1 + (seed >> 16) % 97;
      if (s < step)
        step = s;
    }
    memcpy(buf + len, data + len, step);
    len += step;
    int rc = metrics_request_parse(buf, len, &run->r);
    if (rc != 0) {
      check(&run->r, rc, len);
      run->done = 1;
      break;
    }
    if (run->r.code != 0 || run->r.path != 0 || run->r.head_only != 0)
      abort();
  }
  run->used = len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  unsigned seed = data[0] | 1u;
  data++;
  size--;
  if (size > METRICS_REQ_MAX)
    size = METRICS_REQ_MAX;
  run_t whole, bytes, sliced;
  feed(&whole, data, size, 0, 0);
  feed(&bytes, data, size, 0, 1);
  feed(&sliced, data, size, seed, 0);
  if (whole.done != bytes.done || whole.done != sliced.done)
    abort();
  if (memcmp(&whole.r, &bytes.r, sizeof whole.r) != 0 ||
      memcmp(&whole.r, &sliced.r, sizeof whole.r) != 0)
    abort();
  if (sliced.used < bytes.used)
    abort(); /* the byte-wise feed answers at the first possible byte */
  return 0;
}
