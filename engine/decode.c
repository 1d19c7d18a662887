/* decode.c - Docker logs stream bytes to lines (see decode.h).
 *
 * Three layers:
 *  - framing: mux_feed cuts the multiplexed stream into frame payloads
 *    (zero-copy when a whole payload is inside one slice); raw_feed walks
 *    the TTY byte stream line by line.
 *  - messages: a payload is "<ts> " and text; the text is split at '\n'.
 *  - lines: text without its '\n' is kept in the stream's partial line until
 *    the '\n' comes, or until a message of that stream with another
 *    timestamp comes; part_add caps it at line_max by emitting pieces.
 *
 * A partial's buffer holds at most line_max + 1 bytes: the extra byte is a
 * trailing '\r' that is held back, because a '\n' in the next chunk would
 * remove it rather than make it content. Its `active` is PART_PENDING, or
 * PART_TRUNCATED once a piece of the line was emitted.
 *
 * Raw streams reuse the frame fields: `frame` holds the current line's
 * "<ts> " prefix, `frame_type` the raw parser state, `frame_left` the content
 * bytes until the next Docker chunk boundary and `hdr_len` how many bytes
 * of a repeated prefix have matched at that boundary. */
#include "decode.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timestamp.h"

/* Docker's log copier cuts lines without '\n' into chunks of this many
 * content bytes; each chunk gets its own "<ts> " with the same ts. */
#define DOCKER_CHUNK 16384

#define SYSERR_TEXT "Error grabbing logs: "
#define SYSERR_LEN (sizeof(SYSERR_TEXT) - 1)

/* Longest raw line prefix kept: a timestamp with offset ("...+hh:mm ", 36
 * bytes) or SYSERR_TEXT both fit. */
#define RAW_PREFIX_MAX 64

enum { PART_NONE = 0, PART_PENDING = 1, PART_TRUNCATED = 2 };

/* Raw parser states (in frame_type). */
enum {
  RAW_PREFIX = 0, /* reading a line's "<ts> " or SYSERR_TEXT */
  RAW_LINE,       /* reading stdout content */
  RAW_REPEAT,     /* at a chunk boundary: matching a repeated prefix */
  RAW_SYSLINE,    /* reading a "Error grabbing logs: " line */
  RAW_PROBE       /* after a '\r' in a line past a chunk boundary: is the
                     next line's "<ts> " coming? */
};

static int fail(decoder_t *d, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(d->error, sizeof d->error, fmt, ap);
  va_end(ap);
  return -1;
}

/* Grows b to hold need bytes, doubling but never beyond max (need <= max).
 * Returns 0, or -1 when out of memory (b unchanged). */
static int buf_reserve(decode_buf_t *b, size_t need, size_t max) {
  if (need <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need) cap *= 2;
  if (cap > max) cap = max;
  char *p = realloc(b->data, cap);
  if (!p) return -1;
  b->data = p;
  b->cap = cap;
  return 0;
}

