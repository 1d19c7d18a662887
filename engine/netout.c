/* netout.c - network outputs: encoding on the pipeline thread, sending on
 * the loop (see netout.h). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <lua.h>
#include "encode.h"
#include "http.h"
#include "log.h"
#include "netout.h"
#include "timestamp.h"
#include "uvh.h"

/* --- tickets ------------------------------------------------------------ */

struct ticket {
  atomic_int refs;
  atomic_int abandoned;     /* an output gave up on it: no acknowledgement */
  batch_t *batch;
  void (*done)(void *, batch_t *);
  void *ud;
};

ticket_t *ticket_new(batch_t *b, void (*done)(void *, batch_t *), void *ud) {
  ticket_t *t = malloc(sizeof *t);
  if (!t) return NULL;
  atomic_init(&t->refs, 1);
  atomic_init(&t->abandoned, 0);
  t->batch = b;
  t->done = done;
  t->ud = ud;
  return t;
}

static void ticket_ref(ticket_t *t) { atomic_fetch_add(&t->refs, 1); }

void ticket_release(ticket_t *t) {
  if (atomic_fetch_sub(&t->refs, 1) != 1) return;
  if (t->batch && t->done && !atomic_load(&t->abandoned)) t->done(t->ud, t->batch);
  else batch_free(t->batch);
  free(t);
}

/* Releases a reference of a body that was not delivered (at stop): the batch
 * is freed without being acknowledged, so the next run reads it again. */
static void ticket_abandon(ticket_t *t) {
  atomic_store(&t->abandoned, 1);
  ticket_release(t);
}

/* --- the output --------------------------------------------------------- */

typedef struct body {
  struct body *next;
  ticket_t *ticket;
  char *data;
  size_t len, records;
  unsigned attempts;
} body_t;

typedef struct dl_write { /* a dead-letter line being appended */
  uv_fs_t req;
  struct netout *n;
  char *line;
  size_t len;
} dl_write_t;

typedef struct netout {
  output_t base;             /* first: an output_t* is a netout_t* */
  netout_config_t cfg;
  char *path;                /* the request path of http kinds */
  char *base_url;            /* scheme://host:port */
  /* loop side */
  uv_loop_t *loop;
  http_t *http;
  http_req_t *req;           /* the request in flight */
  char *hdr_store[64];       /* header lines with values read at start */
  size_t n_hdr;
  char *userpwd;
  uv_async_t wake;
  uv_timer_t retry;
  int open_handles;
  int started, closing, waiting;
  double backoff;
  body_t *head, *tail;       /* loop-side queue: head is in flight or next */
  size_t pending;
  char last_cause[256];
  int dl_fd;
  /* syslog */
  char hostname[256];
  int udp;                   /* udp:// instead of tcp:// */
  char host[256], port[16];
  struct conn *conn;         /* the TCP connection, or NULL */
  uv_udp_t udp_handle;
  uv_getaddrinfo_t resolve;
  int resolving;
  struct sockaddr_storage addr;
  int have_addr;
  unsigned long long sent, failed, retried, dead;
  void (*closed)(void *);
  void *closed_ud;
  /* handed over from the pipeline thread */
  pthread_mutex_t lock;
  body_t *in_head, *in_tail;
} netout_t;

static const char *kind_name(int k) {
  static const char *const names[] = {"http", "clickhouse", "loki", "elasticsearch", "otlp",
                                      "syslog"};
  return k >= 0 && k <= NETOUT_SYSLOG ? names[k] : "?";
}

/* --- pipeline thread ---------------------------------------------------- */

static int encode(netout_t *n, lua_State *L, int idx, strbuf_t *b) {
  const netout_config_t *c = &n->cfg;
  switch (c->kind) {
  case NETOUT_HTTP: return c->json_array ? encode_json_array(b, L, idx) : encode_ndjson(b, L, idx);
  case NETOUT_CLICKHOUSE: return encode_clickhouse(b, L, idx);
  case NETOUT_LOKI: return encode_loki(b, L, idx, (const char *const *)c->labels, c->n_labels);
  case NETOUT_ELASTICSEARCH: return encode_elasticsearch(b, L, idx, c->index ? c->index : "logs");
  case NETOUT_OTLP: return encode_otlp(b, L, idx);
  case NETOUT_SYSLOG:
    return encode_syslog(b, L, idx, n->hostname, c->facility, !n->udp);
  default: return -1;
  }
}

