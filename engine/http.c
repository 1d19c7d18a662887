/* http.c - libcurl's multi socket interface driven by libuv (see http.h).
 *
 * libcurl tells us which sockets to watch (socket_cb) and when to wake it
 * (timer_cb); we tell it what happened with curl_multi_socket_action. Every
 * call into libcurl from a uv callback goes through drive(), which also
 * runs what callbacks deferred: new requests, cancellations and the
 * completion of finished transfers. */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include "http.h"
#include "throttle.h"
#include "handles.h"

#define ERROR_BODY_MAX (64 * 1024)

struct http_req {
  http_t *http;
  CURL *easy;
  http_handler_t cb;
  void *ud;
  size_t buffer_max; /* 0: streaming */
  long status;
  int headers_done;
  int cancelled;
  int added;               /* attached to the multi handle */
  int queued;              /* on http->pending */
  int paused;              /* on_body asked for a pause */
  void (*on_sent)(void *); /* see http_opts_t; NULL once it ran */
  unsigned read_delay_ms;  /* see http_opts_t */
  char *body;              /* buffered body or error body */
  char *send;              /* the POST body, owned */
  struct curl_slist *headers;
  size_t body_len, body_cap;
  int body_overflow;
  char content_type[128];
  char api_version[32];
  char retry_after[32];
  char errbuf[CURL_ERROR_SIZE];
  http_req_t *next, *prev;  /* http->reqs */
  http_req_t *next_pending; /* http->pending (adds and cancels) */
};

struct http {
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer;
  char *unix_path;                   /* NULL for TCP */
  char *base_url;                    /* "http://host:port" */
  char *tls_ca, *tls_cert, *tls_key; /* http_set_tls, or NULL */
  int depth;                         /* >0 while inside libcurl */
  int finishing;                     /* >0 while after_curl reports finished transfers:
                            new requests are queued and started there */
  int closing;
  size_t active;
  size_t open_handles; /* timer + polls not yet closed */
  http_req_t *reqs;    /* every live request */
  http_req_t *pending; /* requests to add or to drop once libcurl returns */
  void (*closed)(void *);
  void *closed_ud;
  /* Read delays (http_opts_t.read_delay_ms): the delay of the request that
   * took body bytes in the current drive and how many it took; the resting
   * sockets, ordered by the time they are due, and the timer that wakes
   * them. */
  unsigned drive_delay;
  size_t drive_bytes;
  uint64_t reads; /* drives that took body bytes */
  uint64_t rests; /* times a socket rested */
  struct poll_ctx *rest_head, *rest_tail;
  uv_timer_t rest_timer;
};

typedef struct poll_ctx {
  uv_poll_t poll;
  http_t *http;
  curl_socket_t fd;
  int events;          /* the UV_* events libcurl wants */
  int resting;         /* polling stopped until `due` */
  int removed;         /* libcurl is done with the socket */
  uint64_t due, early; /* uv_now times: due, and the earliest
                                     a timer tick may wake it */
  throttle_t throttle; /* read delays (throttle.h) */
  struct poll_ctx *rest_prev, *rest_next;
} poll_ctx_t;

static void drive(http_t *h, curl_socket_t fd, int flags);
static void after_curl(http_t *h);
static void maybe_closed(http_t *h);

/* --- requests ----------------------------------------------------------- */

static void req_unlink(http_req_t *r) {
  http_t *h = r->http;
  if (r->prev) r->prev->next = r->next;
  else h->reqs = r->next;
  if (r->next) r->next->prev = r->prev;
  r->next = r->prev = NULL;
}

/* Detaches and frees a request. Never called from inside libcurl. */
static void req_free(http_req_t *r) {
  http_t *h = r->http;
  if (r->added) {
    curl_multi_remove_handle(h->multi, r->easy);
    h->active--;
  }
  curl_easy_cleanup(r->easy);
  req_unlink(r);
  curl_slist_free_all(r->headers);
  free(r->send);
  free(r->body);
  free(r);
}

