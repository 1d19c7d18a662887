/* metrics.c - the metrics endpoint's HTTP server on the loop (see
 * metrics.h).
 *
 * A listener, one sweep timer that drops connections whose request head is
 * not complete within HEAD_TIMEOUT_MS or whose answer is not written within
 * CONN_TIMEOUT_MS, and one uv_tcp_t per connection: read the request head
 * into a fixed buffer, answer it in one write, shut the connection down and
 * close it. The list of connections is kept newest first; when MAX_CONNS are
 * open, a new connection evicts the oldest one still waiting for its request
 * (else the oldest one), so idle clients can never lock a probe out. The
 * server is freed once every handle's close callback ran. */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "log.h"
#include "metrics.h"
#include "tap.h"
#include "handles.h"

#define MAX_CONNS 64
#define HEAD_TIMEOUT_MS 3000
#define CONN_TIMEOUT_MS 10000
#define SWEEP_MS 500
#define TAP_PUMP_MS 100

typedef struct conn {
  uv_tcp_t tcp;
  struct metrics *m;
  uv_write_t write;
  uv_shutdown_t shutdown;
  char req[METRICS_REQ_MAX];
  size_t len;
  uint64_t opened; /* uv_now */
  int answered;
  int closing; /* closed or evicted: no longer counted in n_conns */
  strbuf_t resp;
  tap_client_t *tap; /* a /tap connection's client, or NULL */
  char *tap_buf;     /* the records being written */
  int tap_writing, tap_done;
  uint64_t tap_since; /* uv_now when the write in flight began */
  struct conn *next, *prev;
} conn_t;

struct metrics {
  uv_loop_t *loop;
  uv_tcp_t listener;
  uv_timer_t sweep;
  uv_timer_t pump; /* moves tapped records while a tap is open */
  tap_t *tap;
  size_t n_taps;    /* tap connections open */
  int open_handles; /* listener, timer and connections not yet closed */
  int closing;
  size_t n_conns;        /* connections open and not being closed */
  conn_t *conns;         /* newest first */
  unsigned long evicted; /* connections closed to make room */
  size_t max_containers;
  metrics_collect_fn collect;
  void *collect_ud;
  char where[300]; /* the address, for messages */
};

static void maybe_free(metrics_t *m) {
  if (m->closing && m->open_handles == 0) free(m);
}

/* --- connections -------------------------------------------------------- */

static void conn_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  metrics_t *m = c->m;
  handles_closed(h);
  if (c->prev) c->prev->next = c->next;
  else m->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  strbuf_free(&c->resp);
  if (c->tap) {
    tap_unsubscribe(m->tap, c->tap);
    if (--m->n_taps == 0) uv_timer_stop(&m->pump);
  }
  free(c->tap_buf);
  free(c);
  m->open_handles--;
  maybe_free(m);
}

static void conn_close(conn_t *c) {
  if (!c->closing) c->m->n_conns--;
  c->closing = 1;
  handles_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status) { conn_close(req->data); }

static void on_written(uv_write_t *req, int status) {
  conn_t *c = req->data;
  if (status < 0 || uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
    conn_close(c);
}

static const char *reason(int code) {
  switch (code) {
  case 200: return "OK";
  case 400: return "Bad Request";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 431: return "Request Header Fields Too Large";
  case 503: return "Service Unavailable";
  default: return "Internal Server Error";
  }
}

/* Sends the answer: status line, headers, and body (unless head_only). */
static void respond(conn_t *c, int code, const char *type, const char *body, size_t len,
                    int head_only) {
  char head[512];
  c->answered = 1;
  uv_read_stop((uv_stream_t *)&c->tcp);
  int n = snprintf(head, sizeof head,
                   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                   "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
                   code, reason(code), type, len, code == 405 ? "Allow: GET, HEAD\r\n" : "");
  strbuf_free(&c->resp);
  if (strbuf_add(&c->resp, head, (size_t)n) != 0 ||
      (!head_only && len && strbuf_add(&c->resp, body, len) != 0)) {
    conn_close(c);
    return;
  }
  uv_buf_t buf = uv_buf_init(c->resp.data, (unsigned)c->resp.len);
  c->write.data = c;
  c->shutdown.data = c;
  if (uv_write(&c->write, (uv_stream_t *)&c->tcp, &buf, 1, on_written) != 0) conn_close(c);
}

static void respond_text(conn_t *c, int code, const char *text, int head_only) {
  respond(c, code, "text/plain; charset=utf-8", text, strlen(text), head_only);
}

/* --- /tap --------------------------------------------------------------- */

static void tap_pump(uv_timer_t *t);

static void on_tap_written(uv_write_t *req, int status) {
  conn_t *c = req->data;
  free(c->tap_buf);
  c->tap_buf = NULL;
  c->tap_writing = 0;
  if (status < 0) conn_close(c);
}

/* Writes what c's client has buffered; once its limit was sent, ends. */
static void tap_send(conn_t *c) {
  size_t len;
  int done;
  unsigned long long dropped;
  if (c->closing || c->tap_writing || c->tap_done) return;
  char *buf = tap_take(c->m->tap, c->tap, &len, &done, &dropped);
  if (buf) {
    uv_buf_t b = uv_buf_init(buf, (unsigned)len);
    c->tap_buf = buf;
    c->tap_writing = 1;
    c->tap_since = uv_now(c->m->loop);
    c->write.data = c;
    if (uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, on_tap_written) != 0) {
      conn_close(c);
      return;
    }
  }
  if (done) { /* after the last write, in order */
    c->tap_done = 1;
    c->shutdown.data = c;
    if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) != 0) conn_close(c);
  }
}

