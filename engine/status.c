/* status.c - a snapshot of the running engine (see status.h). */
#include <stdlib.h>
#include <string.h>
#include "checkpoint.h"
#include "daemon.h"
#include "discovery.h"
#include "inflight.h"
#include "retired.h"
#include "reader.h"
#include "status.h"
#include "timestamp.h"
#include "handles.h"

#define MAX_FILTERS 256

typedef struct collect_ctx {
  runtime_t *rt;
  status_t *s;
  size_t cap;
  int oom;
} collect_ctx_t;

/* A new, zeroed entry in s->rd, or NULL when out of memory. */
static status_reader_t *new_entry(collect_ctx_t *c) {
  status_t *s = c->s;
  if (c->oom) return NULL;
  if (s->n_rd == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 16;
    status_reader_t *p = realloc(s->rd, cap * sizeof *p);
    if (!p) {
      c->oom = 1;
      return NULL;
    }
    s->rd = p;
    c->cap = cap;
  }
  status_reader_t *o = &s->rd[s->n_rd++];
  memset(o, 0, sizeof *o);
  return o;
}

static void add_reader(void *ud, reader_t *rd) {
  collect_ctx_t *c = ud;
  status_reader_t *o = new_entry(c);
  if (!o) return;
  const container_t *ct = reader_container(rd);
  snprintf(o->name, sizeof o->name, "%s", ct->name ? ct->name : "");
  memcpy(o->id, ct->id, sizeof o->id);
  snprintf(o->host, sizeof o->host, "%s", reader_daemon(rd)->name);
  o->state = reader_state_name(reader_state(rd));
  o->live = 1;
  o->newest = reader_newest(rd);
  o->lines = reader_lines(rd);
  o->bytes = reader_bytes(rd);
  o->errors = reader_errors(rd);
  o->repeated = reader_repeated(rd);
  o->recovered = reader_recovered(rd);
  o->paused = reader_paused(rd);
  const retired_counts_t *t = c->rt->retired ? retired_find(c->rt->retired, ct->key) : NULL;
  if (t) { /* the readers it had before */
    o->lines += t->lines;
    o->bytes += t->bytes;
    o->errors += t->errors;
    o->repeated += t->repeated;
    o->recovered += t->recovered;
    if (t->newest > o->newest) o->newest = t->newest;
  }
}

/* A container whose readers all finished. */
static void add_finished(void *ud, const retired_counts_t *t) {
  collect_ctx_t *c = ud;
  if (registry_find(c->rt->registry, t->key)) return; /* counted with its live reader */
  status_reader_t *o = new_entry(c);
  if (!o) return;
  snprintf(o->name, sizeof o->name, "%s", t->name);
  memcpy(o->id, t->id, sizeof o->id);
  memcpy(o->host, t->host, sizeof o->host);
  o->state = "finished";
  o->newest = t->newest;
  o->lines = t->lines;
  o->bytes = t->bytes;
  o->errors = t->errors;
  o->repeated = t->repeated;
  o->recovered = t->recovered;
}

static int by_name(const void *a, const void *b) {
  const status_reader_t *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  if (!c) c = strcmp(x->host, y->host);
  return c ? c : strcmp(x->id, y->id);
}

static int collect_readers(runtime_t *rt, status_t *s) {
  collect_ctx_t c = {rt, s, 0, 0};
  if (!rt->registry) return 0;
  registry_stats(rt->registry, &s->readers);
  registry_each(rt->registry, add_reader, &c);
  if (rt->retired) retired_each(rt->retired, add_finished, &c);
  if (c.oom) return -1;
  if (s->n_rd > 1) qsort(s->rd, s->n_rd, sizeof *s->rd, by_name);
  return 0;
}