static int body_append(http_req_t *r, const char *data, size_t len, size_t max) {
  if (r->body_len + len > max) {
    r->body_overflow = 1;
    len = max - r->body_len;
  }
  if (r->body_len + len + 1 > r->body_cap) {
    size_t cap = r->body_cap ? r->body_cap : 1024;
    while (cap < r->body_len + len + 1) cap *= 2;
    char *p = realloc(r->body, cap);
    if (!p) return -1;
    r->body = p;
    r->body_cap = cap;
  }
  memcpy(r->body + r->body_len, data, len);
  r->body_len += len;
  r->body[r->body_len] = '\0';
  return 0;
}

static size_t header_cb(char *buf, size_t size, size_t n, void *ud) {
  http_req_t *r = ud;
  size_t len = size * n;
  if (r->cancelled) return len;
  if (len > 5 && strncasecmp(buf, "HTTP/", 5) == 0) { /* a new status line */
    r->headers_done = 0;
    r->content_type[0] = '\0';
    return len;
  }
  const char *colon = memchr(buf, ':', len);
  if (colon) {
    size_t klen = (size_t)(colon - buf);
    const char *v = colon + 1;
    size_t vlen = len - klen - 1;
    while (vlen && (*v == ' ' || *v == '\t')) v++, vlen--;
    while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' ')) vlen--;
    char *dst = NULL;
    size_t cap = 0;
    if (klen == 12 && strncasecmp(buf, "Content-Type", 12) == 0)
      dst = r->content_type, cap = sizeof r->content_type;
    else if (klen == 11 && strncasecmp(buf, "Api-Version", 11) == 0)
      dst = r->api_version, cap = sizeof r->api_version;
    else if (klen == 11 && strncasecmp(buf, "Retry-After", 11) == 0)
      dst = r->retry_after, cap = sizeof r->retry_after;
    if (dst) {
      if (vlen >= cap) vlen = cap - 1;
      memcpy(dst, v, vlen);
      dst[vlen] = '\0';
    }
    return len;
  }
  if ((len == 2 && buf[0] == '\r') || (len == 1 && buf[0] == '\n')) {
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
    if (r->status >= 100 && r->status < 200) return len; /* interim answer */
    r->headers_done = 1;
    if (!r->buffer_max && r->cb.on_headers) r->cb.on_headers(r->ud, r->status, r->content_type);
  }
  return len;
}

static size_t write_cb(char *data, size_t size, size_t n, void *ud) {
  http_req_t *r = ud;
  size_t len = size * n;
  if (r->cancelled) return 0;
  if (r->buffer_max) {
    if (body_append(r, data, len, r->buffer_max) != 0 || r->body_overflow) return 0;
    return len;
  }
  if (r->status < 200 || r->status >= 300) {
    if (body_append(r, data, len, ERROR_BODY_MAX) != 0) return 0;
    return len;
  }
  r->http->drive_delay = r->read_delay_ms;
  r->http->drive_bytes += len;
  int rc = r->cb.on_body ? r->cb.on_body(r->ud, data, len) : 0;
  if (rc == HTTP_PAUSE) {
    r->paused = 1;
    return CURL_WRITEFUNC_PAUSE;
  }
  return rc == 0 ? len : 0;
}

/* libcurl's debug callback: the request head going out is what on_sent
 * reports. */
static int debug_cb(CURL *e, curl_infotype type, char *data, size_t size, void *ud) {
  http_req_t *r = ud;
  if (type == CURLINFO_HEADER_OUT && r->on_sent && !r->cancelled) {
    void (*fn)(void *) = r->on_sent;
    r->on_sent = NULL;
    fn(r->ud);
  }
  return 0;
}

http_req_t *http_get(http_t *h, const char *path, size_t buffer_max, const http_handler_t *cb,
                     void *ud) {
  static const http_opts_t none = {0};
  return http_request(h, path, buffer_max, &none, cb, ud);
}

