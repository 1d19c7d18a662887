/* decode.h - turning the bytes of a Docker logs stream into lines.
 *
 * One decoder per stream connection. It takes arbitrary slices of the HTTP
 * body (as libcurl hands them over), and calls back once per complete line:
 *
 *  - multiplexed streams (non-TTY containers): 8-byte frame headers
 *    {type, 0, 0, 0, size big-endian}; type 0 (stdin, reported as stdout),
 *    1 stdout, 2 stderr, 3 systemerr. Any other type, or a size above
 *    frame_max, is a protocol error: decoder_feed returns -1 and the stream
 *    must be restarted. Frames may be split at any byte.
 *  - raw streams (TTY containers): no frames; everything is stdout.
 *
 * Every message starts with a timestamp ("<RFC3339Nano> ") because the
 * engine always asks for timestamps=1. Lines end at '\n'; a '\r' right
 * before the '\n' is removed. A message without a trailing '\n' is a chunk
 * of a longer line (Docker splits lines every 16 KiB, and all chunks carry
 * the first chunk's timestamp): chunks are joined per stream until the '\n'.
 * A message of the same stream with another timestamp also ends the line:
 * Docker 20.10's `local` log driver sends the last chunk of a line over
 * 16 KiB without its '\n', and the next line's timestamp is the only sign
 * that the long line ended. In a raw stream that chunk ends in the TTY's
 * '\r': a '\r' in a line that went past a chunk boundary, followed by
 * "<ts> " with another timestamp, ends the line there.
 * A line longer than line_max is emitted in pieces of at most line_max bytes,
 * each flagged DECODE_TRUNCATED, never cut inside a UTF-8 sequence.
 *
 * An attach stream (POST /containers/{id}/attach) carries the container's
 * output as it is written, without timestamps and without the log driver's
 * 16 KiB chunks: after decoder_untimed, a message is all text, lines end
 * only at '\n' (a frame boundary is no line boundary), and each line takes
 * the time in d->now when its first byte was fed (the caller sets it before
 * each decoder_feed).
 *
 * A systemerr frame ("Error grabbing logs: ...") carries no timestamp: it is
 * emitted as a DECODE_SYSERR line with ts 0. In raw streams the daemon writes
 * that text inline; a raw line that starts with "Error grabbing logs: " is
 * emitted the same way. Any other message without a valid timestamp is a
 * protocol error.
 *
 * The decoder holds at most frame_max + 3 * (line_max + 1) bytes: the frame
 * being read and one unfinished line per stream.
 * Memory: owned by the decoder; decoder_free releases it. Not thread-safe. */
#ifndef ENGINE_DECODE_H
#define ENGINE_DECODE_H

#include <stddef.h>
#include <stdint.h>

enum decode_stream { DECODE_STDOUT = 1, DECODE_STDERR = 2, DECODE_SYSERR = 3 };

/* Line flags. */
#define DECODE_TRUNCATED 0x1    /* a piece of a line longer than line_max */
#define DECODE_UNTERMINATED 0x2 /* flushed at end of stream without '\n' */

typedef struct decode_line {
  int stream;       /* DECODE_STDOUT, DECODE_STDERR or DECODE_SYSERR */
  int64_t ts;       /* UTC nanoseconds of the (first chunk's) timestamp */
  const char *data; /* the line, without its '\n' (or "\r\n"); not NUL-terminated */
  size_t len;
  unsigned flags;
} decode_line_t;

/* Called for each line. The data is valid only during the call. */
typedef void (*decode_line_fn)(void *ud, const decode_line_t *line);

typedef struct decode_buf {
  char *data;
  size_t len, cap;
} decode_buf_t;

typedef struct decode_partial {
  decode_buf_t buf; /* joined chunks of an unfinished line */
  int64_t ts;       /* timestamp of its first chunk */
  int active;       /* a chunk without '\n' is pending */
} decode_partial_t;

typedef struct decoder {
  int raw; /* 1: TTY raw stream, 0: multiplexed */
  size_t frame_max, line_max;
  decode_line_fn on_line;
  void *ud;
  unsigned char hdr[8]; /* frame header being read */
  size_t hdr_len;
  int frame_type;
  size_t frame_left;        /* payload bytes of the current frame still to come */
  decode_buf_t frame;       /* payload of the current frame (multiplexed), or
                            the current unfinished raw line (raw) */
  decode_partial_t part[3]; /* per stream: index DECODE_STDOUT-1 .. */
  char error[128];
  int raw_cont;       /* raw: the line went on past a chunk boundary */
  decode_buf_t probe; /* raw: what follows a '\r' in such a line, until
                            it shows whether it is the next line's "<ts> " */
  int untimed;        /* an attach stream: no timestamps (decoder_untimed) */
  int64_t now;        /* untimed: the time of the bytes being fed, UTC ns */
} decoder_t;

/* Defaults, also the documented defaults of the pipeline options. */
#define DECODE_FRAME_MAX_DEFAULT (1024 * 1024)
#define DECODE_LINE_MAX_DEFAULT (1024 * 1024)

/* Initialises d. Can't fail (allocation happens lazily in decoder_feed). */
void decoder_init(decoder_t *d, int raw, size_t frame_max, size_t line_max, decode_line_fn on_line,
                  void *ud);

/* Takes the stream as an attach stream's: no timestamps (see above). Kept
 * by decoder_reset. */
void decoder_untimed(decoder_t *d);

/* Feeds len bytes. Returns 0, or -1 on a protocol error (bad frame type,
 * oversized frame, missing or malformed timestamp, out of memory) with a
 * message in d->error; after -1 the decoder must be reset or freed. */
int decoder_feed(decoder_t *d, const char *buf, size_t len);

/* End of stream: emits pending unterminated lines (flag DECODE_UNTERMINATED)
 * and forgets any incomplete frame. Call only on a clean end of the stream
 * (EOF), not when the engine closes the stream itself. */
void decoder_finish(decoder_t *d);

/* Drops all buffered state but keeps the settings (for a new connection). */
void decoder_reset(decoder_t *d);

/* The timestamp of the oldest pending (unfinished) line, or INT64_MAX when
 * none is pending. A resume must start at or before it. */
int64_t decoder_pending_ts(const decoder_t *d);

/* Frees the buffers. d can be initialised again afterwards. */
void decoder_free(decoder_t *d);

#endif
