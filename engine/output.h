/* output.h - where filtered records go: one interface for every kind of
 * output.
 *
 * Kinds: `stdout`, `file` and `null` (output_file.c),
 * `http` and its presets `clickhouse`, `loki`, `elasticsearch`, `otlp`
 * (output_http.c), `syslog` (output_syslog.c), `mqtt` (output_mqtt.c),
 * `nats` (output_nats.c). A kind is a table of
 * operations (output_kind_t), found by its type name in output.c; nothing
 * outside the output layer tells the kinds apart.
 *
 * The life of a batch's records in an output:
 *  1. Pipeline thread: output_write encodes the records (kind->encode) into
 *     one body and hands it over, holding a reference on the batch's ticket
 *     (ticket.h). A write never blocks and never fails short of memory.
 *  2. Loop thread: the output's bodies are sent in queue order, up to
 *     cfg.concurrency attempts at once (kind->send; 1 for the local kinds
 *     and syslog). Attempts may end in any order; each ends with
 *     output_sent naming its body: delivered; failed and retried with
 *     exponential backoff and jitter (Retry-After honoured), without limit
 *     unless retry_max is set; or rejected, to the dead-letter file with its
 *     reason (logged once per cause). While a backoff runs no new attempt
 *     starts; when it ends the failed bodies, being nearest the head, are
 *     sent first. A kind may dead-letter part of a body
 *     (output_dead_letter) and keep the rest to send again, or split a body
 *     (output_split).
 *  3. A body delivered or dead-lettered releases its ticket reference; the
 *     batch is acknowledged once every output released it, and a
 *     container's batches in the order they were read (inflight.h), so a
 *     body delivered before an earlier one moves no cursor. A body that is
 *     still held when the output is closed is abandoned: its batch is never
 *     acknowledged, so the next run reads those lines again.
 * Local kinds (stdout, file) fail like network ones: a write error (ENOSPC,
 * EIO, EPIPE) is retried with backoff; a partial write is completed by the
 * next attempt, so no line is ever cut or glued to another.
 *
 * Ownership: pipeline_config.c creates outputs (output_new) for a program;
 * the delivery (delivery.h) owns them once it took them, starts them on the
 * loop, and closes and frees them. An output never taken by a delivery is
 * freed with output_free.
 *
 * Threads: output_write on the pipeline thread; everything else on the loop
 * thread, except where marked. The hand-over between the two is a list under
 * the output's mutex and the delivery's uv_async_t. */
#ifndef ENGINE_OUTPUT_H
#define ENGINE_OUTPUT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "backoff.h"
#include "ticket.h"
#include "strbuf.h"

struct lua_State;

typedef struct output output_t;

/* One batch's records, encoded for one output; or, merged (see
 * output_t.mergeable), the records of several batches one after another. */
typedef struct output_body {
  struct output_body *next;
  ticket_t *ticket; /* one reference, released when the body is done */
  ticket_t **more;  /* merged: a reference on each other batch's ticket */
  size_t n_more;
  size_t batches; /* batches whose records it holds (0: the rest of a split) */
  char *data;     /* what is left to send */
  size_t len;
  size_t done; /* bytes of data already taken (a partial write) */
  size_t records;
  uint64_t handed_ns; /* uv_hrtime when the pipeline handed it over (of the
                           oldest batch it holds) */
  unsigned attempts;
  int sending; /* an attempt on it is in flight (kind->send) */
} output_body_t;

/* How an attempt ended (output_sent). */
enum output_result {
  OUTPUT_DELIVERED, /* the destination took the body */
  OUTPUT_FAILED,    /* try again after a backoff */
  OUTPUT_REJECTED,  /* never takes it: to the dead-letter file */
  OUTPUT_AGAIN      /* the kind changed the queue (a split): send the body now */
};

