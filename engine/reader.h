/* reader.h - one container's log stream, from the Docker API to batches.
 *
 * A reader follows /containers/{id}/logs, decodes it (decode.h), drops the
 * lines a resume replayed or the daemon repeated (cursor.h), groups lines into batches (batch.h)
 * and hands them to the pipeline. Its life is a state machine; every change
 * goes through reader_set_state, which logs it at debug level and keeps the
 * registry's counts:
 *
 *   CONNECTING -> STREAMING       200 answer to the logs request
 *   STREAMING  -> CYCLING         the stream lived `cycle` seconds: it is
 *                                 closed and reopened from the cursor
 *   STREAMING  -> DRAINING        the container died: read to the end
 *   STREAMING/DRAINING -> INSPECTING  the stream ended cleanly: running
 *                                 (again)? follow on from the cursor.
 *                                 Not running: one last read of its
 *                                 history from the cursor, without follow
 *                                 (a follow stream may end before the
 *                                 daemon sent every line), then inspected
 *                                 again: still not running? finished
 *   any -> BACKOFF                transport error, 5xx, protocol error:
 *                                 reconnect after an exponential, jittered
 *                                 delay, without limit
 *   any -> STOPPING -> CLOSED     reader_stop, or the container is gone
 *                                 (404, 409, 501 or not running at EOF)
 *
 * A --rm container (HostConfig.AutoRemove) takes its log with it moments
 * after it exits, so its reader may be started when it is created, before
 * its start (reader_start with attach): it then reads an attach stream
 * (docker_attach) instead of logs requests, which gets every line however
 * short the job. Its lines carry the time they arrived, made strictly
 * increasing (each line its own cursor key). An attach stream is never
 * paused (the daemon would hold the container's writes) nor cycled; it ends
 * when the container exits, and the reader finishes. When the daemon refuses
 * the attach, the reader closes (one line at info level) and the start
 * event starts an ordinary reader; when the container starts before the
 * attach is answered, or the attach stream breaks, the reader goes on with
 * logs requests from the cursor. An engine stopped in the middle of such a
 * job may read the lines of its last resume_margin seconds again at its
 * next run (their arrival times are not the daemon's timestamps).
 *
 * A reader owns one request at a time and two timers (its lifetime timer:
 * cycle or backoff; and the batch flush timer). Closing is asynchronous:
 * once both timers' close callbacks ran, the registry frees the reader.
 * Loop thread only. */
#ifndef ENGINE_READER_H
#define ENGINE_READER_H

#include <stdint.h>
#include "container.h"
#include "runtime.h"
#include "cursor.h"

typedef enum reader_state {
  READER_CONNECTING,
  READER_STREAMING,
  READER_CYCLING,
  READER_DRAINING,
  READER_INSPECTING,
  READER_BACKOFF,
  READER_STOPPING,
  READER_CLOSED,
  READER_N_STATES
} reader_state_t;

typedef struct reader reader_t;

/* How an attach stream went (reader_owner_t.attach_result). */
typedef enum {
  READER_ATTACH_IN_TIME, /* taken: in place before the start */
  READER_ATTACH_LATE,    /* dropped: the logs request reads the container */
  READER_ATTACH_REFUSED, /* the daemon refused it */
  READER_ATTACH_N_RESULTS
} reader_attach_result_t;

/* What a reader tells its owner (the registry), on the loop thread; ud is
 * reader_start's owner_ud. Every member is called, none may be NULL. */
typedef struct reader_owner {
  /* The reader moved from one state to another (reader_set_state). */
  void (*state_changed)(void *ud, reader_t *r, reader_state_t from, reader_state_t to);
  /* The container's logs cannot be read through the API (HTTP 501): do
   * not attach it again until it is removed. */
  void (*unreadable)(void *ud, reader_t *r);
  /* The logs request of a container started by an event was written ns
   * nanoseconds after the event arrived. */
  void (*start_latency)(void *ud, uint64_t ns);
  void (*attach_result)(void *ud, reader_attach_result_t result);
  /* The reader cycled its stream. */
  void (*cycled)(void *ud);
  /* From the close callback of the reader's last handle: the reader is
   * closed; the owner frees it (reader_free), now or later. */
  void (*closed)(void *ud, reader_t *r);
} reader_owner_t;

/* Creates a reader for c, a container of daemon d (its requests go to
 * d->docker), with the owner's cursor for it (borrowed; the
 * owner keeps it alive longer than the reader). Takes a new reference to
 * c. owner (static) and owner_ud are told what happens to the reader.
 * Returns NULL when out of memory. The reader starts connecting at once:
 * its logs request is made before reader_start returns, with nothing in
 * front of it. event_ns > 0: the uv_hrtime at which the container's start
 * event arrived; the time from then to the request being written goes to
 * owner->start_latency. attach: read an attach stream (above). */
reader_t *reader_start(runtime_t *rt, daemon_t *d, container_t *c, cursor_t *cursor,
                       int64_t since_ns, uint64_t event_ns, int attach, const reader_owner_t *owner,
                       void *owner_ud);

/* Stops the reader: cancels its request, hands its partial batch to the
 * pipeline (nothing read is lost), closes its timers. Idempotent, safe in
 * any state, also in the middle of a read. */
void reader_stop(reader_t *r);

/* Goes on reading after a pause for backpressure (inflight.h). */
void reader_resume(reader_t *r);
int reader_paused(const reader_t *r);

/* Stops the reader because a reload deselected its container (like
 * reader_stop, with that reason in the log). */
void reader_deselect(reader_t *r);

/* The container started (an event that arrived at event_ns, uv_hrtime;
 * started_ns: the event's time, the daemon's wall clock). An attach stream
 * answered more than 50 ms before started_ns was in place before the start:
 * its data flows from now on. One not answered yet, or answered later, is
 * given up, before any of its data was taken, for logs requests. */
void reader_container_started(reader_t *r, uint64_t event_ns, int64_t started_ns);

/* The container died (an event): the stream will end after the last line. */
void reader_container_died(reader_t *r);

/* The container was renamed (an event): the lines read from now on carry
 * the new name (the open batch, read before, is handed on first with the
 * old one); the cursor stays, as it belongs to the container id. Returns 0,
 * or -1 when out of memory (the old name stays). */
int reader_rename(reader_t *r, const char *name);

reader_state_t reader_state(const reader_t *r);
const char *reader_state_name(reader_state_t s);
const container_t *reader_container(const reader_t *r);
const daemon_t *reader_daemon(const reader_t *r);

/* Lines delivered, errors seen, since the reader started. */
uint64_t reader_lines(const reader_t *r);
uint64_t reader_errors(const reader_t *r);

/* Bytes of the lines delivered (the line text, without the newline), since
 * the reader started. */
uint64_t reader_bytes(const reader_t *r);

/* Lines the daemon sent a second time within one stream (json-file
 * rotation), dropped, since the reader started. */
uint64_t reader_repeated(const reader_t *r);

/* Lines a local-driver follow stream skipped that a check read found and
 * delivered late, since the reader started. */
uint64_t reader_recovered(const reader_t *r);

/* The newest timestamp delivered through the reader's cursor (ns), or -1. */
int64_t reader_newest(const reader_t *r);

/* Frees a CLOSED reader (the registry calls it). */
void reader_free(reader_t *r);

#endif