/* Replaces b's text with its gzip form. Returns 0, or -1 (b unchanged). */
static int gzip_body(strbuf_t *b) {
  z_stream z;
  memset(&z, 0, sizeof z);
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return -1;
  uLong cap = deflateBound(&z, (uLong)b->len);
  char *out = malloc(cap ? cap : 1);
  if (!out) {
    deflateEnd(&z);
    return -1;
  }
  z.next_in = (Bytef *)b->data;
  z.avail_in = (uInt)b->len;
  z.next_out = (Bytef *)out;
  z.avail_out = (uInt)cap;
  int rc = deflate(&z, Z_FINISH);
  size_t len = z.total_out;
  deflateEnd(&z);
  if (rc != Z_STREAM_END) {
    free(out);
    return -1;
  }
  free(b->data);
  b->data = out;
  b->len = len;
  b->cap = cap;
  return 0;
}

int netout_write(output_t *o, lua_State *L, int idx, ticket_t *t, char *err, size_t errlen) {
  netout_t *n = (netout_t *)o;
  size_t records = lua_objlen(L, idx);
  if (records == 0) return 0;
  strbuf_t b = {0};
  if (encode(n, L, idx, &b) != 0 || (n->cfg.gzip && b.len > UINT32_MAX)) {
    strbuf_free(&b);
    snprintf(err, errlen, "out of memory while encoding for %s", o->name);
    return -1;
  }
  if (n->cfg.gzip && gzip_body(&b) != 0) {
    strbuf_free(&b);
    snprintf(err, errlen, "cannot gzip the body for %s", o->name);
    return -1;
  }
  body_t *body = calloc(1, sizeof *body);
  if (!body) {
    strbuf_free(&b);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  body->data = b.data;
  body->len = b.len;
  body->records = records;
  if (t) {
    ticket_ref(t);
  } else if (!(t = ticket_new(NULL, NULL, NULL))) { /* records emitted by a timer */
    free(body);
    strbuf_free(&b);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  body->ticket = t;
  pthread_mutex_lock(&n->lock);
  if (n->in_tail) n->in_tail->next = body;
  else n->in_head = body;
  n->in_tail = body;
  pthread_mutex_unlock(&n->lock);
  uv_async_send(&n->wake);
  return 0;
}

/* --- loop thread: sending ----------------------------------------------- */

static void kick(netout_t *n);

static void body_done(netout_t *n) {
  body_t *b = n->head;
  n->head = b->next;
  if (!n->head) n->tail = NULL;
  n->pending--;
  ticket_release(b->ticket);
  free(b->data);
  free(b);
}

/* Logs a failure the first time this cause is seen. */
static void cause(netout_t *n, int level, const char *fmt, const char *what) {
  char msg[256];
  snprintf(msg, sizeof msg, fmt, what);
  if (strcmp(msg, n->last_cause) == 0) return;
  snprintf(n->last_cause, sizeof n->last_cause, "%s", msg);
  log_msg(level, NULL, "output %s: %s", n->base.name, msg);
}

static void dl_written(uv_fs_t *req) {
  dl_write_t *w = req->data;
  if (req->result < 0) log_error(NULL, "output %s: cannot write the dead-letter file %s: %s",
                                 w->n->base.name, w->n->cfg.dead_letter, uv_strerror((int)req->result));
  uv_fs_req_cleanup(req);
  free(w->line);
  free(w);
}

/* Appends the body with its reason to the dead-letter file (off the loop
 * thread, through libuv), then releases it. */
static void dead_letter(netout_t *n, const char *reason) {
  body_t *b = n->head;
  n->dead++;
  cause(n, LOG_ERROR, "%s; sending such batches to the dead-letter file", reason);
  if (n->dl_fd >= 0) {
    strbuf_t s = {0};
    char ts[TS_LEN + 1], head[64];
    ts_format(ts_now(), ts);
    int ok = strbuf_add(&s, "{\"time\":\"", 9) == 0 && strbuf_add(&s, ts, TS_LEN) == 0 &&
             strbuf_add(&s, "\",\"output\":", 11) == 0 &&
             json_add_string(&s, n->base.name, strlen(n->base.name)) == 0 &&
             strbuf_add(&s, ",\"reason\":", 10) == 0 && json_add_string(&s, reason, strlen(reason)) == 0;
    int hl = snprintf(head, sizeof head, ",\"records\":%zu,\"body\":", b->records);
    ok = ok && strbuf_add(&s, head, (size_t)hl) == 0 && json_add_string(&s, b->data, b->len) == 0 &&
         strbuf_add(&s, "}\n", 2) == 0;
    dl_write_t *w = ok ? calloc(1, sizeof *w) : NULL;
    if (w) {
      w->n = n;
      w->line = s.data;
      w->len = s.len;
      w->req.data = w;
      uv_buf_t buf = uv_buf_init(w->line, (unsigned)w->len);
      if (uv_fs_write(n->loop, &w->req, n->dl_fd, &buf, 1, -1, dl_written) != 0) {
        free(w->line);
        free(w);
      }
    } else {
      strbuf_free(&s);
      log_error(NULL, "output %s: out of memory for a dead letter", n->base.name);
    }
  }
  body_done(n);
}

static void on_retry(uv_timer_t *t) {
  netout_t *n = t->data;
  n->waiting = 0;
  kick(n);
}

static void retry_later(netout_t *n, const char *why, double retry_after) {
  body_t *b = n->head;
  n->failed++;
  if (n->cfg.retry_max >= 0 && b->attempts > (unsigned)n->cfg.retry_max) {
    char msg[300];
    snprintf(msg, sizeof msg, "gave up after %u tries: %s", b->attempts, why);
    dead_letter(n, msg);
    kick(n);
    return;
  }
  n->retried++;
  double delay = n->backoff * (0.5 + 0.5 * ((double)rand() / RAND_MAX));
  if (retry_after > delay) delay = retry_after;
  n->backoff *= 2;
  if (n->backoff > n->cfg.backoff_max) n->backoff = n->cfg.backoff_max;
  cause(n, LOG_WARN, "%s; retrying with backoff", why);
  n->waiting = 1;
  uv_timer_start(&n->retry, on_retry, (uint64_t)(delay * 1000), 0);
}

/* The head body was delivered: logs a recovery once, counts it, resets the
 * backoff and drops the body. */
static void delivered(netout_t *n) {
  if (n->last_cause[0]) log_info(NULL, "output %s: delivering again", n->base.name);
  n->last_cause[0] = '\0';
  n->sent++;
  n->backoff = n->cfg.backoff_initial;
  body_done(n);
}

static void on_sent(void *ud, const http_result_t *r) {
  netout_t *n = ud;
  char why[300];
  n->req = NULL;
  if (!n->head) return;
  if (r->ok && r->status >= 200 && r->status < 300) {
    if (n->cfg.kind == NETOUT_ELASTICSEARCH) {
      char reason[200];
      int bad = elasticsearch_bulk_errors(r->body, r->body_len, reason, sizeof reason);
      if (bad != 0) {
        snprintf(why, sizeof why, bad < 0 ? "the answer is not a _bulk reply"
                                          : "the _bulk reply reports item errors: %s", reason);
        dead_letter(n, why);
        kick(n);
        return;
      }
    }
    delivered(n);
    kick(n);
    return;
  }
  if (!r->ok && r->status == 0) {
    snprintf(why, sizeof why, "%s", r->error ? r->error : "no answer");
    retry_later(n, why, 0);
    return;
  }
  snprintf(why, sizeof why, "HTTP %ld: %.200s", r->status, r->body_len ? r->body : (r->error ? r->error : ""));
  for (char *p = why; *p; p++)
    if (*p == '\n' || *p == '\r') *p = ' ';
  if (r->status == 408 || r->status == 429 || r->status >= 500 || !r->ok)
    retry_later(n, why, r->retry_after);
  else {
    dead_letter(n, why); /* the server will never take this body */
    kick(n);
  }
}

static void syslog_kick(netout_t *n);

static void kick(netout_t *n) {
  static const http_handler_t handler = {NULL, NULL, on_sent};
  if (n->cfg.kind == NETOUT_SYSLOG) {
    syslog_kick(n);
    return;
  }
  if (n->req || n->waiting || n->closing || !n->head) return;
  body_t *b = n->head;
  char *copy = malloc(b->len ? b->len : 1);
  if (!copy) {
    retry_later(n, "out of memory", 1);
    return;
  }
  memcpy(copy, b->data, b->len);
  b->attempts++;
  http_opts_t o = {.body = copy, .body_len = b->len,
                   .headers = (const char *const *)n->hdr_store, .n_headers = n->n_hdr,
                   .timeout_ms = (long)(n->cfg.timeout * 1000), .ca_file = n->cfg.ca_file,
                   .insecure = !n->cfg.tls_verify, .userpwd = n->userpwd};
  n->req = http_request(n->http, n->path, 1024 * 1024, &o, &handler, n);
  if (!n->req) retry_later(n, "cannot start a request (out of memory)", 1);
}

static void on_wake(uv_async_t *a) {
  netout_t *n = a->data;
  pthread_mutex_lock(&n->lock);
  body_t *first = n->in_head, *last = n->in_tail;
  n->in_head = n->in_tail = NULL;
  pthread_mutex_unlock(&n->lock);
  if (!first) return;
  for (body_t *b = first; b; b = b->next) n->pending++;
  if (n->tail) n->tail->next = first;
  else n->head = first;
  n->tail = last;
  kick(n);
}


/* --- syslog: TCP (octet counting) and UDP ------------------------------- */

typedef struct conn {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_write_t write;
  netout_t *n;
  int connected, writing;
} conn_t;

static void maybe_closed(netout_t *n);

static void conn_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  netout_t *n = c->n;
  uvh_closed(h);
  free(c);
  n->open_handles--;
  maybe_closed(n);
}

static void drop_conn(netout_t *n) {
  conn_t *c = n->conn;
  if (!c) return;
  n->conn = NULL;
  uvh_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void syslog_failed(netout_t *n, const char *what, int err) {
  char why[400];
  snprintf(why, sizeof why, "%s %.255s:%s: %s", what, n->host, n->port, uv_strerror(err));
  drop_conn(n);
  retry_later(n, why, 0);
}

static void on_tcp_written(uv_write_t *w, int status) {
  conn_t *c = w->data;
  netout_t *n = c->n;
  c->writing = 0;
  if (status == UV_ECANCELED || n->conn != c) return;
  if (status < 0) {
    syslog_failed(n, "writing to", status);
    return;
  }
  delivered(n);
  syslog_kick(n);
}

static void tcp_send_head(netout_t *n) {
  conn_t *c = n->conn;
  body_t *b = n->head;
  b->attempts++;
  uv_buf_t buf = uv_buf_init(b->data, (unsigned)b->len);
  c->writing = 1;
  c->write.data = c;
  int r = uv_write(&c->write, (uv_stream_t *)&c->tcp, &buf, 1, on_tcp_written);
  if (r != 0) {
    c->writing = 0;
    syslog_failed(n, "writing to", r);
  }
}

static void on_tcp_connected(uv_connect_t *req, int status) {
  conn_t *c = req->data;
  netout_t *n = c->n;
  if (status == UV_ECANCELED || n->conn != c) return;
  if (status < 0) {
    syslog_failed(n, "connecting to", status);
    return;
  }
  c->connected = 1;
  syslog_kick(n);
}

static void start_conn(netout_t *n) {
  conn_t *c = calloc(1, sizeof *c);
  if (!c) {
    retry_later(n, "out of memory", 1);
    return;
  }
  c->n = n;
  uv_tcp_init(n->loop, &c->tcp);
  uvh_opened((uv_handle_t *)&c->tcp);
  n->open_handles++;
  c->tcp.data = c;
  c->connect.data = c;
  n->conn = c;
  int r = uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&n->addr, on_tcp_connected);
  if (r != 0) syslog_failed(n, "connecting to", r);
}

static void udp_send_head(netout_t *n) {
  body_t *b = n->head;
  b->attempts++;
  /* one datagram per message: encode_syslog ends each with '\n' */
  char *p = b->data, *end = b->data + b->len;
  while (p < end) {
    char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
    uv_buf_t buf = uv_buf_init(p, (unsigned)len);
    int r = uv_udp_try_send(&n->udp_handle, &buf, 1, (const struct sockaddr *)&n->addr);
    if (r < 0) {
      /* keep what is left for the retry */
      memmove(b->data, p, (size_t)(end - p));
      b->len = (size_t)(end - p);
      char why[400];
      snprintf(why, sizeof why, "sending to udp %.255s:%s: %s", n->host, n->port, uv_strerror(r));
      retry_later(n, why, 0);
      return;
    }
    p += len + (nl ? 1 : 0);
  }
  n->sent++;
  n->last_cause[0] = '\0';
  body_done(n);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  netout_t *n = req->data;
  n->resolving = 0;
  if (status == UV_ECANCELED || n->closing) {
    uv_freeaddrinfo(res);
    return;
  }
  if (status < 0 || !res) {
    char why[300];
    snprintf(why, sizeof why, "cannot resolve %s: %s", n->host, uv_strerror(status));
    uv_freeaddrinfo(res);
    retry_later(n, why, 0);
    return;
  }
  memcpy(&n->addr, res->ai_addr, res->ai_addrlen);
  n->have_addr = 1;
  uv_freeaddrinfo(res);
  syslog_kick(n);
}

static void syslog_kick(netout_t *n) {
  while (n->head && !n->waiting && !n->closing) {
    if (!n->have_addr) {
      if (n->resolving) return;
      struct addrinfo hints = {0};
      hints.ai_socktype = n->udp ? SOCK_DGRAM : SOCK_STREAM;
      n->resolve.data = n;
      n->resolving = 1;
      int r = uv_getaddrinfo(n->loop, &n->resolve, on_resolved, n->host, n->port, &hints);
      if (r != 0) {
        n->resolving = 0;
        retry_later(n, "cannot resolve the syslog host", 0);
      }
      return;
    }
    if (n->udp) {
      udp_send_head(n);
      continue;
    }
    if (!n->conn) {
      start_conn(n);
      return;
    }
    if (!n->conn->connected || n->conn->writing) return;
    tcp_send_head(n);
    return;
  }
}

/* Splits "tcp://host:port" or "udp://host:port" ([v6] allowed). */
static int parse_syslog_url(netout_t *n, const char *url) {
  if (!strncmp(url, "udp://", 6)) n->udp = 1;
  else if (strncmp(url, "tcp://", 6) != 0) return -1;
  const char *h = url + 6, *colon;
  if (*h == '[') {
    const char *close = strchr(h, ']');
    if (!close || close[1] != ':') return -1;
    snprintf(n->host, sizeof n->host, "%.*s", (int)(close - h - 1), h + 1);
    colon = close + 1;
  } else {
    colon = strrchr(h, ':');
    if (!colon) return -1;
    snprintf(n->host, sizeof n->host, "%.*s", (int)(colon - h), h);
  }
  char *end;
  errno = 0;
  long port = strtol(colon + 1, &end, 10);
  if (errno || end == colon + 1 || *end || port < 1 || port > 65535) return -1;
  snprintf(n->port, sizeof n->port, "%ld", port);
  return n->host[0] ? 0 : -1;
}

/* --- loop thread: life -------------------------------------------------- */

/* Splits url into scheme://host:port and the path (default def). */
static int split_url(const char *url, char **base, char **path, const char *def) {
  const char *hp = strstr(url, "://");
  if (!hp) return -1;
  const char *slash = strchr(hp + 3, '/');
  size_t blen = slash ? (size_t)(slash - url) : strlen(url);
  *base = strndup(url, blen);
  *path = strdup(slash && slash[1] ? slash : def);
  return *base && *path ? 0 : -1;
}

static const char *default_path(int kind) {
  switch (kind) {
  case NETOUT_LOKI: return "/loki/api/v1/push";
  case NETOUT_ELASTICSEARCH: return "/_bulk";
  case NETOUT_OTLP: return "/v1/logs";
  default: return "/";
  }
}

static int add_header(netout_t *n, const char *fmt, const char *a, const char *b) {
  if (n->n_hdr >= sizeof n->hdr_store / sizeof *n->hdr_store) return -1;
  size_t len = strlen(fmt) + strlen(a) + (b ? strlen(b) : 0) + 1;
  char *h = malloc(len);
  if (!h) return -1;
  snprintf(h, len, fmt, a, b ? b : "");
  n->hdr_store[n->n_hdr++] = h;
  return 0;
}

static char *url_escape_query(const char *s) {
  size_t n = strlen(s);
  char *out = malloc(n * 3 + 1), *o = out;
  if (!out) return NULL;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
        *p == '-' || *p == '_' || *p == '.')
      *o++ = (char)*p;
    else
      o += sprintf(o, "%%%02X", *p);
  }
  *o = '\0';
  return out;
}

