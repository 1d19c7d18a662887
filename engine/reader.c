/* reader.c - one container's log stream (see reader.h for the states). */
#include <cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backoff.h"
#include "batch.h"
#include "check.h"
#include "decode.h"
#include "docker.h"
#include "inflight.h"
#include "retired.h"
#include "occurrence.h"
#include "log.h"
#include "reader.h"
#include "timestamp.h"
#include "handles.h"

struct reader {
  runtime_t *rt;
  const reader_owner_t *owner; /* told of state changes and the close */
  void *owner_ud;
  container_t *c;
  daemon_t *daemon; /* the container's daemon: its requests go there */
  cursor_t *cursor; /* borrowed from the owner */
  reader_state_t state;
  http_req_t *req;          /* the logs or inspect request in flight */
  http_req_t *probe;        /* the tail request checking a quiet stream, or NULL */
  struct span_check *check; /* the read checking a span of a local-driver stream, or NULL */
  int64_t check_from;       /* that stream is checked up to here (INT64_MAX: nothing yet) */
  uint64_t check_bytes;     /* bytes delivered since the last check began */
  uint64_t last_check;      /* uv_now when the last check began */
  int check_tries;          /* reads of the span from check_from that were not whole */
  int64_t check_last;       /* the end of the last whole check (INT64_MAX: none) */
  int64_t replay_until;     /* the cursor's newest when the connection began: a
                               check waits until the connection is past it */
  uv_timer_t life;          /* cycle while connected, delay while in backoff */
  uv_timer_t flush;         /* the open batch's flush interval */
  int open_handles;
  decoder_t dec;
  batch_t *batch;           /* open batch, or NULL */
  size_t last_n, last_used; /* lines and bytes of the last batch submitted */
  backoff_t backoff;        /* reconnection delays */
  int64_t initial_since;    /* where to start while the cursor is empty */
  uint64_t stream_started;  /* uv_now when the current request was made */
  uint64_t stream_lines;    /* lines delivered by the current request */
  uint64_t last_data;       /* uv_now when the stream last brought data */
  uint64_t win_start;       /* uv_now when the current one-second window began */
  uint64_t win_bytes;       /* bytes the stream brought in that window */
  uint64_t last_busy;       /* uv_now when a window reached BUSY_BYTES */
  uint64_t lines_checked;   /* stream_lines when the stream was last probed */
  uint64_t last_probe;      /* uv_now of that probe */
  uint64_t probe_wait;      /* how long a quiet stream that brought nothing since
                              waits for the next probe (doubles up to PROBE_MAX_MS) */
  int deferred;             /* the cycle is due and waits for a quiet stream */
  int skip_logged;          /* the daemon's skip was logged for this container */
  int protocol_error;
  int paused;          /* the stream waits for the outputs to catch up */
  int last_read;       /* the container exited: its history is read from
                              the cursor without follow before finishing */
  uint64_t event_ns;   /* uv_hrtime of the start event until the first
                              logs request is written, else 0 */
  int attach;          /* ATTACH_*: the stream is an attach stream, made
                              before the container started (reader.h) */
  int64_t attach_ts;   /* the time given to the last attached line */
  int64_t answered_ns; /* wall clock when the attach was answered */
  char error[192];
  uint64_t lines, errors;
  uint64_t bytes;     /* of the delivered lines (metrics) */
  uint64_t repeated;  /* lines the daemon sent twice in one stream, dropped */
  uint64_t recovered; /* lines a follow stream skipped, delivered by a check */
  occurrence_t *occ;  /* the connection's counts of equal lines */
};

/* An attach stream: sent, not answered; answered, its data held until the
 * start event shows it was in place before the start; confirmed. */
enum { ATTACH_NONE, ATTACH_SENT, ATTACH_ANSWERED, ATTACH_CONFIRMED };

/* How long after the attach was answered the start event must have been
 * stamped by the daemon: the daemon stamps the event after the process was
 * started, and the process may write before. */
#define ATTACH_MARGIN_NS 50000000LL
/* Without a start event this long after the answer, the container has not
 * started (or its event was skipped): the attach stream is taken. */
#define ATTACH_VERDICT_MS 10000

static const char *const state_names[] = {
    "connecting", "streaming", "cycling", "draining", "inspecting", "backoff", "stopping", "closed",
};

_Static_assert(sizeof state_names / sizeof *state_names == READER_N_STATES,
               "a name for every reader state");

const char *reader_state_name(reader_state_t s) {
  return (unsigned)s < sizeof state_names / sizeof *state_names ? state_names[s] : "?";
}

reader_state_t reader_state(const reader_t *r) { return r->state; }
const container_t *reader_container(const reader_t *r) { return r->c; }
const daemon_t *reader_daemon(const reader_t *r) { return r->daemon; }
uint64_t reader_lines(const reader_t *r) { return r->lines; }
uint64_t reader_errors(const reader_t *r) { return r->errors; }
uint64_t reader_bytes(const reader_t *r) { return r->bytes; }
uint64_t reader_repeated(const reader_t *r) { return r->repeated; }
uint64_t reader_recovered(const reader_t *r) { return r->recovered; }
int64_t reader_newest(const reader_t *r) { return cursor_newest(r->cursor); }

