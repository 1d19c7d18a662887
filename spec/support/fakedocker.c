/* fakedocker.c - a fake Docker Engine API server for the engine's specs and
 * benchmarks.
 *
 *   fakedocker --socket PATH [options]
 *
 * Serves the endpoints the engine uses over a unix socket, generates
 * numbered log lines for fake containers and injects faults on demand.
 * Single-threaded: one libuv loop, no blocking calls. Prints "ready" on
 * stdout once listening, one JSON line of counters on SIGUSR1, and exits 0
 * on SIGTERM or SIGINT after closing every handle.
 *
 * Options:
 *   --api-version X.Y    advertised (maximum) API version, default 1.41
 *   --containers N       containers c0..c{N-1}, default 1
 *   --tty                TTY containers: raw stream, lines end in \r\n
 *   --stdout-only        every line on stdout (default: odd seq on stdout,
 *                        even seq on stderr)
 *   --rate R             lines per second per container, default 10; 0 none
 *   --lines M            each run of a container stops after M lines; the
 *                        first run counts the preloaded lines; 0 = never
 *   --cut-on-exit        a follow stream ends as soon as its container exits,
 *                        without the lines it has not sent yet (as Docker
 *                        may when the client is behind); a new logs request
 *                        gets them
 *   --linger             with --lines: a container keeps running, silent,
 *                        after its M lines instead of exiting (a client that
 *                        starts late still finds it running)
 *   --preload K          K lines of history at launch, 1 us apart, ending now
 *   --line-bytes B       pad each line's text (newline excluded) to B bytes
 *   --long-every E       every E-th line has 40000 bytes of text
 *   --retain N           lines of history kept per container, default 1000000
 *   --start-delay D      containers start D seconds after launch
 *   --fault MODE[:K]     fault for the first K (default 1) requests it
 *                        applies to
 *   --logfmt             lines like the benchmarks': level=info msg="request
 *                        served" status=200 path=... dur_ms=... (levels info
 *                        70%, debug 15%, warn 10%, error 5%)
 *   --local              inspect reports the local log driver
 *   --quirk-content-type non-TTY logs requested below API 1.42 are labelled
 *                        raw-stream, as Docker does
 *
 * A line's text is "<name> <seq>", then, when padded, a space and letters.
 * Text longer than 16384 bytes goes out in 16384-byte parts, one frame each
 * with the line's timestamp; only the last part carries the newline.
 * Timestamps are the wall clock, strictly increasing per container.
 *
 * Endpoints (with or without a /vX.Y prefix): GET|HEAD /_ping, GET /version,
 * GET /containers/json, GET /containers/{id}/json,
 * GET /containers/{id}/logs, GET /events,
 * POST /fake/restart/{name} (dies now, starts 0.2 s later),
 * GET /fake/faults (a JSON object: for each fault mode, how many times it
 * was applied: an error status sent, a connection reset or stalled, a
 * frame spoiled, a stream dripped, an events stream ended),
 * POST /fake/fault?mode=M[&count=K][&after=N] (mode=none clears; `after` is
 * the number of events an events-end stream delivers, default 3).
 *
 * Faults, for logs requests except events-end (events requests):
 * stall-headers, stall-body, stall-mid-frame, truncate, bad-header,
 * huge-frame, reset, drip, 500, 404, 409, 501, events-end. In TTY mode
 * there are no frame headers: bad-header and huge-frame send plain lines.
 * repeat: after every REPEAT_EVERY lines a logs stream sent, it sends the
 * last REPEAT_RUN of them again (same timestamps), as Docker's json-file
 * follow does where the file rotated; repeat-stderr: only the stderr lines
 * of that run. The stats line counts the lines sent again ("repeated").
 * skip: a follow stream sends SKIP_AFTER lines, then leaves out the next
 * SKIP_RUN lines as they come (they stay in the history), as the local log
 * driver's follow does where its file rotated; counted ("skipped"). */
#include "timestamp.h"

#include <cJSON.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

enum {
  HDR_CAP = 16384,          /* request line and headers */
  BODY_CAP = 1 << 20,       /* request bodies are read and dropped */
  BATCH_BYTES = 128 * 1024, /* log output produced per write */
  TICK_MS = 10,             /* line generator period */
  DRIP_MS = 5,
  EVENT_RING = 256,
  LONG_TEXT = 40000,
  PART_BYTES = 16384,
  TRUNCATE_FRAMES = 3,
  EVENTS_END_AFTER = 3,
  REPEAT_EVERY = 40,
  REPEAT_RUN = 7,
  SKIP_AFTER = 200,
  SKIP_RUN = 1500,
  MIN_API_MINOR = 12,
  NAME_CAP = 32,
  ID_CHARS = 64
};

#define NS_PER_SEC INT64_C(1000000000)
#define RESTART_NS INT64_C(200000000)
#define NO_END UINT64_MAX
#define OWNER(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

enum fault {
  F_NONE, F_STALL_HEADERS, F_STALL_BODY, F_STALL_MID, F_TRUNCATE, F_BAD_HEADER,
  F_HUGE, F_RESET, F_DRIP, F_500, F_404, F_409, F_501, F_EVENTS_END, F_REPEAT,
  F_REPEAT_STDERR, F_SKIP, F_COUNT
};

static const char *const fault_names[F_COUNT] = {
  "none", "stall-headers", "stall-body", "stall-mid-frame", "truncate",
  "bad-header", "huge-frame", "reset", "drip", "500", "404", "409", "501",
  "events-end", "repeat", "repeat-stderr", "skip"
};

enum ctr_state { ST_CREATED, ST_RUNNING, ST_EXITED, ST_RESTARTING };
enum conn_state { CS_READ, CS_STREAM, CS_STALL, CS_CLOSING };
enum stream_kind { SK_LOGS, SK_EVENTS };
enum action { EV_START, EV_DIE };
/* What a frame writer asks of the log pump. */
enum step { STEP_ON, STEP_STALL, STEP_CLOSE };

struct link {
  struct link *prev, *next;
};

struct buf {
  char *p;
  size_t len, cap;
};

struct opts {
  int logfmt;           /* benchmark-shaped logfmt lines */
  const char *socket;
  const char *api;
  int api_major, api_minor;
  long containers;
  int tty, stdout_only, quirk_ct, linger, cut_on_exit, local;
  double rate, start_delay;
  uint64_t lines, preload, retain, long_every;
  size_t line_bytes;
  enum fault fault;
  long fault_count;
};

/* A fake container. History is a ring of timestamps: a line's text is
 * regenerated from the name and seq, so memory is 8 bytes per line. */
struct ctr {
  char name[NAME_CAP];
  char id[ID_CHARS + 1];
  enum ctr_state state;
  int64_t *ts;
  uint64_t cap, head, count, first_seq; /* seqs first_seq.. are retained */
  int64_t last_ts;
  int64_t created_at, started_at, finished_at, start_at; /* start_at 0: none */
  int64_t run_start;
  uint64_t run_base, run_lines; /* lines counted against --lines this run */
  int runs;
  struct link streams; /* the logs streams reading this container */
};

struct event {
  int64_t time_ns;
  enum action action;
  long ctr;
};

struct conn;

struct stream {
  enum stream_kind kind;
  struct conn *conn;
  struct link link; /* in ctr->streams or g.evstreams */
  enum fault fault;
  uint64_t frames;
  /* logs */
  struct ctr *ctr;
  uint64_t next_seq, end_seq;
  uint64_t first_sent;   /* seq of the first line sent, or NO_END */
  uint64_t sent;         /* lines sent, repeats excluded */
  uint64_t repeat_end;   /* while next_seq < repeat_end, lines go out again */
  uint64_t skip_end;     /* skip fault: lines before this seq are left out */
  int64_t since;
  int want_out, want_err, stamps;
  /* events */
  cJSON *filters;
  int64_t until; /* 0: none */
  long budget;   /* events left before a clean end; < 0: unlimited */
};

struct conn {
  uv_pipe_t pipe;
  uv_timer_t drip_timer;
  struct link link; /* in g.conns */
  enum conn_state state;
  int handles;      /* handles not yet closed */
  int writes;       /* writes in flight */
  int keepalive, close_after, drip;
  char in[HDR_CAP];
  size_t in_len, body_skip;
  struct stream *stream;
  struct buf dripbuf;
  size_t drip_off;
};

struct wreq {
  uv_write_t req;
  char *data;
};

struct req {
  const char *method;
  const char *path; /* version prefix removed */
  const char *query;
  int head, keepalive;
  int has_ver, vmajor, vminor;
  const char *ver;
  size_t ver_len;
  uint64_t clen;
};