static void buf_free(decode_buf_t *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

static void emit(decoder_t *d, int stream, int64_t ts, const char *p, size_t n, unsigned flags) {
  decode_line_t line = {stream, ts, p, n, flags};
  d->on_line(d->ud, &line);
}

/* Where to cut p so that the first piece has at most max bytes and the
 * second starts a UTF-8 sequence: backs up at most 3 bytes while p[cut] is
 * a continuation byte. p[max] must be readable. Invalid UTF-8 (or a tiny
 * max) gives max. Always >= 1. */
static size_t utf8_cut(const char *p, size_t max) {
  for (size_t back = 0; back <= 3 && back < max; back++)
    if (((unsigned char)p[max - back] & 0xC0) != 0x80) return max - back;
  return max;
}

/* Emits a complete line held in contiguous memory, in TRUNCATED pieces when
 * it is longer than line_max. No copy. */
static void emit_whole(decoder_t *d, int stream, int64_t ts, const char *p, size_t n,
                       unsigned flags) {
  if (n > d->line_max) flags |= DECODE_TRUNCATED;
  while (n > d->line_max) {
    size_t cut = utf8_cut(p, d->line_max);
    emit(d, stream, ts, p, cut, flags);
    p += cut;
    n -= cut;
  }
  emit(d, stream, ts, p, n, flags);
}

/* Appends n content bytes to the stream's partial line, which must be
 * active. Whenever the buffer holds more than line_max content bytes, the
 * first line_max (backed up to a UTF-8 boundary) are emitted as a TRUNCATED
 * piece. With end set the line is complete: the rest is emitted with
 * end_flags and the partial is cleared. Returns 0, or -1 when out of
 * memory. */
static int part_add(decoder_t *d, int stream, const char *p, size_t n, int end,
                    unsigned end_flags) {
  decode_partial_t *pt = &d->part[stream - 1];
  decode_buf_t *b = &pt->buf;
  size_t cap = d->line_max + 1;
  for (;;) {
    size_t take = n < cap - b->len ? n : cap - b->len;
    if (take > 0) {
      if (buf_reserve(b, b->len + take, cap) < 0) return fail(d, "out of memory");
      memcpy(b->data + b->len, p, take);
      b->len += take;
      p += take;
      n -= take;
    }
    if (b->len < cap) break;
    if (n == 0 && !end && b->data[cap - 1] == '\r')
      break; /* hold back a '\r' that a '\n' may remove */
    size_t cut = utf8_cut(b->data, d->line_max);
    emit(d, stream, pt->ts, b->data, cut, DECODE_TRUNCATED);
    pt->active = PART_TRUNCATED;
    memmove(b->data, b->data + cut, b->len - cut);
    b->len -= cut;
  }
  if (end) {
    if (pt->active == PART_TRUNCATED) end_flags |= DECODE_TRUNCATED;
    emit(d, stream, pt->ts, b->data, b->len, end_flags);
    b->len = 0;
    pt->active = PART_NONE;
  }
  return 0;
}

/* Ends the stream's line with p[0..n), the bytes before a '\n', dropping
 * the '\r' right before the '\n'. The line is emitted straight from p when
 * nothing of it is buffered. If no partial is active, ts is the line's. */
static int end_line(decoder_t *d, int stream, int64_t ts, const char *p, size_t n) {
  decode_partial_t *pt = &d->part[stream - 1];
  if (n > 0 && p[n - 1] == '\r') n--;
  else if (n == 0 && pt->buf.len > 0 && pt->buf.data[pt->buf.len - 1] == '\r') pt->buf.len--;

  if (pt->active == PART_NONE || (pt->active == PART_PENDING && pt->buf.len == 0)) {
    emit_whole(d, stream, pt->active ? pt->ts : ts, p, n, 0);
    pt->active = PART_NONE;
    return 0;
  }
  return part_add(d, stream, p, n, 1, 0);
}

/* Splits a message's text (after its "<ts> ") into lines. Text after the
 * last '\n' continues in the stream's partial line. */
static int text_lines(decoder_t *d, int stream, int64_t ts, const char *p, size_t n) {
  const decode_partial_t *open = &d->part[stream - 1];
  if (stream != DECODE_SYSERR && !d->untimed && open->active != PART_NONE && open->ts != ts &&
      end_line(d, stream, open->ts, p, 0) < 0)
    return -1; /* the open line's last chunk came without its '\n' */
  const char *nl;
  while (n > 0 && (nl = memchr(p, '\n', n)) != NULL) {
    size_t k = (size_t)(nl - p);
    if (end_line(d, stream, ts, p, k) < 0) return -1;
    p += k + 1;
    n -= k + 1;
  }
  if (n == 0) return 0;
  decode_partial_t *pt = &d->part[stream - 1];
  if (pt->active == PART_NONE) {
    pt->active = PART_PENDING;
    pt->ts = ts;
  }
  return part_add(d, stream, p, n, 0, 0);
}

/* One frame payload of the multiplexed stream. */
static int mux_message(decoder_t *d, int type, const char *p, size_t n) {
  if (type == 3) return text_lines(d, DECODE_SYSERR, 0, p, n);
  if (d->untimed) return text_lines(d, type == 2 ? DECODE_STDERR : DECODE_STDOUT, d->now, p, n);
  int64_t ts;
  size_t used;
  if (ts_parse(p, n, &ts, &used) < 0 || used >= n || p[used] != ' ')
    return fail(d, "frame without a valid timestamp");
  return text_lines(d, type == 2 ? DECODE_STDERR : DECODE_STDOUT, ts, p + used + 1, n - used - 1);
}

/* Multiplexed stream: hdr_len < 8 while a header is being read; then
 * frame_left payload bytes follow, gathered in d->frame unless the whole
 * payload is inside the current slice. */
static int mux_feed(decoder_t *d, const char *p, size_t n) {
  while (n > 0) {
    if (d->hdr_len < 8) {
      size_t take = 8 - d->hdr_len < n ? 8 - d->hdr_len : n;
      memcpy(d->hdr + d->hdr_len, p, take);
      d->hdr_len += take;
      p += take;
      n -= take;
      if (d->hdr_len < 8) break;
      uint32_t size = (uint32_t)d->hdr[4] << 24 | (uint32_t)d->hdr[5] << 16 |
                      (uint32_t)d->hdr[6] << 8 | d->hdr[7];
      if (d->hdr[0] > 3) return fail(d, "bad frame type %u", d->hdr[0]);
      if (size > d->frame_max)
        return fail(d, "frame of %lu bytes exceeds frame_max %lu", (unsigned long)size,
                    (unsigned long)d->frame_max);
      d->frame_type = d->hdr[0];
      d->frame_left = size;
      d->frame.len = 0;
      if (size == 0) d->hdr_len = 0;
      continue;
    }
    if (d->frame.len == 0 && n >= d->frame_left) {
      size_t size = d->frame_left;
      d->hdr_len = 0;
      d->frame_left = 0;
      if (mux_message(d, d->frame_type, p, size) < 0) return -1;
      p += size;
      n -= size;
      continue;
    }
    size_t take = d->frame_left < n ? d->frame_left : n;
    if (buf_reserve(&d->frame, d->frame.len + d->frame_left, d->frame_max) < 0)
      return fail(d, "out of memory");
    memcpy(d->frame.data + d->frame.len, p, take);
    d->frame.len += take;
    d->frame_left -= take;
    p += take;
    n -= take;
    if (d->frame_left == 0) {
      d->hdr_len = 0;
      size_t size = d->frame.len;
      d->frame.len = 0;
      if (mux_message(d, d->frame_type, d->frame.data, size) < 0) return -1;
    }
  }
  return 0;
}

/* RAW_PREFIX: gathers the line's prefix up to a space. Returns the bytes
 * consumed, or -1 on a protocol error. On success the state may have moved
 * to RAW_LINE (stdout partial active with the line's ts) or RAW_SYSLINE. */
static long raw_prefix(decoder_t *d, const char *p, size_t n) {
  decode_buf_t *f = &d->frame;
  size_t room = RAW_PREFIX_MAX - f->len;
  size_t look = n < room ? n : room;
  const char *sp = memchr(p, ' ', look);
  size_t take = sp ? (size_t)(sp - p) + 1 : look;
  if (buf_reserve(f, RAW_PREFIX_MAX, RAW_PREFIX_MAX) < 0) return fail(d, "out of memory");
  memcpy(f->data + f->len, p, take);
  f->len += take;
  if (memchr(p, '\n', take)) return fail(d, "raw line without a valid timestamp");
  if (!sp) {
    if (f->len == RAW_PREFIX_MAX) return fail(d, "raw line without a valid timestamp");
    return (long)take;
  }

  if (f->len <= SYSERR_LEN && memcmp(f->data, SYSERR_TEXT, f->len) == 0) {
    if (f->len == SYSERR_LEN) {
      d->frame_type = RAW_SYSLINE;
      d->part[DECODE_SYSERR - 1].active = PART_PENDING;
      d->part[DECODE_SYSERR - 1].ts = 0;
      if (part_add(d, DECODE_SYSERR, SYSERR_TEXT, SYSERR_LEN, 0, 0) < 0) return -1;
    }
    return (long)take;
  }
  int64_t ts;
  size_t used;
  if (ts_parse(f->data, f->len - 1, &ts, &used) < 0 || used != f->len - 1)
    return fail(d, "raw line without a valid timestamp");
  d->frame_type = RAW_LINE;
  d->frame_left = DOCKER_CHUNK;
  d->raw_cont = 0;
  d->part[DECODE_STDOUT - 1].active = PART_PENDING;
  d->part[DECODE_STDOUT - 1].ts = ts;
  return (long)take;
}

static int raw_feed(decoder_t *d, const char *p, size_t n);

/* RAW_PROBE: gathers what follows the '\r' until a space, a '\n', a byte
 * no timestamp has, or RAW_PREFIX_MAX bytes. A "<ts> " with another
 * timestamp than the line's ends the line (without its '\r') and starts
 * the next one; anything else was content and is read again as such.
 * Returns the bytes consumed, or -1. */
static long raw_probe(decoder_t *d, const char *p, size_t n) {
  decode_buf_t *b = &d->probe;
  size_t i = 0;
  int done = 0;
  while (i < n && !done) {
    char c = p[i];
    int ts_byte = (c >= '0' && c <= '9') || c == '-' || c == ':' || c == '.' || c == 'T' ||
                  c == 'Z' || c == '+';
    if (c == ' ' || !ts_byte || b->len + 1 >= RAW_PREFIX_MAX) done = 1;
    if (buf_reserve(b, RAW_PREFIX_MAX, RAW_PREFIX_MAX) < 0) return fail(d, "out of memory");
    b->data[b->len++] = c;
    i++;
  }
  if (!done) return (long)i;
  decode_partial_t *pt = &d->part[DECODE_STDOUT - 1];
  int64_t ts;
  size_t used;
  if (b->data[b->len - 1] == ' ' && ts_parse(b->data, b->len - 1, &ts, &used) == 0 &&
      used == b->len - 1 && ts != pt->ts) {
    if (end_line(d, DECODE_STDOUT, 0, b->data, 0) < 0) return -1;
    if (buf_reserve(&d->frame, RAW_PREFIX_MAX, RAW_PREFIX_MAX) < 0) return fail(d, "out of memory");
    memcpy(d->frame.data, b->data, b->len);
    d->frame.len = b->len;
    b->len = 0;
    d->frame_type = RAW_LINE;
    d->frame_left = DOCKER_CHUNK;
    d->raw_cont = 0;
    pt->active = PART_PENDING;
    pt->ts = ts;
    return (long)i;
  }
  char again[RAW_PREFIX_MAX];
  size_t len = b->len;
  memcpy(again, b->data, len);
  b->len = 0;
  d->frame_type = RAW_LINE;
  return raw_feed(d, again, len) < 0 ? -1 : (long)i;
}

/* RAW_LINE / RAW_SYSLINE: content up to the '\n' or, for stdout, up to the
 * next chunk boundary. Returns the bytes consumed, or -1. */
static long raw_content(decoder_t *d, int stream, const char *p, size_t n) {
  size_t look = n;
  if (stream == DECODE_STDOUT && d->frame_left < look) look = d->frame_left;
  const char *nl = memchr(p, '\n', look);
  const char *cr =
      stream == DECODE_STDOUT && d->raw_cont ? memchr(p, '\r', nl ? (size_t)(nl - p) : look) : NULL;
  if (cr && (size_t)(cr - p) + 1 < d->frame_left) {
    size_t k = (size_t)(cr - p) + 1; /* the content up to the '\r' */
    if (part_add(d, stream, p, k, 0, 0) < 0) return -1;
    d->frame_left -= k;
    d->frame_type = RAW_PROBE;
    d->probe.len = 0;
    return (long)k;
  }
  if (nl) {
    size_t k = (size_t)(nl - p);
    if (end_line(d, stream, 0, p, k) < 0) return -1;
    d->frame_type = RAW_PREFIX;
    d->frame.len = 0;
    return (long)k + 1;
  }
  if (part_add(d, stream, p, look, 0, 0) < 0) return -1;
  if (stream == DECODE_STDOUT) {
    d->frame_left -= look;
    if (d->frame_left == 0) {
      d->frame_type = RAW_REPEAT;
      d->hdr_len = 0;
    }
  }
  return (long)look;
}

/* RAW_REPEAT: at a chunk boundary, drops a repeat of the line's prefix. On a
 * mismatch the bytes that did match were content: they are added back (they
 * equal the prefix's). Returns the bytes consumed, or -1. */
static long raw_repeat(decoder_t *d, const char *p, size_t n) {
  const decode_buf_t *f = &d->frame;
  size_t i = 0;
  while (i < n && d->hdr_len < f->len && p[i] == f->data[d->hdr_len]) {
    i++;
    d->hdr_len++;
  }
  if (d->hdr_len < f->len && i == n) return (long)i; /* matching so far; wait for more */
  d->frame_type = RAW_LINE;
  d->frame_left = DOCKER_CHUNK;
  if (d->hdr_len == f->len) d->raw_cont = 1;
  if (d->hdr_len < f->len) {
    if (part_add(d, DECODE_STDOUT, f->data, d->hdr_len, 0, 0) < 0) return -1;
    d->frame_left -= d->hdr_len;
  }
  return (long)i;
}

static int raw_feed(decoder_t *d, const char *p, size_t n) {
  while (n > 0) {
    long used;
    switch (d->frame_type) {
    case RAW_PREFIX: used = raw_prefix(d, p, n); break;
    case RAW_LINE: used = raw_content(d, DECODE_STDOUT, p, n); break;
    case RAW_REPEAT: used = raw_repeat(d, p, n); break;
    case RAW_PROBE: used = raw_probe(d, p, n); break;
    default: used = raw_content(d, DECODE_SYSERR, p, n); break;
    }
    if (used < 0) return -1;
    p += used;
    n -= (size_t)used;
  }
  return 0;
}

void decoder_init(decoder_t *d, int raw, size_t frame_max, size_t line_max, decode_line_fn on_line,
                  void *ud) {
  memset(d, 0, sizeof *d);
  d->raw = raw;
  d->frame_max = frame_max ? frame_max : DECODE_FRAME_MAX_DEFAULT;
  d->line_max = line_max ? line_max : DECODE_LINE_MAX_DEFAULT;
  d->on_line = on_line;
  d->ud = ud;
}

int decoder_feed(decoder_t *d, const char *buf, size_t len) {
  if (d->error[0]) return -1;
  if (d->raw && d->untimed) return text_lines(d, DECODE_STDOUT, d->now, buf, len);
  return d->raw ? raw_feed(d, buf, len) : mux_feed(d, buf, len);
}

void decoder_finish(decoder_t *d) {
  if (d->error[0]) return;
  if (d->raw && d->frame_type == RAW_REPEAT && d->hdr_len > 0 &&
      part_add(d, DECODE_STDOUT, d->frame.data, d->hdr_len, 0, 0) < 0)
    return;
  if (d->raw && d->frame_type == RAW_PROBE && d->probe.len > 0 &&
      part_add(d, DECODE_STDOUT, d->probe.data, d->probe.len, 0, 0) < 0)
    return;
  d->probe.len = 0;
  for (int s = DECODE_STDOUT; s <= DECODE_SYSERR; s++) {
    decode_partial_t *pt = &d->part[s - 1];
    if (pt->active == PART_PENDING && pt->buf.len == 0)
      pt->active = PART_NONE; /* a raw "<ts> " and nothing after it */
    if (pt->active != PART_NONE && part_add(d, s, NULL, 0, 1, DECODE_UNTERMINATED) < 0) return;
  }
  d->hdr_len = 0;
  d->frame_left = 0;
  d->frame_type = 0;
  d->frame.len = 0;
}

void decoder_untimed(decoder_t *d) { d->untimed = 1; }

void decoder_reset(decoder_t *d) {
  int untimed = d->untimed;
  decoder_free(d);
  decoder_init(d, d->raw, d->frame_max, d->line_max, d->on_line, d->ud);
  d->untimed = untimed;
}

int64_t decoder_pending_ts(const decoder_t *d) {
  int64_t ts = INT64_MAX;
  for (int s = DECODE_STDOUT; s <= DECODE_STDERR; s++)
    if (d->part[s - 1].active != PART_NONE && d->part[s - 1].ts < ts) ts = d->part[s - 1].ts;
  return ts;
}

void decoder_free(decoder_t *d) {
  buf_free(&d->frame);
  buf_free(&d->probe);
  for (int s = 0; s < 3; s++) buf_free(&d->part[s].buf);
}