typedef struct output_kind {
  const char *type;
  /* Pipeline thread: appends the records of the array at stack index idx
   * to b. Returns 0, or -1 when out of memory. NULL: nothing is encoded
   * (the body only counts records). Must not raise Lua errors. */
  int (*encode)(output_t *o, struct lua_State *L, int idx, strbuf_t *b);
  /* Loop thread, once: takes what the kind needs (handles, files). Returns
   * 0, or -1 with a message in err. May be NULL. */
  int (*start)(output_t *o, uv_loop_t *loop, char *err, size_t n);
  /* Loop thread: starts an attempt on body b (not necessarily the head;
   * up to cfg.concurrency attempts run at once, each on its own body). Ends
   * with exactly one output_sent(o, b, ...), now or later, unless stop
   * comes first. */
  void (*send)(output_t *o, output_body_t *b);
  /* Loop thread: reopens the destination (after an external rotation).
   * NULL: nothing to reopen. */
  void (*reopen)(output_t *o);
  /* Loop thread: ends the attempts in progress and closes the kind's
   * handles, each through output_handle_closed once it is closed (count
   * them in o->handles). Returns 1 when the attempts cannot be taken back
   * (the output_sent of each will still come, reporting what really
   * happened), else 0 (every attempt was taken back: no output_sent
   * follows). NULL: the kind holds nothing. */
  int (*stop)(output_t *o);
  /* Frees the kind's own part (not o itself). May be NULL. */
  void (*free)(output_t *o);
  /* Pipeline thread, in place of the hand-over: takes the body at once.
   * Returns 0, or -1 with a message in err. NULL for every kind but the
   * capture of `engine test` (output_capture_new). */
  int (*take_now)(output_t *o, const char *data, size_t len, char *err, size_t n);
} output_kind_t;

/* The settings every kind shares. */
typedef struct output_config {
  long retry_max;                            /* -1: without limit */
  int concurrency;                           /* attempts in flight at once (1 at least) */
  size_t batch_max_bytes, batch_max_records; /* merging: a merged body's
                            limits (0: none; both 0: no merging) */
  double batch_timeout;                      /* merging: seconds a body under both limits may
                            wait for more batches before its first attempt
                            (counted from its oldest batch's hand-over);
                            0: sent at once */
  double backoff_initial, backoff_max;       /* seconds */
  char *dead_letter;                         /* path, or NULL: log and drop */
  int mode;                                  /* creation mode of the files it writes (0600) */
} output_config_t;

/* The counts since the output started (loop thread). */
typedef struct output_stats {
  unsigned long long sent;            /* batches delivered */
  unsigned long long failed;          /* attempts that failed */
  unsigned long long retried;         /* attempts retried after a failure */
  unsigned long long dead_letters;    /* bodies or records given up on */
  unsigned long long truncated;       /* records cut to fit the transport */
  unsigned long long requests;        /* attempts started (requests, writes) */
  unsigned long long request_records; /* records those attempts carried */
  unsigned long long request_bytes;   /* bytes those attempts carried */
  size_t pending;                     /* bodies waiting or in flight */
  size_t in_flight;                   /* attempts (requests) in flight */
  double queue_age;                   /* output_stats: seconds since the oldest body
                                  held (handed over, queued, in flight or
                                  waiting for a retry) was handed over; 0
                                  when none */
  int failing;                        /* the last attempt failed */
  int acks;                           /* the kind counts messages and their
                                  acknowledgements (mqtt, nats): the next five */
  unsigned long long published;       /* messages published */
  unsigned long long acked;           /* messages the destination acknowledged */
  unsigned long long duplicates;      /* of those, ones it held already */
  size_t pending_acks;                /* messages published, not yet answered */
  unsigned long long reconnects;      /* times the connection was made again
                                      (after the first) */
  char cause[256];                    /* while failing: why, as logged */
} output_stats_t;

struct output {
  const output_kind_t *kind;
  char *name;        /* the user's name for it (default: the type) */
  char *fingerprint; /* its settings as canonical text: a reload keeps
                            an output whose name and fingerprint it finds
                            again */
  int routed_only;   /* receives only records whose `output` names it */
  int mergeable;     /* set by the kind: its bodies are records one per
                            line (or pair of lines), so queued bodies
                            may be sent as one: before a body's first
                            attempt, the bodies right behind it that were
                            never tried are appended to it, within
                            cfg.batch_max_bytes and batch_max_records */
  int binary;        /* set by the kind: its bodies are bytes, not text
                            (protobuf, gzip): a dead letter carries the
                            body in base64 (body_base64) */
  output_config_t cfg;