static struct {
  uv_loop_t loop;
  uv_pipe_t server;
  uv_timer_t tick;
  uv_signal_t sig_term, sig_int, sig_usr1;
  struct opts o;
  struct ctr *ctrs;
  struct link conns, evstreams;
  struct event ring[EVENT_RING];
  unsigned ring_next, ring_count;
  enum fault logs_fault;
  long logs_fault_count, events_end_count, events_end_after;
  uint64_t applied[F_COUNT]; /* faults applied, by mode */
  uint64_t logs_requests, events_requests;
  uint64_t repeated; /* lines a repeat fault sent a second time */
  uint64_t skipped;  /* lines a skip fault left out */
  long open_conns;
  int stopping, bound;
  char image_id[ID_CHARS + 1];
  char *text;        /* scratch for one line's text */
  struct buf frame;  /* scratch for one frame */
  char discard[65536];
} g;

static void conn_close(struct conn *c);
static void conn_drained(struct conn *c);
static void logs_pump(struct stream *s);
static void on_drip(uv_timer_t *t);

/* ---- memory, lists, buffers ---- */

/* The tool has no use for running out of memory: it aborts. */
static void *xrealloc(void *p, size_t n)
{
  void *q = realloc(p, n ? n : 1);
  if (!q) {
    fputs("fakedocker: out of memory\n", stderr);
    abort();
  }
  return q;
}

static void *xcalloc(size_t n, size_t size)
{
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) {
    fputs("fakedocker: out of memory\n", stderr);
    abort();
  }
  return p;
}

static void list_init(struct link *l)
{
  l->prev = l->next = l;
}

/* Appends n at the tail of the list headed by head. */
static void list_add(struct link *head, struct link *n)
{
  n->prev = head->prev;
  n->next = head;
  head->prev->next = n;
  head->prev = n;
}

/* Unlinks n (a no-op on an unlinked, initialised node). */
static void list_del(struct link *n)
{
  n->prev->next = n->next;
  n->next->prev = n->prev;
  list_init(n);
}

static void buf_reserve(struct buf *b, size_t more)
{
  if (b->len + more <= b->cap)
    return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + more)
    cap *= 2;
  b->p = xrealloc(b->p, cap);
  b->cap = cap;
}

static void buf_add(struct buf *b, const void *d, size_t n)
{
  buf_reserve(b, n);
  memcpy(b->p + b->len, d, n);
  b->len += n;
}

static void buf_str(struct buf *b, const char *s)
{
  buf_add(b, s, strlen(s));
}

static void buf_printf(struct buf *b, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));

