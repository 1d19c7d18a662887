/* occurrence.h - how many equal lines a log stream returned before a line,
 * the occurrence part of its record id (batch.h).
 *
 * A line's record id must come out the same whenever the line is read
 * again: after a reconnect, and after a restart from a checkpoint. Its
 * occurrence is the number of lines with the same key (ts, stream, len,
 * hash) that the current connection returned before it, counting the lines
 * it delivers and the lines it drops as delivered before (CURSOR_REPLAYED),
 * not the copies the daemon repeats within one stream (CURSOR_REPEATED: a
 * re-read of the log has none). That count belongs to the log, not to the
 * read:
 *  - every connection asks for the lines from a `since` on, and the daemon
 *    returns every line stamped at or after it, in the log's order;
 *  - lines with one key share one timestamp, so a connection returns
 *    either every copy of a key that precedes a line, or none of them and
 *    not the line either.
 * So the first read, a reconnect and a restart give a line the same count,
 * whether the cursor (cursor.h) then delivers it or drops it.
 *
 * Within one connection each stream's timestamps only grow, so one block
 * of counts per stream, for its newest timestamp, is enough; a line older
 * than the block (the daemon going back, all of it CURSOR_REPEATED or
 * dropped) is given 0 and changes nothing. Loop thread only. */
#ifndef ENGINE_OCCURRENCE_H
#define ENGINE_OCCURRENCE_H

#include <stdint.h>
#include "cursor.h"

typedef struct occurrence occurrence_t;

/* Returns empty counts, or NULL when out of memory. */
occurrence_t *occurrence_new(void);
void occurrence_free(occurrence_t *o);

/* Forgets every count: call when a connection starts. Can't fail. */
void occurrence_clear(occurrence_t *o);

/* Counts the line with key k (in the order the stream returned it) and
 * stores in *n how many lines of its key came before it. Returns 0, or -1
 * when out of memory (*n is then 0 and the line is not counted). */
int occurrence_count(occurrence_t *o, const cursor_key_t *k, uint32_t *n);

/* What a reader does with each line the stream returns: classifies it with
 * cursor_seen (flags as there) and, unless it is CURSOR_REPEATED, counts
 * it (occurrence_count) into *n. Returns cursor_seen's verdict; *oom is
 * set to 1 when the count ran out of memory, else left alone. */
int occurrence_seen(occurrence_t *o, cursor_t *c, const cursor_key_t *k, unsigned flags,
                    uint32_t *n, int *oom);

#endif