/* Sets the request's options. Returns 0, or -1 when out of memory. */
static int set_options(http_req_t *r, const char *url, const http_opts_t *o) {
  http_t *h = r->http;
  CURL *e = r->easy;
  curl_easy_setopt(e, CURLOPT_URL, url);
  if (h->unix_path) curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, h->unix_path);
  curl_easy_setopt(e, CURLOPT_PRIVATE, r);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "engine/" ENGINE_VERSION);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  if (o->recv_buffer) curl_easy_setopt(e, CURLOPT_BUFFERSIZE, o->recv_buffer);
  if (o->on_sent) {
    r->on_sent = o->on_sent;
    curl_easy_setopt(e, CURLOPT_DEBUGFUNCTION, debug_cb);
    curl_easy_setopt(e, CURLOPT_DEBUGDATA, r);
    curl_easy_setopt(e, CURLOPT_VERBOSE, 1L);
  }
  /* A buffered answer (ping, list, inspect) must come in bounded time; a
   * stream may stay quiet for as long as its container is. */
  long timeout = o->timeout_ms ? o->timeout_ms : r->buffer_max ? 60000L : 0L;
  if (timeout) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout);
  if (o->body) {
    r->send = o->body;
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->send);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
  }
  for (size_t i = 0; i < o->n_headers; i++) {
    struct curl_slist *l = curl_slist_append(r->headers, o->headers[i]);
    if (!l) return -1;
    r->headers = l;
  }
  if (o->body) { /* no "Expect: 100-continue" round trip */
    struct curl_slist *l = curl_slist_append(r->headers, "Expect:");
    if (!l) return -1;
    r->headers = l;
  }
  if (r->headers) curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
  const char *ca = o->ca_file ? o->ca_file : r->http->tls_ca;
  if (ca) curl_easy_setopt(e, CURLOPT_CAINFO, ca);
  if (r->http->tls_cert) {
    curl_easy_setopt(e, CURLOPT_SSLCERT, r->http->tls_cert);
    curl_easy_setopt(e, CURLOPT_SSLKEY, r->http->tls_key);
  }
  if (o->insecure) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (o->userpwd) {
    curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
    curl_easy_setopt(e, CURLOPT_USERPWD, o->userpwd);
  }
  return 0;
}

http_req_t *http_request(http_t *h, const char *path, size_t buffer_max, const http_opts_t *o,
                         const http_handler_t *cb, void *ud) {
  http_req_t *r = h->closing ? NULL : calloc(1, sizeof *r);
  char *url = NULL;
  if (!r) goto fail;
  r->http = h;
  r->cb = *cb;
  r->ud = ud;
  r->buffer_max = buffer_max;
  r->read_delay_ms = buffer_max ? 0 : o->read_delay_ms;
  size_t ulen = strlen(h->base_url) + strlen(path) + 1;
  if (!(r->easy = curl_easy_init()) || !(url = malloc(ulen))) goto fail;
  snprintf(url, ulen, "%s%s", h->base_url, path);
  int rc = set_options(r, url, o);
  free(url); /* libcurl keeps its own copy */
  if (rc != 0) goto fail;
  r->next = h->reqs;
  if (h->reqs) h->reqs->prev = r;
  h->reqs = r;
  if (h->depth > 0 || h->finishing > 0) { /* after_curl starts it */
    r->queued = 1;
    r->next_pending = h->pending;
    h->pending = r;
  } else {
    r->added = 1;
    h->active++;
    curl_multi_add_handle(h->multi, r->easy);
  }
  return r;
fail:
  if (r) {
    if (r->easy) curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    if (r->send != o->body) free(o->body);
    free(r->send);
    free(r);
  } else {
    free(o->body);
  }
  return NULL;
}

void http_cancel(http_req_t *r) {
  if (!r || r->cancelled) return;
  r->cancelled = 1;
  http_t *h = r->http;
  if (r->queued) return; /* after_curl drops it */
  if (h->depth == 0) {
    req_free(r);
  } else { /* libcurl may be using it: drop it once it returns */
    r->queued = 1;
    r->next_pending = h->pending;
    h->pending = r;
  }
}

