/* throttle.c - the read throttle of a slow follow stream (see throttle.h). */
#include "throttle.h"

void throttle_init(throttle_t *t, uint64_t now_ms) {
  t->win_start = now_ms;
  t->win_bytes = 0;
  t->busy = 0;
}

unsigned throttle_after(throttle_t *t, unsigned delay_ms, size_t bytes, uint64_t now_ms) {
  if (delay_ms == 0 || bytes == 0) return 0;
  uint64_t span = now_ms - t->win_start;
  t->win_bytes += bytes;
  if (span >= delay_ms) {
    t->busy = (uint64_t)t->win_bytes * delay_ms >= (uint64_t)THROTTLE_SMALL_READ * span;
    t->win_start = now_ms;
    t->win_bytes = 0;
  }
  return !t->busy && bytes < THROTTLE_SMALL_READ ? delay_ms : 0;
}