static void buf_printf(struct buf *b, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  buf_reserve(b, (size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

/* Appends s as a quoted JSON string. */
static void buf_json_str(struct buf *b, const char *s)
{
  buf_add(b, "\"", 1);
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      buf_printf(b, "\\%c", ch);
    else if (ch < 0x20)
      buf_printf(b, "\\u%04x", ch);
    else
      buf_add(b, s, 1);
  }
  buf_add(b, "\"", 1);
}

/* Appends an HTTP chunk holding d[0..n). */
static void buf_chunk(struct buf *b, const void *d, size_t n)
{
  char size[24];
  int k = snprintf(size, sizeof size, "%zx\r\n", n);
  buf_add(b, size, (size_t)k);
  buf_add(b, d, n);
  buf_add(b, "\r\n", 2);
}

static void buf_free(struct buf *b)
{
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

/* ---- small parsers ---- */

/* Formats ns like ts_format, reusing the date of the previous call when the
 * second is the same. */
static void fmt_ts(int64_t ns, char out[TS_LEN + 1])
{
  static int64_t last_sec = INT64_MIN;
  static char last[TS_LEN + 1];
  int64_t sec = ns / NS_PER_SEC, frac = ns % NS_PER_SEC;
  if (frac < 0) {
    frac += NS_PER_SEC;
    sec--;
  }
  if (sec != last_sec) {
    ts_format(ns, last);
    last_sec = sec;
  }
  memcpy(out, last, TS_LEN + 1);
  for (int i = 28; i >= 20; i--) {
    out[i] = (char)('0' + frac % 10);
    frac /= 10;
  }
}

/* Parses Docker's "SECONDS[.FRACTION]" query form (at most 9 fraction
 * digits). Returns 0 and stores nanoseconds, or -1 on anything else. */
static int parse_secs(const char *s, int64_t *ns)
{
  int64_t sec = 0, frac = 0;
  int digits = 0;
  if (*s < '0' || *s > '9')
    return -1;
  for (; *s >= '0' && *s <= '9'; s++) {
    if (sec > INT64_C(9000000000))
      return -1;
    sec = sec * 10 + (*s - '0');
  }
  if (*s == '.') {
    for (s++; *s >= '0' && *s <= '9'; s++, digits++) {
      if (digits == 9)
        return -1;
      frac = frac * 10 + (*s - '0');
    }
    if (digits == 0)
      return -1;
    for (int k = digits; k < 9; k++)
      frac *= 10;
  }
  if (*s)
    return -1;
  *ns = sec * NS_PER_SEC + frac;
  return 0;
}

/* Parses "X.Y" into two ints. Returns the bytes used, 0 when not a version. */
static size_t parse_version(const char *s, int *major, int *minor)
{
  const char *p = s;
  long a = 0, b = 0;
  if (*p < '0' || *p > '9')
    return 0;
  for (; *p >= '0' && *p <= '9' && a < 100000; p++)
    a = a * 10 + (*p - '0');
  if (*p != '.' || p[1] < '0' || p[1] > '9')
    return 0;
  for (p++; *p >= '0' && *p <= '9' && b < 100000; p++)
    b = b * 10 + (*p - '0');
  *major = (int)a;
  *minor = (int)b;
  return (size_t)(p - s);
}

static int hexval(char ch)
{
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  if (ch >= 'a' && ch <= 'f')
    return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F')
    return ch - 'A' + 10;
  return -1;
}

/* Percent-decodes s[0..n) ('+' is a space) into out (cap bytes with the
 * NUL). Returns 0, or -1 when it does not fit or holds a NUL. */
static int url_decode(const char *s, size_t n, char *out, size_t cap)
{
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    if (ch == '+') {
      ch = ' ';
    } else if (ch == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
      ch = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
      i += 2;
    }
    if (ch == '\0' || o + 1 >= cap)
      return -1;
    out[o++] = ch;
  }
  out[o] = '\0';
  return 0;
}

/* Looks key up in the query string q. Returns 1 and the decoded value in
 * out, 0 when absent, -1 when the value does not fit. */
static int query_get(const char *q, const char *key, char *out, size_t cap)
{
  size_t klen = strlen(key);
  while (*q) {
    const char *end = strchr(q, '&');
    size_t n = end ? (size_t)(end - q) : strlen(q);
    if (n >= klen && strncmp(q, key, klen) == 0 && (n == klen || q[klen] == '=')) {
      const char *v = n == klen ? q + n : q + klen + 1;
      return url_decode(v, (size_t)(q + n - v), out, cap) < 0 ? -1 : 1;
    }
    q += n;
    if (*q == '&')
      q++;
  }
  return 0;
}

/* Docker's query booleans: true when present and not "", 0, no, false or
 * none (any case). */
static int query_bool(const char *q, const char *key)
{
  static const char *const no[] = {"", "0", "no", "false", "none"};
  char v[16];
  if (query_get(q, key, v, sizeof v) != 1)
    return 0;
  for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
    if (strcasecmp(v, no[i]) == 0)
      return 0;
  return 1;
}

static enum fault fault_from_name(const char *s, size_t n)
{
  for (int f = 0; f < F_COUNT; f++)
    if (strlen(fault_names[f]) == n && strncmp(fault_names[f], s, n) == 0)
      return (enum fault)f;
  return F_COUNT;
}

/* ---- containers, history and events ---- */

/* 64 hex characters derived from s (FNV-1a, four seeds). */
static void derive_id(const char *s, char out[ID_CHARS + 1])
{
  for (int part = 0; part < 4; part++) {
    uint64_t h = UINT64_C(14695981039346656037) ^ (uint64_t)(part * 0x9e37);
    for (const char *p = s; *p; p++) {
      h ^= (unsigned char)*p;
      h *= UINT64_C(1099511628211);
    }
    h ^= h >> 29;
    h *= UINT64_C(0xbf58476d1ce4e5b9);
    h ^= h >> 32;
    snprintf(out + part * 16, 17, "%016" PRIx64, h);
  }
}

static uint64_t hist_next(const struct ctr *k)
{
  return k->first_seq + k->count;
}

static int64_t hist_ts(const struct ctr *k, uint64_t seq)
{
  return k->ts[(k->head + (seq - k->first_seq)) % k->cap];
}

/* Doubles the ring, up to --retain entries. */
static void hist_grow(struct ctr *k)
{
  uint64_t cap = k->cap ? k->cap * 2 : 1024;
  if (cap > g.o.retain)
    cap = g.o.retain;
  int64_t *ts = xcalloc((size_t)cap, sizeof *ts);
  for (uint64_t i = 0; i < k->count; i++)
    ts[i] = k->ts[(k->head + i) % k->cap];
  free(k->ts);
  k->ts = ts;
  k->cap = cap;
  k->head = 0;
}

/* Records the next line at ts (or just after the previous line); the
 * oldest line is dropped when --retain lines are kept. */
static void hist_push(struct ctr *k, int64_t ts)
{
  if (ts <= k->last_ts)
    ts = k->last_ts + 1;
  if (k->count == k->cap && k->cap < g.o.retain)
    hist_grow(k);
  if (k->count == k->cap) {
    k->head = (k->head + 1) % k->cap;
    k->first_seq++;
    k->count--;
  }
  k->ts[(k->head + k->count) % k->cap] = ts;
  k->count++;
  k->last_ts = ts;
}

/* The first retained seq with a timestamp >= since (timestamps increase). */
static uint64_t hist_find(const struct ctr *k, int64_t since)
{
  uint64_t lo = k->first_seq, hi = hist_next(k);
  while (lo < hi) {
    uint64_t mid = lo + (hi - lo) / 2;
    if (hist_ts(k, mid) < since)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* 1 for stdout, 2 for stderr. */
static int line_stream(uint64_t seq)
{
  return g.o.tty || g.o.stdout_only || seq % 2 == 1 ? 1 : 2;
}

/* Writes the text of line seq of k (newline excluded) into g.text and
 * returns its length. */
static size_t line_text(const struct ctr *k, uint64_t seq)
{
  static const char letters[] = "abcdefghijklmnopqrstuvwxyz";
  if (g.o.logfmt) { /* levels: info 70%, debug 15%, warn 10%, error 5% */
    unsigned r = (unsigned)((seq * 2654435761u) % 100);
    const char *level = r < 70 ? "info" : r < 85 ? "debug" : r < 95 ? "warn" : "error";
    return (size_t)snprintf(g.text, 256,
                            "level=%s msg=\"request served\" status=200 path=/api/v1/items/%" PRIu64
                            " dur_ms=%u seq=%" PRIu64 " container=%s",
                            level, 10000 + seq % 90000, (unsigned)(seq % 97), seq, k->name);
  }
  int n = snprintf(g.text, 64, "%s %" PRIu64, k->name, seq);
  size_t len = (size_t)n;
  size_t want = g.o.long_every && seq % g.o.long_every == 0 ? LONG_TEXT : g.o.line_bytes;
  if (want > len) {
    g.text[len++] = ' ';
    while (len < want) {
      g.text[len] = letters[len % 26];
      len++;
    }
  }
  return len;
}

static struct ctr *ctr_find(const char *s)
{
  struct ctr *hit = NULL;
  if (*s == '/')
    s++;
  if (s[0] == 'c' && s[1] >= '0' && s[1] <= '9' && (s[1] != '0' || s[2] == '\0')) {
    char *end;
    long i = strtol(s + 1, &end, 10);
    if (*end == '\0' && i < g.o.containers)
      return &g.ctrs[i];
  }
  size_t n = strlen(s);
  if (n == 0 || n > ID_CHARS)
    return NULL;
  for (long i = 0; i < g.o.containers; i++) {
    if (strncmp(g.ctrs[i].id, s, n) == 0) {
      if (hit)
        return NULL; /* ambiguous prefix */
      hit = &g.ctrs[i];
    }
  }
  return hit;
}

static const char *ctr_status(const struct ctr *k)
{
  static const char *const names[] = {"created", "running", "exited", "restarting"};
  return names[k->state];
}

/* Appends one "Type":"container" event as a JSON line. */
static void event_json(struct buf *b, const struct event *e)
{
  const struct ctr *k = &g.ctrs[e->ctr];
  const char *act = e->action == EV_START ? "start" : "die";
  buf_printf(b,
             "{\"status\":\"%s\",\"id\":\"%s\",\"from\":\"fake:latest\","
             "\"Type\":\"container\",\"Action\":\"%s\",\"Actor\":{\"ID\":\"%s\","
             "\"Attributes\":{%s\"fake\":\"1\",\"image\":\"fake:latest\",\"name\":\"%s\"}},"
             "\"scope\":\"local\",\"time\":%" PRId64 ",\"timeNano\":%" PRId64 "}\n",
             act, k->id, act, k->id, e->action == EV_DIE ? "\"exitCode\":\"0\"," : "",
             k->name, e->time_ns / NS_PER_SEC, e->time_ns);
}

/* 1 when any value of a filter (array of strings, or object of true flags)
 * equals one of the n candidates (NULL candidates are skipped). A candidate
 * ending in '*' matches by prefix. */
static int filter_any(const cJSON *vals, const char *const *cand, int n)
{
  const cJSON *v;
  cJSON_ArrayForEach(v, vals) {
    const char *s = cJSON_IsString(v) ? v->valuestring : cJSON_IsTrue(v) ? v->string : NULL;
    for (int i = 0; s && i < n; i++) {
      if (cand[i] && strcmp(s, cand[i]) == 0)
        return 1;
    }
  }
  return 0;
}

/* Docker's filter semantics: values of one key are OR'ed, keys AND'ed.
 * Known keys: type, event, container, label, image; others are ignored. */
static int event_matches(const cJSON *filters, const struct event *e)
{
  const struct ctr *k = &g.ctrs[e->ctr];
  const char *act = e->action == EV_START ? "start" : "die";
  const cJSON *f;
  if (!filters)
    return 1;
  cJSON_ArrayForEach(f, filters) {
    const char *key = f->string;
    if (strcmp(key, "type") == 0) {
      const char *c[] = {"container"};
      if (!filter_any(f, c, 1))
        return 0;
    } else if (strcmp(key, "event") == 0 || strcmp(key, "status") == 0) {
      const char *c[] = {act};
      if (!filter_any(f, c, 1))
        return 0;
    } else if (strcmp(key, "container") == 0) {
      const char *c[] = {k->name, k->id};
      if (!filter_any(f, c, 2))
        return 0;
    } else if (strcmp(key, "label") == 0) {
      const char *c[] = {"fake", "fake=1"};
      if (!filter_any(f, c, 2))
        return 0;
    } else if (strcmp(key, "image") == 0) {
      const char *c[] = {"fake", "fake:latest"};
      if (!filter_any(f, c, 2))
        return 0;
    }
  }
  return 1;
}

/* 0 when f is a filters object Docker accepts: every value an array of
 * strings or an object of booleans. */
static int filters_check(const cJSON *f)
{
  const cJSON *key, *v;
  if (!cJSON_IsObject(f))
    return -1;
  cJSON_ArrayForEach(key, f) {
    if (!cJSON_IsArray(key) && !cJSON_IsObject(key))
      return -1;
    cJSON_ArrayForEach(v, key) {
      if (cJSON_IsArray(key) ? !cJSON_IsString(v) : !cJSON_IsBool(v))
        return -1;
    }
  }
  return 0;
}

/* ---- connections ---- */

static int conn_busy(const struct conn *c)
{
  return c->writes > 0 || c->drip_off < c->dripbuf.len;
}

static void on_write(uv_write_t *req, int status)
{
  struct wreq *w = OWNER(req, struct wreq, req);
  struct conn *c = req->data;
  free(w->data);
  free(w);
  c->writes--;
  if (c->state == CS_CLOSING)
    return;
  if (status < 0) {
    conn_close(c);
    return;
  }
  conn_drained(c);
}

/* Writes data[0..n) (malloc'd; ownership passes to the write). Returns 0,
 * or -1 when the connection was closed instead. */
static int conn_write(struct conn *c, char *data, size_t n)
{
  struct wreq *w = xcalloc(1, sizeof *w);
  uv_buf_t b = uv_buf_init(data, (unsigned)n);
  w->data = data;
  w->req.data = c;
  if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &b, 1, on_write) != 0) {
    free(data);
    free(w);
    conn_close(c);
    return -1;
  }
  c->writes++;
  return 0;
}

/* Sends and empties b: at once, or byte by byte in drip mode. Returns 0, or
 * -1 when the connection is closed (the caller must then stop using its
 * stream, which is freed). */
static int conn_send(struct conn *c, struct buf *b)
{
  if (c->state == CS_CLOSING) {
    buf_free(b);
    return -1;
  }
  if (b->len == 0) {
    buf_free(b);
    return 0;
  }
  if (c->drip) {
    buf_add(&c->dripbuf, b->p, b->len);
    buf_free(b);
    if (!uv_is_active((uv_handle_t *)&c->drip_timer))
      uv_timer_start(&c->drip_timer, on_drip, DRIP_MS, DRIP_MS);
    return 0;
  }
  char *data = b->p;
  size_t n = b->len;
  b->p = NULL;
  b->len = b->cap = 0;
  return conn_write(c, data, n);
}

static void stream_free(struct stream *s)
{
  list_del(&s->link);
  s->conn->stream = NULL;
  cJSON_Delete(s->filters);
  free(s);
}

/* Appends the terminating chunk to out, sends it and frees s; the
 * connection then serves its next request, or closes without keep-alive.
 * Returns as conn_send. */
static int stream_finish(struct stream *s, struct buf *out)
{
  struct conn *c = s->conn;
  buf_str(out, "0\r\n\r\n");
  stream_free(s);
  c->state = CS_READ;
  if (!c->keepalive)
    c->close_after = 1;
  return conn_send(c, out);
}

static void on_conn_closed(uv_handle_t *h)
{
  struct conn *c = h->data;
  if (--c->handles > 0)
    return;
  buf_free(&c->dripbuf);
  free(c);
}

/* Closes c and frees its stream now; c itself is freed once its handles
 * are closed. Pending writes complete with UV_ECANCELED. */
static void conn_close(struct conn *c)
{
  if (c->state == CS_CLOSING)
    return;
  c->state = CS_CLOSING;
  if (c->stream)
    stream_free(c->stream);
  list_del(&c->link);
  g.open_conns--;
  uv_close((uv_handle_t *)&c->pipe, on_conn_closed);
  uv_close((uv_handle_t *)&c->drip_timer, on_conn_closed);
}

/* ---- responses ---- */

static const char *status_text(int status)
{
  switch (status) {
  case 200: return "OK";
  case 204: return "No Content";
  case 400: return "Bad Request";
  case 404: return "Not Found";
  case 409: return "Conflict";
  case 501: return "Not Implemented";
  default: return "Internal Server Error";
  }
}

static void head_common(struct buf *b, int status)
{
  buf_printf(b,
             "HTTP/1.1 %d %s\r\nApi-Version: %s\r\nDocker-Experimental: false\r\n"
             "OSType: linux\r\nServer: Docker/20.10-fake (linux)\r\n",
             status, status_text(status), g.o.api);
}

/* Sends a complete response; without keep-alive the connection closes
 * once it is written. r may be NULL (a request that did not parse). */
static void respond(struct conn *c, const struct req *r, int status, const char *ctype,
                    const char *body, size_t len)
{
  struct buf b = {0};
  int keep = r && r->keepalive;
  head_common(&b, status);
  if (status != 204)
    buf_printf(&b, "Content-Type: %s\r\nContent-Length: %zu\r\n", ctype, len);
  if (!keep)
    buf_str(&b, "Connection: close\r\n");
  buf_str(&b, "\r\n");
  if (!(r && r->head))
    buf_add(&b, body, len);
  if (!keep) {
    c->close_after = 1;
    c->state = CS_STALL;
  }
  conn_send(c, &b);
}

static void respond_json(struct conn *c, const struct req *r, int status, struct buf *body)
{
  respond(c, r, status, "application/json", body->p ? body->p : "", body->len);
  buf_free(body);
}

/* Docker's error form: {"message":"..."}. */
static void respond_error(struct conn *c, const struct req *r, int status, const char *msg)
{
  struct buf b = {0};
  buf_str(&b, "{\"message\":");
  buf_json_str(&b, msg);
  buf_str(&b, "}\n");
  respond_json(c, r, status, &b);
}

static void respond_no_such(struct conn *c, const struct req *r, const char *id)
{
  struct buf m = {0};
  buf_printf(&m, "No such container: %s", id);
  buf_add(&m, "", 1);
  respond_error(c, r, 404, m.p);
  buf_free(&m);
}

/* Sends 200 and the headers of a chunked response. Returns as conn_send. */
static int stream_headers(struct conn *c, const char *ctype)
{
  struct buf b = {0};
  head_common(&b, 200);
  buf_printf(&b, "Content-Type: %s\r\nTransfer-Encoding: chunked\r\n%s\r\n", ctype,
             c->keepalive ? "" : "Connection: close\r\n");
  return conn_send(c, &b);
}

/* ---- log streams ---- */

/* Counts a fault that took effect (GET /fake/faults). */
static void fault_applied(enum fault f)
{
  g.applied[f]++;
}

/* Appends one frame (or, with a TTY, the raw bytes) of a line part to out,
 * applying the stream's fault to its first frames. */
static enum step emit_frame(struct stream *s, struct buf *out, int type, const char *ts,
                            const char *data, size_t n, const char *tail)
{
  struct buf *f = &g.frame;
  size_t tail_len = strlen(tail);
  size_t payload = (ts ? TS_LEN + 1 : 0) + n + tail_len;
  enum step step = STEP_ON;
  uint32_t size = (uint32_t)payload;
  f->len = 0;
  if (!g.o.tty) {
    if (s->fault == F_BAD_HEADER && s->frames == 0) {
      type = 7;
      fault_applied(F_BAD_HEADER);
    }
    if (s->fault == F_HUGE && s->frames == 0) {
      size = UINT32_C(0x80000000);
      step = STEP_STALL;
      fault_applied(F_HUGE);
    }
    unsigned char h[8] = {(unsigned char)type, 0, 0, 0, (unsigned char)(size >> 24),
                          (unsigned char)(size >> 16), (unsigned char)(size >> 8),
                          (unsigned char)size};
    buf_add(f, h, sizeof h);
  }
  if (ts) {
    buf_add(f, ts, TS_LEN);
    buf_add(f, " ", 1);
  }
  buf_add(f, data, n);
  buf_add(f, tail, tail_len);
  size_t send = f->len;
  if (s->frames == 0 && s->fault == F_STALL_MID) {
    send = f->len / 2;
    step = STEP_STALL;
    fault_applied(F_STALL_MID);
  } else if (s->frames == TRUNCATE_FRAMES && s->fault == F_TRUNCATE) {
    send = f->len / 2;
    step = STEP_CLOSE;
    fault_applied(F_TRUNCATE);
  }
  buf_chunk(out, f->p, send);
  s->frames++;
  return step;
}

/* Appends line seq of the stream's container in parts of at most
 * PART_BYTES of text, each its own frame with the same timestamp. */
static enum step emit_line(struct stream *s, struct buf *out, uint64_t seq, int64_t ts_ns)
{
  char ts[TS_LEN + 1];
  size_t len = line_text(s->ctr, seq), off = 0;
  const char *nl = g.o.tty ? "\r\n" : "\n";
  if (s->stamps)
    fmt_ts(ts_ns, ts);
  for (;;) {
    size_t n = len - off > PART_BYTES ? PART_BYTES : len - off;
    int last = off + n == len;
    enum step step = emit_frame(s, out, line_stream(seq), s->stamps ? ts : NULL,
                                g.text + off, n, last ? nl : "");
    off += n;
    if (step != STEP_ON || last)
      return step;
  }
}

/* Sends the next batch of lines when the connection is idle, and ends the
 * stream at its end seq. Called on new lines, on write completion and when
 * the container stops. */
static void logs_pump(struct stream *s)
{
  struct conn *c = s->conn;
  struct ctr *k = s->ctr;
  struct buf out = {0};
  enum step step = STEP_ON;
  size_t limit = c->drip ? 1 : BATCH_BYTES;
  if (conn_busy(c))
    return;
  if (s->next_seq < k->first_seq)
    s->next_seq = k->first_seq; /* rotated away while the client was slow */
  uint64_t stop = s->end_seq < hist_next(k) ? s->end_seq : hist_next(k);
  while (step == STEP_ON && out.len < limit && s->next_seq < stop) {
    uint64_t seq = s->next_seq++;
    int64_t ts = hist_ts(k, seq);
    int type = line_stream(seq);
    int again = seq < s->repeat_end;
    if (ts < s->since || !(type == 1 ? s->want_out : s->want_err) ||
        (again && s->fault == F_REPEAT_STDERR && type != 2))
      continue;
    if (seq < s->skip_end) {
      g.skipped++;
      continue;
    }
    step = emit_line(s, &out, seq, ts);
    if (again) {
      g.repeated++;
      continue;
    }
    if (s->first_sent == NO_END)
      s->first_sent = seq;
    s->sent++;
    if (s->fault == F_SKIP && s->end_seq == NO_END && s->sent == SKIP_AFTER) {
      fault_applied(F_SKIP);
      s->skip_end = s->next_seq + SKIP_RUN;
    }
    if ((s->fault == F_REPEAT || s->fault == F_REPEAT_STDERR) && s->sent % REPEAT_EVERY == 0) {
      s->repeat_end = s->next_seq; /* go back over the last REPEAT_RUN seqs */
      s->next_seq = seq + 1 - REPEAT_RUN > s->first_sent ? seq + 1 - REPEAT_RUN : s->first_sent;
      if (s->next_seq < k->first_seq)
        s->next_seq = k->first_seq;
    }
  }
  if (step == STEP_ON && s->next_seq >= s->end_seq) {
    stream_finish(s, &out);
    return;
  }
  if (step != STEP_ON) {
    stream_free(s);
    c->state = CS_STALL;
    c->close_after = step == STEP_CLOSE;
  }
  conn_send(c, &out);
}

static void ctr_kick(struct ctr *k)
{
  struct link *l, *next;
  for (l = k->streams.next; l != &k->streams; l = next) {
    next = l->next;
    logs_pump(OWNER(l, struct stream, link));
  }
}

/* ---- events ---- */

/* Appends e to s's output when it matches. Returns 1 when s has delivered
 * its budget and must end. */
static int events_deliver(struct stream *s, struct buf *out, const struct event *e)
{
  struct buf j = {0};
  if (s->until && e->time_ns > s->until)
    return 0;
  if (!event_matches(s->filters, e))
    return 0;
  event_json(&j, e);
  buf_chunk(out, j.p, j.len);
  buf_free(&j);
  if (s->budget > 0 && --s->budget == 0) {
    fault_applied(F_EVENTS_END);
    return 1;
  }
  return 0;
}

static void event_add(enum action action, struct ctr *k, int64_t now)
{
  struct event *e = &g.ring[g.ring_next];
  struct link *l, *next;
  e->time_ns = now;
  e->action = action;
  e->ctr = k - g.ctrs;
  g.ring_next = (g.ring_next + 1) % EVENT_RING;
  if (g.ring_count < EVENT_RING)
    g.ring_count++;
  for (l = g.evstreams.next; l != &g.evstreams; l = next) {
    struct stream *s = OWNER(l, struct stream, link);
    struct buf out = {0};
    next = l->next;
    if (events_deliver(s, &out, e))
      stream_finish(s, &out);
    else
      conn_send(s->conn, &out);
  }
}

/* Ends the events streams whose `until` has passed. */
static void events_expire(int64_t now)
{
  struct link *l, *next;
  for (l = g.evstreams.next; l != &g.evstreams; l = next) {
    struct stream *s = OWNER(l, struct stream, link);
    struct buf out = {0};
    next = l->next;
    if (s->until && now > s->until)
      stream_finish(s, &out);
  }
}

/* ---- container life ---- */

static void ctr_start(struct ctr *k, int64_t now)
{
  k->state = ST_RUNNING;
  k->start_at = 0;
  k->started_at = now;
  k->run_start = now;
  k->run_lines = k->runs == 0 ? g.o.preload : 0;
  k->run_base = k->run_lines;
  k->runs++;
  event_add(EV_START, k, now);
}

/* Stops k: its follow streams end after what it wrote (--cut-on-exit:
 * after what they sent), then "die". */
static void ctr_stop(struct ctr *k, enum ctr_state state, int64_t now)
{
  struct link *l;
  k->state = state;
  k->finished_at = now;
  for (l = k->streams.next; l != &k->streams; l = l->next) {
    struct stream *s = OWNER(l, struct stream, link);
    if (s->end_seq == NO_END)
      s->end_seq = g.o.cut_on_exit ? s->next_seq : hist_next(k);
  }
  ctr_kick(k);
  event_add(EV_DIE, k, now);
}

/* Adds the lines due by now; returns how many. */
static uint64_t ctr_generate(struct ctr *k, int64_t now)
{
  uint64_t due, n = 0;
  if (g.o.rate <= 0 || now < k->run_start)
    return 0;
  due = k->run_base + (uint64_t)((double)(now - k->run_start) * g.o.rate / 1e9);
  if (g.o.lines && due > g.o.lines)
    due = g.o.lines;
  while (k->run_lines < due) {
    hist_push(k, now);
    k->run_lines++;
    n++;
  }
  return n;
}

static void ctr_tick(struct ctr *k, int64_t now)
{
  if (k->state != ST_RUNNING) {
    if (!k->start_at || now < k->start_at)
      return;
    ctr_start(k, now);
  }
  uint64_t added = ctr_generate(k, now);
  if (g.o.lines && k->run_lines >= g.o.lines && !g.o.linger)
    ctr_stop(k, ST_EXITED, now);
  else if (added)
    ctr_kick(k);
}

static void on_tick(uv_timer_t *t)
{
  int64_t now = ts_now();
  for (long i = 0; i < g.o.containers; i++)
    ctr_tick(&g.ctrs[i], now);
  events_expire(now);
}

/* ---- request handlers ---- */

static void h_ping(struct conn *c, const struct req *r)
{
  struct buf b = {0};
  int keep = r->keepalive;
  head_common(&b, 200);
  buf_str(&b, "Builder-Version: 2\r\nCache-Control: no-cache, no-store, must-revalidate\r\n"
              "Pragma: no-cache\r\nContent-Type: text/plain; charset=utf-8\r\n"
              "Content-Length: 2\r\n");
  if (!keep)
    buf_str(&b, "Connection: close\r\n");
  buf_str(&b, r->head ? "\r\n" : "\r\nOK");
  if (!keep) {
    c->close_after = 1;
    c->state = CS_STALL;
  }
  conn_send(c, &b);
}

static void h_version(struct conn *c, const struct req *r)
{
  struct buf b = {0};
  buf_printf(&b,
             "{\"Version\":\"20.10-fake\",\"ApiVersion\":\"%s\",\"MinAPIVersion\":\"1.%d\","
             "\"Os\":\"linux\",\"Arch\":\"amd64\",\"KernelVersion\":\"fake\"}\n",
             g.o.api, MIN_API_MINOR);
  respond_json(c, r, 200, &b);
}

static void h_list(struct conn *c, const struct req *r)
{
  static const char *const status[] = {"Created", "Up", "Exited (0)", "Restarting (0)"};
  struct buf b = {0};
  int all = query_bool(r->query, "all"), first = 1;
  buf_str(&b, "[");
  for (long i = 0; i < g.o.containers; i++) {
    const struct ctr *k = &g.ctrs[i];
    if (!all && k->state != ST_RUNNING)
      continue;
    buf_printf(&b,
               "%s{\"Id\":\"%s\",\"Names\":[\"/%s\"],\"Image\":\"fake:latest\","
               "\"ImageID\":\"sha256:%s\",\"Command\":\"/fake\",\"Created\":%" PRId64 ","
               "\"Labels\":{\"fake\":\"1\"},\"State\":\"%s\",\"Status\":\"%s\"}",
               first ? "" : ",", k->id, k->name, g.image_id, k->created_at / NS_PER_SEC,
               ctr_status(k), status[k->state]);
    first = 0;
  }
  buf_str(&b, "]\n");
  respond_json(c, r, 200, &b);
}

static void fmt_time_or_zero(int64_t ns, char out[TS_LEN + 1])
{
  if (ns)
    ts_format(ns, out);
  else
    snprintf(out, TS_LEN + 1, "0001-01-01T00:00:00Z");
}

static void h_inspect(struct conn *c, const struct req *r, const char *id)
{
  struct ctr *k = ctr_find(id);
  struct buf b = {0};
  char created[TS_LEN + 1], started[TS_LEN + 1], finished[TS_LEN + 1];
  if (!k) {
    respond_no_such(c, r, id);
    return;
  }
  fmt_time_or_zero(k->created_at, created);
  fmt_time_or_zero(k->started_at, started);
  fmt_time_or_zero(k->finished_at, finished);
  buf_printf(&b,
             "{\"Id\":\"%s\",\"Created\":\"%s\",\"Path\":\"/fake\",\"Args\":[],"
             "\"State\":{\"Status\":\"%s\",\"Running\":%s,\"Paused\":false,\"Restarting\":%s,"
             "\"OOMKilled\":false,\"Dead\":false,\"Pid\":%ld,\"ExitCode\":0,\"Error\":\"\","
             "\"StartedAt\":\"%s\",\"FinishedAt\":\"%s\"},"
             "\"Image\":\"sha256:%s\",\"Name\":\"/%s\",\"RestartCount\":%d,"
             "\"LogPath\":\"/var/lib/docker/containers/%s/%s-json.log\","
             "\"HostConfig\":{\"LogConfig\":{\"Type\":\"%s\",\"Config\":{}}},"
             "\"Config\":{\"Hostname\":\"%.12s\",\"Tty\":%s,\"Image\":\"fake:latest\","
             "\"Labels\":{\"fake\":\"1\"}}}\n",
             k->id, created, ctr_status(k), k->state == ST_RUNNING ? "true" : "false",
             k->state == ST_RESTARTING ? "true" : "false",
             k->state == ST_RUNNING ? 1000 + (long)(k - g.ctrs) : 0L, started, finished,
             g.image_id, k->name, k->runs > 1 ? k->runs - 1 : 0, k->id, k->id,
             g.o.local ? "local" : "json-file", k->id, g.o.tty ? "true" : "false");
  respond_json(c, r, 200, &b);
}

/* Takes one use of the pending logs fault. */
static enum fault take_logs_fault(void)
{
  if (g.logs_fault == F_NONE || g.logs_fault_count <= 0)
    return F_NONE;
  enum fault f = g.logs_fault;
  if (--g.logs_fault_count == 0)
    g.logs_fault = F_NONE;
  return f;
}

/* Answers a fault that is an HTTP error. Returns 1 when it did. */
static int respond_fault_status(struct conn *c, const struct req *r, enum fault f)
{
  if (f == F_500 || f == F_404 || f == F_409 || f == F_501)
    fault_applied(f);
  switch (f) {
  case F_500:
    respond_error(c, r, 500, "fake: injected internal server error");
    return 1;
  case F_404:
    respond_error(c, r, 404, "No such container: injected");
    return 1;
  case F_409:
    respond_error(c, r, 409, "can not get logs from container which is dead or marked for removal");
    return 1;
  case F_501:
    respond_error(c, r, 501, "configured logging driver does not support reading");
    return 1;
  default:
    return 0;
  }
}

static const char *logs_content_type(const struct req *r)
{
  int major = r->has_ver ? r->vmajor : g.o.api_major;
  int minor = r->has_ver ? r->vminor : g.o.api_minor;
  if (g.o.tty || (g.o.quirk_ct && (major < 1 || (major == 1 && minor < 42))))
    return "application/vnd.docker.raw-stream";
  return "application/vnd.docker.multiplexed-stream";
}

static int num_u64(const char *s, uint64_t *out);

static void h_logs(struct conn *c, const struct req *r, const char *id)
{
  char v[64];
  int64_t since = 0;
  enum fault f;
  struct ctr *k;
  struct stream *s;
  g.logs_requests++;
  f = take_logs_fault();
  if (respond_fault_status(c, r, f))
    return;
  if (f == F_RESET) {
    fault_applied(F_RESET);
    conn_close(c);
    return;
  }
  k = ctr_find(id);
  if (!k) {
    respond_no_such(c, r, id);
    return;
  }
  int want_out = query_bool(r->query, "stdout"), want_err = query_bool(r->query, "stderr");
  if (!want_out && !want_err) {
    respond_error(c, r, 400, "Bad parameters: you must choose at least one stream");
    return;
  }
  int has = query_get(r->query, "since", v, sizeof v);
  if (has < 0 || (has > 0 && parse_secs(v, &since) < 0)) {
    respond_error(c, r, 400, "invalid value for since: expected SECONDS[.NANOSECONDS]");
    return;
  }
  uint64_t tail = NO_END; /* tail=N: the last N lines; all: everything */
  if (query_get(r->query, "tail", v, sizeof v) == 1 && strcmp(v, "all") != 0 &&
      num_u64(v, &tail) < 0) {
    respond_error(c, r, 400, "invalid value for tail");
    return;
  }
  if (f == F_STALL_HEADERS) {
    fault_applied(F_STALL_HEADERS);
    c->state = CS_STALL;
    return;
  }
  if (f == F_DRIP) {
    fault_applied(F_DRIP);
    c->drip = 1;
    c->keepalive = 0;
  }
  if (stream_headers(c, logs_content_type(r)) < 0)
    return;
  if (f == F_STALL_BODY) {
    fault_applied(F_STALL_BODY);
    c->state = CS_STALL;
    return;
  }
  s = xcalloc(1, sizeof *s);
  s->kind = SK_LOGS;
  s->conn = c;
  s->fault = f;
  s->ctr = k;
  s->since = since;
  s->want_out = want_out;
  s->want_err = want_err;
  s->stamps = query_bool(r->query, "timestamps");
  s->first_sent = NO_END;
  s->next_seq = hist_find(k, since);
  if (tail != NO_END && hist_next(k) - s->next_seq > tail)
    s->next_seq = hist_next(k) - tail;
  s->end_seq = query_bool(r->query, "follow") && k->state == ST_RUNNING ? NO_END : hist_next(k);
  list_add(&k->streams, &s->link);
  c->stream = s;
  c->state = CS_STREAM;
  logs_pump(s);
}

static void h_events(struct conn *c, const struct req *r)
{
  char v[4096];
  int64_t since = 0, until = 0;
  cJSON *filters = NULL;
  struct buf out = {0};
  g.events_requests++;
  int has_since = query_get(r->query, "since", v, sizeof v);
  if (has_since < 0 || (has_since > 0 && parse_secs(v, &since) < 0))
    goto bad_time;
  int has_until = query_get(r->query, "until", v, sizeof v);
  if (has_until < 0 || (has_until > 0 && parse_secs(v, &until) < 0))
    goto bad_time;
  if (until && has_since && until < since) {
    respond_error(c, r, 400, "`since` time must be before `until` time");
    return;
  }
  int has_filters = query_get(r->query, "filters", v, sizeof v);
  if (has_filters > 0 && v[0]) {
    filters = cJSON_Parse(v);
    if (filters_check(filters) < 0) {
      cJSON_Delete(filters);
      respond_error(c, r, 400, "invalid filter");
      return;
    }
  } else if (has_filters < 0) {
    respond_error(c, r, 400, "invalid filter");
    return;
  }
  if (stream_headers(c, "application/json") < 0) {
    cJSON_Delete(filters);
    return;
  }
  struct stream *s = xcalloc(1, sizeof *s);
  s->kind = SK_EVENTS;
  s->conn = c;
  s->filters = filters;
  s->until = until;
  s->budget = -1;
  if (g.events_end_count > 0) {
    g.events_end_count--;
    s->fault = F_EVENTS_END;
    s->budget = g.events_end_after;
  }
  list_add(&g.evstreams, &s->link);
  c->stream = s;
  c->state = CS_STREAM;
  int done = s->budget == 0;
  if (done)
    fault_applied(F_EVENTS_END);
  for (unsigned i = 0; has_since > 0 && !done && i < g.ring_count; i++) {
    const struct event *e = &g.ring[(g.ring_next + EVENT_RING - g.ring_count + i) % EVENT_RING];
    if (e->time_ns >= since)
      done = events_deliver(s, &out, e);
  }
  if (done || (until && until < ts_now()))
    stream_finish(s, &out);
  else
    conn_send(c, &out);
  return;
bad_time:
  respond_error(c, r, 400, "invalid time value: expected SECONDS[.NANOSECONDS]");
}

static void h_restart(struct conn *c, const struct req *r, const char *name)
{
  struct ctr *k = ctr_find(name);
  int64_t now = ts_now();
  if (!k) {
    respond_no_such(c, r, name);
    return;
  }
  if (k->state == ST_RUNNING)
    ctr_stop(k, ST_RESTARTING, now);
  k->state = ST_RESTARTING;
  k->start_at = now + RESTART_NS;
  respond(c, r, 204, "", "", 0);
}

static void h_faults(struct conn *c, const struct req *r)
{
  struct buf b = {0};
  buf_printf(&b, "{");
  for (int f = F_NONE + 1; f < F_COUNT; f++)
    buf_printf(&b, "%s\"%s\":%" PRIu64, f > F_NONE + 1 ? "," : "", fault_names[f], g.applied[f]);
  buf_printf(&b, "}");
  respond_json(c, r, 200, &b);
}

static void h_fault(struct conn *c, const struct req *r)
{
  char mode[32], v[32];
  long count = 1, after = EVENTS_END_AFTER;
  char *end;
  if (query_get(r->query, "mode", mode, sizeof mode) != 1) {
    respond_error(c, r, 400, "mode is required");
    return;
  }
  enum fault f = fault_from_name(mode, strlen(mode));
  if (f == F_COUNT) {
    respond_error(c, r, 400, "unknown fault mode");
    return;
  }
  if (query_get(r->query, "count", v, sizeof v) == 1) {
    count = strtol(v, &end, 10);
    if (*end || count < 0)
      goto bad_number;
  }
  if (query_get(r->query, "after", v, sizeof v) == 1) {
    after = strtol(v, &end, 10);
    if (*end || after < 0)
      goto bad_number;
  }
  if (f == F_NONE) {
    g.logs_fault = F_NONE;
    g.logs_fault_count = g.events_end_count = 0;
  } else if (f == F_EVENTS_END) {
    g.events_end_count = count;
    g.events_end_after = after;
  } else {
    g.logs_fault = f;
    g.logs_fault_count = count;
  }
  respond(c, r, 204, "", "", 0);
  return;
bad_number:
  respond_error(c, r, 400, "count and after must be non-negative integers");
}

/* Routes a container path "/containers/{id}/{json|logs}". */
static void h_container(struct conn *c, const struct req *r, const char *rest)
{
  char id[256];
  const char *slash = strchr(rest, '/');
  if (!slash || slash == rest || url_decode(rest, (size_t)(slash - rest), id, sizeof id) < 0) {
    respond_error(c, r, 404, "page not found");
    return;
  }
  if (strcmp(slash, "/json") == 0)
    h_inspect(c, r, id);
  else if (strcmp(slash, "/logs") == 0)
    h_logs(c, r, id);
  else
    respond_error(c, r, 404, "page not found");
}

/* Rejects versions outside [1.MIN_API_MINOR, the advertised one]. Returns
 * 1 when it answered. */
static int version_reject(struct conn *c, const struct req *r)
{
  struct buf m = {0};
  int too_new = r->vmajor > g.o.api_major ||
                (r->vmajor == g.o.api_major && r->vminor > g.o.api_minor);
  int too_old = r->vmajor < 1 || (r->vmajor == 1 && r->vminor < MIN_API_MINOR);
  if (!r->has_ver || (!too_new && !too_old))
    return 0;
  if (too_new)
    buf_printf(&m, "client version %.*s is too new. Maximum supported API version is %s",
               (int)r->ver_len, r->ver, g.o.api);
  else
    buf_printf(&m, "client version %.*s is too old. Minimum supported API version is 1.%d, "
                   "please upgrade your client to a newer version",
               (int)r->ver_len, r->ver, MIN_API_MINOR);
  buf_add(&m, "", 1);
  respond_error(c, r, 400, m.p);
  buf_free(&m);
  return 1;
}

static void route(struct conn *c, const struct req *r)
{
  const char *p = r->path;
  int get = strcmp(r->method, "GET") == 0, post = strcmp(r->method, "POST") == 0;
  if (version_reject(c, r))
    return;
  if (strcmp(p, "/_ping") == 0 && (get || r->head))
    h_ping(c, r);
  else if (get && strcmp(p, "/version") == 0)
    h_version(c, r);
  else if (get && strcmp(p, "/containers/json") == 0)
    h_list(c, r);
  else if (get && strncmp(p, "/containers/", 12) == 0)
    h_container(c, r, p + 12);
  else if (get && strcmp(p, "/events") == 0)
    h_events(c, r);
  else if (post && strncmp(p, "/fake/restart/", 14) == 0 && p[14])
    h_restart(c, r, p + 14);
  else if (post && strcmp(p, "/fake/fault") == 0)
    h_fault(c, r);
  else if (get && strcmp(p, "/fake/faults") == 0)
    h_faults(c, r);
  else
    respond_error(c, r, 404, "page not found");
}

/* ---- request parsing ---- */

static void parse_header(char *line, struct req *r, int *bad)
{
  char *colon = strchr(line, ':');
  char *blank = strpbrk(line, " \t");
  if (!colon || colon == line || (blank && blank < colon)) {
    *bad = 1;
    return;
  }
  *colon = '\0';
  char *v = colon + 1;
  v += strspn(v, " \t");
  if (strcasecmp(line, "Connection") == 0) {
    if (strcasestr(v, "close"))
      r->keepalive = 0;
    else if (strcasestr(v, "keep-alive"))
      r->keepalive = 1;
  } else if (strcasecmp(line, "Content-Length") == 0) {
    char *end;
    if (*v < '0' || *v > '9')
      *bad = 1;
    r->clen = strtoull(v, &end, 10);
    if (*end && strspn(end, " \t") != strlen(end))
      *bad = 1;
  } else if (strcasecmp(line, "Transfer-Encoding") == 0) {
    *bad = 1; /* request bodies are only accepted with a Content-Length */
  }
}

/* Splits the version prefix "/vX.Y" off the path. */
static void split_version(char *path, struct req *r)
{
  r->path = path;
  if (path[0] != '/' || path[1] != 'v')
    return;
  size_t n = parse_version(path + 2, &r->vmajor, &r->vminor);
  if (n == 0 || (path[2 + n] != '/' && path[2 + n] != '\0'))
    return;
  r->has_ver = 1;
  r->ver = path + 2;
  r->ver_len = n;
  r->path = path[2 + n] ? path + 2 + n : "/";
}

/* Parses the NUL-terminated head h (request line and headers, CRLF
 * separated) in place. Returns 0, or -1 when it is not HTTP/1.x. */
static int parse_request(char *h, struct req *r)
{
  int bad = 0;
  memset(r, 0, sizeof *r);
  char *eol = strstr(h, "\r\n");
  char *hdrs = eol ? eol + 2 : h + strlen(h);
  if (eol)
    *eol = '\0';
  char *sp1 = strchr(h, ' ');
  char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
  if (!sp1 || !sp2 || sp1 == h || sp1 - h > 16 || sp1[1] != '/')
    return -1;
  *sp1 = *sp2 = '\0';
  for (const char *m = h; *m; m++)
    if (*m < 'A' || *m > 'Z')
      return -1;
  if (strcmp(sp2 + 1, "HTTP/1.1") == 0)
    r->keepalive = 1;
  else if (strcmp(sp2 + 1, "HTTP/1.0") != 0)
    return -1;
  r->method = h;
  r->head = strcmp(h, "HEAD") == 0;
  while (*hdrs && !bad) {
    char *next = strstr(hdrs, "\r\n");
    if (next)
      *next = '\0';
    parse_header(hdrs, r, &bad);
    hdrs = next ? next + 2 : hdrs + strlen(hdrs);
  }
  char *target = sp1 + 1;
  char *q = strchr(target, '?');
  r->query = "";
  if (q) {
    *q = '\0';
    r->query = q + 1;
  }
  split_version(target, r);
  return bad ? -1 : 0;
}

static void conn_consume(struct conn *c, size_t n)
{
  memmove(c->in, c->in + n, c->in_len - n);
  c->in_len -= n;
}

/* Drops request body bytes still owed. */
static void conn_skip_body(struct conn *c)
{
  size_t n = c->body_skip < c->in_len ? c->body_skip : c->in_len;
  conn_consume(c, n);
  c->body_skip -= n;
}

static void bad_request(struct conn *c)
{
  c->in_len = 0;
  respond_error(c, NULL, 400, "malformed HTTP request");
}

/* Serves the next complete request in the input, one at a time: the next
 * waits until this one's response is written. */
static void conn_parse(struct conn *c)
{
  struct req r;
  if (c->state != CS_READ || conn_busy(c) || c->close_after)
    return;
  conn_skip_body(c);
  if (c->body_skip)
    return;
  char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
  if (!end) {
    if (c->in_len >= HDR_CAP)
      bad_request(c);
    return;
  }
  size_t used = (size_t)(end - c->in) + 4;
  *end = '\0';
  if (memchr(c->in, '\0', (size_t)(end - c->in)) || parse_request(c->in, &r) < 0 ||
      r.clen > BODY_CAP) {
    bad_request(c);
    return;
  }
  c->keepalive = r.keepalive;
  route(c, &r);
  if (c->state == CS_CLOSING)
    return;
  conn_consume(c, used);
  c->body_skip = r.clen;
  conn_skip_body(c);
}

/* After a write: close, pump the stream, or serve the next request. */
static void conn_drained(struct conn *c)
{
  if (conn_busy(c))
    return;
  if (c->close_after) {
    conn_close(c);
    return;
  }
  if (c->stream && c->stream->kind == SK_LOGS)
    logs_pump(c->stream);
  else if (c->state == CS_READ)
    conn_parse(c);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
  struct conn *c = h->data;
  if (c->in_len < HDR_CAP)
    *b = uv_buf_init(c->in + c->in_len, (unsigned)(HDR_CAP - c->in_len));
  else
    *b = uv_buf_init(g.discard, sizeof g.discard);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
  struct conn *c = st->data;
  if (nread < 0) {
    conn_close(c); /* EOF or error: the client went away */
    return;
  }
  if (nread == 0 || b->base == g.discard)
    return;
  c->in_len += (size_t)nread;
  if (c->body_skip)
    conn_skip_body(c);
  conn_parse(c);
}

static void on_drip(uv_timer_t *t)
{
  struct conn *c = t->data;
  if (c->writes > 0)
    return;
  if (c->drip_off >= c->dripbuf.len) {
    uv_timer_stop(t);
    return;
  }
  char *one = xcalloc(1, 1);
  one[0] = c->dripbuf.p[c->drip_off++];
  if (c->drip_off == c->dripbuf.len)
    c->dripbuf.len = c->drip_off = 0;
  conn_write(c, one, 1);
}

static void on_connection(uv_stream_t *server, int status)
{
  struct conn *c;
  if (status < 0)
    return;
  c = xcalloc(1, sizeof *c);
  uv_pipe_init(&g.loop, &c->pipe, 0);
  uv_timer_init(&g.loop, &c->drip_timer);
  c->pipe.data = c;
  c->drip_timer.data = c;
  c->handles = 2;
  list_init(&c->link);
  list_add(&g.conns, &c->link);
  g.open_conns++;
  if (uv_accept(server, (uv_stream_t *)&c->pipe) != 0 ||
      uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) != 0)
    conn_close(c);
}

/* ---- process ---- */

static void print_stats(void)
{
  struct buf b = {0};
  uint64_t total = 0;
  buf_printf(&b,
             "{\"connections\":%ld,\"logs_requests\":%" PRIu64 ",\"events_requests\":%" PRIu64
             ",\"repeated\":%" PRIu64 ",\"skipped\":%" PRIu64 ",\"lines\":{",
             g.open_conns, g.logs_requests, g.events_requests, g.repeated, g.skipped);
  for (long i = 0; i < g.o.containers; i++) {
    uint64_t n = hist_next(&g.ctrs[i]) - 1;
    total += n;
    buf_printf(&b, "%s\"%s\":%" PRIu64, i ? "," : "", g.ctrs[i].name, n);
  }
  buf_printf(&b, "},\"lines_total\":%" PRIu64 "}\n", total);
  fwrite(b.p, 1, b.len, stdout);
  fflush(stdout);
  buf_free(&b);
}

/* Closes every handle; uv_run then returns. */
static void server_stop(void)
{
  struct link *l, *next;
  if (g.stopping)
    return;
  g.stopping = 1;
  uv_close((uv_handle_t *)&g.server, NULL);
  uv_close((uv_handle_t *)&g.tick, NULL);
  uv_close((uv_handle_t *)&g.sig_term, NULL);
  uv_close((uv_handle_t *)&g.sig_int, NULL);
  uv_close((uv_handle_t *)&g.sig_usr1, NULL);
  for (l = g.conns.next; l != &g.conns; l = next) {
    next = l->next;
    conn_close(OWNER(l, struct conn, link));
  }
  if (g.bound)
    unlink(g.o.socket);
}

static void on_signal(uv_signal_t *h, int signum)
{
  if (signum == SIGUSR1)
    print_stats();
  else
    server_stop();
}

static void ctrs_init(int64_t now)
{
  g.ctrs = xcalloc((size_t)g.o.containers, sizeof *g.ctrs);
  derive_id("fake:latest", g.image_id);
  for (long i = 0; i < g.o.containers; i++) {
    struct ctr *k = &g.ctrs[i];
    snprintf(k->name, sizeof k->name, "c%ld", i);
    derive_id(k->name, k->id);
    list_init(&k->streams);
    k->first_seq = 1;
    k->created_at = now;
    k->state = ST_CREATED;
    for (uint64_t j = 0; j < g.o.preload; j++)
      hist_push(k, now - (int64_t)(g.o.preload - 1 - j) * 1000);
    if (g.o.start_delay > 0)
      k->start_at = now + (int64_t)(g.o.start_delay * 1e9);
    else
      ctr_start(k, now);
  }
}

static void ctrs_free(void)
{
  for (long i = 0; g.ctrs && i < g.o.containers; i++)
    free(g.ctrs[i].ts);
  free(g.ctrs);
}

static void usage(void)
{
  fputs("usage: fakedocker --socket PATH [--api-version X.Y] [--containers N] [--tty]\n"
        "         [--stdout-only] [--rate R] [--lines M] [--linger] [--cut-on-exit] [--preload K] [--line-bytes B]\n"
        "         [--long-every E] [--retain N] [--start-delay D] [--fault MODE[:K]]\n"
        "         [--quirk-content-type]\n",
        stderr);
}

static int num_u64(const char *s, uint64_t *out)
{
  char *end;
  if (*s < '0' || *s > '9')
    return -1;
  *out = strtoull(s, &end, 10);
  return *end ? -1 : 0;
}

static int num_double(const char *s, double *out)
{
  char *end;
  *out = strtod(s, &end);
  return *end || end == s || *out < 0 ? -1 : 0;
}

static int parse_fault(const char *s, struct opts *o)
{
  const char *colon = strchr(s, ':');
  uint64_t count = 1;
  o->fault = fault_from_name(s, colon ? (size_t)(colon - s) : strlen(s));
  if (o->fault == F_COUNT || (colon && num_u64(colon + 1, &count) < 0))
    return -1;
  o->fault_count = (long)count;
  return 0;
}

/* Reads the command line into o. Returns 0, or -1 after printing usage. */
static int parse_opts(int argc, char **argv, struct opts *o)
{
  static const struct option longs[] = {
    {"socket", 1, 0, 's'},      {"api-version", 1, 0, 'a'}, {"containers", 1, 0, 'n'},
    {"tty", 0, 0, 't'},         {"stdout-only", 0, 0, 'o'}, {"rate", 1, 0, 'r'},
    {"lines", 1, 0, 'l'},       {"preload", 1, 0, 'p'},     {"line-bytes", 1, 0, 'b'},
    {"long-every", 1, 0, 'e'},  {"retain", 1, 0, 'R'},      {"start-delay", 1, 0, 'd'},
    {"fault", 1, 0, 'f'},       {"quirk-content-type", 0, 0, 'q'}, {"logfmt", 0, 0, 'L'},
    {"linger", 0, 0, 'G'},      {"cut-on-exit", 0, 0, 'C'}, {"local", 0, 0, 'D'},
    {0, 0, 0, 0}};
  uint64_t u = 0;
  int ch, bad = 0;
  o->api = "1.41";
  o->containers = 1;
  o->rate = 10;
  o->retain = 1000000;
  while (!bad && (ch = getopt_long(argc, argv, "", longs, NULL)) != -1) {
    switch (ch) {
    case 's': o->socket = optarg; break;
    case 'a': o->api = optarg; break;
    case 'n': bad = num_u64(optarg, &u) < 0 || u > 1000000; o->containers = (long)u; break;
    case 't': o->tty = 1; break;
    case 'o': o->stdout_only = 1; break;
    case 'G': o->linger = 1; break;
    case 'C': o->cut_on_exit = 1; break;
    case 'D': o->local = 1; break;
    case 'r': bad = num_double(optarg, &o->rate) < 0; break;
    case 'l': bad = num_u64(optarg, &o->lines) < 0; break;
    case 'p': bad = num_u64(optarg, &o->preload) < 0; break;
    case 'b': bad = num_u64(optarg, &u) < 0 || u > 16 * 1024 * 1024; o->line_bytes = u; break;
    case 'e': bad = num_u64(optarg, &o->long_every) < 0; break;
    case 'R': bad = num_u64(optarg, &o->retain) < 0 || o->retain == 0; break;
    case 'd': bad = num_double(optarg, &o->start_delay) < 0; break;
    case 'f': bad = parse_fault(optarg, o) < 0; break;
    case 'q': o->quirk_ct = 1; break;
    case 'L': o->logfmt = 1; break;
    default: bad = 1; break;
    }
  }
  size_t vn = parse_version(o->api, &o->api_major, &o->api_minor);
  if (bad || optind != argc || !o->socket || vn == 0 || o->api[vn]) {
    usage();
    return -1;
  }
  return 0;
}

/* Binds and listens on the socket path, replacing a stale socket. */
static int server_listen(void)
{
  struct stat st;
  int rc;
  if (lstat(g.o.socket, &st) == 0 && S_ISSOCK(st.st_mode))
    unlink(g.o.socket);
  rc = uv_pipe_bind(&g.server, g.o.socket);
  if (rc == 0) {
    g.bound = 1;
    rc = uv_listen((uv_stream_t *)&g.server, 128, on_connection);
  }
  if (rc != 0)
    fprintf(stderr, "fakedocker: %s: %s\n", g.o.socket, uv_strerror(rc));
  return rc;
}

int main(int argc, char **argv)
{
  int rc = 1;
  if (parse_opts(argc, argv, &g.o) < 0)
    return 2;
  signal(SIGPIPE, SIG_IGN);
  list_init(&g.conns);
  list_init(&g.evstreams);
  g.logs_fault = g.o.fault == F_EVENTS_END ? F_NONE : g.o.fault;
  g.logs_fault_count = g.o.fault == F_EVENTS_END ? 0 : g.o.fault_count;
  g.events_end_count = g.o.fault == F_EVENTS_END ? g.o.fault_count : 0;
  g.events_end_after = EVENTS_END_AFTER;
  g.text = xcalloc(1, (g.o.line_bytes > LONG_TEXT ? g.o.line_bytes : LONG_TEXT) + 64);
  if (uv_loop_init(&g.loop) != 0)
    goto err;
  uv_pipe_init(&g.loop, &g.server, 0);
  uv_timer_init(&g.loop, &g.tick);
  uv_signal_init(&g.loop, &g.sig_term);
  uv_signal_init(&g.loop, &g.sig_int);
  uv_signal_init(&g.loop, &g.sig_usr1);
  ctrs_init(ts_now());
  if (server_listen() != 0 || uv_signal_start(&g.sig_term, on_signal, SIGTERM) != 0 ||
      uv_signal_start(&g.sig_int, on_signal, SIGINT) != 0 ||
      uv_signal_start(&g.sig_usr1, on_signal, SIGUSR1) != 0 ||
      uv_timer_start(&g.tick, on_tick, TICK_MS, TICK_MS) != 0) {
    server_stop();
  } else {
    fputs("ready\n", stdout);
    fflush(stdout);
    rc = 0;
  }
  uv_run(&g.loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&g.loop) != 0) {
    fputs("fakedocker: handles left open at exit\n", stderr);
    rc = 1;
  }
err:
  ctrs_free();
  free(g.text);
  buf_free(&g.frame);
  return rc;
}
