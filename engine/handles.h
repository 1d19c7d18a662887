/* handles.h - the count of open libuv handles.
 *
 * Every libuv handle the engine initialises is counted with handles_opened right
 * after its successful uv_*_init, and every close callback calls handles_closed.
 * A clean stop ends with handles_live() == 0 and uv_loop_close() == 0; the specs
 * check both. The count is per process and thread-safe. */
#ifndef ENGINE_HANDLES_H
#define ENGINE_HANDLES_H

#include <uv.h>

void handles_opened(uv_handle_t *h);
void handles_closed(uv_handle_t *h);
long handles_live(void);

/* uv_close(h, cb) unless h is already closing. Returns 1 when it closed. */
int handles_close(uv_handle_t *h, uv_close_cb cb);

#endif