/* Every state change goes through here. */
static void reader_set_state(reader_t *r, reader_state_t to, const char *why) {
  reader_state_t from = r->state;
  if (from == to) return;
  r->state = to;
  log_debug(r->c->name, "reader %s -> %s%s%s", reader_state_name(from), reader_state_name(to),
            why ? ": " : "", why ? why : "");
  r->owner->state_changed(r->owner_ud, r, from, to);
}

static uint64_t ms(double seconds) { return seconds <= 0 ? 0 : (uint64_t)(seconds * 1000.0 + 0.5); }

/* --- batches ------------------------------------------------------------ */

/* The oldest timestamp the cursor must keep covering: the line still being
 * assembled, and for a local-driver stream the span not checked yet
 * (check_span): a resume from the cursor, or from the checkpoint after a
 * restart, then reads that span again. */
static int64_t floor_ts(const reader_t *r) {
  int64_t pending = decoder_pending_ts(&r->dec);
  return r->check_from < pending ? r->check_from : pending;
}

static void submit_batch(reader_t *r) {
  uv_timer_stop(&r->flush);
  if (!r->batch) return;
  batch_t *b = r->batch;
  r->batch = NULL;
  r->last_n = b->n;
  r->last_used = b->used;
  b->floor_ts = floor_ts(r);
  inflight_submit(r->rt->inflight, b);
}

static void on_flush(uv_timer_t *t) { submit_batch(t->data); }

/* A backfill's window, both ends inclusive like the daemon's: a line outside
 * it (a resume from the cursor reads from before the window's start; a
 * daemon may round the bounds) is not delivered. */
static int outside_window(const config_t *cfg, int64_t ts) {
  if (!cfg->backfill) return 0;
  return ts < cfg->backfill_since || (cfg->backfill_until > 0 && ts > cfg->backfill_until);
}

/* --- lines ---------------------------------------------------------------- */

static void add_line(reader_t *r, const decode_line_t *l, const cursor_key_t *k, uint32_t occ);

static void deliver(reader_t *r, const decode_line_t *line) {
  const config_t *cfg = r->rt->cfg;
  decode_line_t stamped;
  const decode_line_t *l = line;
  if (r->attach) { /* arrival times, made strictly increasing: each line its own key */
    stamped = *line;
    if (stamped.ts <= r->attach_ts) stamped.ts = r->attach_ts + 1;
    r->attach_ts = stamped.ts;
    l = &stamped;
  }
  if (outside_window(cfg, l->ts)) return;
  cursor_key_t k = cursor_key(l->ts, l->stream, l->data, l->len);
  uint32_t occ = 0;
  int oom = 0;
  int seen = occurrence_seen(r->occ, r->cursor, &k,
                             (l->flags & DECODE_TRUNCATED) ? CURSOR_PIECE : 0, &occ, &oom);
  if (oom) log_error(r->c->name, "out of memory counting equal lines: their record ids may repeat");
  if (seen == CURSOR_REPEATED) {
    r->repeated++;
    if (cursor_repeated(r->cursor) == 1)
      log_info(r->c->name, "the daemon sent lines of this stream twice (json-file and local do "
                           "where the log file rotates); the copies are dropped and counted");
  }
  if (seen != CURSOR_NEW) return; /* delivered already */
  if (r->c->log_local && !r->attach && r->check_from == INT64_MAX) r->check_from = l->ts;
  add_line(r, l, &k, occ);
}

/* Adds a line to the open batch and records it in the cursor. */
static void add_line(reader_t *r, const decode_line_t *l, const cursor_key_t *k, uint32_t occ) {
  const config_t *cfg = r->rt->cfg;
  if (!r->batch) {
    if (!(r->batch = batch_new(r->c))) {
      log_error(r->c->name, "out of memory for a batch; line dropped");
      return;
    }
    /* Sized like the last batch, with a sixteenth more room for its bytes
     * (out of memory: it grows as lines come). */
    (void)batch_reserve(r->batch, r->last_n, r->last_used + r->last_used / 16);
    uv_timer_start(&r->flush, on_flush, ms(cfg->flush_interval), 0);
  }
  if (batch_add(r->batch, l->ts, l->stream, l->flags, l->data, l->len) != 0) {
    log_error(r->c->name, "out of memory for a line of %zu bytes; line dropped", l->len);
    return;
  }
  r->batch->recs[r->batch->n - 1].hash = k->hash;
  r->batch->recs[r->batch->n - 1].occ = occ;
  cursor_deliver(r->cursor, k, floor_ts(r));
  r->lines++;
  r->bytes += l->len;
  r->check_bytes += l->len;
  r->stream_lines++;
  if (r->batch->n >= cfg->batch_max_lines || r->batch->used >= cfg->batch_max_bytes)
    submit_batch(r);
}

