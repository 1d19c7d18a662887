/* output_syslog.c - the `syslog` kind (see output.h): RFC 5424 messages to
 * tcp://host:port (octet counting, RFC 6587) or udp://host:port (one
 * datagram per message), on the loop.
 *
 * UDP: a message longer than max_message bytes (64,000 by default, under
 * the 65,507 a datagram carries) is cut there, at a UTF-8 character
 * boundary, as RFC 5424 allows, and counted (engine_output_truncated_total);
 * a datagram the network still refuses as too long (EMSGSIZE) goes to the
 * dead-letter file alone, and the messages behind it go on. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lua.h>

#include "encode.h"
#include "output.h"
#include "handles.h"

#define UDP_MESSAGE_MAX 64000

typedef struct syslog_output {
  output_t base; /* first: an output_t* is a syslog_output_t* */
  char *url;
  int facility;
  char hostname[256];
  size_t max_message; /* udp */
  int udp;
  char host[256], port[16];
  struct conn *conn; /* the TCP connection, or NULL */
  uv_udp_t udp_handle;
  uv_getaddrinfo_t resolve;
  int resolving;
  struct sockaddr_storage addr;
  int have_addr;
  output_body_t *body; /* the body of the attempt in flight, or NULL */
} syslog_output_t;

typedef struct conn {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_write_t write;
  syslog_output_t *s;
  int connected, writing;
} conn_t;

static int syslog_encode(output_t *o, lua_State *L, int idx, strbuf_t *b) {
  syslog_output_t *s = (syslog_output_t *)o;
  return encode_syslog(b, L, idx, s->hostname, s->facility, !s->udp);
}

static void syslog_kick(syslog_output_t *s);

/* The attempt in flight ended (none: nothing to report). */
static void sent(syslog_output_t *s, int result, const char *why, double retry_after) {
  output_body_t *b = s->body;
  s->body = NULL;
  output_sent(&s->base, b, result, why, retry_after);
}

static void conn_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  output_t *o = &c->s->base;
  handles_closed(h);
  free(c);
  output_handle_closed(o);
}

static void drop_conn(syslog_output_t *s) {
  conn_t *c = s->conn;
  if (!c) return;
  s->conn = NULL;
  handles_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void failed(syslog_output_t *s, const char *what, int err) {
  char why[400];
  snprintf(why, sizeof why, "%s %.255s:%s: %s", what, s->host, s->port, uv_strerror(err));
  drop_conn(s);
  sent(s, OUTPUT_FAILED, why, 0);
}

static void on_tcp_written(uv_write_t *w, int status) {
  conn_t *c = w->data;
  syslog_output_t *s = c->s;
  c->writing = 0;
  if (status == UV_ECANCELED || s->conn != c) return;
  if (status < 0) {
    failed(s, "writing to", status);
    return;
  }
  sent(s, OUTPUT_DELIVERED, NULL, 0);
}

static void tcp_send(syslog_output_t *s, output_body_t *b) {
  conn_t *c = s->conn;
  uv_buf_t buf = uv_buf_init(b->data, (unsigned)b->len);
  c->writing = 1;
  c->write.data = c;
  int r = uv_write(&c->write, (uv_stream_t *)&c->tcp, &buf, 1, on_tcp_written);
  if (r != 0) {
    c->writing = 0;
    failed(s, "writing to", r);
  }
}

static void on_tcp_connected(uv_connect_t *req, int status) {
  conn_t *c = req->data;
  syslog_output_t *s = c->s;
  if (status == UV_ECANCELED || s->conn != c) return;
  if (status < 0) {
    failed(s, "connecting to", status);
    return;
  }
  c->connected = 1;
  syslog_kick(s);
}

static void start_conn(syslog_output_t *s) {
  conn_t *c = calloc(1, sizeof *c);
  if (!c) {
    sent(s, OUTPUT_FAILED, "out of memory", 1);
    return;
  }
  c->s = s;
  uv_tcp_init(s->base.loop, &c->tcp);
  handles_opened((uv_handle_t *)&c->tcp);
  s->base.handles++;
  c->tcp.data = c;
  c->connect.data = c;
  s->conn = c;
  int r = uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&s->addr, on_tcp_connected);
  if (r != 0) failed(s, "connecting to", r);
}

/* The length of the first at most max bytes of p that ends on a UTF-8
 * character boundary. */
static size_t utf8_cut(const char *p, size_t len, size_t max) {
  if (len <= max) return len;
  size_t n = max;
  while (n > 0 && ((unsigned char)p[n] & 0xC0) == 0x80) n--;
  return n;
}

static void udp_send(syslog_output_t *s, output_body_t *b) {
  output_t *o = &s->base;
  /* one datagram per message: each ends with '\n'; b->done marks progress */
  while (b->done < b->len) {
    char *p = b->data + b->done, *end = b->data + b->len;
    char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
    size_t send_len = utf8_cut(p, len, s->max_message);
    if (send_len < len) output_truncated(o, len, send_len);
    uv_buf_t buf = uv_buf_init(p, (unsigned)send_len);
    int r = uv_udp_try_send(&s->udp_handle, &buf, 1, (const struct sockaddr *)&s->addr);
    if (r == UV_EMSGSIZE) {
      char why[200];
      snprintf(why, sizeof why, "a message of %zu bytes is too long for udp %.100s:%s", send_len,
               s->host, s->port);
      output_dead_letter(o, p, len, 1, why);
    } else if (r < 0) {
      char why[400];
      snprintf(why, sizeof why, "sending to udp %.255s:%s: %s", s->host, s->port, uv_strerror(r));
      sent(s, OUTPUT_FAILED, why, 0);
      return;
    }
    b->done += len + (nl ? 1 : 0);
  }
  sent(s, OUTPUT_DELIVERED, NULL, 0);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  syslog_output_t *s = req->data;
  s->resolving = 0;
  if (status == UV_ECANCELED || s->base.closing) {
    uv_freeaddrinfo(res);
    return;
  }
  if (status < 0 || !res) {
    char why[300];
    snprintf(why, sizeof why, "cannot resolve %s: %s", s->host, uv_strerror(status));
    uv_freeaddrinfo(res);
    sent(s, OUTPUT_FAILED, why, 0);
    return;
  }
  memcpy(&s->addr, res->ai_addr, res->ai_addrlen);
  s->have_addr = 1;
  uv_freeaddrinfo(res);
  syslog_kick(s);
}

