/* http.h - HTTP requests (GET, and POST with a body: http_opts_t) on the
 * engine's libuv loop, through libcurl's multi socket interface (a
 * uv_poll_t per socket, one uv_timer_t for libcurl's timer). No thread, no
 * blocking call.
 *
 * A new request is started at once: the libcurl call that follows the
 * callback or the libcurl return that queued it connects and writes it, so
 * it does not wait a turn of the loop for libcurl's timer.
 *
 * Ownership: an http_t owns its requests. A request ends exactly once with
 * on_done, unless it is cancelled first with http_cancel, after which none
 * of its callbacks runs again. Callbacks run on the loop thread; inside them
 * http_get and http_cancel are allowed (they are deferred until libcurl has
 * returned, since libcurl may not be called from its own callbacks).
 *
 * Two kinds of request:
 *  - buffered (buffer_max > 0): the whole body, up to buffer_max bytes, is
 *    handed to on_done; a larger body fails the request.
 *  - streaming (buffer_max == 0): on_headers once, then on_body per slice
 *    for 2xx answers; the body of any other answer is collected (up to
 *    64 KiB) and handed to on_done. */
#ifndef ENGINE_HTTP_H
#define ENGINE_HTTP_H

#include <stddef.h>
#include <uv.h>

typedef struct http http_t;
typedef struct http_req http_req_t;

typedef struct http_result {
  int ok;            /* the transfer completed cleanly (any status) */
  long status;       /* HTTP status, 0 when no answer came */
  const char *error; /* transport failure in words, when !ok */
  const char *body;  /* see above; NUL-terminated, may be empty */
  size_t body_len;
  const char *api_version; /* the Api-Version header, or "" */
  double retry_after;      /* the Retry-After header in seconds, or 0 */
} http_result_t;

#define HTTP_PAUSE 1

typedef struct http_handler {
  /* Streaming only: the answer's headers are in. May be NULL. */
  void (*on_headers)(void *ud, long status, const char *content_type);
  /* Streaming only, 2xx answers: a slice of the body. Return 0 to go on,
   * HTTP_PAUSE to leave the slice unread and pause the transfer until
   * http_resume (it is then handed over again), or -1 to end the transfer
   * (on_done then reports !ok, error "aborted"). */
  int (*on_body)(void *ud, const char *data, size_t len);
  /* The end. Called once (never after http_cancel). */
  void (*on_done)(void *ud, const http_result_t *r);
} http_handler_t;

/* Creates a client. base is "unix:///path/to.sock", "tcp://host:port",
 * "http://host:port" or "https://host:port" (a DOCKER_HOST value, or an
 * output's address without its path). Returns NULL with a message in
 * err when base is not understood or libcurl fails to start. */
http_t *http_new(uv_loop_t *loop, const char *base, char *err, size_t errlen);

/* Starts GET base+path. Returns the request, or NULL when out of memory (no
 * callback will then run). */
http_req_t *http_get(http_t *h, const char *path, size_t buffer_max, const http_handler_t *cb,
                     void *ud);

/* What a request may carry besides its path (http_request). */
typedef struct http_opts {
  char *body; /* POST this (malloc'ed; the request owns and frees
                                it, also when http_request fails); NULL: GET */
  size_t body_len;
  const char *const *headers; /* "Name: value" lines */
  size_t n_headers;
  long timeout_ms;           /* whole request; 0: 60 s when buffered, else none */
  const char *ca_file;       /* TLS: CA bundle; NULL: the system's */
  int insecure;              /* TLS: do not verify the peer (off by default) */
  const char *userpwd;       /* basic auth "user:password", or NULL */
  long recv_buffer;          /* libcurl's receive buffer in bytes (1024 at
                                least); 0: its default, 16 KiB */
  unsigned read_delay_ms;    /* streaming only: the read throttle's delay
                                (throttle.h): after a small read of a slow
                                stream its socket is read again at the
                                earliest this long after; 0: read whatever
                                comes at once */
  void (*on_sent)(void *ud); /* the request's head was written to the socket:
                                called once, with the request's ud, from
                                inside libcurl (it must not call into this
                                client); NULL: no notice (with one, libcurl's
                                debug callback runs for each of its reads) */
} http_opts_t;

/* Starts a request with options; buffered when buffer_max > 0. Returns the
 * request, or NULL when out of memory (no callback will then run). */
http_req_t *http_request(http_t *h, const char *path, size_t buffer_max, const http_opts_t *o,
                         const http_handler_t *cb, void *ud);

/* Halts the request at once (or as soon as libcurl returns); no callback of
 * it runs again. NULL is ignored. */
void http_cancel(http_req_t *r);

/* Resumes a transfer paused by on_body returning HTTP_PAUSE. Not from
 * inside a callback of this client. NULL is ignored. */
void http_resume(http_req_t *r);

/* Requests in progress (for tests and metrics). */
size_t http_active(const http_t *h);

/* TLS for every request of a tcp:// or http(s):// client (nothing for a
 * unix socket): an http:// or tcp:// base becomes https://; ca verifies the
 * server (NULL: the system's CAs), cert and key are the client certificate
 * (both or neither). The strings are copied. Returns 0, or -1 when out of
 * memory. Call before the first request. */
int http_set_tls(http_t *h, const char *ca, const char *cert, const char *key);

/* At most n connections open at once (0: no limit); a request beyond them
 * waits in libcurl's queue until one is free, rather than failing for want
 * of a file descriptor. */
void http_set_max_connections(http_t *h, long n);

/* Socket reads (readiness events handled) that brought response bodies. */
uint64_t http_reads(const http_t *h);

/* Times a socket rested for its request's read delay. */
uint64_t http_rests(const http_t *h);

/* Cancels every request, then closes the client's handles. closed(ud) runs
 * on the loop once every handle is closed; h is freed before it runs. */
void http_close(http_t *h, void (*closed)(void *ud), void *ud);

#endif