static void on_line(void *ud, const decode_line_t *l) {
  reader_t *r = ud;
  if (l->stream == DECODE_SYSERR) {
    r->errors++;
    log_error(r->c->name, "the daemon reported: %.*s", (int)(l->len > 500 ? 500 : l->len), l->data);
    return;
  }
  deliver(r, l);
}

/* --- connecting --------------------------------------------------------- */

static void connect_stream(reader_t *r);
static void on_life(uv_timer_t *t);
static void finish(reader_t *r, const char *why);
static void close_reader(reader_t *r, const char *why);

static void confirm_attach(reader_t *r, const char *why);

/* How often a local-driver stream is checked (check_span): every
 * CHECK_EVERY_MS while busy or after CHECK_BYTES, else every CHECK_IDLE_MS. */
#define CHECK_EVERY_MS 250
#define CHECK_BYTES 16384
#define CHECK_IDLE_MS 60000
/* Reads of one span that come back without lines delivered from it before
 * the span is taken as checked (what was missing has left the files). */
#define CHECK_TRIES 4
/* How far before its span a check read starts (see check_span). */
#define CHECK_BACK_NS 2000000000LL
/* How far behind the newest line a check ends: each stream's lines may be
 * written a little out of order with the other's. */
#define CHECK_LAG_NS 100000000LL

/* A quiet local-driver stream is probed when it has been quiet for
 * quiet_ms, and again while it stays quiet after waits that double up to
 * this (a stream that stalled where the file rotated brings nothing more;
 * an idle container's costs a request a minute). */
#define PROBE_MAX_MS 60000

/* A stream that brought nothing for this long is quiet (at least twice
 * read_delay, after which a slow stream is read again). */
static uint64_t quiet_ms(const reader_t *r) {
  uint64_t twice = 2 * ms(r->rt->cfg->read_delay), least = 1000;
  /* a local-driver stream stalls where its file rotates, and at a few
   * thousand lines a second the files keep little more than a second */
  if (r->c->log_local) least = 2 * CHECK_EVERY_MS;
  return twice > least ? twice : least;
}

static int is_quiet(const reader_t *r) {
  return !r->paused && uv_now(r->rt->loop) - r->last_data >= quiet_ms(r);
}

/* A follow stream that brought this much within the last second is busy:
 * its container writes fast enough that a log file may rotate while a
 * resume reads it. */
#define BUSY_BYTES 4096
static int is_busy(const reader_t *r) {
  if (r->rt->cfg->backfill || r->last_read) return 0; /* no follow: cycled on time */
  return r->last_busy && uv_now(r->rt->loop) - r->last_busy < 1000;
}

/* How long after the last check a local-driver stream is checked again:
 * CHECK_EVERY_MS while busy or once it brought CHECK_BYTES, CHECK_IDLE_MS
 * once it brought anything, else never (0). */
static uint64_t check_interval(const reader_t *r) {
  if (!r->check_bytes) return 0;
  return is_busy(r) || r->check_bytes >= CHECK_BYTES ? CHECK_EVERY_MS : CHECK_IDLE_MS;
}

static void count_data(reader_t *r, size_t len) {
  uint64_t now = uv_now(r->rt->loop);
  r->last_data = now;
  if (now - r->win_start >= 1000) {
    r->win_start = now;
    r->win_bytes = 0;
  }
  r->win_bytes += len;
  if (r->win_bytes >= BUSY_BYTES) r->last_busy = now;
}

/* When the life timer next looks at a connected stream: at its cycle;
 * every quiet_ms while the cycle waits; and a stream to probe when it will
 * have been quiet for quiet_ms (a skip may be silent for little longer). */
static void arm_life(reader_t *r) {
  uint64_t cycle = ms(r->rt->cfg->cycle), now = uv_now(r->rt->loop), quiet = quiet_ms(r);
  uint64_t due = r->stream_started + cycle > now ? r->stream_started + cycle - now : 0;
  if (r->deferred) due = quiet;
  if (r->c->log_local) {
    uint64_t q = r->last_data + quiet > now ? r->last_data + quiet - now : quiet;
    if (due > q) due = q;
    uint64_t check = check_interval(r); /* check_span */
    if (check && due > check) due = check;
  }
  uv_timer_start(&r->life, on_life, due, 0);
}

static void cycle_stream(reader_t *r, const char *why) {
  reader_set_state(r, READER_CYCLING, why);
  http_cancel(r->req);
  r->req = NULL;
  http_cancel(r->probe);
  r->probe = NULL;
  r->owner->cycled(r->owner_ud);
  connect_stream(r);
}

/* The newest timestamp in a tail answer (INT64_MIN: none). */
typedef struct probe_scan {
  int64_t newest;
} probe_scan_t;

static void on_probe_line(void *ud, const decode_line_t *l) {
  probe_scan_t *p = ud;
  if (l->stream != DECODE_SYSERR && l->ts > p->newest) p->newest = l->ts;
}

