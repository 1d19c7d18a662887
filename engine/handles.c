/* handles.c - the count of open libuv handles (see handles.h). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include "check.h"
#include "handles.h"

static atomic_long live;

void handles_opened(uv_handle_t *h) {
  (void)h;
  atomic_fetch_add(&live, 1);
}

void handles_closed(uv_handle_t *h) {
  (void)h;
  long was = atomic_fetch_sub(&live, 1);
  ENGINE_CHECK(was > 0); /* closed more often than opened */
  (void)was;
}

#ifdef ENGINE_CHECKS
void engine_check_failed(const char *what, const char *file, int line) {
  fprintf(stderr, "engine: invariant broken at %s:%d: %s\n", file, line, what);
  abort();
}
#endif

long handles_live(void) { return atomic_load(&live); }

int handles_close(uv_handle_t *h, uv_close_cb cb) {
  if (uv_is_closing(h)) return 0;
  uv_close(h, cb);
  return 1;
}