static void tap_pump(uv_timer_t *t) {
  metrics_t *m = t->data;
  for (conn_t *c = m->conns; c; c = c->next)
    if (c->tap) tap_send(c);
}

static int hex_digit(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* The value of key in a query ("a=1&b=2"), %XX and '+' decoded, in out.
 * Returns 1 when found, 0 when not, -1 when too long or malformed. */
static int query_value(const char *q, size_t qlen, const char *key, char *out, size_t n) {
  size_t klen = strlen(key);
  for (size_t i = 0; i < qlen;) {
    size_t end = i;
    while (end < qlen && q[end] != '&') end++;
    if (end - i > klen && memcmp(q + i, key, klen) == 0 && q[i + klen] == '=') {
      size_t o = 0;
      for (size_t k = i + klen + 1; k < end; k++) {
        char ch = q[k];
        if (ch == '+') ch = ' ';
        else if (ch == '%') {
          int hi = k + 2 < end ? hex_digit(q[k + 1]) : -1,
              lo = k + 2 < end ? hex_digit(q[k + 2]) : -1;
          if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return -1;
          ch = (char)(hi * 16 + lo);
          k += 2;
        }
        if (o + 1 >= n) return -1;
        out[o++] = ch;
      }
      out[o] = '\0';
      return 1;
    }
    i = end + 1;
  }
  return 0;
}

/* Starts a /tap answer: the records follow as the pump finds them. */
static void respond_tap(conn_t *c, const metrics_request_t *r) {
  metrics_t *m = c->m;
  const char *q = c->req + r->query;
  char point[16] = "input", name[256] = "", glob[256] = "", limit[24] = "0";
  if (!m->tap) {
    respond_text(c, 404, "not found: this engine has no tap\n", r->head_only);
    return;
  }
  if (query_value(q, r->query_len, "point", point, sizeof point) < 0 ||
      query_value(q, r->query_len, "name", name, sizeof name) < 0 ||
      query_value(q, r->query_len, "select", glob, sizeof glob) < 0 ||
      query_value(q, r->query_len, "limit", limit, sizeof limit) < 0) {
    respond_text(c, 400, "bad tap query: a value is too long or badly escaped\n", 0);
    return;
  }
  int pt = !strcmp(point, "input")    ? TAP_INPUT
           : !strcmp(point, "filter") ? TAP_FILTER
           : !strcmp(point, "output") ? TAP_OUTPUT
                                      : -1;
  char *end;
  unsigned long long lim = strtoull(limit, &end, 10);
  if (pt < 0 || *end || (pt != TAP_INPUT && !name[0])) {
    respond_text(c, 400,
                 "bad tap query: point is input, or filter or output with a name; "
                 "limit is a number\n",
                 0);
    return;
  }
  if (r->head_only) {
    respond(c, 200, "application/x-ndjson", NULL, 0, 1);
    return;
  }
  if (!(c->tap = tap_subscribe(m->tap, pt, pt == TAP_INPUT ? NULL : name, glob, (size_t)lim))) {
    respond_text(c, 503, "too many tap clients (or out of memory)\n", 0);
    return;
  }
  if (m->n_taps++ == 0) uv_timer_start(&m->pump, tap_pump, TAP_PUMP_MS, TAP_PUMP_MS);
  c->answered = 1; /* reading goes on: a client that leaves is seen at once */
  static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                             "Cache-Control: no-store\r\nConnection: close\r\n\r\n";
  uv_buf_t b = uv_buf_init((char *)head, sizeof head - 1);
  c->tap_writing = 1;
  c->tap_since = uv_now(m->loop);
  c->write.data = c;
  if (uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, on_tap_written) != 0) conn_close(c);
}

/* Renders one of the status views and sends it. */
/* The first output whose last attempt failed, or NULL. */
static const status_output_t *failing_output(const status_t *s) {
  for (size_t i = 0; i < s->n_outputs; i++)
    if (s->outputs[i].st.failing) return &s->outputs[i];
  return NULL;
}