/* The daemon's newest log entry is newer than anything this quiet stream
 * brought: the follow stream skipped it (the local driver's does, past
 * the file it rotated), so the stream resumes from the cursor, whose
 * history read has what was skipped while the files keep it. */
static void on_probe_done(void *ud, const http_result_t *res) {
  reader_t *r = ud;
  r->probe = NULL;
  if (!res->ok || res->status != 200 || r->state != READER_STREAMING || !is_quiet(r)) return;
  probe_scan_t scan = {INT64_MIN};
  decoder_t dec;
  decoder_init(&dec, r->c->tty, r->rt->cfg->frame_max, r->rt->cfg->line_max, on_probe_line, &scan);
  if (decoder_feed(&dec, res->body, res->body_len) == 0) decoder_finish(&dec);
  decoder_free(&dec);
  int64_t have = cursor_newest(r->cursor), pending = decoder_pending_ts(&r->dec);
  if (pending != INT64_MAX && pending > have) have = pending;
  if (scan.newest == INT64_MIN || scan.newest <= have) return;
  if (!r->skip_logged) {
    r->skip_logged = 1;
    log_info(r->c->name, "the daemon's follow stream skipped lines where the local log driver "
                         "rotated its file; reading on from the cursor");
  }
  cycle_stream(r, "the follow stream skipped lines");
}

static void probe_stream(reader_t *r) {
  static const http_handler_t handler = {NULL, NULL, on_probe_done};
  uint64_t now = uv_now(r->rt->loop);
  if (r->stream_lines == r->lines_checked && r->last_probe) {
    r->probe_wait = r->probe_wait * 2 < PROBE_MAX_MS ? r->probe_wait * 2 : PROBE_MAX_MS;
  } else {
    r->probe_wait = quiet_ms(r);
  }
  r->lines_checked = r->stream_lines;
  r->last_probe = now;
  r->probe = docker_logs_tail(r->daemon->docker, r->c->id, 1, &handler, r);
}

/* --- checking a local-driver stream -------------------------------------- */

/* The local driver's follow stream can skip lines where the driver rotates
 * its file, also while the container writes on (then the stream is never
 * quiet and probe_stream never looks). So the span of a local-driver stream
 * from check_from to a little before its newest line is read again without
 * follow and compared with the keys the cursor delivered in it; a line the
 * span lacks was skipped and is delivered now, late. A busy stream (or one
 * that brought CHECK_BYTES) is checked every CHECK_EVERY_MS: at a few
 * thousand lines a second small files rotate away what was skipped within
 * about a second. One that brought less is checked every CHECK_IDLE_MS (a
 * skip there leaves it quiet long enough for probe_stream). Until a span
 * is checked the cursor's floor stays at its start, so a resume (and a
 * restart from the checkpoint) reads it again instead. */
typedef struct span_check {
  reader_t *r;
  http_req_t *req;
  decoder_t dec;
  cursor_span_t *span; /* the keys delivered in [from, to] */
  occurrence_t *occ;
  int64_t from, to;
  uint64_t found; /* lines the span lacked */
} span_check_t;

static void check_free(span_check_t *ch) {
  if (!ch) return;
  http_cancel(ch->req);
  decoder_free(&ch->dec);
  cursor_span_free(ch->span);
  occurrence_free(ch->occ);
  free(ch);
}

static void cancel_check(reader_t *r) {
  check_free(r->check);
  r->check = NULL;
}

static void on_check_line(void *ud, const decode_line_t *l) {
  span_check_t *ch = ud;
  reader_t *r = ch->r;
  if (l->stream == DECODE_SYSERR || l->ts < ch->from || l->ts > ch->to)
    return; /* the stream brings it, or the next span */
  cursor_key_t k = cursor_key(l->ts, l->stream, l->data, l->len);
  uint32_t occ = 0;
  (void)occurrence_count(ch->occ, &k, &occ);
  if (cursor_span_take(ch->span, &k)) return; /* delivered */
  ch->found++;
  r->recovered++;
  add_line(r, l, &k, occ);
}

static int on_check_body(void *ud, const char *data, size_t len) {
  span_check_t *ch = ud;
  return decoder_feed(&ch->dec, data, len) == 0 ? 0 : -1;
}

