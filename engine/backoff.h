/* backoff.h - exponential backoff with jitter, for every retry in the
 * engine (readers, the events stream, outputs).
 *
 * Each delay is the current step times a random factor in [0.5, 1], so
 * that clients failing together do not retry together; the step then
 * doubles, up to max. A success resets it to initial. Plain values: any
 * thread, as long as one thread uses a given backoff_t. */
#ifndef ENGINE_BACKOFF_H
#define ENGINE_BACKOFF_H

typedef struct backoff {
  double initial, max; /* seconds */
  double step;         /* the next delay before jitter */
} backoff_t;

/* Sets b up at its initial step. */
void backoff_init(backoff_t *b, double initial, double max);

/* Back to the initial step (after a success). */
void backoff_reset(backoff_t *b);

/* The delay to wait now, in seconds: step * [0.5, 1]; then the step
 * doubles, up to max. */
double backoff_next(backoff_t *b);

#endif
