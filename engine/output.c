/* output.c - what every output shares: the kinds' table, the hand-over from
 * the pipeline thread, the queue, retries with backoff, the dead-letter
 * file and the counts (see output.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "json.h"
#include "log.h"
#include "output.h"
#include "timestamp.h"
#include "handles.h"

/* The kinds, each defined in its own file. */
extern const output_kind_t output_stdout_kind, output_file_kind, output_null_kind,
    output_syslog_kind;
output_t *output_http_new(struct lua_State *L, int idx, const char *type);
output_t *output_local_new(struct lua_State *L, int idx, const output_kind_t *kind, char *err,
                           size_t n);
output_t *output_syslog_new(struct lua_State *L, int idx);
output_t *output_mqtt_new(struct lua_State *L, int idx, char *err, size_t n);
output_t *output_nats_new(struct lua_State *L, int idx, char *err, size_t n);

static const char *const http_types[] = {"http", "clickhouse", "loki", "elasticsearch", "otlp"};

output_t *output_new(lua_State *L, int idx, char *err, size_t n) {
  lua_getfield(L, idx, "type");
  const char *type = lua_tostring(L, -1);
  output_t *o = NULL;
  int known = 1, local = 1;
  err[0] = '\0';
  if (!type) known = 0;
  else if (strcmp(type, "stdout") == 0) o = output_local_new(L, idx, &output_stdout_kind, err, n);
  else if (strcmp(type, "file") == 0) o = output_local_new(L, idx, &output_file_kind, err, n);
  else if (strcmp(type, "null") == 0) o = output_local_new(L, idx, &output_null_kind, err, n);
  else if (strcmp(type, "syslog") == 0) o = output_syslog_new(L, idx);
  else if (strcmp(type, "mqtt") == 0) o = output_mqtt_new(L, idx, err, n);
  else if (strcmp(type, "nats") == 0) o = output_nats_new(L, idx, err, n);
  else {
    known = local = 0;
    for (size_t i = 0; i < sizeof http_types / sizeof *http_types; i++)
      if (strcmp(type, http_types[i]) == 0) {
        known = 1;
        o = output_http_new(L, idx, http_types[i]);
      }
  }
  if (!o && !(local && err[0]))
    snprintf(err, n, known ? "out of memory" : "unknown output type %s", type ? type : "(none)");
  lua_pop(L, 1);
  return o;
}

static double field_number(lua_State *L, int idx, const char *key, double def) {
  lua_getfield(L, idx, key);
  double v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : def;
  lua_pop(L, 1);
  return v;
}

static char *field_strdup(lua_State *L, int idx, const char *key, int *oom) {
  lua_getfield(L, idx, key);
  const char *s = lua_tostring(L, -1);
  char *copy = s ? strdup(s) : NULL;
  if (s && !copy) *oom = 1;
  lua_pop(L, 1);
  return copy;
}

int output_init(output_t *o, const output_kind_t *kind, lua_State *L, int idx) {
  int oom = 0;
  o->kind = kind;
  o->dl_fd = -1;
  pthread_mutex_init(&o->lock, NULL);
  o->name = field_strdup(L, idx, "name", &oom);
  if (!o->name && !oom) o->name = strdup(kind->type);
  lua_getfield(L, idx, "routed_only");
  o->routed_only = lua_toboolean(L, -1);
  lua_pop(L, 1);
  o->cfg.retry_max = (long)field_number(L, idx, "retry_max", -1);
  o->cfg.concurrency = (int)field_number(L, idx, "concurrency", 1);
  o->cfg.batch_max_bytes = (size_t)field_number(L, idx, "batch_max_bytes", 0);
  o->cfg.batch_max_records = (size_t)field_number(L, idx, "batch_max_records", 0);
  o->cfg.batch_timeout = field_number(L, idx, "batch_timeout", 0);
  if (o->cfg.concurrency < 1) o->cfg.concurrency = 1;
  o->cfg.backoff_initial = field_number(L, idx, "backoff_initial", 0.5);
  o->cfg.backoff_max = field_number(L, idx, "backoff_max", 30);
  o->cfg.mode = (int)field_number(L, idx, "mode", 0600);
  o->cfg.dead_letter = field_strdup(L, idx, "dead_letter", &oom);
  strbuf_t fp = {0};
  if (json_add_lua(&fp, L, idx) < 0 || strbuf_add(&fp, "", 1) < 0) oom = 1;
  o->fingerprint = fp.data;
  return oom || !o->name ? -1 : 0;
}