static void on_check_done(void *ud, const http_result_t *res) {
  span_check_t *ch = ud;
  reader_t *r = ch->r;
  ch->req = NULL;
  if (!res->ok || res->status != 200) {
    char why[300];
    docker_describe_error(res, why, sizeof why);
    log_debug(r->c->name, "checking the stream's last span failed: %s", why);
    cancel_check(r); /* checked again at the next look */
    return;
  }
  decoder_finish(&ch->dec);
  size_t left = cursor_span_left(ch->span);
  if (left) {
    /* The answer lacked lines that were delivered: the daemon's read of its
     * files missed some (one rotated under it), and may have missed skipped
     * ones with them. What it did have is delivered; the span is
     * read again at the next look. */
    log_debug(r->c->name,
              "a check read of the stream lacked %zu delivered lines; reading the "
              "span again",
              left);
    if (ch->found) log_debug(r->c->name, "it found %" PRIu64 " skipped lines", ch->found);
    if (++r->check_tries < CHECK_TRIES) {
      cancel_check(r);
      return;
    }
    /* read CHECK_TRIES times and never whole: the files no longer hold it */
    log_debug(r->c->name, "the daemon's files no longer hold the whole span; checking on");
  }
  r->check_tries = 0;
  if (ch->found) {
    log_msg(r->recovered == ch->found ? LOG_INFO : LOG_DEBUG, r->c->name,
            "the daemon's follow stream skipped %" PRIu64 " lines where the local log driver "
            "rotated its file; read again and delivered",
            ch->found);
  }
  /* Each span is read by two checks: a read of the files while one of them
   * rotates can miss lines of it that the follow stream skipped too, and
   * nothing in that answer shows it. */
  if (r->check_last != INT64_MAX && r->check_last > r->check_from) r->check_from = r->check_last;
  r->check_last = ch->to;
  cancel_check(r);
}

/* Starts a check of the span from check_from when one is due. */
static void check_span(reader_t *r) {
  static const http_handler_t handler = {NULL, on_check_body, on_check_done};
  uint64_t now = uv_now(r->rt->loop);
  if (!r->c->log_local || r->attach || r->rt->cfg->backfill || r->last_read || r->check ||
      r->check_from == INT64_MAX || r->paused || r->state != READER_STREAMING ||
      cursor_newest(r->cursor) <= r->replay_until || !check_interval(r) ||
      now - r->last_check < check_interval(r))
    return;
  int64_t to = cursor_newest(r->cursor) - CHECK_LAG_NS, pending = decoder_pending_ts(&r->dec);
  if (pending != INT64_MAX && pending - 1 < to) to = pending - 1;
  int64_t from = r->check_from, start = cursor_window_start(r->cursor);
  if (start > from) { /* keys left the window (max_keys): that part cannot be checked */
    log_debug(r->c->name, "a span of the stream left the cursor's window unchecked");
    from = r->check_from = start;
  }
  if (to <= from) return;
  span_check_t *ch = calloc(1, sizeof *ch);
  if (!ch || !(ch->occ = occurrence_new()) || !(ch->span = cursor_span_new(r->cursor, from, to))) {
    if (ch) occurrence_free(ch->occ);
    free(ch);
    return; /* out of memory: the floor keeps the span for a resume */
  }
  ch->r = r;
  ch->from = from;
  ch->to = to;
  decoder_init(&ch->dec, r->c->tty, r->rt->cfg->frame_max, r->rt->cfg->line_max, on_check_line, ch);
  r->check = ch;
  r->last_check = now;
  r->check_bytes = 0;
  /* Read from CHECK_BACK_NS before the span, without `until`: Debian's
   * dockerd 20.10 answers a local-driver read whose `since` is within its
   * newest files without some of them while one is compressed, and one
   * with `until` sometimes with nothing at all. Lines outside the span are
   * read and left alone. */
  int64_t since = from > CHECK_BACK_NS ? from - CHECK_BACK_NS : 0;
  ch->req = docker_logs(r->daemon->docker, r->c->id, since, 0, 0, &handler, NULL, ch);
  if (!ch->req) cancel_check(r);
}

static void on_life(uv_timer_t *t) {
  reader_t *r = t->data;
  if (r->attach == ATTACH_ANSWERED) {
    confirm_attach(r, "no start event yet");
    return;
  }
  if (r->state == READER_BACKOFF) {
    connect_stream(r);
    return;
  }
  if (uv_now(r->rt->loop) - r->stream_started >= ms(r->rt->cfg->cycle)) {
    /* The stream lived its cycle: close it and resume from the cursor,
     * unless it is busy. A busy stream is not stuck, and a resume while
     * the container writes fast can miss lines: json-file's history read
     * skips a file that rotates under it. */
    if (!is_busy(r)) {
      cycle_stream(r, NULL);
      return;
    }
    if (!r->deferred) log_debug(r->c->name, "cycle due: waiting while the stream is busy");
    r->deferred = 1;
  } else if (is_quiet(r) && r->c->log_local && !r->probe &&
             (r->stream_lines != r->lines_checked || !r->last_probe ||
              uv_now(r->rt->loop) - r->last_probe >= r->probe_wait) &&
             r->state == READER_STREAMING) {
    probe_stream(r);
  }
  check_span(r);
  arm_life(r);
}

/* Reconnects after an exponential, jittered delay. An error is counted and
 * logged as a warning; a retry that is no error is logged at debug level. */
