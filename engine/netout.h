/* netout.h - outputs that send over the network: `http` and its presets
 * (`clickhouse`, `loki`, `elasticsearch`, `otlp`), and `syslog`.
 *
 * Two threads meet here. The pipeline thread encodes the records a batch
 * became into one body per output (encode.h) and hands it over with
 * netout_send, holding a ticket for the batch. The loop thread sends the
 * bodies: per output one request at a time, in order, retried with
 * exponential backoff and jitter (without limit unless retry_max is set;
 * Retry-After is honoured). A 2xx answer (for elasticsearch: with no item
 * errors) delivers the body. A 4xx other than 408 and 429, or a body past
 * retry_max, goes to the output's dead-letter file with the reason (logged
 * once per cause, not once per record). Either way the batch's ticket is
 * released; the batch is acknowledged (and its cursor saved) once every
 * output released it.
 *
 * A body that is neither delivered nor dead-lettered when the engine stops
 * keeps its batch unacknowledged: the next run reads those lines again. */
#ifndef ENGINE_NETOUT_H
#define ENGINE_NETOUT_H

#include <stddef.h>
#include <uv.h>
#include "batch.h"
#include "output.h"

struct lua_State;
struct core;

enum netout_kind { NETOUT_HTTP, NETOUT_CLICKHOUSE, NETOUT_LOKI, NETOUT_ELASTICSEARCH,
                   NETOUT_OTLP, NETOUT_SYSLOG };

typedef struct netout_config {
  int kind;
  char *url;             /* http kinds: http(s)://host:port/path; syslog:
                            tcp://host:port or udp://host:port */
  int json_array;        /* http: a JSON array instead of NDJSON */
  char **headers;        /* "Name: value" */
  size_t n_headers;
  char *user_env, *password_env; /* basic auth, read from the environment */
  char *bearer_env;      /* bearer token, read from the environment */
  char *ca_file;
  int tls_verify;        /* 1 by default */
  int gzip;              /* http kinds: gzip the body (Content-Encoding) */
  double timeout;        /* seconds per request (30) */
  long retry_max;        /* -1: without limit */
  double backoff_initial, backoff_max;
  char *dead_letter;     /* path, or NULL: log and drop */
  char *table;           /* clickhouse */
  char **labels;         /* loki: record fields that become stream labels */
  size_t n_labels;
  char *index;           /* elasticsearch */
  int facility;          /* syslog (1: user) */
  char *hostname;        /* syslog: HOSTNAME field (default: gethostname) */
} netout_config_t;

/* A batch's hold on its acknowledgement: one per output that took it, plus
 * one for the pipeline while it hands the batch out. */
typedef struct ticket ticket_t;

/* Pipeline thread: a ticket for b, holding one reference. done(ud, b) runs
 * (on whichever thread releases last) when every reference is released. */
ticket_t *ticket_new(batch_t *b, void (*done)(void *ud, batch_t *b), void *ud);
void ticket_release(ticket_t *t);

/* Creates the output (an output_t whose write encodes and hands over). Takes
 * ownership of cfg's strings. Returns NULL when out of memory. */
output_t *netout_new(const char *name, netout_config_t *cfg);

/* Is o a network output? */
int netout_is(const output_t *o);

/* Pipeline thread: encodes the records at idx and hands the body over to
 * the loop under t (which gains a reference). Returns 0, or -1 with err. */
int netout_write(output_t *o, struct lua_State *L, int idx, ticket_t *t, char *err, size_t n);

/* Loop thread, before the pipeline starts: creates the output's handles. */
int netout_start(output_t *o, uv_loop_t *loop, char *err, size_t n);

/* Loop thread: bodies waiting or in flight. */
size_t netout_pending(const output_t *o);

/* The output's counts since start (loop thread): bodies (one per batch)
 * delivered, failed attempts, attempts retried after a failure, bodies sent
 * to the dead-letter file, and bodies waiting or in flight now. */
typedef struct netout_stats {
  unsigned long long sent, failed, retried, dead_letters;
  size_t pending;
} netout_stats_t;
void netout_stats(const output_t *o, netout_stats_t *out);

/* Loop thread: stops sending (what is left stays unacknowledged) and closes
 * the handles; closed(ud) runs when they are closed. */
void netout_close(output_t *o, void (*closed)(void *ud), void *ud);

void netout_config_free(netout_config_t *cfg);

#endif
