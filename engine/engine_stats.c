/* engine_stats.c - the engine's counts (engine_stats), the periodic stats
 * line and the line logged at the end of a run (engine_internal.h). */
#include <string.h>
#include "daemon.h"
#include "engine_internal.h"
#include "inflight.h"
#include "log.h"
#include "reader.h"
#include "registry.h"
#include "handles.h"

void engine_snapshot(engine_t *e, engine_stats_t *out) {
  memset(out, 0, sizeof *out);
  if (e->rt.registry) {
    registry_stats_t r;
    registry_stats(e->rt.registry, &r);
    out->readers_live = r.live;
    out->readers_started = r.started;
    out->readers_stopped = r.stopped;
    out->readers_cycled = r.cycled;
  }
  if (e->pipeline) {
    pipeline_stats_t p;
    pipeline_stats(e->pipeline, &p);
    out->batches = p.batches;
    out->records_in = p.records_in;
    out->records_out = p.records_out;
    out->filter_errors = p.filter_errors;
    out->filter_timeouts = p.filter_timeouts;
  }
  if (e->rt.inflight) {
    out->reader_pauses = inflight_pauses(e->rt.inflight);
    out->bytes_in_flight = inflight_bytes(e->rt.inflight);
  }
  out->events_reconnects = 0;
  out->docker_reads = out->docker_rests = 0;
  for (size_t i = 0; i < e->rt.n_daemons; i++) {
    const daemon_t *d = e->rt.daemons[i];
    out->events_reconnects += daemon_reconnects(d);
    out->docker_reads += daemon_reads(d);
    out->docker_rests += daemon_rests(d);
  }
  out->handles_open = handles_live();
}

void engine_stats(engine_t *e, engine_stats_t *out) {
  if (e->rt.loop && !e->pipeline_exited) engine_snapshot(e, out);
  else {
    *out = e->final;
    out->handles_open = handles_live();
  }
}

void engine_stats_tick(uv_timer_t *t) {
  engine_t *e = t->data;
  engine_stats_t s;
  registry_stats_t r;
  engine_snapshot(e, &s);
  registry_stats(e->rt.registry, &r);
  log_info(NULL,
           "stats: readers live %llu (connecting %llu, streaming %llu, draining %llu, "
           "backoff %llu), started %llu, stopped %llu, cycled %llu; records in %llu, out %llu; "
           "filter errors %llu, timeouts %llu; events reconnects %lu; handles %ld; "
           "bytes in flight %llu, reader pauses %llu",
           (unsigned long long)s.readers_live, (unsigned long long)r.by_state[READER_CONNECTING],
           (unsigned long long)r.by_state[READER_STREAMING],
           (unsigned long long)r.by_state[READER_DRAINING],
           (unsigned long long)r.by_state[READER_BACKOFF], (unsigned long long)s.readers_started,
           (unsigned long long)s.readers_stopped, (unsigned long long)s.readers_cycled,
           (unsigned long long)s.records_in, (unsigned long long)s.records_out,
           (unsigned long long)s.filter_errors, (unsigned long long)s.filter_timeouts,
           s.events_reconnects, s.handles_open, (unsigned long long)s.bytes_in_flight,
           (unsigned long long)s.reader_pauses);
}

void engine_log_stopped(const engine_stats_t *s) {
  log_info(NULL,
           "stopped: readers live %llu, started %llu, stopped %llu, cycled %llu; "
           "batches %llu, records in %llu, out %llu; filter errors %llu, timeouts %llu; "
           "reader pauses %llu; docker reads %llu, rests %llu",
           (unsigned long long)s->readers_live, (unsigned long long)s->readers_started,
           (unsigned long long)s->readers_stopped, (unsigned long long)s->readers_cycled,
           (unsigned long long)s->batches, (unsigned long long)s->records_in,
           (unsigned long long)s->records_out, (unsigned long long)s->filter_errors,
           (unsigned long long)s->filter_timeouts, (unsigned long long)s->reader_pauses,
           (unsigned long long)s->docker_reads, (unsigned long long)s->docker_rests);
}