static void retry_later(reader_t *r, const char *why, int is_error) {
  double delay = backoff_next(&r->backoff);
  if (is_error) r->errors++;
  log_msg(is_error ? LOG_WARN : LOG_DEBUG, r->c->name, "%s; reconnecting in %.2f s", why, delay);
  reader_set_state(r, READER_BACKOFF, why);
  uv_timer_start(&r->life, on_life, ms(delay), 0);
}

static void go_backoff(reader_t *r, const char *why) { retry_later(r, why, 1); }

static void on_logs_headers(void *ud, long status, const char *content_type) {
  reader_t *r = ud;
  if (status != 200) return;
  reader_set_state(r, READER_STREAMING, NULL);
  backoff_reset(&r->backoff);
  if (r->attach == ATTACH_SENT) { /* held until the start event's verdict */
    r->attach = ATTACH_ANSWERED;
    r->answered_ns = ts_now();
    uv_timer_start(&r->life, on_life, ATTACH_VERDICT_MS, 0);
  }
}

static int on_logs_body(void *ud, const char *data, size_t len) {
  reader_t *r = ud;
  if (r->attach == ATTACH_ANSWERED) return HTTP_PAUSE; /* the daemon keeps it */
  if (r->attach) /* never paused for backpressure: the daemon buffers it */
    r->dec.now = ts_now();
  else if (inflight_over(r->rt->inflight)) { /* backpressure: leave it with the daemon */
    if (!r->paused) {
      r->paused = 1;
      inflight_paused(r->rt->inflight);
      log_debug(r->c->name, "reader paused: too many bytes in flight");
    }
    return HTTP_PAUSE;
  }
  count_data(r, len);
  if (decoder_feed(&r->dec, data, len) != 0) {
    r->protocol_error = 1;
    snprintf(r->error, sizeof r->error, "%s", r->dec.error);
    return -1;
  }
  return 0;
}

static void inspect_after_end(reader_t *r);

/* A --rm container gone before any of its lines was read: its logs request
 * was refused (refused), or its stream only brought the daemon's error. */
static void warn_if_removed_early(reader_t *r, int refused) {
  if (r->c->auto_remove && r->lines == 0 && (refused || r->errors > 0))
    log_warn(r->c->name, "its log may be lost: the daemon removed this --rm container before "
                         "it served the logs request");
}

static void on_attach_done(reader_t *r, const http_result_t *res);

static void on_logs_done(void *ud, const http_result_t *res) {
  reader_t *r = ud;
  char why[300];
  r->req = NULL;
  r->paused = 0;
  uv_timer_stop(&r->life);
  http_cancel(r->probe);
  r->probe = NULL;
  if (r->attach) {
    on_attach_done(r, res);
    return;
  }
  if (r->protocol_error) {
    snprintf(why, sizeof why, "protocol error in the log stream (%s)", r->error);
    submit_batch(r);
    go_backoff(r, why);
    return;
  }
  if (res->ok && res->status == 200) { /* the daemon ended the stream */
    decoder_finish(&r->dec);
    submit_batch(r);
    if (r->rt->cfg->backfill) finish(r, "its history is read");
    else inspect_after_end(r);
    return;
  }
  docker_describe_error(res, why, sizeof why);
  if (res->status == 404 || res->status == 409) {
    warn_if_removed_early(r, 1);
    finish(r, why);
  } else if (res->status == 501) {
    r->errors++;
    log_warn(r->c->name, "its log driver cannot be read through the API (%s); not following it",
             why);
    r->owner->unreadable(r->owner_ud, r);
    finish(r, "log driver cannot be read");
  } else {
    char msg[400];
    snprintf(msg, sizeof msg, "log stream failed: %s", why);
    submit_batch(r);
    go_backoff(r, msg);
  }
}

/* The first logs request of a container started by an event is written. */
static void on_logs_sent(void *ud) {
  reader_t *r = ud;
  if (!r->event_ns) return;
  r->owner->start_latency(r->owner_ud, uv_hrtime() - r->event_ns);
  r->event_ns = 0;
}

static void connect_stream(reader_t *r) {
  static const http_handler_t handler = {on_logs_headers, on_logs_body, on_logs_done};
  if (r->attach) {
    r->protocol_error = 0;
    r->stream_started = uv_now(r->rt->loop);
    r->attach = ATTACH_SENT;
    reader_set_state(r, READER_CONNECTING, "attaching before the start");
    r->req = docker_attach(r->daemon->docker, r->c->id, &handler, r);
    if (!r->req) {
      r->attach = ATTACH_NONE;
      go_backoff(r, "cannot start the attach request (out of memory)");
    }
    return; /* no cycle: a new attach stream would miss what came between */
  }
  int64_t since = cursor_since(r->cursor);
  if (since < 0) since = r->initial_since;
  int64_t pending = decoder_pending_ts(&r->dec);
  if (pending != INT64_MAX && (since < 0 || pending < since)) since = pending;
  const config_t *cfg = r->rt->cfg;
  if (cfg->backfill && since < cfg->backfill_since) since = cfg->backfill_since;
  decoder_reset(&r->dec);
  cancel_check(r); /* this connection reads the unchecked span again */
  r->replay_until = cursor_newest(r->cursor);
  cursor_begin_replay(r->cursor);
  occurrence_clear(r->occ); /* a new connection counts from its since */
  r->protocol_error = 0;
  r->paused = 0;
  r->stream_lines = r->lines_checked = r->last_probe = 0;
  r->stream_started = r->last_data = uv_now(r->rt->loop);
  r->deferred = 0;
  r->win_start = r->last_data;
  r->win_bytes = r->last_busy = 0;
  reader_set_state(r, READER_CONNECTING, NULL);
  r->req =
      docker_logs(r->daemon->docker, r->c->id, since, cfg->backfill ? cfg->backfill_until : 0,
                  !cfg->backfill && !r->last_read, &handler, r->event_ns ? on_logs_sent : NULL, r);
  if (!r->req) {
    go_backoff(r, "cannot start the logs request (out of memory)");
    return;
  }
  arm_life(r);
}

