/* pipeline_feed - runs a pipeline.lua on lines read from a file, for specs.
 *
 *   pipeline_feed [--lockstep] [--abort-when FILE] [--finish-when FILE]
 *                 [--reload-after N FILE] [--reopen-after N] PIPELINE.lua INPUT
 *
 * INPUT has one line per record: name TAB stream TAB RFC3339Nano-time TAB
 * text (the text is the rest of the line, any bytes but '\n'). stream is
 * "stdout" or "stderr", with ",truncated" to flag the record truncated
 * and ",occ=N" to give it occurrence N (batch_rec_t.occ, default 0). A
 * blank line ends a batch, and so does a change of container name. A line
 * "@labels TAB name TAB key=value ..." gives a container its labels (before
 * its first record). Containers get the id "id-<name>" and the image "img".
 * A line "@host TAB name TAB daemon" gives a container its daemon's name,
 * carried by its records as `host` (container_set_host, as when the
 * engine follows a list of daemons; before its first record).
 *
 * The pipeline's records go to stdout. At the end the stats go to stderr as
 * one line "stats batches=N records_in=N records_out=N filter_errors=N
 * filter_timeouts=N output_errors=N maxrss_kb=N" (maxrss_kb: the peak
 * resident set), and the tool exits 0; it exits 2 with the message when the
 * pipeline does not load, 1 on any other failure.
 *
 * --lockstep waits for each batch to be processed before reading the next
 * (so memory use shows the pipeline's own, not the queue's).
 * --abort-when FILE submits everything, waits until FILE exists (a filter
 * creates it), then calls pipeline_abort.
 * --finish-when FILE submits everything, then waits until FILE exists (a
 * filter or timer creates it) before ending the input.
 * --reload-after N FILE calls pipeline_reload(FILE) once N batches were
 * submitted (with --lockstep: processed); --reopen-after N calls
 * pipeline_reopen likewise.
 *
 * The stats line also has records_unrouted, dead_letters, reloads and
 * reload_failures; then one line per filter: "filter NAME calls=N errors=N
 * timeouts=N dead_letters=N disabled=0|1". */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "batch.h"
#include "config.h"
#include "container.h"
#include "decode.h"
#include "pipeline.h"
#include "timestamp.h"
#include "handles.h"

#define MAX_CONTAINERS 64
#define MAX_LABELS 32

typedef struct feed {
  pipeline_t *p;
  container_t *containers[MAX_CONTAINERS];
  size_t n_containers;
  batch_t *batch;
  unsigned long long submitted;
  int lockstep;
  int exited;
  unsigned long long reload_after, reopen_after;
  const char *reload_path;
  atomic_ullong acked;     /* batches every output took */
} feed_t;

static container_t *find_container(feed_t *f, const char *name, const char *const *labels,
                                   size_t n_labels)
{
  char id[300];
  container_t *c;
  size_t i;

  for (i = 0; i < f->n_containers; i++)
    if (strcmp(f->containers[i]->name, name) == 0)
      return f->containers[i];
  if (f->n_containers == MAX_CONTAINERS)
    return NULL;
  snprintf(id, sizeof id, "id-%s", name);
  c = container_new(id, name, "img", labels, n_labels, 0);
  if (c != NULL)
    f->containers[f->n_containers++] = c;
  return c;
}

/* Waits until every batch submitted so far went through the filters and
 * every output took it. */
static void wait_processed(feed_t *f)
{
  while (atomic_load(&f->acked) < f->submitted)
    usleep(200);
}

/* The pipeline's done callback: a batch every output took. */
static void on_done(void *ud, batch_t *b)
{
  feed_t *f = ud;

  atomic_fetch_add(&f->acked, 1);
  batch_free(b);
}

static void *loop_thread(void *arg)
{
  uv_run(arg, UV_RUN_DEFAULT);
  return NULL;
}

static void submit(feed_t *f)
{
  if (f->batch == NULL)
    return;
  pipeline_submit(f->p, f->batch);
  f->batch = NULL;
  f->submitted++;
  if (f->lockstep)
    wait_processed(f);
  if (f->reload_path != NULL && f->submitted == f->reload_after) {
    pipeline_reload(f->p, f->reload_path);
    f->reload_path = NULL;
  }
  if (f->reopen_after != 0 && f->submitted == f->reopen_after)
    pipeline_reopen(f->p);
}

