/* config.c - the engine's settings and their defaults (see config.h). */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "decode.h"

/* Fills c with the documented defaults; the selection starts empty (every
 * container). Can't fail. */
void config_defaults(config_t *c) {
  memset(c, 0, sizeof *c);
  c->daemons[0].name = strdup("local"); /* NULL (no memory): engine_run fails */
  c->n_daemons = 1;
  c->since_start = 0;
  c->batch_max_lines = 1000;
  c->batch_max_bytes = 1024 * 1024;
  c->flush_interval = 1.0;
  c->read_delay = 0.5;
  c->attach_rm = 1;
  c->cycle = 300;
  c->stop_timeout = 10;
  c->filter_timeout = 5;
  c->filter_isolation = 1; /* "process" */
  c->reconcile_interval = 30;
  c->backoff_initial = 0.5;
  c->backoff_max = 30;
  c->resume_margin = 1.0;
  c->stats_interval = 0;
  c->state_dir = strdup(ENGINE_STATE_DIR_DEFAULT); /* NULL (no memory): in memory only */
  c->checkpoint_interval = 1.0;
  c->fsync = 0;
  c->max_buffered = 4u * 1024 * 1024;
  c->max_readers = 4096;
  c->max_events_per_second = 1000;
  c->line_max = DECODE_LINE_MAX_DEFAULT;
  c->frame_max = DECODE_FRAME_MAX_DEFAULT;
  c->log_level = -1;
  c->metrics_listen = NULL;
  c->metrics_max_containers = 200;
}

void config_free_daemons(config_t *c) {
  for (size_t i = 0; i < c->n_daemons; i++) {
    config_daemon_t *d = &c->daemons[i];
    free(d->name);
    free(d->host);
    free(d->tls_ca);
    free(d->tls_cert);
    free(d->tls_key);
    memset(d, 0, sizeof *d);
  }
  c->n_daemons = 0;
}

/* Releases the strings and the selection rules. c can be filled with
 * config_defaults again afterwards. */
void config_free(config_t *c) {
  config_free_daemons(c);
  free(c->state_dir);
  free(c->metrics_listen);
  c->metrics_listen = NULL;
  selection_free(&c->select);
  memset(&c->select, 0, sizeof c->select);
}