void http_resume(http_req_t *r) {
  if (!r || !r->paused || r->cancelled) return;
  http_t *h = r->http;
  r->paused = 0;
  h->depth++; /* libcurl may hand the held data over from inside the call */
  curl_easy_pause(r->easy, CURLPAUSE_CONT);
  h->depth--;
  after_curl(h);
}

uint64_t http_reads(const http_t *h) { return h->reads; }
uint64_t http_rests(const http_t *h) { return h->rests; }

size_t http_active(const http_t *h) { return h->active; }

void http_set_max_connections(http_t *h, long n) {
  curl_multi_setopt(h->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, n);
}

/* --- completion --------------------------------------------------------- */

/* A socket could not even be opened: the process (EMFILE) or the system
 * (ENFILE) is out of file descriptors. Said plainly, not as a network
 * error. */
static void too_many_files(char *out, size_t n) {
  snprintf(out, n,
           "cannot open a socket: too many open files (the limit of open files, "
           "RLIMIT_NOFILE, is reached; raise it with ulimit -n or LimitNOFILE=, or follow fewer "
           "containers with engine.max_readers)");
}

/* libcurl words a failed connect to a unix socket as a TCP one ("localhost
 * port 80"). This connects once more without blocking to learn why, and
 * writes that into out (n bytes). Leaves out alone when the connect now
 * works or is merely pending. */
static void unix_connect_error(const char *path, char *out, size_t n) {
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof sa.sun_path) {
    snprintf(out, n, "cannot connect to %s: the socket path is too long", path);
    return;
  }
  memcpy(sa.sun_path, path, strlen(path) + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    if (errno == EMFILE || errno == ENFILE) too_many_files(out, n);
    return;
  }
  int e = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 ? 0 : errno;
  close(fd);
  if (e == 0 || e == EAGAIN || e == EINPROGRESS) return;
  snprintf(out, n, "cannot connect to %s: %s%s", path, strerror(e),
           e == EACCES ? " (connecting needs write permission on the socket file)" : "");
}

/* A Retry-After value in seconds: a number from 0 to one day, else 0 (an
 * HTTP date, garbage, a negative, huge or non-finite number). */
static double retry_after_seconds(const char *v) {
  char *end;
  double s = strtod(v, &end);
  if (end == v || *end != '\0' || !(s >= 0 && s <= 86400)) return 0;
  return s;
}

static void finish(http_req_t *r, CURLcode code) {
  http_result_t res = {0};
  res.ok = code == CURLE_OK && !r->body_overflow;
  curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &res.status);
  r->status = res.status;
  if (code != CURLE_OK)
    res.error = code == CURLE_WRITE_ERROR ? "aborted"
                : r->errbuf[0]            ? r->errbuf
                                          : curl_easy_strerror(code);
  else if (r->body_overflow) res.error = "answer too large";
  /* The request is freed before on_done runs (which may start others); the
   * body and the strings are kept alive until it returns. */
  char *body = r->body;
  r->body = NULL;
  char api_version[sizeof r->api_version], error[512];
  memcpy(api_version, r->api_version, sizeof api_version);
  if (res.error) {
    snprintf(error, sizeof error, "%s", res.error);
    long os_errno = 0;
    curl_easy_getinfo(r->easy, CURLINFO_OS_ERRNO, &os_errno);
    if (code == CURLE_COULDNT_CONNECT && (os_errno == EMFILE || os_errno == ENFILE))
      too_many_files(error, sizeof error);
    else if (code == CURLE_COULDNT_CONNECT && r->http->unix_path)
      unix_connect_error(r->http->unix_path, error, sizeof error);
    else if (code == CURLE_PEER_FAILED_VERIFICATION)
      snprintf(error, sizeof error,
               "TLS: the server's certificate is not trusted by the CA "
               "certificate %.150s (%.250s)",
               r->http->tls_ca ? r->http->tls_ca : "of the system", res.error);
    else if (code == CURLE_SSL_CACERT_BADFILE || code == CURLE_SSL_CERTPROBLEM ||
             code == CURLE_SSL_CONNECT_ERROR || code == CURLE_SSL_ENGINE_INITFAILED)
      snprintf(error, sizeof error, "TLS: %.300s", res.error);
    else if (code == CURLE_UNSUPPORTED_PROTOCOL || code == CURLE_WEIRD_SERVER_REPLY)
      snprintf(error, sizeof error, "the answer is not HTTP (%.200s)", res.error);
    res.error = error;
  }
  res.body = body ? body : "";
  res.body_len = r->body_len;
  res.api_version = api_version;
  res.retry_after = retry_after_seconds(r->retry_after);
  http_handler_t cb = r->cb;
  void *ud = r->ud;
  req_free(r);
  if (cb.on_done) cb.on_done(ud, &res);
  free(body);
}