  /* loop thread */
  uv_loop_t *loop;
  uv_timer_t retry;
  uv_timer_t linger; /* batch_timeout: ends a body's wait for more */
  int handles;       /* open handles (the timers, the kind's) */
  int started, closing, waiting, kicking;
  int lingering;     /* the linger timer runs */
  int flushing;      /* output_flush: batch_timeout no longer applies */
  backoff_t backoff; /* retry delays */
  output_body_t *head, *tail;
  output_stats_t st;
  char cause[256]; /* the failure logged last; "" while delivering */
  int dl_fd;
  void (*closed)(void *);
  void *closed_ud;
  const char *drop_reason; /* output_close's */

  /* the hand-over from the pipeline thread */
  pthread_mutex_t lock;
  output_body_t *in_head, *in_tail;
  uv_async_t *wake; /* the delivery's; set before the first write */
  int adopted;      /* a delivery owns it */
};

/* The output described by the validated table at stack index idx (see
 * lua/engine/pipeline.lua): looks its type up among the kinds. Returns
 * NULL with a message in err (an unknown type, out of memory). Does not
 * open or create anything: that is start's work. */
output_t *output_new(struct lua_State *L, int idx, char *err, size_t n);

/* An output that writes each batch's records as JSON lines to fd at once,
 * on the writing thread, without a delivery: what `engine test` captures.
 * Returns NULL when out of memory. */
output_t *output_capture_new(const char *name, int fd);

/* For kinds: sets up the common part of o (calloc'ed by the kind, with the
 * output_t first) from the table at idx. Returns 0, or -1 when out of
 * memory. */
int output_init(output_t *o, const output_kind_t *kind, struct lua_State *L, int idx);

/* Pipeline thread: encodes the records of the array at idx and hands the
 * body over under t (which gains a reference; NULL: records of a timer,
 * acknowledged by nobody). An empty array hands nothing over. Returns 0, or
 * -1 with a message in err (out of memory). */
int output_write(output_t *o, struct lua_State *L, int idx, ticket_t *t, char *err, size_t n);

/* The hand-over half of output_write, for records encoded elsewhere (the
 * filter process, pipeline_worker.c): takes data (malloc'ed, len bytes
 * holding records records; freed in every case) as one body under t.
 * Returns 0, or -1 with a message in err (out of memory). */
int output_hand_over(output_t *o, char *data, size_t len, size_t records, ticket_t *t, char *err,
                     size_t n);

/* Loop thread: starts o on loop. Returns 0, or -1 with a message in err. */
int output_start(output_t *o, uv_loop_t *loop, char *err, size_t n);

/* Loop thread: moves what the pipeline handed over into the queue and
 * sends. */
void output_take(output_t *o);

/* Loop thread: from now on sends what is queued without waiting out
 * batch_timeout (the engine is stopping, or a reload dropped the output). */
void output_flush(output_t *o);

/* Loop thread: reopens the destination and the dead-letter file. */
void output_reopen(output_t *o);

/* Loop thread: bodies waiting or in flight (handed over included). */
size_t output_pending(output_t *o);

void output_stats(output_t *o, output_stats_t *out);

/* Loop thread: stops sending and closes the handles; closed(ud) runs once
 * they are closed. What is left stays unacknowledged (the next run reads
 * it again), or with drop_reason set goes to the dead-letter file with
 * that reason. */
void output_close(output_t *o, const char *drop_reason, void (*closed)(void *ud), void *ud);

/* Frees o, abandoning the bodies it still holds. Once closed, or never
 * started. NULL is ignored. */
void output_free(output_t *o);

/* For kinds, loop thread: the end of the attempt on body b (the one
 * kind->send was given). why: the failure in words (NULL when delivered);
 * retry_after: seconds the destination asked to wait (0: none). b may be
 * freed by the time it returns. */
void output_sent(output_t *o, output_body_t *b, int result, const char *why, double retry_after);

/* For kinds, loop thread: writes len bytes of data (records records) to
 * the dead-letter file with the reason, and counts them. */
void output_dead_letter(output_t *o, const char *data, size_t len, size_t records,
                        const char *reason);

/* For kinds, loop thread: splits body b (in flight) after `at` bytes holding
 * `records` records: the rest becomes a new body right behind it, under
 * the same ticket. Returns 0, or -1 when out of memory. */
int output_split(output_t *o, output_body_t *b, size_t at, size_t records);

/* For kinds, loop thread: a handle counted in o->handles is closed. */
void output_handle_closed(output_t *o);

/* For kinds, loop thread: counts a record cut to fit the transport, and
 * logs it once per output. */
void output_truncated(output_t *o, size_t from, size_t to);

#endif