static int collect_pipeline(runtime_t *rt, status_t *s) {
  pipeline_filter_stats_t fs[MAX_FILTERS];
  if (!rt->pipeline) return 0;
  pipeline_stats(rt->pipeline, &s->pipeline);
  s->stall_limit = rt->cfg->filter_timeout + STATUS_STALL_MARGIN;
  const pipeline_stats_t *p = &s->pipeline;
  s->records_dropped = p->records_in > p->records_out ? p->records_in - p->records_out : 0;
  s->records_added = p->records_out > p->records_in ? p->records_out - p->records_in : 0;
  size_t n = pipeline_filter_stats(rt->pipeline, fs, MAX_FILTERS);
  if (n > MAX_FILTERS) n = MAX_FILTERS;
  if (n) {
    if (!(s->filters = malloc(n * sizeof *s->filters))) return -1;
    memcpy(s->filters, fs, n * sizeof *fs);
    s->n_filters = n;
  }
  n = pipeline_outputs(rt->pipeline, NULL, 0);
  if (n == 0) return 0;
  output_t **outs = calloc(n, sizeof(output_t *));
  if (!outs || !(s->outputs = calloc(n, sizeof *s->outputs))) {
    free(outs);
    return -1;
  }
  size_t got = pipeline_outputs(rt->pipeline, outs, n);
  if (got < n) n = got;
  for (size_t i = 0; i < n; i++) {
    status_output_t *so = &s->outputs[i];
    snprintf(so->info.name, sizeof so->info.name, "%s", outs[i]->name);
    snprintf(so->info.type, sizeof so->info.type, "%s", outs[i]->kind->type);
    so->info.routed_only = outs[i]->routed_only;
    output_stats(outs[i], &so->st);
  }
  free(outs);
  s->n_outputs = n;
  return 0;
}

/* Each daemon's state, and the engine's: docker_ok when every daemon's
 * last answer was good; docker_why names those whose was not. */
static int collect_daemons(runtime_t *rt, const status_source_t *src, status_t *s) {
  size_t n = rt->n_daemons, len = 0;
  s->docker_ok = n > 0;
  if (n && !(s->daemons = calloc(n, sizeof *s->daemons))) return -1;
  s->n_daemons = n;
  s->daemons_list = rt->cfg->daemons_list;
  for (size_t i = 0; i < n; i++) {
    const daemon_t *d = rt->daemons[i];
    status_daemon_t *o = &s->daemons[i];
    snprintf(o->name, sizeof o->name, "%s", d->name);
    o->ok = d->discovery ? discovery_docker_ok(d->discovery, o->why, sizeof o->why) : 0;
    if (!d->discovery) snprintf(o->why, sizeof o->why, "discovery is not running");
    if (!d->discovery && src->stopping) snprintf(o->why, sizeof o->why, "the engine is stopping");
    o->events_reconnects = daemon_reconnects(d);
    o->reads = daemon_reads(d);
    o->rests = daemon_rests(d);
    s->events_reconnects += o->events_reconnects;
    s->docker_reads += o->reads;
    s->docker_rests += o->rests;
    if (o->ok) continue;
    s->docker_ok = 0;
    if (len < sizeof s->docker_why) {
      int w = n > 1 ? snprintf(s->docker_why + len, sizeof s->docker_why - len, "%s%s: %s",
                               len ? "; " : "", o->name, o->why)
                    : snprintf(s->docker_why + len, sizeof s->docker_why - len, "%s", o->why);
      if (w > 0) len += (size_t)w;
    }
  }
  if (n == 0) snprintf(s->docker_why, sizeof s->docker_why, "no daemon");
  return 0;
}

status_t *status_collect(runtime_t *rt, const status_source_t *src) {
  status_t *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->now_ns = ts_now();
  s->start_ns = rt->start_ns;
  if (collect_readers(rt, s) != 0 || collect_pipeline(rt, s) != 0) goto err;
  if (rt->inflight) {
    s->bytes_in_flight = inflight_bytes(rt->inflight);
    s->reader_pauses = inflight_pauses(rt->inflight);
  }
  if (collect_daemons(rt, src, s) != 0) goto err;
  s->checkpoint_on = rt->checkpoint != NULL;
  s->checkpoint_age = rt->checkpoint ? checkpoint_age(rt->checkpoint) : -1;
  s->pipeline_loaded = src->pipeline_loaded;
  s->stopping = src->stopping || rt->stopping;
  s->handles_open = handles_live();
  return s;
err:
  status_free(s);
  return NULL;
}

void status_free(status_t *s) {
  if (!s) return;
  free(s->rd);
  free(s->daemons);
  free(s->filters);
  free(s->outputs);
  free(s);
}
