/* throttle.h - the read throttle of a slow follow stream (docker.read_delay).
 *
 * The daemon writes and flushes each log line, so a stream read as data
 * comes costs one read (and one wake-up) per line. A slow stream is better
 * read a few lines at a time: after a small read its socket rests for the
 * delay before it is read again. Whether a stream is slow is judged by its
 * rate, once per delay: a busy stream's reads are small too when they keep
 * up with it, and resting it would hold it to what the socket buffers per
 * delay, so a stream that brought THROTTLE_SMALL_READ bytes or more per
 * delay in its last delay-long window is read as data comes.
 *
 * The policy only: the HTTP client (http.c) keeps one throttle_t per socket,
 * asks throttle_after after each read that brought body bytes, and rests
 * the socket for what it answers. Pure functions of their arguments; no
 * thread of their own. */
#ifndef ENGINE_THROTTLE_H
#define ENGINE_THROTTLE_H

#include <stddef.h>
#include <stdint.h>

/* A read smaller than this may make the socket rest. */
#define THROTTLE_SMALL_READ 4096

typedef struct throttle {
  uint64_t win_start; /* ms: the current rate window began */
  size_t win_bytes;   /* bytes read in the window */
  int busy;           /* brought THROTTLE_SMALL_READ or more per delay in the
                         last window: read as data comes */
} throttle_t;

/* A throttle whose first window starts at now_ms. */
void throttle_init(throttle_t *t, uint64_t now_ms);

/* After a read of bytes (> 0) at now_ms on a stream with delay_ms (0: no
 * throttle): how long the socket should rest before it is read again, in
 * ms (0: read on as data comes). */
unsigned throttle_after(throttle_t *t, unsigned delay_ms, size_t bytes, uint64_t now_ms);

#endif