/* "@labels TAB name TAB k=v TAB k=v ..." */
static int labels_line(feed_t *f, char *line)
{
  const char *labels[MAX_LABELS];
  size_t n = 0;
  char *name, *save = NULL, *tok;

  strtok_r(line, "\t", &save); /* "@labels" */
  name = strtok_r(NULL, "\t", &save);
  if (name == NULL)
    return -1;
  while ((tok = strtok_r(NULL, "\t", &save)) != NULL && n < MAX_LABELS)
    labels[n++] = tok;
  return find_container(f, name, labels, n) ? 0 : -1;
}

/* "@host TAB name TAB daemon" */
static int host_line(feed_t *f, char *line)
{
  char *name, *host, *save = NULL;
  container_t *c;

  strtok_r(line, "\t", &save); /* "@host" */
  name = strtok_r(NULL, "\t", &save);
  host = strtok_r(NULL, "\t", &save);
  if (name == NULL || host == NULL || (c = find_container(f, name, NULL, 0)) == NULL)
    return -1;
  container_set_host(c, host, 1);
  return 0;
}

/* One record line. Returns 0 or -1 (malformed). */
static int record_line(feed_t *f, char *line, size_t len)
{
  char *t1, *t2, *t3, *text;
  container_t *c;
  int64_t ts;
  size_t used;
  int stream;
  unsigned flags = 0;

  t1 = memchr(line, '\t', len);
  t2 = t1 ? memchr(t1 + 1, '\t', len - (size_t)(t1 + 1 - line)) : NULL;
  t3 = t2 ? memchr(t2 + 1, '\t', len - (size_t)(t2 + 1 - line)) : NULL;
  if (t3 == NULL)
    return -1;
  *t1 = *t2 = *t3 = '\0';
  text = t3 + 1;
  if (strncmp(t1 + 1, "stderr", 6) == 0)
    stream = DECODE_STDERR;
  else if (strncmp(t1 + 1, "stdout", 6) == 0)
    stream = DECODE_STDOUT;
  else
    return -1;
  if (strstr(t1 + 1, ",truncated") != NULL)
    flags |= DECODE_TRUNCATED;
  const char *occ = strstr(t1 + 1, ",occ=");
  if (ts_parse(t2 + 1, strlen(t2 + 1), &ts, &used) < 0 || used != strlen(t2 + 1))
    return -1;
  c = find_container(f, line, NULL, 0);
  if (c == NULL)
    return -1;
  if (f->batch != NULL && f->batch->container != c)
    submit(f);
  if (f->batch == NULL && (f->batch = batch_new(c)) == NULL)
    return -1;
  if (batch_add(f->batch, ts, stream, flags, text, len - (size_t)(text - line)) != 0)
    return -1;
  if (occ != NULL)
    f->batch->recs[f->batch->n - 1].occ = (uint32_t)strtoul(occ + 5, NULL, 10);
  return 0;
}

static int feed_file(feed_t *f, const char *path)
{
  FILE *in = fopen(path, "rb");
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  int rc = 0;
  unsigned long lineno = 0;

  if (in == NULL) {
    perror(path);
    return -1;
  }
  while (rc == 0 && (n = getline(&line, &cap, in)) >= 0) {
    lineno++;
    if (n > 0 && line[n - 1] == '\n')
      line[--n] = '\0';
    if (n == 0)
      submit(f);
    else if (strncmp(line, "@labels\t", 8) == 0)
      rc = labels_line(f, line);
    else if (strncmp(line, "@host\t", 6) == 0)
      rc = host_line(f, line);
    else
      rc = record_line(f, line, (size_t)n);
    if (rc < 0)
      fprintf(stderr, "%s:%lu: malformed line\n", path, lineno);
  }
  submit(f);
  free(line);
  fclose(in);
  return rc;
}

/* The process's peak resident set in KiB (VmHWM: unlike ru_maxrss it does
 * not carry over the forking parent's peak), or -1. */
static long peak_rss_kb(void)
{
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = -1;

  if (f == NULL)
    return -1;
  while (fgets(line, sizeof line, f) != NULL)
    if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
      break;
  fclose(f);
  return kb;
}

static void on_exit_cb(void *ud)
{
  feed_t *f = ud;

  f->exited = 1;
  pipeline_close(f->p);
  pipeline_close_outputs(f->p, 10000, NULL, NULL); /* local outputs: done at once */
}