/* --- attach streams ---------------------------------------------------- */

/* From now on the container's log is read with logs requests, from the
 * cursor. */
static void stop_attaching(reader_t *r) {
  r->attach = ATTACH_NONE;
  r->dec.untimed = 0;
  decoder_reset(&r->dec);
}

/* The attach stream was in place before the start: its data flows. */
static void confirm_attach(reader_t *r, const char *why) {
  r->attach = ATTACH_CONFIRMED;
  uv_timer_stop(&r->life);
  log_debug(r->c->name, "attached before its start (%s)", why);
  r->owner->attach_result(r->owner_ud, READER_ATTACH_IN_TIME);
  http_resume(r->req);
}

static void on_attach_done(reader_t *r, const http_result_t *res) {
  char why[300];
  int streamed = r->state == READER_STREAMING || r->state == READER_DRAINING;
  if (r->protocol_error) {
    snprintf(why, sizeof why, "protocol error in the attach stream (%s)", r->error);
  } else if (res->ok && res->status == 200) { /* its output ended: it exited */
    decoder_finish(&r->dec);
    submit_batch(r);
    finish(r, "container exited");
    return;
  } else if (res->status == 404) {
    finish(r, "container removed");
    return;
  } else {
    docker_describe_error(res, why, sizeof why);
  }
  submit_batch(r);
  if (!streamed) {
    /* Not attached (a daemon or proxy that refuses it): the container's
     * start event starts a reader that reads its log. */
    log_info(r->c->name, "cannot attach before its start (%s); its log is read once it starts",
             why);
    r->owner->attach_result(r->owner_ud, READER_ATTACH_REFUSED);
    close_reader(r, "not attached");
    return;
  }
  char msg[400];
  snprintf(msg, sizeof msg, "attach stream failed: %s; reading its log from the cursor", why);
  stop_attaching(r);
  go_backoff(r, msg);
}

/* --- the end of a stream ------------------------------------------------ */

static void on_inspect_done(void *ud, const http_result_t *res) {
  reader_t *r = ud;
  char err[300];
  r->req = NULL;
  if (res->status == 404) {
    warn_if_removed_early(r, 0);
    finish(r, "container removed");
    return;
  }
  cJSON *doc = docker_json(res, err, sizeof err);
  if (!doc) {
    char msg[400];
    snprintf(msg, sizeof msg, "cannot inspect the container: %s", err);
    go_backoff(r, msg);
    return;
  }
  cJSON *state = cJSON_GetObjectItemCaseSensitive(doc, "State");
  int running = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(state, "Running"));
  cJSON_Delete(doc);
  if (!running) {
    if (r->last_read) {
      finish(r, "container exited");
      return;
    }
    /* A follow stream may end before the daemon sent every line of a
     * container that exited (a busy host: the reader was behind when the
     * container died). Its history from the cursor has the rest; the
     * cursor skips what was delivered already. */
    r->last_read = 1;
    log_debug(r->c->name, "container exited: reading the rest of its log");
    connect_stream(r);
    return;
  }
  r->last_read = 0;
  /* Running again (restarted), or the daemon closed the stream: follow on
   * from the cursor; a stream that ends at once with nothing waits first. */
  if (r->stream_lines == 0 && uv_now(r->rt->loop) - r->stream_started < 1000) {
    retry_later(r, "the stream ended at once while the container runs", 0);
    return;
  }
  connect_stream(r);
}

static void inspect_after_end(reader_t *r) {
  static const http_handler_t handler = {NULL, NULL, on_inspect_done};
  reader_set_state(r, READER_INSPECTING, "stream ended");
  r->req = docker_inspect(r->daemon->docker, r->c->id, &handler, r);
  if (!r->req) go_backoff(r, "cannot start the inspect request (out of memory)");
}

/* --- stopping ----------------------------------------------------------- */