static void respond_view(conn_t *c, int path, int head_only) {
  metrics_t *m = c->m;
  status_t *s = m->collect(m->collect_ud);
  strbuf_t body = {0};
  int code = 200, rc = -1;
  const char *type = "application/json";
  char text[600];
  if (!s) {
    respond_text(c, 500, "out of memory\n", head_only);
    return;
  }
  if (path == METRICS_PATH_METRICS) {
    type = "text/plain; version=0.0.4; charset=utf-8";
    rc = metrics_render_prometheus(s, m->max_containers, &body);
  } else if (path == METRICS_PATH_READERS) {
    rc = metrics_render_readers(s, &body);
  } else if (path == METRICS_PATH_PIPELINE) {
    rc = metrics_render_pipeline(s, &body);
  } else { /* /ready */
    const status_output_t *o;
    type = "text/plain; charset=utf-8";
    if (s->stopping) snprintf(text, sizeof text, "not ready: the engine is stopping\n");
    else if (!s->pipeline_loaded)
      snprintf(text, sizeof text, "not ready: the pipeline is not running\n");
    else if (s->pipeline.batches_pending && s->pipeline.stalled_for > s->stall_limit)
      snprintf(text, sizeof text,
               "not ready: the pipeline has not finished a batch for %.0f s "
               "(filter_timeout plus %g s) while %llu batches wait\n",
               s->pipeline.stalled_for, STATUS_STALL_MARGIN, s->pipeline.batches_pending);
    else if (!s->docker_ok)
      snprintf(text, sizeof text, "not ready: Docker: %.560s\n", s->docker_why);
    else if ((o = failing_output(s)))
      snprintf(text, sizeof text, "not ready: output %s is failing: %s\n", o->info.name,
               o->st.cause);
    else snprintf(text, sizeof text, "ready\n");
    code = strncmp(text, "ready", 5) == 0 ? 200 : 503;
    rc = strbuf_add(&body, text, strlen(text));
  }
  status_free(s);
  if (rc != 0) respond_text(c, 500, "out of memory\n", head_only);
  else respond(c, code, type, body.data, body.len, head_only);
  strbuf_free(&body);
}

