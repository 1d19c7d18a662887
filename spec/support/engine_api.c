/* engine_api.c - drives the library API (engine.h) for the stop specs.
 *
 *   engine_api PIPELINE.lua stop-before-run
 *   engine_api PIPELINE.lua stop-from-thread MS
 *
 * stop-before-run: engine_stop, then engine_run, which must return at once.
 * stop-from-thread: engine_run on this thread; another thread sleeps MS ms
 * and calls engine_stop twice (the second must change nothing).
 * Prints one line "result: {JSON}" on stderr (stdout carries the records):
 * the return code, the reader counts, open libuv
 * handles and the milliseconds from the first engine_stop to the return of
 * engine_run. Exit 0 when run returned 0, else 1; 2 on bad arguments. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "engine.h"

static engine_t *engine;
static long delay_ms;
static struct timespec stopped_at;

static double since_ms(const struct timespec *t0) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)(now.tv_sec - t0->tv_sec) * 1e3 + (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

static void *stopper(void *arg) {
  struct timespec d = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
  nanosleep(&d, NULL);
  clock_gettime(CLOCK_MONOTONIC, &stopped_at);
  engine_stop(engine);
  engine_stop(engine);
  return NULL;
}

int main(int argc, char **argv) {
  char err[1024];
  if (argc < 3) {
    fprintf(stderr, "usage: engine_api PIPELINE.lua stop-before-run|stop-from-thread MS\n");
    return 2;
  }
  engine = engine_new();
  if (!engine || engine_load(engine, argv[1], NULL, err, sizeof err) != 0) {
    fprintf(stderr, "engine_api: %s\n", engine ? err : "out of memory");
    engine_free(engine);
    return 2;
  }
  pthread_t th;
  int threaded = 0;
  if (!strcmp(argv[2], "stop-before-run")) {
    clock_gettime(CLOCK_MONOTONIC, &stopped_at);
    engine_stop(engine);
  } else if (!strcmp(argv[2], "stop-from-thread") && argc > 3) {
    delay_ms = atol(argv[3]);
    if (pthread_create(&th, NULL, stopper, NULL) != 0) return 1;
    threaded = 1;
  } else {
    fprintf(stderr, "engine_api: unknown mode '%s'\n", argv[2]);
    engine_free(engine);
    return 2;
  }
  int rc = engine_run(engine, 0);
  struct timespec end;
  clock_gettime(CLOCK_MONOTONIC, &end);
  if (threaded) pthread_join(th, NULL); /* stopped_at is written by the stopper */
  double ms = -since_ms(&end) + since_ms(&stopped_at);
  engine_stats_t s;
  engine_stats(engine, &s);
  fprintf(stderr, "result: {\"rc\":%d,\"live\":%llu,\"started\":%llu,\"stopped\":%llu,\"cycled\":%llu,"
         "\"handles\":%ld,\"stop_ms\":%.1f,\"records\":%llu}\n",
         rc, (unsigned long long)s.readers_live, (unsigned long long)s.readers_started,
         (unsigned long long)s.readers_stopped, (unsigned long long)s.readers_cycled,
         s.handles_open, ms, (unsigned long long)s.records_out);
  if (rc != 0) fprintf(stderr, "engine_api: %s\n", engine_error(engine));
  engine_free(engine);
  return rc == 0 ? 0 : 1;
}