/* --- pipeline thread ---------------------------------------------------- */

int output_write(output_t *o, lua_State *L, int idx, ticket_t *t, char *err, size_t errlen) {
  size_t records = lua_objlen(L, idx);
  if (records == 0) return 0;
  strbuf_t b = {0};
  if (o->kind->encode && o->kind->encode(o, L, idx, &b) != 0) {
    strbuf_free(&b);
    snprintf(err, errlen, "out of memory while encoding for %s", o->name);
    return -1;
  }
  return output_hand_over(o, b.data, b.len, records, t, err, errlen);
}

int output_hand_over(output_t *o, char *data, size_t len, size_t records, ticket_t *t, char *err,
                     size_t errlen) {
  if (o->kind->take_now) {
    int rc = o->kind->take_now(o, data, len, err, errlen);
    free(data);
    return rc;
  }
  output_body_t *body = calloc(1, sizeof *body);
  if (body && t) ticket_ref(t);
  else if (body) t = ticket_new(NULL, NULL, NULL); /* records of a timer */
  if (!body || !t) {
    free(body);
    free(data);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  body->data = data;
  body->len = len;
  body->records = records;
  body->handed_ns = uv_hrtime();
  body->batches = 1;
  body->ticket = t;
  pthread_mutex_lock(&o->lock);
  if (o->in_tail) o->in_tail->next = body;
  else o->in_head = body;
  o->in_tail = body;
  uv_async_t *wake = o->wake;
  pthread_mutex_unlock(&o->lock);
  if (wake) uv_async_send(wake);
  return 0;
}

/* --- loop thread: sending ----------------------------------------------- */

static void kick(output_t *o);

static void body_free(output_body_t *b, int abandoned) {
  for (size_t i = 0; i <= b->n_more; i++) {
    ticket_t *t = i ? b->more[i - 1] : b->ticket;
    if (abandoned) ticket_abandon(t);
    else ticket_release(t);
  }
  free(b->more);
  free(b->data);
  free(b);
}

/* Body b is done (delivered or dead-lettered): out of the queue. The
 * bodies in flight are among the first ones (kick sends from the head), so
 * the walk is short. */
static void body_done(output_t *o, output_body_t *b) {
  output_body_t **link = &o->head, *prev = NULL;
  while (*link && *link != b) {
    prev = *link;
    link = &prev->next;
  }
  if (!*link) return; /* not queued: cannot happen */
  *link = b->next;
  if (o->tail == b) o->tail = prev;
  o->st.pending--;
  body_free(b, 0);
}

/* Logs a failure the first time this cause is seen. */
static void cause(output_t *o, int level, const char *fmt, const char *what) {
  char msg[256];
  snprintf(msg, sizeof msg, fmt, what);
  if (strcmp(msg, o->cause) == 0) return;
  snprintf(o->cause, sizeof o->cause, "%s", msg);
  log_msg(level, NULL, "output %s: %s", o->name, msg);
}

typedef struct dl_write { /* a dead-letter line being appended */
  uv_fs_t req;
  char *line;
  char *name, *path;
} dl_write_t;

static void dl_written(uv_fs_t *req) {
  dl_write_t *w = req->data;
  if (req->result < 0)
    log_error(NULL, "output %s: cannot write the dead-letter file %s: %s", w->name, w->path,
              uv_strerror((int)req->result));
  uv_fs_req_cleanup(req);
  free(w->line);
  free(w->name);
  free(w->path);
  free(w);
}

/* Appends data[0..len) in base64 (RFC 4648, padded) between quotes.
 * Returns 0 or -1. */
static int add_base64(strbuf_t *s, const unsigned char *data, size_t len) {
  static const char abc[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="; /* 64: padding */
  if (len > (SIZE_MAX - 8) / 4 * 3 || strbuf_reserve(s, (len + 2) / 3 * 4 + 2) < 0) return -1;
  char *o = s->data + s->len;
  *o++ = '"';
  for (size_t i = 0; i < len; i += 3) {
    unsigned long v = (unsigned long)data[i] << 16;
    if (i + 1 < len) v |= (unsigned long)data[i + 1] << 8;
    if (i + 2 < len) v |= data[i + 2];
    *o++ = abc[(v >> 18) & 63];
    *o++ = abc[(v >> 12) & 63];
    *o++ = abc[i + 1 < len ? (v >> 6) & 63 : 64];
    *o++ = abc[i + 2 < len ? v & 63 : 64];
  }
  *o++ = '"';
  s->len = (size_t)(o - s->data);
  return 0;
}

void output_dead_letter(output_t *o, const char *data, size_t len, size_t records,
                        const char *reason) {
  o->st.dead_letters++;
  cause(o, LOG_ERROR, "%s; sending such records to the dead-letter file", reason);
  if (o->dl_fd < 0) return;
  strbuf_t s = {0};
  char ts[TS_LEN + 1], head[64];
  ts_format(ts_now(), ts);
  int hl = snprintf(head, sizeof head, ",\"records\":%zu,\"%s\":", records,
                    o->binary ? "body_base64" : "body");
  int ok = strbuf_add(&s, "{\"time\":\"", 9) == 0 && strbuf_add(&s, ts, TS_LEN) == 0 &&
           strbuf_add(&s, "\",\"output\":", 11) == 0 &&
           json_add_string(&s, o->name, strlen(o->name)) == 0 &&
           strbuf_add(&s, ",\"reason\":", 10) == 0 &&
           json_add_string(&s, reason, strlen(reason)) == 0 &&
           strbuf_add(&s, head, (size_t)hl) == 0 &&
           (o->binary ? add_base64(&s, (const unsigned char *)data, len)
                      : json_add_string(&s, data, len)) == 0 &&
           strbuf_add(&s, "}\n", 2) == 0;
  dl_write_t *w = ok ? calloc(1, sizeof *w) : NULL;
  if (w && (w->name = strdup(o->name)) && (w->path = strdup(o->cfg.dead_letter))) {
    w->line = s.data;
    w->req.data = w;
    uv_buf_t buf = uv_buf_init(w->line, (unsigned)s.len);
    if (uv_fs_write(o->loop, &w->req, o->dl_fd, &buf, 1, -1, dl_written) == 0) return;
  }
  if (w) {
    free(w->name);
    free(w->path);
    free(w);
  }
  strbuf_free(&s);
  log_error(NULL, "output %s: out of memory for a dead letter", o->name);
}

static void on_retry(uv_timer_t *t) {
  output_t *o = t->data;
  o->waiting = 0;
  kick(o);
}

void output_sent(output_t *o, output_body_t *b, int result, const char *why, double retry_after) {
  if (!b || !b->sending) return; /* taken back at stop */
  b->sending = 0;
  o->st.in_flight--;
  switch (result) {
  case OUTPUT_DELIVERED:
    if (o->cause[0]) log_info(NULL, "output %s: delivering again", o->name);
    o->cause[0] = '\0';
    o->st.failing = 0;
    o->st.sent += b->batches;
    backoff_reset(&o->backoff);
    body_done(o, b);
    break;
  case OUTPUT_REJECTED:
    output_dead_letter(o, b->data + b->done, b->len - b->done, b->records, why);
    body_done(o, b);
    break;
  case OUTPUT_AGAIN: break;
  default:
    o->st.failed++;
    o->st.failing = 1;
    if (o->cfg.retry_max >= 0 && b->attempts > (unsigned)o->cfg.retry_max) {
      char msg[300];
      snprintf(msg, sizeof msg, "gave up after %u tries: %s", b->attempts, why);
      output_dead_letter(o, b->data + b->done, b->len - b->done, b->records, msg);
      body_done(o, b);
      break;
    }
    o->st.retried++;
    cause(o, LOG_WARN, "%s; retrying with backoff", why);
    if (o->closing) {
      if (o->drop_reason) {
        output_dead_letter(o, b->data + b->done, b->len - b->done, b->records, o->drop_reason);
        body_done(o, b);
      }
      return;
    }
    /* One backoff for the output: the attempts that fail while it runs
     * (those that were in flight with this one) wait for the same end,
     * unless the destination asks for longer. */
    uint64_t ms;
    if (!o->waiting) {
      double delay = backoff_next(&o->backoff);
      if (retry_after > delay) delay = retry_after;
      ms = (uint64_t)(delay * 1000);
    } else if ((ms = (uint64_t)(retry_after * 1000)) <= uv_timer_get_due_in(&o->retry)) {
      return;
    }
    o->waiting = 1;
    uv_timer_start(&o->retry, on_retry, ms, 0);
    return;
  }
  kick(o);
}

int output_split(output_t *o, output_body_t *b, size_t at, size_t records) {
  output_body_t *rest = calloc(1, sizeof *rest);
  size_t len = b->len - at;
  if (!rest || !(rest->data = malloc(len ? len : 1)) ||
      (b->n_more && !(rest->more = malloc(b->n_more * sizeof(ticket_t *))))) {
    if (rest) free(rest->data);
    free(rest);
    return -1;
  }
  memcpy(rest->data, b->data + at, len);
  rest->len = len;
  rest->records = b->records > records ? b->records - records : 0;
  rest->handed_ns = b->handed_ns;
  /* both parts hold every batch of b: each batch is acknowledged once
   * both were taken */
  rest->ticket = b->ticket;
  ticket_ref(b->ticket);
  for (size_t i = 0; i < b->n_more; i++) {
    rest->more[i] = b->more[i];
    ticket_ref(b->more[i]);
  }
  rest->n_more = b->n_more;
  b->len = at;
  b->records = records;
  rest->next = b->next;
  b->next = rest;
  if (o->tail == b) o->tail = rest;
  o->st.pending++;
  return 0;
}

void output_truncated(output_t *o, size_t from, size_t to) {
  char msg[160];
  o->st.truncated++;
  snprintf(msg, sizeof msg, "a record of %zu bytes was cut to %zu to fit the transport", from, to);
  if (o->st.truncated == 1) log_warn(NULL, "output %s: %s (logged once)", o->name, msg);
}

/* Before b's first attempt: appends to b the bodies right behind it that
 * were never tried, within the output's limits; each keeps its ticket
 * reference in b. The rest of a split (batches 0: a part the destination
 * found too large) is never merged. Stops early when out of memory (b
 * stays whole). */
static void merge_behind(output_t *o, output_body_t *b) {
  size_t max_bytes = o->cfg.batch_max_bytes, max_records = o->cfg.batch_max_records;
  output_body_t *n;
  while ((n = b->next) && !n->sending && n->attempts == 0 && n->batches > 0 && n->done == 0 &&
         b->done == 0 && (!max_bytes || b->len + n->len <= max_bytes) &&
         (!max_records || b->records + n->records <= max_records)) {
    char *data = realloc(b->data, b->len + n->len ? b->len + n->len : 1);
    if (!data) return;
    b->data = data;
    ticket_t **more = realloc(b->more, (b->n_more + 1 + n->n_more) * sizeof(ticket_t *));
    if (!more) return;
    b->more = more;
    memcpy(b->data + b->len, n->data, n->len);
    b->len += n->len;
    b->records += n->records;
    b->batches += n->batches;
    if (n->handed_ns < b->handed_ns) b->handed_ns = n->handed_ns;
    b->more[b->n_more++] = n->ticket;
    for (size_t i = 0; i < n->n_more; i++) b->more[b->n_more++] = n->more[i];
    b->next = n->next;
    if (o->tail == n) o->tail = b;
    o->st.pending--;
    free(n->more);
    free(n->data);
    free(n);
  }
}

static void on_linger(uv_timer_t *t) {
  output_t *o = t->data;
  o->lingering = 0;
  kick(o);
}

/* Whether body b (merged, never tried) waits for more batches: it is under
 * both limits, nothing queued behind it was left out, and its oldest batch
 * was handed over less than batch_timeout ago. Then the linger timer runs
 * until that time is up. */
static int lingers(output_t *o, output_body_t *b) {
  const output_config_t *c = &o->cfg;
  if (c->batch_timeout <= 0 || o->flushing || b->next || b->attempts > 0 || b->batches == 0 ||
      (c->batch_max_bytes && b->len >= c->batch_max_bytes) ||
      (c->batch_max_records && b->records >= c->batch_max_records))
    return 0;
  uint64_t limit = (uint64_t)(c->batch_timeout * 1e9), age = uv_hrtime() - b->handed_ns;
  if (age >= limit) return 0;
  if (!o->lingering) {
    o->lingering = 1;
    uv_timer_start(&o->linger, on_linger, (limit - age) / 1000000 + 1, 0);
  }
  return 1;
}

/* Starts attempts on the first bodies not in flight, up to the output's
 * concurrency. A send that ends at once (output_sent inside it) comes back
 * here and returns: this loop goes on with the next body. */
static void kick(output_t *o) {
  if (o->kicking) return;
  o->kicking = 1;
  while (!o->waiting && !o->closing && o->started && o->st.in_flight < (size_t)o->cfg.concurrency) {
    output_body_t *b = o->head;
    while (b && b->sending) b = b->next;
    if (!b) break;
    if (o->mergeable && b->attempts == 0 && b->batches > 0 &&
        (o->cfg.batch_max_bytes || o->cfg.batch_max_records)) {
      merge_behind(o, b);
      if (lingers(o, b)) break;
    }
    b->sending = 1;
    b->attempts++;
    o->st.in_flight++;
    o->st.requests++;
    o->st.request_records += b->records;
    o->st.request_bytes += b->len - b->done;
    o->kind->send(o, b);
  }
  o->kicking = 0;
}

void output_take(output_t *o) {
  pthread_mutex_lock(&o->lock);
  output_body_t *first = o->in_head, *last = o->in_tail;
  o->in_head = o->in_tail = NULL;
  pthread_mutex_unlock(&o->lock);
  if (!first) return;
  for (output_body_t *b = first; b; b = b->next) o->st.pending++;
  if (o->tail) o->tail->next = first;
  else o->head = first;
  o->tail = last;
  kick(o);
}

/* --- loop thread: life -------------------------------------------------- */

static int open_dead_letter(output_t *o, char *err, size_t n) {
  if (!o->cfg.dead_letter) return 0;
  int fd = open(o->cfg.dead_letter, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, o->cfg.mode);
  if (fd < 0) {
    snprintf(err, n, "output %s: cannot open the dead-letter file %s: %s", o->name,
             o->cfg.dead_letter, strerror(errno));
    return -1;
  }
  if (o->dl_fd >= 0) close(o->dl_fd);
  o->dl_fd = fd;
  return 0;
}

static void handle_closed(uv_handle_t *h) {
  handles_closed(h);
  output_handle_closed(h->data);
}

int output_start(output_t *o, uv_loop_t *loop, char *err, size_t n) {
  o->loop = loop;
  backoff_init(&o->backoff, o->cfg.backoff_initial, o->cfg.backoff_max);
  if (open_dead_letter(o, err, n) != 0) return -1;
  if (o->kind->start && o->kind->start(o, loop, err, n) != 0) return -1;
  uv_timer_init(loop, &o->retry);
  handles_opened((uv_handle_t *)&o->retry);
  o->retry.data = o;
  o->handles++;
  uv_timer_init(loop, &o->linger);
  handles_opened((uv_handle_t *)&o->linger);
  o->linger.data = o;
  o->handles++;
  o->started = 1;
  output_take(o);
  return 0;
}

void output_flush(output_t *o) {
  if (o->flushing) return;
  o->flushing = 1;
  if (o->started && !o->closing) kick(o);
}

void output_reopen(output_t *o) {
  char err[512];
  if (o->kind->reopen) o->kind->reopen(o);
  if (open_dead_letter(o, err, sizeof err) != 0) log_error(NULL, "%s", err);
}

size_t output_pending(output_t *o) {
  pthread_mutex_lock(&o->lock);
  size_t n = 0;
  for (output_body_t *b = o->in_head; b; b = b->next) n++;
  pthread_mutex_unlock(&o->lock);
  return o->st.pending + n;
}

/* Loop thread: the seconds since the oldest body o holds was handed over;
 * 0 when it holds none. The queue is in hand-over order (a split part and a
 * merged body keep their oldest time), so the oldest is its head, or the
 * first body handed over and not yet taken. */
static double queue_age(output_t *o) {
  uint64_t oldest = o->head ? o->head->handed_ns : 0;
  pthread_mutex_lock(&o->lock);
  if (o->in_head && (!oldest || o->in_head->handed_ns < oldest)) oldest = o->in_head->handed_ns;
  pthread_mutex_unlock(&o->lock);
  uint64_t now = uv_hrtime();
  return oldest && now > oldest ? (double)(now - oldest) / 1e9 : 0;
}

void output_stats(output_t *o, output_stats_t *out) {
  *out = o->st;
  out->pending = output_pending(o);
  out->queue_age = queue_age(o);
  snprintf(out->cause, sizeof out->cause, "%s", o->st.failing ? o->cause : "");
}

void output_handle_closed(output_t *o) {
  o->handles--;
  if (!o->closing || o->handles > 0 || !o->closed) return;
  void (*cb)(void *) = o->closed;
  o->closed = NULL;
  cb(o->closed_ud);
}

/* Dead-letters every body held but those still out (in flight). */
static void drop_all(output_t *o) {
  output_body_t **link = &o->head;
  o->tail = NULL;
  while (*link) {
    output_body_t *b = *link;
    if (b->sending) {
      o->tail = b;
      link = &b->next;
      continue;
    }
    *link = b->next;
    output_dead_letter(o, b->data + b->done, b->len - b->done, b->records, o->drop_reason);
    o->st.pending--;
    body_free(b, 0);
  }
}

void output_close(output_t *o, const char *drop_reason, void (*closed)(void *), void *ud) {
  o->closed = closed;
  o->closed_ud = ud;
  o->drop_reason = drop_reason;
  if (!o->started) {
    o->closing = 1;
    if (drop_reason) {
      output_take(o);
      drop_all(o);
    }
    if (closed) closed(ud);
    return;
  }
  output_take(o); /* what the pipeline handed over last */
  o->closing = 1;
  uv_timer_stop(&o->retry);
  uv_timer_stop(&o->linger);
  o->lingering = 0;
  o->handles++;                               /* held while the kind and the timers close */
  if (!(o->kind->stop && o->kind->stop(o))) { /* every attempt taken back */
    for (output_body_t *b = o->head; b; b = b->next) b->sending = 0;
    o->st.in_flight = 0;
  }
  if (drop_reason) {
    drop_all(o);
  } else {
    size_t pending = output_pending(o);
    if (pending)
      log_warn(NULL,
               "output %s: %zu batches not delivered at stop; left unacknowledged (with "
               "a state_dir, the next run reads them again)",
               o->name, pending);
  }
  handles_close((uv_handle_t *)&o->retry, handle_closed);
  handles_close((uv_handle_t *)&o->linger, handle_closed);
  output_handle_closed(o);
}

void output_free(output_t *o) {
  if (!o) return;
  for (int list = 0; list < 2; list++)
    for (output_body_t *b = list ? o->in_head : o->head, *next; b; b = next) {
      next = b->next;
      body_free(b, 1); /* never delivered: its batch stays unacknowledged */
    }
  if (o->kind->free) o->kind->free(o);
  if (o->dl_fd >= 0) close(o->dl_fd);
  free(o->cfg.dead_letter);
  free(o->fingerprint);
  free(o->name);
  pthread_mutex_destroy(&o->lock);
  free(o);
}
