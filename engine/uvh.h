/* uvh.h - the count of open libuv handles.
 *
 * Every libuv handle the engine initialises is counted with uvh_opened right
 * after its successful uv_*_init, and every close callback calls uvh_closed.
 * A clean stop ends with uvh_live() == 0 and uv_loop_close() == 0; the specs
 * check both. The count is per process and thread-safe. */
#ifndef ENGINE_UVH_H
#define ENGINE_UVH_H

#include <uv.h>

void uvh_opened(uv_handle_t *h);
void uvh_closed(uv_handle_t *h);
long uvh_live(void);

/* uv_close(h, cb) unless h is already closing. Returns 1 when it closed. */
int uvh_close(uv_handle_t *h, uv_close_cb cb);

#endif
