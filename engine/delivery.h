/* delivery.h - the loop side of the outputs: the set of outputs that take
 * a pipeline's records, their start, their wake-ups, their hand-over at a
 * reload, and their close.
 *
 * The pipeline owns one delivery (pipeline_start_outputs) and the delivery
 * owns every output it took, until it closes and frees it. Outputs wake the
 * delivery through one uv_async_t when the pipeline thread hands them a
 * body.
 *
 * A reload hands over the new program's outputs that the old one did not
 * have (started on the loop; one that cannot start is tried again every
 * second, its bodies waiting) and the old program's outputs that the new one
 * dropped. A dropped output gets `grace` to deliver what it holds; what is
 * left then goes to its dead-letter file (or is logged and dropped when it
 * has none), and it is closed. Outputs whose name and settings did not
 * change are kept as they are, with their queues.
 *
 * Threads: delivery_handover and delivery_reopen from any thread; everything
 * else on the loop thread. */
#ifndef ENGINE_DELIVERY_H
#define ENGINE_DELIVERY_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "output.h"

typedef struct delivery delivery_t;

/* Returns NULL when out of memory. grace_ms: what a dropped output gets. */
delivery_t *delivery_new(uv_loop_t *loop, uint64_t grace_ms);

/* Takes the outputs and starts them. Returns 0, or -1 with the first
 * failure in err (the outputs are taken either way: delivery_close closes
 * them). */
int delivery_start(delivery_t *d, output_t *const *outs, size_t n, char *err, size_t errlen);

/* Any thread: outputs to take and start, and outputs to let go (see
 * above). Out of memory: logged, the outputs to add are freed and those to
 * let go stay. */
void delivery_handover(delivery_t *d, output_t *const *add, size_t n_add, output_t *const *drop,
                       size_t n_drop);

/* Any thread: every output reopens its destination and dead-letter file
 * before it writes what is handed over after this call. */
void delivery_reopen(delivery_t *d);

/* Bodies held by all outputs, those being dropped included. */
size_t delivery_pending(delivery_t *d);

/* The outputs now taking records (those being dropped left out), at most
 * max into out; returns how many there are. */
size_t delivery_outputs(delivery_t *d, output_t **out, size_t max);

/* Lets the outputs deliver what they hold for up to grace_ms, then closes
 * them (what is left stays unacknowledged: the next run reads it again),
 * frees them and closes the delivery's handles. closed(ud) runs once all
 * is closed; d is freed by then. */
void delivery_close(delivery_t *d, uint64_t grace_ms, void (*closed)(void *ud), void *ud);

#endif
