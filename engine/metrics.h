/* metrics.h - the engine's HTTP endpoint for metrics and health, on its
 * libuv loop (off unless engine.metrics.listen is set).
 *
 *   GET /metrics    Prometheus text format 0.0.4
 *   GET /health     200 "ok": the loop answers
 *   GET /ready      200 "ready" when the Docker daemon answered discovery's
 *                   last request and the pipeline runs, else 503 with the
 *                   reason
 *   GET /readers    JSON array, one object per live reader
 *   GET /pipeline   JSON object: the filters and outputs with their counts
 *
 * HEAD is answered like GET without the body; other methods get 405,
 * other paths 404. Each connection carries one request (the answer says
 * "Connection: close"); a request head larger than 8 KiB gets 431, one that
 * is not complete within 10 s is dropped, and at most 64 connections are
 * open at once (more are closed at once). Every answer is built from a fresh
 * status snapshot (status.h). Loop thread only; every handle is counted
 * (uvh.h) and closed through its close callback. */
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

/* Stops listening and closes every connection (answers being written are
 * cut). m is freed once the last close callback ran. NULL is ignored. */
void metrics_close(metrics_t *m);

/* The bodies, from a snapshot (metrics_render.c). Each returns 0, or -1
 * when out of memory (out then holds a part, for strbuf_free). */
int metrics_render_prometheus(const status_t *s, size_t max_containers, strbuf_t *out);
int metrics_render_readers(const status_t *s, strbuf_t *out);
int metrics_render_pipeline(const status_t *s, strbuf_t *out);

#endif
