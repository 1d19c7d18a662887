/* backoff.c - exponential backoff with jitter (see backoff.h). */
#include <stdlib.h>
#include "backoff.h"

void backoff_init(backoff_t *b, double initial, double max) {
  b->initial = initial;
  b->max = max < initial ? initial : max;
  b->step = initial;
}

void backoff_reset(backoff_t *b) { b->step = b->initial; }

double backoff_next(backoff_t *b) {
  double delay = b->step * (0.5 + 0.5 * ((double)rand() / RAND_MAX));
  b->step *= 2;
  if (b->step > b->max) b->step = b->max;
  return delay;
}