/* Runs what callbacks deferred (new requests are started at once: libcurl
 * connects and writes them now rather than on its timer), then reports
 * finished transfers, whose callbacks may queue more. */
static void after_curl(http_t *h) {
  h->finishing++;
  for (;;) {
    int added = 0;
    while (h->pending) {
      http_req_t *r = h->pending;
      h->pending = r->next_pending;
      r->next_pending = NULL;
      r->queued = 0;
      if (r->cancelled) {
        req_free(r);
      } else if (!r->added) {
        r->added = 1;
        h->active++;
        curl_multi_add_handle(h->multi, r->easy);
        added = 1;
      }
    }
    if (added) {
      int running;
      h->depth++;
      curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
      h->depth--;
      continue;
    }
    int left;
    CURLMsg *m = curl_multi_info_read(h->multi, &left);
    if (!m) break;
    if (m->msg != CURLMSG_DONE) continue;
    http_req_t *r = NULL;
    CURLcode code = m->data.result;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
    if (r->cancelled) req_free(r);
    else finish(r, code);
  }
  h->finishing--;
}

static void drive(http_t *h, curl_socket_t fd, int flags) {
  int running;
  h->depth++;
  curl_multi_socket_action(h->multi, fd, flags, &running);
  h->depth--;
  after_curl(h);
}

/* --- libuv side --------------------------------------------------------- */

/* Takes p off the resting list (its polling stays stopped). */
static void unrest(poll_ctx_t *p) {
  http_t *h = p->http;
  if (!p->resting) return;
  if (p->rest_prev) p->rest_prev->rest_next = p->rest_next;
  else h->rest_head = p->rest_next;
  if (p->rest_next) p->rest_next->rest_prev = p->rest_prev;
  else h->rest_tail = p->rest_prev;
  p->rest_prev = p->rest_next = NULL;
  p->resting = 0;
}

static void on_poll(uv_poll_t *poll, int status, int events);

static void arm_rest_timer(http_t *h);

/* Wakes every resting socket whose early time has come, then sets the timer
 * for the next one. */
static void on_rest_timer(uv_timer_t *t) {
  http_t *h = t->data;
  uint64_t now = uv_now(h->loop);
  while (h->rest_head && h->rest_head->early <= now) {
    poll_ctx_t *p = h->rest_head;
    unrest(p);
    if (!p->removed) uv_poll_start(&p->poll, p->events, on_poll);
  }
  arm_rest_timer(h);
}

static void arm_rest_timer(http_t *h) {
  if (!h->rest_head) {
    uv_timer_stop(&h->rest_timer);
    return;
  }
  uint64_t now = uv_now(h->loop), due = h->rest_head->due;
  uv_timer_start(&h->rest_timer, on_rest_timer, due > now ? due - now : 0, 0);
}

/* Stops polling p until delay_ms from now (a quarter earlier when a timer
 * tick comes by then, so that resting sockets wake together). */