int netout_start(output_t *o, uv_loop_t *loop, char *err, size_t errlen) {
  netout_t *n = (netout_t *)o;
  const netout_config_t *c = &n->cfg;
  n->loop = loop;
  n->backoff = c->backoff_initial;
  if (c->kind == NETOUT_SYSLOG) {
    if (parse_syslog_url(n, c->url) != 0) {
      snprintf(err, errlen, "output %s: bad url '%s' (expected tcp://host:port or udp://host:port)",
               o->name, c->url);
      return -1;
    }
    if (n->udp) {
      uv_udp_init(loop, &n->udp_handle);
      uvh_opened((uv_handle_t *)&n->udp_handle);
      n->udp_handle.data = n;
    }
    goto handles;
  }
  if (split_url(c->url, &n->base_url, &n->path, default_path(c->kind)) != 0) {
    snprintf(err, errlen, "output %s: bad url '%s'", o->name, c->url);
    return -1;
  }
  if (c->kind == NETOUT_CLICKHOUSE) { /* the query goes in the URL */
    char *q = NULL, *t = url_escape_query(c->table ? c->table : "logs");
    size_t len = strlen(n->path) + (t ? strlen(t) : 0) + 96;
    if (t && (q = malloc(len)))
      snprintf(q, len, "%s%squery=INSERT%%20INTO%%20%s%%20FORMAT%%20JSONEachRow", n->path,
               strchr(n->path, '?') ? "&" : "?", t);
    free(t);
    if (!q) goto oom;
    free(n->path);
    n->path = q;
  }
  const char *ctype = c->kind == NETOUT_HTTP && !c->json_array ? "application/x-ndjson"
                      : c->kind == NETOUT_ELASTICSEARCH        ? "application/x-ndjson"
                                                               : "application/json";
  if (add_header(n, "Content-Type: %s%s", ctype, NULL) != 0) goto oom;
  if (c->gzip && add_header(n, "Content-Encoding: gzip%s%s", "", NULL) != 0) goto oom;
  for (size_t i = 0; i < c->n_headers; i++)
    if (add_header(n, "%s%s", c->headers[i], NULL) != 0) goto oom;
  if (c->bearer_env) {
    const char *tok = getenv(c->bearer_env);
    if (!tok || !*tok) {
      snprintf(err, errlen, "output %s: the environment variable %s (bearer token) is not set",
               o->name, c->bearer_env);
      return -1;
    }
    if (add_header(n, "Authorization: Bearer %s%s", tok, NULL) != 0) goto oom;
  }
  if (c->user_env) {
    const char *u = getenv(c->user_env), *p = c->password_env ? getenv(c->password_env) : "";
    if (!u || !p) {
      snprintf(err, errlen, "output %s: the environment variables for basic auth (%s, %s) are not set",
               o->name, c->user_env, c->password_env ? c->password_env : "-");
      return -1;
    }
    size_t len = strlen(u) + strlen(p) + 2;
    if (!(n->userpwd = malloc(len))) goto oom;
    snprintf(n->userpwd, len, "%s:%s", u, p);
  }
  if (c->dead_letter) {
    n->dl_fd = open(c->dead_letter, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (n->dl_fd < 0) {
      snprintf(err, errlen, "output %s: cannot open the dead-letter file %s: %s", o->name,
               c->dead_letter, strerror(errno));
      return -1;
    }
  }
  if (!(n->http = http_new(loop, n->base_url, err, errlen))) return -1;
handles:
  uv_async_init(loop, &n->wake, on_wake);
  uvh_opened((uv_handle_t *)&n->wake);
  uv_timer_init(loop, &n->retry);
  uvh_opened((uv_handle_t *)&n->retry);
  n->wake.data = n->retry.data = n;
  n->open_handles = 2 + (n->udp ? 1 : 0);
  n->started = 1;
  return 0;
oom:
  snprintf(err, errlen, "out of memory");
  return -1;
}

size_t netout_pending(const output_t *o) { return ((const netout_t *)o)->pending; }

void netout_stats(const output_t *o, netout_stats_t *out) {
  const netout_t *n = (const netout_t *)o;
  out->sent = n->sent;
  out->failed = n->failed;
  out->retried = n->retried;
  out->dead_letters = n->dead;
  out->pending = n->pending;
}

int netout_is(const output_t *o) { return o && o->write == NULL; }

static void maybe_closed(netout_t *n) {
  if (!n->closing || n->open_handles || !n->closed) return;
  void (*cb)(void *) = n->closed;
  n->closed = NULL;
  cb(n->closed_ud);
}

static void http_closed(void *ud) {
  netout_t *n = ud;
  n->http = NULL;
  n->open_handles--;
  maybe_closed(n);
}

static void handle_closed(uv_handle_t *h) {
  netout_t *n = h->data;
  uvh_closed(h);
  n->open_handles--;
  maybe_closed(n);
}

void netout_close(output_t *o, void (*closed)(void *), void *ud) {
  netout_t *n = (netout_t *)o;
  n->closed = closed;
  n->closed_ud = ud;
  if (!n->started) {
    if (closed) closed(ud);
    return;
  }
  on_wake(&n->wake); /* take what the pipeline handed over last */
  n->closing = 1;
  if (n->pending)
    log_warn(NULL, "output %s: %zu batches not delivered at stop; the next run sends them again",
             o->name, n->pending);
  if (n->resolving) uv_cancel((uv_req_t *)&n->resolve);
  http_cancel(n->req);
  n->req = NULL;
  drop_conn(n);
  uv_timer_stop(&n->retry);
  if (n->udp) uvh_close((uv_handle_t *)&n->udp_handle, handle_closed);
  uvh_close((uv_handle_t *)&n->wake, handle_closed);
  uvh_close((uv_handle_t *)&n->retry, handle_closed);
  if (n->http) {
    n->open_handles++; /* the http client counts as one until it is closed */
    http_close(n->http, http_closed, n);
  }
}

/* --- output_t ----------------------------------------------------------- */

static int no_flush(output_t *o, char *err, size_t n) { return 0; }

static void netout_free(output_t *o) {
  netout_t *n = (netout_t *)o;
  /* bodies never sent: their batches stay unacknowledged */
  for (int list = 0; list < 2; list++)
    for (body_t *b = list ? n->in_head : n->head, *next; b; b = next) {
      next = b->next;
      ticket_abandon(b->ticket);
      free(b->data);
      free(b);
    }
  for (size_t i = 0; i < n->n_hdr; i++) free(n->hdr_store[i]);
  if (n->dl_fd >= 0) close(n->dl_fd);
  free(n->userpwd);
  free(n->path);
  free(n->base_url);
  netout_config_free(&n->cfg);
  pthread_mutex_destroy(&n->lock);
  free(o->name);
  free(n);
}

output_t *netout_new(const char *name, netout_config_t *cfg) {
  netout_t *n = calloc(1, sizeof *n);
  if (!n) return NULL;
  n->base.type = kind_name(cfg->kind);
  n->base.name = strdup(name ? name : kind_name(cfg->kind));
  n->base.write = NULL; /* network outputs write through netout_write */
  n->base.flush = no_flush;
  n->base.free = netout_free;
  n->cfg = *cfg;
  memset(cfg, 0, sizeof *cfg);
  n->dl_fd = -1;
  if (n->cfg.hostname) snprintf(n->hostname, sizeof n->hostname, "%s", n->cfg.hostname);
  else if (gethostname(n->hostname, sizeof n->hostname - 1) != 0) snprintf(n->hostname, sizeof n->hostname, "-");
  pthread_mutex_init(&n->lock, NULL);
  if (!n->base.name) {
    netout_free(&n->base);
    return NULL;
  }
  return &n->base;
}

static void free_list(char **l, size_t n) {
  for (size_t i = 0; i < n; i++) free(l[i]);
  free(l);
}

void netout_config_free(netout_config_t *c) {
  free(c->url);
  free_list(c->headers, c->n_headers);
  free(c->user_env);
  free(c->password_env);
  free(c->bearer_env);
  free(c->ca_file);
  free(c->dead_letter);
  free(c->table);
  free_list(c->labels, c->n_labels);
  free(c->index);
  free(c->hostname);
  memset(c, 0, sizeof *c);
}