int main(int argc, char **argv)
{
  feed_t f = { 0 };
  config_t cfg;
  uv_loop_t loop;
  pthread_t looper;
  pipeline_stats_t st;
  pipeline_filter_stats_t fs[32];
  const char *abort_when = NULL, *finish_when = NULL, *lua_dir = getenv("ENGINE_LUA_DIR");
  char err[1024];
  int i = 1, rc = 0;
  size_t k, nf;

  for (; i < argc && argv[i][0] == '-'; i++) {
    if (strcmp(argv[i], "--lockstep") == 0)
      f.lockstep = 1;
    else if (strcmp(argv[i], "--abort-when") == 0 && i + 1 < argc)
      abort_when = argv[++i];
    else if (strcmp(argv[i], "--finish-when") == 0 && i + 1 < argc)
      finish_when = argv[++i];
    else if (strcmp(argv[i], "--reload-after") == 0 && i + 2 < argc) {
      f.reload_after = strtoull(argv[++i], NULL, 10);
      f.reload_path = argv[++i];
    } else if (strcmp(argv[i], "--reopen-after") == 0 && i + 1 < argc)
      f.reopen_after = strtoull(argv[++i], NULL, 10);
    else
      break;
  }
  if (argc - i != 2) {
    fprintf(stderr, "usage: pipeline_feed [--lockstep] [--abort-when FILE] [--finish-when FILE] "
                    "[--reload-after N FILE] [--reopen-after N] PIPELINE.lua INPUT\n");
    return 1;
  }
  config_defaults(&cfg);
  f.p = pipeline_load(argv[i], lua_dir ? lua_dir : ENGINE_LUA_DIR, &cfg, err, sizeof err);
  if (f.p == NULL) {
    fprintf(stderr, "%s\n", err);
    config_free(&cfg);
    return 2;
  }
  uv_loop_init(&loop);
  atomic_init(&f.acked, 0);
  pipeline_set_done(f.p, on_done, &f);
  if (pipeline_start(f.p, &loop, on_exit_cb, &f) < 0) {
    fprintf(stderr, "pipeline_start failed\n");
    return 1;
  }
  /* the loop runs beside the feeding: the outputs deliver as batches come */
  if (pthread_create(&looper, NULL, loop_thread, &loop) != 0) {
    fprintf(stderr, "cannot start the loop's thread\n");
    return 1;
  }
  if (feed_file(&f, argv[i + 1]) < 0)
    rc = 1;
  if (abort_when != NULL) {
    while (access(abort_when, F_OK) != 0)
      usleep(1000);
    pipeline_abort(f.p);
  }
  if (finish_when != NULL)
    while (access(finish_when, F_OK) != 0)
      usleep(1000);
  pipeline_finish(f.p);
  pthread_join(looper, NULL);
  if (!f.exited || handles_live() != 0 || uv_loop_close(&loop) != 0) {
    fprintf(stderr, "handles left open (exited=%d live=%ld)\n", f.exited, handles_live());
    rc = 1;
  }
  pipeline_stats(f.p, &st);
  fprintf(stderr,
          "stats batches=%llu records_in=%llu records_out=%llu filter_errors=%llu "
          "filter_timeouts=%llu output_errors=%llu records_unrouted=%llu dead_letters=%llu "
          "reloads=%llu reload_failures=%llu maxrss_kb=%ld\n",
          st.batches, st.records_in, st.records_out, st.filter_errors, st.filter_timeouts,
          st.output_errors, st.records_unrouted, st.dead_letters, st.reloads,
          st.reload_failures, peak_rss_kb());
  nf = pipeline_filter_stats(f.p, fs, sizeof fs / sizeof fs[0]);
  for (k = 0; k < nf && k < sizeof fs / sizeof fs[0]; k++)
    fprintf(stderr, "filter %s calls=%llu errors=%llu timeouts=%llu dead_letters=%llu disabled=%d\n",
            fs[k].name, fs[k].calls, fs[k].errors, fs[k].timeouts, fs[k].dead_letters,
            fs[k].disabled);
  pipeline_free(f.p);
  for (k = 0; k < f.n_containers; k++)
    container_unref(f.containers[k]);
  config_free(&cfg);
  return rc;
}
