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
#include "uvh.h"

#define MAX_CONNS 64
#define HEAD_TIMEOUT_MS 3000
#define CONN_TIMEOUT_MS 10000
#define SWEEP_MS 500

typedef struct conn {
  uv_tcp_t tcp;
  struct metrics *m;
  uv_write_t write;
  uv_shutdown_t shutdown;
  char req[METRICS_REQ_MAX];
  size_t len;
  uint64_t opened;          /* uv_now */
  int answered;
  int closing;              /* closed or evicted: no longer counted in n_conns */
  strbuf_t resp;
  struct conn *next, *prev;
} conn_t;

struct metrics {
  uv_loop_t *loop;
  uv_tcp_t listener;
  uv_timer_t sweep;
  int open_handles;         /* listener, timer and connections not yet closed */
  int closing;
  size_t n_conns;           /* connections open and not being closed */
  conn_t *conns;            /* newest first */
  unsigned long evicted;    /* connections closed to make room */
  size_t max_containers;
  metrics_collect_fn collect;
  void *collect_ud;
  char where[300];          /* the address, for messages */
};

static void maybe_free(metrics_t *m) {
  if (m->closing && m->open_handles == 0) free(m);
}

/* --- connections -------------------------------------------------------- */

static void conn_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  metrics_t *m = c->m;
  uvh_closed(h);
  if (c->prev) c->prev->next = c->next;
  else m->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  strbuf_free(&c->resp);
  free(c);
  m->open_handles--;
  maybe_free(m);
}

static void conn_close(conn_t *c) {
  if (!c->closing) c->m->n_conns--;
  c->closing = 1;
  uvh_close((uv_handle_t *)&c->tcp, conn_closed);
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
    else if (!s->pipeline_loaded) snprintf(text, sizeof text, "not ready: the pipeline is not running\n");
    else if (s->pipeline.batches_pending && s->pipeline.stalled_for > s->stall_limit)
      snprintf(text, sizeof text, "not ready: the pipeline has not finished a batch for %.0f s "
               "(filter_timeout plus %g s) while %llu batches wait\n", s->pipeline.stalled_for,
               STATUS_STALL_MARGIN, s->pipeline.batches_pending);
    else if (!s->docker_ok) snprintf(text, sizeof text, "not ready: Docker: %s\n", s->docker_why);
    else if ((o = failing_output(s)))
      snprintf(text, sizeof text, "not ready: output %s is failing: %s\n", o->info.name, o->st.cause);
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
    else respond_view(c, r->path, r->head_only);
    break;
  case 404:
    respond_text(c, 404, "not found: try /metrics, /health, /ready, /readers or /pipeline\n",
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
    log_warn(NULL, "metrics: %d connections open; closing the oldest idle ones "
             "(%lu so far)", MAX_CONNS, m->evicted);
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
  uvh_opened((uv_handle_t *)&c->tcp);
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
  for (conn_t *c = m->conns; c; c = c->next)
    if (!c->closing && now - c->opened > (c->answered ? CONN_TIMEOUT_MS : HEAD_TIMEOUT_MS))
      conn_close(c);
}

/* --- the server --------------------------------------------------------- */

static void server_handle_closed(uv_handle_t *h) {
  metrics_t *m = h->data;
  uvh_closed(h);
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
  uvh_opened((uv_handle_t *)&m->listener);
  m->listener.data = m;
  uv_timer_init(loop, &m->sweep);
  uvh_opened((uv_handle_t *)&m->sweep);
  m->sweep.data = m;
  m->open_handles = 2;
  rc = uv_tcp_bind(&m->listener, (const struct sockaddr *)&sa, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&m->listener, 64, on_connection);
  if (rc != 0) {
    snprintf(err, errlen, "metrics: cannot listen on %s: %s", listen, uv_strerror(rc));
    metrics_close(m);
    return NULL;
  }
  uv_timer_start(&m->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
  log_info(NULL, "metrics: listening on http://%s (/metrics, /health, /ready, /readers, /pipeline)",
           listen);
  return m;
}

void metrics_close(metrics_t *m) {
  if (!m || m->closing) return;
  m->closing = 1;
  uv_timer_stop(&m->sweep);
  uvh_close((uv_handle_t *)&m->listener, server_handle_closed);
  uvh_close((uv_handle_t *)&m->sweep, server_handle_closed);
  for (conn_t *c = m->conns; c; c = c->next) conn_close(c);
}
