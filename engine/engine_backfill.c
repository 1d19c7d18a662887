/* engine_backfill.c - a backfill run's progress and end (engine_internal.h).
 *
 * A backfill reads each selected container's history once, without
 * following: it stops when discovery has settled and no reader is live, and
 * succeeds only when the outputs delivered everything. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "daemon.h"
#include "discovery.h"
#include "engine_internal.h"
#include "log.h"
#include "output.h"
#include "reader.h"
#include "registry.h"
#include "timestamp.h"

void engine_backfill_check_delivered(engine_t *e) {
  unsigned long long undelivered = 0, dead = 0;
  output_t **outs = NULL;
  size_t n = pipeline_outputs(e->pipeline, NULL, 0);
  if (n && (outs = calloc(n, sizeof(output_t *)))) {
    size_t got = pipeline_outputs(e->pipeline, outs, n);
    if (got < n) n = got;
  }
  for (size_t i = 0; outs && i < n; i++) {
    output_stats_t st;
    output_stats(outs[i], &st);
    undelivered += st.pending;
    dead += st.dead_letters;
  }
  free(outs);
  pipeline_stats_t ps;
  pipeline_stats(e->pipeline, &ps);
  if (undelivered || dead || ps.output_errors) {
    char msg[200];
    snprintf(msg, sizeof msg,
             "backfill: not everything was delivered (%llu batches pending, "
             "%llu dead-lettered, %llu output errors)",
             undelivered, dead, (unsigned long long)ps.output_errors);
    log_error(NULL, "%s", msg);
    engine_fail(e, msg);
  }
}

static void print_progress(void *ud, reader_t *rd) {
  (void)ud;
  char ts[TS_LEN + 1] = "-";
  int64_t newest = reader_newest(rd);
  if (newest >= 0) ts_format(newest, ts);
  fprintf(stderr, "backfill: %-24s %10llu lines %12llu bytes  reached %s\n",
          reader_container(rd)->name, (unsigned long long)reader_lines(rd),
          (unsigned long long)reader_bytes(rd), ts);
}

void engine_backfill_tick(uv_timer_t *t) {
  engine_t *e = t->data;
  registry_stats_t r;
  registry_stats(e->rt.registry, &r);
  if (++e->backfill_ticks % 5 == 0 && isatty(STDERR_FILENO) && r.live)
    registry_each(e->rt.registry, print_progress, NULL);
  int settled = e->rt.n_daemons > 0;
  for (size_t i = 0; i < e->rt.n_daemons; i++)
    if (!e->rt.daemons[i]->discovery || !discovery_settled(e->rt.daemons[i]->discovery))
      settled = 0;
  if (settled && r.live == 0) {
    log_info(NULL, "backfill: every selected container's history is read (%llu readers)",
             (unsigned long long)r.started);
    engine_begin_stop(e, "backfill done");
  }
}