static void rest(poll_ctx_t *p, unsigned delay_ms) {
  http_t *h = p->http;
  uint64_t now = uv_now(h->loop);
  uv_poll_stop(&p->poll);
  p->resting = 1;
  h->rests++;
  p->due = now + delay_ms;
  p->early = now + delay_ms - delay_ms / 4;
  poll_ctx_t *after = h->rest_tail; /* keep the list ordered by due */
  while (after && after->due > p->due) after = after->rest_prev;
  p->rest_prev = after;
  p->rest_next = after ? after->rest_next : h->rest_head;
  if (p->rest_next) p->rest_next->rest_prev = p;
  else h->rest_tail = p;
  if (after) after->rest_next = p;
  else h->rest_head = p;
  if (h->rest_head == p) arm_rest_timer(h);
}

static void poll_closed(uv_handle_t *handle) {
  poll_ctx_t *p = handle->data;
  http_t *h = p->http;
  handles_closed(handle);
  free(p);
  h->open_handles--;
  maybe_closed(h);
}

static void on_poll(uv_poll_t *poll, int status, int events) {
  poll_ctx_t *p = poll->data;
  http_t *h = p->http;
  int flags = 0;
  if (status < 0) flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  h->drive_delay = 0;
  h->drive_bytes = 0;
  drive(h, p->fd, flags);
  if (h->drive_bytes > 0) h->reads++;
  if (!h->drive_delay || h->drive_bytes == 0 || p->removed) return;
  /* a slow stream is read again after its delay (throttle.h) */
  unsigned rest_ms = throttle_after(&p->throttle, h->drive_delay, h->drive_bytes, uv_now(h->loop));
  if (rest_ms && flags == CURL_CSELECT_IN && !p->resting && !h->closing) rest(p, rest_ms);
}

static int socket_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp) {
  http_t *h = userp;
  poll_ctx_t *p = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (p) {
      p->removed = 1;
      unrest(p);
      uv_poll_stop(&p->poll);
      handles_close((uv_handle_t *)&p->poll, poll_closed);
      curl_multi_assign(h->multi, fd, NULL);
    }
    return 0;
  }
  if (!p) {
    if (!(p = calloc(1, sizeof *p))) return -1;
    if (uv_poll_init_socket(h->loop, &p->poll, fd) != 0) {
      free(p);
      return -1;
    }
    handles_opened((uv_handle_t *)&p->poll);
    h->open_handles++;
    p->poll.data = p;
    p->http = h;
    p->fd = fd;
    throttle_init(&p->throttle, uv_now(h->loop));
    curl_multi_assign(h->multi, fd, p);
  }
  int events = 0;
  if (what & CURL_POLL_IN) events |= UV_READABLE;
  if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
  p->events = events;
  if (!p->resting) uv_poll_start(&p->poll, events, on_poll);
  return 0;
}

static void on_timer(uv_timer_t *t) { drive(t->data, CURL_SOCKET_TIMEOUT, 0); }

static int timer_cb(CURLM *multi, long timeout_ms, void *userp) {
  http_t *h = userp;
  if (timeout_ms < 0) uv_timer_stop(&h->timer);
  else uv_timer_start(&h->timer, on_timer, (uint64_t)timeout_ms, 0);
  return 0;
}

/* --- client ------------------------------------------------------------- */

static int parse_base(http_t *h, const char *base, char *err, size_t errlen) {
  if (strncmp(base, "unix://", 7) == 0) {
    const char *path = base + 7;
    if (!*path) {
      snprintf(err, errlen, "docker host '%s' has no socket path", base);
      return -1;
    }
    h->unix_path = strdup(path);
    h->base_url = strdup("http://localhost");
  } else if (strncmp(base, "tcp://", 6) == 0 || strncmp(base, "http://", 7) == 0 ||
             strncmp(base, "https://", 8) == 0) {
    int tls = base[4] == 's';
    const char *hp = strstr(base, "://") + 3;
    size_t n = strcspn(hp, "/");
    if (n == 0) {
      snprintf(err, errlen, "address '%s' has no host", base);
      return -1;
    }
    h->base_url = malloc(n + 9);
    if (h->base_url) snprintf(h->base_url, n + 9, "%s://%.*s", tls ? "https" : "http", (int)n, hp);
  } else {
    snprintf(err, errlen,
             "address '%s' is not understood (expected unix:///path, tcp://host:port or "
             "http(s)://host:port)",
             base);
    return -1;
  }
  if (!h->base_url || (strncmp(base, "unix://", 7) == 0 && !h->unix_path)) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  return 0;
}