static void timer_closed(uv_handle_t *h) {
  reader_t *r = h->data;
  handles_closed(h);
  if (--r->open_handles > 0) return;
  reader_set_state(r, READER_CLOSED, NULL);
  r->owner->closed(r->owner_ud, r);
}

static void close_reader(reader_t *r, const char *why) {
  if (r->state == READER_STOPPING || r->state == READER_CLOSED) return;
  reader_set_state(r, READER_STOPPING, why);
  http_cancel(r->req);
  r->req = NULL;
  http_cancel(r->probe);
  r->probe = NULL;
  cancel_check(r);
  submit_batch(r);
  uv_timer_stop(&r->life);
  handles_close((uv_handle_t *)&r->life, timer_closed);
  handles_close((uv_handle_t *)&r->flush, timer_closed);
}

static void finish(reader_t *r, const char *why) {
  log_info(r->c->name, "stopped following: %s", why);
  close_reader(r, why);
}

void reader_stop(reader_t *r) { close_reader(r, "engine stopping"); }

void reader_deselect(reader_t *r) {
  if (r->state == READER_STOPPING || r->state == READER_CLOSED) return;
  log_info(r->c->name, "stopped following: no longer selected");
  close_reader(r, "no longer selected");
}

void reader_resume(reader_t *r) {
  if (!r->paused) return;
  r->paused = 0;
  log_debug(r->c->name, "reader resumed");
  http_resume(r->req);
}

int reader_paused(const reader_t *r) { return r->paused; }

void reader_container_started(reader_t *r, uint64_t event_ns, int64_t started_ns) {
  if (r->attach == ATTACH_ANSWERED && started_ns > r->answered_ns + ATTACH_MARGIN_NS) {
    char why[64];
    snprintf(why, sizeof why, "started %.3f s after the answer",
             (double)(started_ns - r->answered_ns) / 1e9);
    confirm_attach(r, why);
    return;
  }
  if (r->attach != ATTACH_SENT && r->attach != ATTACH_ANSWERED) return;
  /* Started before the attach was surely in place: its log has every line
   * from the start, the attach stream maybe not. Nothing of the attach
   * stream was taken yet. */
  log_debug(r->c->name,
            "started before the attach was in place (%.3f s after the answer): "
            "reading its log",
            r->attach == ATTACH_SENT ? 0.0 : (double)(started_ns - r->answered_ns) / 1e9);
  r->owner->attach_result(r->owner_ud, READER_ATTACH_LATE);
  uv_timer_stop(&r->life);
  http_cancel(r->req);
  r->req = NULL;
  stop_attaching(r);
  r->event_ns = event_ns;
  connect_stream(r);
}

void reader_container_died(reader_t *r) {
  if (r->state == READER_STREAMING) reader_set_state(r, READER_DRAINING, "container died");
}

int reader_rename(reader_t *r, const char *name) {
  container_t *c = container_renamed(r->c, name);
  if (!c) return -1;
  log_info(r->c->name, "renamed to %s", c->name);
  submit_batch(r); /* its lines were read under the old name */
  container_unref(r->c);
  r->c = c;
  return 0;
}

/* --- life --------------------------------------------------------------- */

reader_t *reader_start(runtime_t *rt, daemon_t *d, container_t *c, cursor_t *cursor,
                       int64_t since_ns, uint64_t event_ns, int attach, const reader_owner_t *owner,
                       void *owner_ud) {
  reader_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  if (!(r->occ = occurrence_new())) {
    free(r);
    return NULL;
  }
  r->rt = rt;
  r->daemon = d;
  r->owner = owner;
  r->owner_ud = owner_ud;
  r->c = container_ref(c);
  r->cursor = cursor;
  r->initial_since = since_ns;
  r->check_from = r->check_last = INT64_MAX;
  backoff_init(&r->backoff, rt->cfg->backoff_initial, rt->cfg->backoff_max);
  r->event_ns = event_ns;
  r->state = READER_CLOSED; /* becomes CONNECTING below */
  decoder_init(&r->dec, c->tty, rt->cfg->frame_max, rt->cfg->line_max, on_line, r);
  if (attach) {
    r->attach = ATTACH_SENT;
    decoder_untimed(&r->dec);
  }
  uv_timer_init(rt->loop, &r->life);
  handles_opened((uv_handle_t *)&r->life);
  uv_timer_init(rt->loop, &r->flush);
  handles_opened((uv_handle_t *)&r->flush);
  r->life.data = r->flush.data = r;
  r->open_handles = 2;
  connect_stream(r);
  return r;
}

void reader_free(reader_t *r) {
  if (!r) return;
  ENGINE_CHECK(r->state == READER_CLOSED && r->open_handles == 0);
  if (r->rt->retired) /* the metrics' per-container counts outlive the reader */
    retired_add(r->rt->retired, r->c, r->lines, r->bytes, r->errors, r->repeated, r->recovered,
                cursor_newest(r->cursor));
  decoder_free(&r->dec);
  batch_free(r->batch);
  occurrence_free(r->occ);
  container_unref(r->c);
  free(r);
}
