/* timestamp.h - Docker's RFC3339Nano timestamps, exact to the nanosecond.
 *
 * Times are int64 nanoseconds since the Unix epoch, UTC. Nothing here goes
 * through a double. Pure functions: no allocation, no global state. */
#ifndef ENGINE_TIMESTAMP_H
#define ENGINE_TIMESTAMP_H

#include <stddef.h>
#include <stdint.h>

/* Length of the canonical form "2006-01-02T15:04:05.000000000Z". */
#define TS_LEN 30

/* Parses an RFC3339 timestamp at the start of s[0..len): a date, 'T', a time,
 * an optional fraction of 1 to 9 digits, and 'Z' or a "+hh:mm"/"-hh:mm"
 * offset. On success stores the UTC nanoseconds in *ns and the number of
 * bytes consumed in *used (the timestamp only, not a following space) and
 * returns 0. Returns -1 when the text is not such a timestamp or is out of
 * range (years 1678 to 2261 fit in int64 nanoseconds). */
int ts_parse(const char *s, size_t len, int64_t *ns, size_t *used);

/* Writes the canonical UTC form of ns (TS_LEN chars) and a NUL into out.
 * Can't fail for times in range; out must hold TS_LEN + 1 bytes. */
void ts_format(int64_t ns, char out[TS_LEN + 1]);

/* Writes ns as the Docker API's "SECONDS.NANOSECONDS" query form (for
 * `since` and `until`) into out (at least 32 bytes). Negative times give
 * "0.000000000". */
void ts_format_since(int64_t ns, char out[32]);

/* The current wall-clock time in nanoseconds. */
int64_t ts_now(void);

#endif