/* Moves the body in flight on: resolves, connects, then sends. */
static void syslog_kick(syslog_output_t *s) {
  output_body_t *b = s->body;
  if (!b || s->base.closing) return;
  if (!s->have_addr) {
    if (s->resolving) return;
    struct addrinfo hints = {0};
    hints.ai_socktype = s->udp ? SOCK_DGRAM : SOCK_STREAM;
    s->resolve.data = s;
    s->resolving = 1;
    int r = uv_getaddrinfo(s->base.loop, &s->resolve, on_resolved, s->host, s->port, &hints);
    if (r != 0) {
      s->resolving = 0;
      sent(s, OUTPUT_FAILED, "cannot resolve the syslog host", 0);
    }
    return;
  }
  if (s->udp) {
    udp_send(s, b);
    return;
  }
  if (!s->conn) {
    start_conn(s);
    return;
  }
  if (s->conn->connected && !s->conn->writing) tcp_send(s, b);
}

static void syslog_send(output_t *o, output_body_t *b) {
  syslog_output_t *s = (syslog_output_t *)o;
  s->body = b; /* one at a time: a syslog output's concurrency is 1 */
  syslog_kick(s);
}

/* Splits "tcp://host:port" or "udp://host:port" ([v6] allowed). */
static int parse_url(syslog_output_t *s, const char *url) {
  if (!strncmp(url, "udp://", 6)) s->udp = 1;
  else if (strncmp(url, "tcp://", 6) != 0) return -1;
  const char *h = url + 6, *colon;
  if (*h == '[') {
    const char *close = strchr(h, ']');
    if (!close || close[1] != ':') return -1;
    snprintf(s->host, sizeof s->host, "%.*s", (int)(close - h - 1), h + 1);
    colon = close + 1;
  } else {
    colon = strrchr(h, ':');
    if (!colon) return -1;
    snprintf(s->host, sizeof s->host, "%.*s", (int)(colon - h), h);
  }
  char *end;
  errno = 0;
  long port = strtol(colon + 1, &end, 10);
  if (errno || end == colon + 1 || *end || port < 1 || port > 65535) return -1;
  snprintf(s->port, sizeof s->port, "%ld", port);
  return s->host[0] ? 0 : -1;
}

static void handle_closed(uv_handle_t *h) {
  handles_closed(h);
  output_handle_closed(h->data);
}

static int syslog_start(output_t *o, uv_loop_t *loop, char *err, size_t n) {
  syslog_output_t *s = (syslog_output_t *)o;
  if (s->udp) {
    uv_udp_init(loop, &s->udp_handle);
    handles_opened((uv_handle_t *)&s->udp_handle);
    s->udp_handle.data = o;
    o->handles++;
  }
  return 0;
}

static int syslog_stop(output_t *o) {
  syslog_output_t *s = (syslog_output_t *)o;
  if (s->resolving) uv_cancel((uv_req_t *)&s->resolve);
  drop_conn(s);
  s->body = NULL;
  if (s->udp && o->started) handles_close((uv_handle_t *)&s->udp_handle, handle_closed);
  return 0; /* a write on the closed connection ends with UV_ECANCELED, unreported */
}

static void syslog_free(output_t *o) { free(((syslog_output_t *)o)->url); }

const output_kind_t output_syslog_kind = {"syslog", syslog_encode, syslog_start, syslog_send,
                                          NULL,     syslog_stop,   syslog_free,  NULL};

/* The syslog output from its validated table at idx. */
output_t *output_syslog_new(lua_State *L, int idx) {
  syslog_output_t *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  int oom = output_init(&s->base, &output_syslog_kind, L, idx) != 0;
  lua_getfield(L, idx, "url");
  lua_getfield(L, idx, "facility");
  lua_getfield(L, idx, "hostname");
  lua_getfield(L, idx, "max_message");
  const char *url = lua_tostring(L, -4);
  s->facility = lua_isnumber(L, -3) ? (int)lua_tonumber(L, -3) : 1;
  if (lua_isstring(L, -2)) snprintf(s->hostname, sizeof s->hostname, "%s", lua_tostring(L, -2));
  else if (gethostname(s->hostname, sizeof s->hostname - 1) != 0)
    snprintf(s->hostname, sizeof s->hostname, "-");
  s->max_message = lua_isnumber(L, -1) ? (size_t)lua_tonumber(L, -1) : UDP_MESSAGE_MAX;
  if (url && !(s->url = strdup(url))) oom = 1;
  lua_pop(L, 4);
  if (oom || !s->url || parse_url(s, s->url) != 0) {
    output_free(&s->base);
    return NULL;
  }
  return &s->base;
}
