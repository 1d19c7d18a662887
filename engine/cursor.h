/* cursor.h - where a container's stream resumes, and which replayed lines
 * were delivered already.
 *
 * Docker's `since` is inclusive and stdout/stderr timestamps are not
 * monotonic, so a reconnect asks for lines from a margin before the newest
 * delivered timestamp and drops the ones already delivered. The cursor keeps
 * a window of recently delivered lines as keys (ts, stream, len, hash) with
 * their multiplicity: a key seen twice (two chunks of one split line, or two
 * identical lines in one nanosecond) is skipped twice on replay, no more.
 *
 * The window covers at least [newest - margin, newest] and everything from
 * the floor passed to cursor_deliver (the oldest line still being assembled),
 * up to max_keys entries; when max_keys forces out older keys, the resume
 * point moves past them, so a replay never repeats a line (at worst a line
 * stamped more than the window behind the newest one is not replayed).
 *
 * The same window drops lines the daemon repeats inside one live stream:
 * json-file (and local) follow streams send a run of earlier lines again,
 * with their timestamps, where the log file rotated. Each stream (stdout,
 * stderr) is monotonic on its own, so a line newer than the newest one
 * delivered on its stream is new, and cursor_seen decides that with one
 * comparison. Only a line not newer than that is looked up:
 *  - a line older than the last one the connection returned on its stream
 *    means the daemon went back: every delivered key of that stream becomes
 *    skippable once per delivery again (a new pass, like a replay);
 *  - a delivered key with a copy left to skip in the current pass is
 *    dropped; a delivered key stamped strictly before the newest line of
 *    its stream is dropped even without one (it cannot be a new line);
 *  - the newest line of its stream once more (same key) is a repeat,
 *    except when its timestamp has whole-second precision (Podman: `ping
 *    ok` twice in one second is two lines) or it is a piece of a line cut
 *    at line_max (CURSOR_PIECE: equal pieces of one line);
 *  - anything else is new: identical lines with identical timestamps that
 *    the container wrote are kept as often as they were written, as in a
 *    replay. A lone repeat of the newest line at whole-second precision
 *    cannot be told from a new line and is delivered.
 * The index a pass needs lives while one of its streams has not moved past
 * the newest line it had (or until its keys leave the window), so a stream
 * that is not replaying pays nothing but the comparison.
 *
 * A cursor lives as long as the engine knows the container (across stream
 * cycles, container restarts and daemon restarts); it serves one stream at
 * a time. Loop thread only. */
#ifndef ENGINE_CURSOR_H
#define ENGINE_CURSOR_H

#include <stddef.h>
#include <stdint.h>

typedef struct cursor_key {
  int64_t ts;
  uint64_t hash; /* hash of the line's bytes */
  uint32_t len;
  uint8_t stream;
} cursor_key_t;

typedef struct cursor cursor_t;

#define CURSOR_MARGIN_DEFAULT_NS 1000000000LL /* 1 s */
#define CURSOR_MAX_KEYS_DEFAULT 65536

/* Returns a new, empty cursor (nothing delivered: cursor_since gives -1), or
 * NULL when out of memory. */
cursor_t *cursor_new(int64_t margin_ns, size_t max_keys);
void cursor_free(cursor_t *c);

/* Builds the key of a line. Can't fail. */
cursor_key_t cursor_key(int64_t ts, int stream, const char *data, size_t len);

/* Where the next connection starts: -1 when nothing was ever delivered (read
 * the whole retained history), else a time in ns to pass as `since`. */
int64_t cursor_since(const cursor_t *c);

/* Starts a new connection: every key in the window becomes skippable once
 * per delivery. Call right before a stream (re)connects with cursor_since. */
void cursor_begin_replay(cursor_t *c);

/* What cursor_seen found. */
enum {
  CURSOR_NEW = 0,      /* deliver it */
  CURSOR_REPLAYED = 1, /* delivered before this connection, sent again by the
                          resume: drop it */
  CURSOR_REPEATED = 2, /* sent again by the daemon within this connection
                          (counted by cursor_repeated): drop it */
};

/* cursor_seen's flags. */
#define CURSOR_PIECE 0x1 /* the line is a piece of a line cut at line_max */

/* Classifies a line the stream returned, in the order the stream returned
 * it (see the top of this file); a dropped line is consumed from the skip
 * counts. Can't fail: out of memory, a repeat may be reported new (then
 * delivered twice), never a new line reported delivered. */
int cursor_seen(cursor_t *c, const cursor_key_t *k, unsigned flags);

/* Lines cursor_seen reported CURSOR_REPEATED over the cursor's life. */
uint64_t cursor_repeated(const cursor_t *c);

/* Records a delivered line. floor_ts is the oldest timestamp that must stay
 * covered (decoder_pending_ts), or INT64_MAX. Returns 0, or -1 when out of
 * memory (the key is then not recorded; the line is still delivered). */
int cursor_deliver(cursor_t *c, const cursor_key_t *k, int64_t floor_ts);

/* The newest delivered timestamp, or -1. */
int64_t cursor_newest(const cursor_t *c);

/* Number of keys in the window (for tests and metrics). */
size_t cursor_window(const cursor_t *c);

/* A span of the window: the delivered keys stamped in [from, to], copied,
 * to check another read of that span against (a local-driver follow
 * stream may skip lines; reader.c reads the span again and delivers what
 * the span lacks). Each delivery is one copy. */
typedef struct cursor_span cursor_span_t;

/* Copies the keys of c stamped in [from, to]. Returns NULL when out of
 * memory. */
cursor_span_t *cursor_span_new(const cursor_t *c, int64_t from, int64_t to);
void cursor_span_free(cursor_span_t *s);

/* Takes one copy of k out of the span: 1 when it held one (that line was
 * delivered), 0 when not. Can't fail. */
int cursor_span_take(cursor_span_t *s, const cursor_key_t *k);

/* Copies not taken yet: a read of the span that left some out was not
 * whole (the daemon missed lines of it too). */
size_t cursor_span_left(const cursor_span_t *s);

/* The oldest timestamp the window still answers for: keys older than it
 * may have left (INT64_MIN when none has). */
int64_t cursor_window_start(const cursor_t *c);

/* What a saved cursor holds besides its keys (checkpoint.h writes it). */
typedef struct cursor_state {
  int any;             /* something was delivered */
  int64_t newest;      /* newest delivered ts */
  int64_t floor;       /* floor_ts of the last delivery */
  int evicted;         /* a key has left the window */
  int64_t evicted_max; /* newest ts of a key that left the window */
  size_t n_keys;       /* keys in the window, repeats included */
} cursor_state_t;

/* Fills s. Can't fail. */
void cursor_get_state(const cursor_t *c, cursor_state_t *s);

/* Copies up to max keys of the window, in delivery order (a key delivered
 * twice appears twice). Returns how many. */
size_t cursor_keys(const cursor_t *c, cursor_key_t *out, size_t max);

/* Builds a cursor from a saved state and its keys (as cursor_keys gave
 * them). Returns NULL when out of memory. */
cursor_t *cursor_restore(int64_t margin_ns, size_t max_keys, const cursor_state_t *s,
                         const cursor_key_t *keys, size_t n);

#endif