/* Answers a complete request head (r: what metrics_request_parse found). */
static void handle(conn_t *c, const metrics_request_t *r) {
  switch (r->code) {
  case 200:
    if (r->path == METRICS_PATH_HEALTH) respond_text(c, 200, "ok\n", r->head_only);
    else if (r->path == METRICS_PATH_TAP) respond_tap(c, r);
    else respond_view(c, r->path, r->head_only);
    break;
  case 404:
    respond_text(c, 404, "not found: try /metrics, /health, /ready, /readers, /pipeline or /tap\n",
                 r->head_only);
    break;
  case 405: respond_text(c, 405, "method not allowed\n", 0); break;
  case 431: respond_text(c, 431, "request head too large\n", 0); break;
  default: respond_text(c, 400, "bad request\n", 0); break;
  }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  conn_t *c = h->data;
  *buf = uv_buf_init(c->req + c->len, (unsigned)(METRICS_REQ_MAX - c->len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = s->data;
  if (nread < 0) { /* EOF or error before a complete request */
    conn_close(c);
    return;
  }
  if (nread == 0 || c->answered) return;
  c->len += (size_t)nread;
  metrics_request_t r;
  if (metrics_request_parse(c->req, c->len, &r) != 0) handle(c, &r);
}

/* Makes room for one more connection: closes the oldest one still waiting
 * for its request, or else the oldest one. */
static void evict_one(metrics_t *m) {
  conn_t *victim = NULL, *oldest = NULL;
  for (conn_t *c = m->conns; c; c = c->next) { /* newest first: the last match is the oldest */
    if (c->closing) continue;
    oldest = c;
    if (!c->answered) victim = c;
  }
  if (!victim) victim = oldest;
  if (!victim) return;
  m->evicted++;
  if (m->evicted == 1 || m->evicted % 1000 == 0)
    log_warn(NULL,
             "metrics: %d connections open; closing the oldest idle ones "
             "(%lu so far)",
             MAX_CONNS, m->evicted);
  conn_close(victim);
}

static void on_connection(uv_stream_t *server, int status) {
  metrics_t *m = server->data;
  if (status < 0) {
    log_debug(NULL, "metrics: accept failed: %s", uv_strerror(status));
    return;
  }
  if (m->n_conns >= MAX_CONNS) evict_one(m);
  conn_t *c = calloc(1, sizeof *c);
  if (!c) return;
  if (uv_tcp_init(m->loop, &c->tcp) != 0) {
    free(c);
    return;
  }
  handles_opened((uv_handle_t *)&c->tcp);
  c->tcp.data = c;
  c->m = m;
  c->opened = uv_now(m->loop);
  c->next = m->conns;
  if (m->conns) m->conns->prev = c;
  m->conns = c;
  m->n_conns++;
  m->open_handles++;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
      uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
    conn_close(c);
}

/* Drops connections whose request head did not come within HEAD_TIMEOUT_MS
 * or whose answer was not taken within CONN_TIMEOUT_MS. */
static void on_sweep(uv_timer_t *t) {
  metrics_t *m = t->data;
  uint64_t now = uv_now(m->loop);
  for (conn_t *c = m->conns; c; c = c->next) {
    if (c->closing) continue;
    if (c->tap) { /* open as long as its client takes what is written */
      if (c->tap_writing && now - c->tap_since > CONN_TIMEOUT_MS) conn_close(c);
    } else if (now - c->opened > (c->answered ? CONN_TIMEOUT_MS : HEAD_TIMEOUT_MS)) {
      conn_close(c);
    }
  }
}

/* --- the server --------------------------------------------------------- */

static void server_handle_closed(uv_handle_t *h) {
  metrics_t *m = h->data;
  handles_closed(h);
  m->open_handles--;
  maybe_free(m);
}

/* Fills sa from "host:port" or "[v6]:port". Returns 0, or -1 with err. */
static int parse_listen(const char *listen, struct sockaddr_storage *sa, char *err, size_t n) {
  char host[256];
  const char *colon = strrchr(listen, ':');
  const char *h = listen;
  size_t hlen = colon ? (size_t)(colon - listen) : 0;
  if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') h++, hlen -= 2;
  if (!colon || !colon[1] || hlen == 0 || hlen >= sizeof host) {
    snprintf(err, n, "metrics: cannot listen on '%s': expected host:port", listen);
    return -1;
  }
  memcpy(host, h, hlen);
  host[hlen] = '\0';
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
  int rc = getaddrinfo(host, colon + 1, &hints, &res);
  if (rc != 0 || !res) {
    snprintf(err, n, "metrics: cannot listen on '%s': %s", listen, gai_strerror(rc));
    if (res) freeaddrinfo(res);
    return -1;
  }
  memset(sa, 0, sizeof *sa);
  memcpy(sa, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  return 0;
}

metrics_t *metrics_start(uv_loop_t *loop, const char *listen, size_t max_containers,
                         metrics_collect_fn collect, void *ud, char *err, size_t errlen) {
  struct sockaddr_storage sa;
  if (parse_listen(listen, &sa, err, errlen) != 0) return NULL;
  metrics_t *m = calloc(1, sizeof *m);
  if (!m) {
    snprintf(err, errlen, "metrics: out of memory");
    return NULL;
  }
  m->loop = loop;
  m->max_containers = max_containers ? max_containers : 200;
  m->collect = collect;
  m->collect_ud = ud;
  snprintf(m->where, sizeof m->where, "%s", listen);
  int rc = uv_tcp_init(loop, &m->listener);
  if (rc != 0) {
    free(m);
    snprintf(err, errlen, "metrics: cannot listen on %s: %s", listen, uv_strerror(rc));
    return NULL;
  }
  handles_opened((uv_handle_t *)&m->listener);
  m->listener.data = m;
  uv_timer_init(loop, &m->sweep);
  handles_opened((uv_handle_t *)&m->sweep);
  m->sweep.data = m;
  uv_timer_init(loop, &m->pump);
  handles_opened((uv_handle_t *)&m->pump);
  m->pump.data = m;
  m->open_handles = 3;
  rc = uv_tcp_bind(&m->listener, (const struct sockaddr *)&sa, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&m->listener, 64, on_connection);
  if (rc != 0) {
    snprintf(err, errlen, "metrics: cannot listen on %s: %s", listen, uv_strerror(rc));
    metrics_close(m);
    return NULL;
  }
  uv_timer_start(&m->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
  log_info(NULL,
           "metrics: listening on http://%s (/metrics, /health, /ready, /readers, /pipeline, "
           "/tap)",
           listen);
  return m;
}

void metrics_set_tap(metrics_t *m, tap_t *tap) { m->tap = tap; }

void metrics_close(metrics_t *m) {
  if (!m || m->closing) return;
  m->closing = 1;
  uv_timer_stop(&m->sweep);
  uv_timer_stop(&m->pump);
  handles_close((uv_handle_t *)&m->listener, server_handle_closed);
  handles_close((uv_handle_t *)&m->sweep, server_handle_closed);
  handles_close((uv_handle_t *)&m->pump, server_handle_closed);
  for (conn_t *c = m->conns; c; c = c->next) conn_close(c);
}
