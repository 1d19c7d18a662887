/* metrics.h - the engine's HTTP endpoint for metrics and health, on its
 * libuv loop (off unless engine.metrics.listen is set).
 *
 *   GET /metrics    Prometheus text format 0.0.4
 *   GET /health     200 "ok": the loop answers
 *   GET /ready      200 "ready" when the Docker daemon answered discovery's
 *                   last request and the pipeline runs and keeps up (it
 *                   finished a batch within filter_timeout plus
 *                   STATUS_STALL_MARGIN while batches wait), else 503
 *                   with the reason
 *   GET /readers    JSON array, one object per live reader
 *   GET /pipeline   JSON object: the filters and outputs with their counts
 *   GET /tap?point=input|filter|output&name=N&select=GLOB&limit=N
 *                   a live sample of records as JSON lines (tap.h), until
 *                   limit records were sent or the client goes; 400 for a
 *                   bad query, 503 when TAP_CLIENTS_MAX clients tap, 404
 *                   without a tap (metrics_set_tap). A tap connection stays
 *                   open; one whose client takes nothing for 10 s while
 *                   records wait is closed.
 *
 * HEAD is answered like GET without the body; other methods get 405,
 * other paths 404. Each connection carries one request (the answer says
 * "Connection: close"); a request head larger than 8 KiB gets 431, one that
 * is not complete within 3 s is dropped, and so is an answer not taken
 * within 10 s. At most 64 connections are open at once: a new one closes the
 * oldest connection still waiting for its request (or else the oldest one),
 * so idle clients cannot lock a health probe out. Every answer is built from a fresh
 * status snapshot (status.h). Loop thread only; every handle is counted
 * (handles.h) and closed through its close callback. */
#ifndef ENGINE_METRICS_H
#define ENGINE_METRICS_H

#include <stddef.h>
#include <uv.h>
#include "strbuf.h"
#include "status.h"

typedef struct metrics metrics_t;

/* Takes a snapshot for one answer (the caller frees it), or NULL when out
 * of memory. */
typedef status_t *(*metrics_collect_fn)(void *ud);

/* Listens on listen ("host:port", "[v6]:port"; a host name is resolved
 * once, here, blocking). max_containers: containers with a label of their
 * own in /metrics, the rest are summed under container="_other". Returns
 * NULL with a message in err when the address is not understood or cannot
 * be bound; the handles it opened are then closed through the loop (which
 * must run to free them). */
metrics_t *metrics_start(uv_loop_t *loop, const char *listen, size_t max_containers,
                         metrics_collect_fn collect, void *ud, char *err, size_t errlen);

/* The records /tap serves (tap.h; it must outlive m). NULL: no /tap. */
struct tap;
void metrics_set_tap(metrics_t *m, struct tap *tap);

/* Stops listening and closes every connection (answers being written are
 * cut). m is freed once the last close callback ran. NULL is ignored. */
void metrics_close(metrics_t *m);

/* The request-head parser (metrics_request.c; pure, any thread). */
#define METRICS_REQ_MAX 8192

enum {
  METRICS_PATH_HEALTH = 1,
  METRICS_PATH_METRICS,
  METRICS_PATH_READY,
  METRICS_PATH_READERS,
  METRICS_PATH_PIPELINE,
  METRICS_PATH_TAP
};

typedef struct metrics_request {
  int code;                /* 200, or the error to answer: 400, 404, 405, 431 */
  int path;                /* METRICS_PATH_*, when code is 200 */
  int head_only;           /* HEAD rather than GET */
  size_t query, query_len; /* the query (after '?', before '#'): offset into
                              the head and length; 0, 0 when none */
} metrics_request_t;

/* Looks at the request head received so far, buf[0..len) (len <=
 * METRICS_REQ_MAX). Returns 0 while the head is incomplete (a blank line
 * ends it) and shorter than METRICS_REQ_MAX; else fills r and returns
 * r->code. Only the request line (up to the first newline) is read: method
 * GET or HEAD, a path, then "HTTP/1."; a fragment is ignored, a query is
 * found (r->query). The
 * answer depends only on the head, so however the bytes were split, the
 * first call that returns non-zero gives the same result. Can't fail. */
int metrics_request_parse(const char *buf, size_t len, metrics_request_t *r);

/* The bodies, from a snapshot (metrics_render.c). Each returns 0, or -1
 * when out of memory (out then holds a part, for strbuf_free). */
int metrics_render_prometheus(const status_t *s, size_t max_containers, strbuf_t *out);
int metrics_render_readers(const status_t *s, strbuf_t *out);
int metrics_render_pipeline(const status_t *s, strbuf_t *out);

#endif
