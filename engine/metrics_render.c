/* metrics_render.c - the bodies the metrics endpoint serves (see metrics.h):
 * the Prometheus text format 0.0.4 and two JSON views. */
#include <cJSON.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "metrics.h"
#include "reader.h"
#include "timestamp.h"

/* --- a text writer that remembers running out of memory ----------------- */

typedef struct writer {
  strbuf_t *b;
  int oom;
  const char *host; /* series: a host label first (NULL: none) */
} writer_t;

static void put(writer_t *w, const char *s, size_t n) {
  if (!w->oom && strbuf_add(w->b, s, n) != 0) w->oom = 1;
}

static void puts_(writer_t *w, const char *s) { put(w, s, strlen(s)); }

static void printf_(writer_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void printf_(writer_t *w, const char *fmt, ...) {
  char small[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0) {
    w->oom = 1;
    return;
  }
  if ((size_t)n < sizeof small) {
    put(w, small, (size_t)n);
    return;
  }
  char *big = malloc((size_t)n + 1);
  if (!big) {
    w->oom = 1;
    return;
  }
  va_start(ap, fmt);
  vsnprintf(big, (size_t)n + 1, fmt, ap);
  va_end(ap);
  put(w, big, (size_t)n);
  free(big);
}

/* A label value as the text format wants it: \\, \" and \n escaped. */
static void put_label_value(writer_t *w, const char *v) {
  for (; v && *v; v++) {
    if (*v == '\\') puts_(w, "\\\\");
    else if (*v == '"') puts_(w, "\\\"");
    else if (*v == '\n') puts_(w, "\\n");
    else put(w, v, 1);
  }
}

static void family(writer_t *w, const char *name, const char *type, const char *help) {
  printf_(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{label="value"} (label NULL: name alone), then a space; with w->host
 * set, host="<w->host>" comes first among the labels. */
static void series(writer_t *w, const char *name, const char *label, const char *value) {
  puts_(w, name);
  if (w->host) {
    puts_(w, "{host=\"");
    put_label_value(w, w->host);
    puts_(w, label ? "\"," : "\"}");
  } else if (label) {
    puts_(w, "{");
  }
  if (label) {
    printf_(w, "%s=\"", label);
    put_label_value(w, value);
    puts_(w, "\"}");
  }
  puts_(w, " ");
}

static void sample_u(writer_t *w, const char *name, const char *label, const char *value,
                     unsigned long long v) {
  series(w, name, label, value);
  printf_(w, "%llu\n", v);
}

static void sample_d(writer_t *w, const char *name, const char *label, const char *value,
                     double v) {
  series(w, name, label, value);
  printf_(w, "%.6f\n", v);
}

/* A family with one unlabelled sample. */
static void one_u(writer_t *w, const char *name, const char *type, const char *help,
                  unsigned long long v) {
  family(w, name, type, help);
  sample_u(w, name, NULL, NULL, v);
}

static void one_d(writer_t *w, const char *name, const char *type, const char *help, double v) {
  family(w, name, type, help);
  sample_d(w, name, NULL, NULL, v);
}

/* The samples of one histogram (its family line written before): n upper
 * bounds, n + 1 counts (not cumulative; the last one past the bounds) and
 * the sum in ns. label NULL: no label of its own. */
static void histogram(writer_t *w, const char *name, const char *label, const char *value,
                      const double *bounds, const unsigned long long *counts, size_t n,
                      unsigned long long sum_ns) {
  unsigned long long cum = 0;
  for (size_t b = 0; b <= n; b++) {
    cum += counts[b];
    printf_(w, "%s_bucket{", name);
    if (label && value) {
      printf_(w, "%s=\"", label);
      put_label_value(w, value);
      puts_(w, "\",");
    }
    if (b < n) printf_(w, "le=\"%g\"} %llu\n", bounds[b], cum);
    else printf_(w, "le=\"+Inf\"} %llu\n", cum);
  }
  char sum[160], count[160];
  snprintf(sum, sizeof sum, "%s_sum", name);
  snprintf(count, sizeof count, "%s_count", name);
  sample_d(w, sum, label, value, (double)sum_ns / 1e9);
  sample_u(w, count, label, value, cum);
}

/* --- containers, with bounded label cardinality ------------------------- */

typedef struct per_container {
  const char *name; /* "_other" for the rest */
  const char *host; /* its daemon (NULL for "_other") */
  unsigned long long lines, bytes, errors, repeated, recovered;
  int64_t newest; /* -1: none (or the _other sum) */
} per_container_t;

/* Merges readers of the same name (s->rd is sorted by name) and sums every
 * name past the first max into one "_other" entry. Returns the entries
 * (NULL when out of memory or none), their number in *n, and how many
 * containers went into "_other" in *others. */
static per_container_t *containers(const status_t *s, size_t max, size_t *n, size_t *others) {
  *n = 0;
  *others = 0;
  if (!s->n_rd) return NULL;
  per_container_t *out = calloc(s->n_rd + 1, sizeof *out);
  if (!out) return NULL;
  per_container_t *other = NULL;
  for (size_t i = 0; i < s->n_rd; i++) {
    const status_reader_t *r = &s->rd[i];
    per_container_t *c;
    if (*n && !other && strcmp(out[*n - 1].name, r->name) == 0 &&
        strcmp(out[*n - 1].host, r->host) == 0) {
      c = &out[*n - 1];
      if (r->newest > c->newest) c->newest = r->newest;
    } else if (*n < max) {
      c = &out[(*n)++];
      c->name = r->name;
      c->host = r->host;
      c->newest = r->newest;
    } else {
      if (!other) {
        other = &out[(*n)++];
        other->name = "_other";
        other->newest = -1;
      }
      if (i == 0 || strcmp(s->rd[i - 1].name, r->name) != 0 ||
          strcmp(s->rd[i - 1].host, r->host) != 0)
        (*others)++;
      c = other;
    }
    c->lines += r->lines;
    c->bytes += r->bytes;
    c->errors += r->errors;
    c->repeated += r->repeated;
    c->recovered += r->recovered;
  }
  return out;
}

/* One per-container sample: with several daemons (the list form) it is
 * labelled with the container's host too. */
static void pc_u(writer_t *w, const status_t *s, const char *name, const per_container_t *c,
                 unsigned long long v) {
  w->host = s->daemons_list ? c->host : NULL;
  sample_u(w, name, "container", c->name, v);
  w->host = NULL;
}

static void container_families(writer_t *w, const status_t *s, size_t max) {
  size_t n, others;
  per_container_t *pc = containers(s, max, &n, &others);
  if (s->n_rd && !pc) {
    w->oom = 1;
    return;
  }
  family(w, "engine_lines_read_total", "counter",
         "Log lines delivered by the container's reader since it started.");
  for (size_t i = 0; i < n; i++) pc_u(w, s, "engine_lines_read_total", &pc[i], pc[i].lines);
  family(w, "engine_bytes_read_total", "counter",
         "Bytes of log lines (text without newline) delivered by the container's reader since it "
         "started.");
  for (size_t i = 0; i < n; i++) pc_u(w, s, "engine_bytes_read_total", &pc[i], pc[i].bytes);
  family(w, "engine_reader_errors_total", "counter",
         "Errors the container's reader met since it started (each one reconnects).");
  for (size_t i = 0; i < n; i++) pc_u(w, s, "engine_reader_errors_total", &pc[i], pc[i].errors);
  family(
      w, "engine_docker_repeated_lines_total", "counter",
      "Lines the daemon sent a second time within one log stream (json-file rotation), dropped.");
  for (size_t i = 0; i < n; i++)
    pc_u(w, s, "engine_docker_repeated_lines_total", &pc[i], pc[i].repeated);
  family(w, "engine_docker_skipped_lines_total", "counter",
         "Lines the daemon's follow stream skipped (the local driver's, where its file rotated) "
         "that a check read found and delivered late.");
  for (size_t i = 0; i < n; i++)
    pc_u(w, s, "engine_docker_skipped_lines_total", &pc[i], pc[i].recovered);
  family(w, "engine_reader_last_timestamp_seconds", "gauge",
         "Docker timestamp of the newest line delivered for the container (Unix seconds).");
  for (size_t i = 0; i < n; i++)
    if (pc[i].newest >= 0) {
      w->host = s->daemons_list ? pc[i].host : NULL;
      sample_d(w, "engine_reader_last_timestamp_seconds", "container", pc[i].name,
               (double)pc[i].newest / 1e9);
      w->host = NULL;
    }
  one_u(w, "engine_metrics_other_containers", "gauge",
        "Containers summed under container=\"_other\" (beyond engine.metrics.max_containers).",
        others);
  free(pc);
}

/* --- /metrics ----------------------------------------------------------- */

static void reader_families(writer_t *w, const status_t *s) {
  const registry_stats_t *r = &s->readers;
  one_u(w, "engine_readers_live", "gauge", "Readers (followed containers) now.", r->live);
  one_u(w, "engine_readers_started_total", "counter", "Readers started.", r->started);
  one_u(w, "engine_readers_stopped_total", "counter", "Readers stopped, for any reason.",
        r->stopped);
  one_u(w, "engine_readers_cycled_total", "counter",
        "Follow streams closed and reopened: after engine.cycle seconds, or found behind the "
        "daemon's log.",
        r->cycled);
  one_u(w, "engine_tap_dropped_records_total", "counter",
        "Records a client of `engine tap` did not take in time (dropped for it only).",
        s->tap_dropped);
  family(w, "engine_docker_attach_total", "counter",
         "Attach streams of --rm containers: in place before the start (in_time), answered "
         "after it (late: the log was read instead), refused.");
  static const char *const attach_results[READER_ATTACH_N_RESULTS] = {
      [READER_ATTACH_IN_TIME] = "in_time",
      [READER_ATTACH_LATE] = "late",
      [READER_ATTACH_REFUSED] = "refused"};
  for (int i = 0; i < READER_ATTACH_N_RESULTS; i++)
    sample_u(w, "engine_docker_attach_total", "result", attach_results[i], r->attach[i]);
  family(w, "engine_readers", "gauge", "Readers in each state.");
  for (int st = 0; st < READER_N_STATES; st++)
    sample_u(w, "engine_readers", "state", reader_state_name((reader_state_t)st), r->by_state[st]);
  family(w, "engine_start_to_request_seconds", "histogram",
         "Time from a container's start event to its logs request being written.");
  unsigned long long counts[REGISTRY_START_BUCKETS + 1];
  for (size_t b = 0; b <= REGISTRY_START_BUCKETS; b++) counts[b] = r->start_buckets[b];
  histogram(w, "engine_start_to_request_seconds", NULL, NULL, registry_start_bounds, counts,
            REGISTRY_START_BUCKETS, r->start_ns);
}

static void filter_families(writer_t *w, const status_t *s) {
  static const struct {
    const char *name, *help;
    size_t off;
  } fams[] = {
      {"engine_filter_calls_total", "Calls of the filter's process function.",
       offsetof(pipeline_filter_stats_t, calls)},
      {"engine_filter_errors_total", "Filter calls that failed (error, fault, memory).",
       offsetof(pipeline_filter_stats_t, errors)},
      {"engine_filter_timeouts_total", "Filter calls stopped by engine.filter_timeout.",
       offsetof(pipeline_filter_stats_t, timeouts)},
      {"engine_filter_dead_letters_total",
       "Batches the filter's on_error sent to its dead-letter file.",
       offsetof(pipeline_filter_stats_t, dead_letters)},
  };
  for (size_t k = 0; k < sizeof fams / sizeof *fams; k++) {
    family(w, fams[k].name, "counter", fams[k].help);
    for (size_t i = 0; i < s->n_filters; i++) {
      const char *base = (const char *)&s->filters[i];
      unsigned long long v;
      memcpy(&v, base + fams[k].off, sizeof v);
      sample_u(w, fams[k].name, "filter", s->filters[i].name, v);
    }
  }
  family(w, "engine_filter_duration_seconds", "histogram",
         "Time one call of the filter's process function took.");
  for (size_t i = 0; i < s->n_filters; i++) {
    const pipeline_filter_stats_t *f = &s->filters[i];
    unsigned long long counts[PIPELINE_DURATION_BUCKETS + 1];
    for (size_t b = 0; b <= PIPELINE_DURATION_BUCKETS; b++) counts[b] = f->buckets[b];
    histogram(w, "engine_filter_duration_seconds", "filter", f->name, pipeline_duration_bounds,
              counts, PIPELINE_DURATION_BUCKETS, f->duration_ns);
  }
  family(w, "engine_filter_disabled", "gauge",
         "1 when the filter's init failed and it is skipped.");
  for (size_t i = 0; i < s->n_filters; i++)
    sample_u(w, "engine_filter_disabled", "filter", s->filters[i].name,
             s->filters[i].disabled ? 1 : 0);
}

/* The outputs that count messages and their acknowledgements (mqtt, nats). */
static void ack_families(writer_t *w, const status_t *s) {
  static const struct {
    const char *name, *type, *help;
  } fams[] = {
      {"engine_output_messages_published_total", "counter",
       "Messages the output published (mqtt, nats: one per record), re-sends included."},
      {"engine_output_messages_acked_total", "counter",
       "Messages the destination acknowledged (mqtt: PUBACK; nats: stored, duplicates included)."},
      {"engine_output_messages_duplicate_total", "counter",
       "Acknowledged messages the destination already held (nats: the same Nats-Msg-Id inside "
       "the stream's duplicate window), dropped by it."},
      {"engine_output_acks_pending", "gauge",
       "Messages published and not yet acknowledged (mqtt: up to its max_inflight; nats)."},
      {"engine_output_reconnects_total", "counter",
       "Times the output's connection was made again after the first (mqtt, nats)."},
  };
  int any = 0;
  for (size_t i = 0; i < s->n_outputs; i++) any |= s->outputs[i].st.acks;
  if (!any) return;
  for (size_t k = 0; k < sizeof fams / sizeof *fams; k++) {
    family(w, fams[k].name, fams[k].type, fams[k].help);
    for (size_t i = 0; i < s->n_outputs; i++) {
      const output_stats_t *st = &s->outputs[i].st;
      unsigned long long v = k == 0   ? st->published
                             : k == 1 ? st->acked
                             : k == 2 ? st->duplicates
                             : k == 3 ? (unsigned long long)st->pending_acks
                                      : st->reconnects;
      if (st->acks) sample_u(w, fams[k].name, "output", s->outputs[i].info.name, v);
    }
  }
}

static void output_families(writer_t *w, const status_t *s) {
  static const struct {
    const char *name, *type, *help;
    size_t off;
  } fams[] = {
      {"engine_output_batches_sent_total", "counter", "Batches the output delivered.",
       offsetof(output_stats_t, sent)},
      {"engine_output_batches_failed_total", "counter",
       "Attempts that failed (a write error; a transport error, 408, 429 or 5xx).",
       offsetof(output_stats_t, failed)},
      {"engine_output_batches_retried_total", "counter", "Attempts retried after a failure.",
       offsetof(output_stats_t, retried)},
      {"engine_output_dead_letters_total", "counter",
       "Batches or records the output gave up on (written to its dead_letter file, or dropped).",
       offsetof(output_stats_t, dead_letters)},
      {"engine_output_truncated_total", "counter",
       "Records cut to fit the transport (syslog over UDP).", offsetof(output_stats_t, truncated)},
      {"engine_output_requests_total", "counter",
       "Attempts the output started (requests; writes for local outputs), retries included.",
       offsetof(output_stats_t, requests)},
      {"engine_output_records_total", "counter",
       "Records the output's attempts carried (over requests_total: records per request).",
       offsetof(output_stats_t, request_records)},
      {"engine_output_request_bytes_total", "counter",
       "Body bytes the output's attempts carried, as sent (over requests_total: bytes per "
       "request).",
       offsetof(output_stats_t, request_bytes)},
  };
  for (size_t k = 0; k < sizeof fams / sizeof *fams; k++) {
    family(w, fams[k].name, fams[k].type, fams[k].help);
    for (size_t i = 0; i < s->n_outputs; i++) {
      unsigned long long v;
      memcpy(&v, (const char *)&s->outputs[i].st + fams[k].off, sizeof v);
      sample_u(w, fams[k].name, "output", s->outputs[i].info.name, v);
    }
  }
  family(w, "engine_output_batches_pending", "gauge",
         "Batches the output holds (waiting or being sent).");
  for (size_t i = 0; i < s->n_outputs; i++)
    sample_u(w, "engine_output_batches_pending", "output", s->outputs[i].info.name,
             s->outputs[i].st.pending);
  family(w, "engine_output_requests_in_flight", "gauge",
         "Attempts (requests) the output has in flight (up to its concurrency).");
  for (size_t i = 0; i < s->n_outputs; i++)
    sample_u(w, "engine_output_requests_in_flight", "output", s->outputs[i].info.name,
             s->outputs[i].st.in_flight);
  family(w, "engine_output_queue_age_seconds", "gauge",
         "Seconds since the oldest batch the output holds (waiting, in flight or retrying) was "
         "handed to it; 0 when it holds none.");
  for (size_t i = 0; i < s->n_outputs; i++)
    sample_d(w, "engine_output_queue_age_seconds", "output", s->outputs[i].info.name,
             s->outputs[i].st.queue_age);
  family(w, "engine_output_failing", "gauge",
         "1 while the output's last attempt failed (it retries with backoff).");
  for (size_t i = 0; i < s->n_outputs; i++)
    sample_u(w, "engine_output_failing", "output", s->outputs[i].info.name,
             (unsigned long long)s->outputs[i].st.failing);
  ack_families(w, s);
}

static void pipeline_families(writer_t *w, const status_t *s) {
  const pipeline_stats_t *p = &s->pipeline;
  one_u(w, "engine_pipeline_loaded", "gauge", "1 while the pipeline thread runs.",
        s->pipeline_loaded ? 1 : 0);
  one_u(w, "engine_batches_total", "counter", "Batches the filters and outputs processed.",
        p->batches);
  one_u(w, "engine_records_in_total", "counter", "Records (log lines) handed to the filters.",
        p->records_in);
  one_u(w, "engine_records_out_total", "counter",
        "Records the filters passed to the outputs (each counted once).", p->records_out);
  one_u(w, "engine_records_dropped", "gauge",
        "records_in - records_out when positive: what the filters dropped, net of what they added.",
        s->records_dropped);
  one_u(w, "engine_records_added", "gauge",
        "records_out - records_in when positive: what the filters added, net of what they dropped.",
        s->records_added);
  one_u(w, "engine_records_unrouted_total", "counter",
        "Records whose `output` field named no existing output.", p->records_unrouted);
  one_u(w, "engine_output_errors_total", "counter", "Failed writes to an output (all types).",
        p->output_errors);
  one_u(w, "engine_dead_letters_total", "counter",
        "Batches written to dead-letter files by filters' on_error policy.", p->dead_letters);
  one_u(w, "engine_pipeline_reloads_total", "counter", "Successful reloads (SIGHUP).", p->reloads);
  one_u(w, "engine_pipeline_reload_failures_total", "counter",
        "Reloads refused (the new file did not load).", p->reload_failures);
  one_u(w, "engine_lua_memory_bytes", "gauge", "Memory the filters' Lua state holds.",
        p->lua_bytes);
}

enum daemon_count { D_READS, D_RESTS, D_RECONNECTS, D_UP };

/* A family of one sample (v), or with several daemons (the list form) one
 * sample per daemon labelled host. */
static void daemon_u(writer_t *w, const status_t *s, const char *name, const char *type,
                     const char *help, unsigned long long v, enum daemon_count what) {
  family(w, name, type, help);
  if (!s->daemons_list) {
    sample_u(w, name, NULL, NULL, v);
    return;
  }
  for (size_t i = 0; i < s->n_daemons; i++) {
    const status_daemon_t *d = &s->daemons[i];
    unsigned long long x = what == D_READS        ? d->reads
                           : what == D_RESTS      ? d->rests
                           : what == D_RECONNECTS ? d->events_reconnects
                                                  : (unsigned long long)(d->ok != 0);
    sample_u(w, name, "host", d->name, x);
  }
}

int metrics_render_prometheus(const status_t *s, size_t max_containers, strbuf_t *out) {
  writer_t w = {out, 0, NULL};
  family(&w, "engine_info", "gauge", "The engine's version, as a label; always 1.");
  sample_u(&w, "engine_info", "version", ENGINE_VERSION, 1);
  reader_families(&w, s);
  container_families(&w, s, max_containers);
  pipeline_families(&w, s);
  filter_families(&w, s);
  output_families(&w, s);
  one_u(&w, "engine_bytes_in_flight", "gauge",
        "Bytes read from Docker and not yet acknowledged by every output.", s->bytes_in_flight);
  one_u(&w, "engine_reader_pauses_total", "counter",
        "Times a reader paused its stream because engine.max_buffered was reached.",
        s->reader_pauses);
  daemon_u(&w, s, "engine_docker_reads_total", "counter",
           "Reads of Docker API answers that brought data (see docker.read_delay).",
           s->docker_reads, D_READS);
  daemon_u(&w, s, "engine_docker_read_rests_total", "counter",
           "Times a slow follow stream waited docker.read_delay before its next read.",
           s->docker_rests, D_RESTS);
  one_d(&w, "engine_checkpoint_age_seconds", "gauge",
        "Seconds since the cursor file last held every acknowledged cursor; -1: not saved.",
        s->checkpoint_on ? s->checkpoint_age : -1);
  daemon_u(&w, s, "engine_events_reconnects_total", "counter",
           "Reconnects of the Docker events stream.", s->events_reconnects, D_RECONNECTS);
  daemon_u(&w, s, "engine_docker_up", "gauge",
           "1 when the Docker daemon answered discovery's last request (ping, list, events).",
           s->docker_ok ? 1 : 0, D_UP);
  one_d(&w, "engine_start_time_seconds", "gauge", "When the engine started (Unix seconds).",
        (double)s->start_ns / 1e9);
  one_u(&w, "engine_libuv_handles", "gauge", "Open libuv handles.",
        (unsigned long long)s->handles_open);
  return w.oom ? -1 : 0;
}

/* --- JSON views --------------------------------------------------------- */

/* Appends doc as compact JSON and frees it. Returns 0, or -1. */
static int put_json(cJSON *doc, int ok, strbuf_t *out) {
  char *text = ok && doc ? cJSON_PrintUnformatted(doc) : NULL;
  cJSON_Delete(doc);
  if (!text) return -1;
  int rc = strbuf_add(out, text, strlen(text));
  free(text);
  return rc;
}

static int add_reader(cJSON *arr, const status_reader_t *r) {
  cJSON *o = cJSON_CreateObject();
  if (!o || !cJSON_AddItemToArray(arr, o)) {
    cJSON_Delete(o);
    return 0;
  }
  char ts[TS_LEN + 1];
  if (r->newest >= 0) ts_format(r->newest, ts);
  return cJSON_AddStringToObject(o, "name", r->name) && cJSON_AddStringToObject(o, "id", r->id) &&
         cJSON_AddStringToObject(o, "host", r->host) &&
         cJSON_AddStringToObject(o, "state", r->state) &&
         (r->newest >= 0 ? cJSON_AddStringToObject(o, "last", ts) != NULL
                         : cJSON_AddNullToObject(o, "last") != NULL) &&
         cJSON_AddNumberToObject(o, "lines", (double)r->lines) &&
         cJSON_AddNumberToObject(o, "bytes", (double)r->bytes) &&
         cJSON_AddNumberToObject(o, "errors", (double)r->errors) &&
         cJSON_AddNumberToObject(o, "repeated", (double)r->repeated) &&
         cJSON_AddNumberToObject(o, "skipped", (double)r->recovered) &&
         cJSON_AddBoolToObject(o, "paused", r->paused);
}

int metrics_render_readers(const status_t *s, strbuf_t *out) {
  cJSON *arr = cJSON_CreateArray();
  int ok = arr != NULL;
  for (size_t i = 0; ok && i < s->n_rd; i++) ok = add_reader(arr, &s->rd[i]);
  return put_json(arr, ok, out);
}

static int add_filter(cJSON *arr, const pipeline_filter_stats_t *f) {
  cJSON *o = cJSON_CreateObject();
  if (!o || !cJSON_AddItemToArray(arr, o)) {
    cJSON_Delete(o);
    return 0;
  }
  return cJSON_AddStringToObject(o, "name", f->name) &&
         cJSON_AddStringToObject(o, "on_error", f->on_error) &&
         cJSON_AddBoolToObject(o, "disabled", f->disabled) &&
         cJSON_AddNumberToObject(o, "calls", (double)f->calls) &&
         cJSON_AddNumberToObject(o, "errors", (double)f->errors) &&
         cJSON_AddNumberToObject(o, "timeouts", (double)f->timeouts) &&
         cJSON_AddNumberToObject(o, "dead_letters", (double)f->dead_letters);
}

static int add_output(cJSON *arr, const status_output_t *so) {
  cJSON *o = cJSON_CreateObject();
  if (!o || !cJSON_AddItemToArray(arr, o)) {
    cJSON_Delete(o);
    return 0;
  }
  int ok = cJSON_AddStringToObject(o, "name", so->info.name) &&
           cJSON_AddStringToObject(o, "type", so->info.type) &&
           cJSON_AddBoolToObject(o, "routed_only", so->info.routed_only);
  if (ok)
    ok = cJSON_AddNumberToObject(o, "sent", (double)so->st.sent) &&
         cJSON_AddNumberToObject(o, "failed", (double)so->st.failed) &&
         cJSON_AddNumberToObject(o, "retried", (double)so->st.retried) &&
         cJSON_AddNumberToObject(o, "dead_letters", (double)so->st.dead_letters) &&
         cJSON_AddNumberToObject(o, "truncated", (double)so->st.truncated) &&
         cJSON_AddNumberToObject(o, "pending", (double)so->st.pending) &&
         cJSON_AddNumberToObject(o, "in_flight", (double)so->st.in_flight) &&
         cJSON_AddNumberToObject(o, "requests", (double)so->st.requests) &&
         cJSON_AddNumberToObject(o, "request_records", (double)so->st.request_records) &&
         cJSON_AddNumberToObject(o, "request_bytes", (double)so->st.request_bytes) &&
         cJSON_AddNumberToObject(o, "queue_age", so->st.queue_age) &&
         cJSON_AddBoolToObject(o, "failing", so->st.failing);
  if (ok && so->st.acks)
    ok = cJSON_AddNumberToObject(o, "published", (double)so->st.published) &&
         cJSON_AddNumberToObject(o, "acked", (double)so->st.acked) &&
         cJSON_AddNumberToObject(o, "duplicates", (double)so->st.duplicates) &&
         cJSON_AddNumberToObject(o, "acks_pending", (double)so->st.pending_acks) &&
         cJSON_AddNumberToObject(o, "reconnects", (double)so->st.reconnects);
  return ok;
}

int metrics_render_pipeline(const status_t *s, strbuf_t *out) {
  const pipeline_stats_t *p = &s->pipeline;
  cJSON *doc = cJSON_CreateObject();
  cJSON *filters = cJSON_CreateArray(), *outputs = cJSON_CreateArray();
  int ok = doc && filters && outputs;
  if (ok) {
    cJSON_AddItemToObject(doc, "filters", filters);
    cJSON_AddItemToObject(doc, "outputs", outputs);
  } else {
    cJSON_Delete(filters);
    cJSON_Delete(outputs);
  }
  ok = ok && cJSON_AddBoolToObject(doc, "loaded", s->pipeline_loaded) &&
       cJSON_AddNumberToObject(doc, "batches", (double)p->batches) &&
       cJSON_AddNumberToObject(doc, "records_in", (double)p->records_in) &&
       cJSON_AddNumberToObject(doc, "records_out", (double)p->records_out) &&
       cJSON_AddNumberToObject(doc, "reloads", (double)p->reloads);
  for (size_t i = 0; ok && i < s->n_filters; i++) ok = add_filter(filters, &s->filters[i]);
  for (size_t i = 0; ok && i < s->n_outputs; i++) ok = add_output(outputs, &s->outputs[i]);
  return put_json(doc, ok, out);
}