int http_set_tls(http_t *h, const char *ca, const char *cert, const char *key) {
  if (h->unix_path) return 0;
  if (strncmp(h->base_url, "http://", 7) == 0) {
    size_t n = strlen(h->base_url) + 2;
    char *url = malloc(n);
    if (!url) return -1;
    snprintf(url, n, "https://%s", h->base_url + 7);
    free(h->base_url);
    h->base_url = url;
  }
  char **dst[] = {&h->tls_ca, &h->tls_cert, &h->tls_key};
  const char *src[] = {ca, cert, key};
  for (int i = 0; i < 3; i++) {
    free(*dst[i]);
    *dst[i] = src[i] ? strdup(src[i]) : NULL;
    if (src[i] && !*dst[i]) return -1;
  }
  return 0;
}

static void free_client(http_t *h) {
  free(h->tls_ca);
  free(h->tls_cert);
  free(h->tls_key);
  free(h->unix_path);
  free(h->base_url);
  free(h);
}

http_t *http_new(uv_loop_t *loop, const char *base, char *err, size_t errlen) {
  static int global_done;
  if (!global_done) { /* not thread-safe: the engine creates clients on one thread */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    global_done = 1;
  }
  http_t *h = calloc(1, sizeof *h);
  if (!h) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  h->loop = loop;
  if (parse_base(h, base, err, errlen) != 0) goto err;
  if (!(h->multi = curl_multi_init())) {
    snprintf(err, errlen, "libcurl failed to start");
    goto err;
  }
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
  uv_timer_init(loop, &h->timer);
  handles_opened((uv_handle_t *)&h->timer);
  h->timer.data = h;
  uv_timer_init(loop, &h->rest_timer);
  handles_opened((uv_handle_t *)&h->rest_timer);
  h->rest_timer.data = h;
  h->open_handles = 2;
  return h;
err:
  free_client(h);
  return NULL;
}

static void timer_closed(uv_handle_t *t) {
  http_t *h = t->data;
  handles_closed(t);
  h->open_handles--;
  maybe_closed(h);
}

/* Frees a closing client once its last handle is closed. */
static void maybe_closed(http_t *h) {
  if (!h->closing || h->open_handles) return;
  void (*cb)(void *) = h->closed;
  void *ud = h->closed_ud;
  free_client(h);
  if (cb) cb(ud);
}

void http_close(http_t *h, void (*closed)(void *), void *ud) {
  if (h->closing) return;
  h->closing = 1;
  h->closed = closed;
  h->closed_ud = ud;
  while (h->pending) { /* not yet attached: nothing in libcurl to undo */
    http_req_t *r = h->pending;
    h->pending = r->next_pending;
    r->next_pending = NULL;
    r->queued = 0;
  }
  for (http_req_t *r = h->reqs, *next; r; r = next) {
    next = r->next; /* read before req_free unlinks and frees r */
    req_free(r);
  }
  /* Closes cached connections; libcurl reports each socket as removed. */
  curl_multi_cleanup(h->multi);
  h->multi = NULL;
  uv_timer_stop(&h->timer);
  handles_close((uv_handle_t *)&h->timer, timer_closed);
  while (h->rest_head) unrest(h->rest_head); /* sockets are closed by now */
  uv_timer_stop(&h->rest_timer);
  handles_close((uv_handle_t *)&h->rest_timer, timer_closed);
}
