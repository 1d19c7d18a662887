/* daemon.c - one followed Docker daemon (see daemon.h). */
#include <stdio.h>
#include <stdlib.h>
#include "daemon.h"

daemon_t *daemon_new(uv_loop_t *loop, size_t index, const config_daemon_t *cfg, char *err,
                     size_t errlen) {
  char why[480];
  const char *name = cfg->name ? cfg->name : "local";
  daemon_t *d = calloc(1, sizeof *d);
  if (!d) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  snprintf(d->name, sizeof d->name, "%s", name);
  d->index = index;
  docker_tls_t tls = {cfg->tls_ca, cfg->tls_cert, cfg->tls_key};
  d->docker = docker_new(loop, cfg->host, &tls, why, sizeof why);
  if (!d->docker) {
    snprintf(err, errlen, "daemon %s: %s", d->name, why);
    free(d);
    return NULL;
  }
  return d;
}

unsigned long daemon_reconnects(const daemon_t *d) { return d->reconnects; }

unsigned long long daemon_reads(const daemon_t *d) {
  return d->docker ? docker_reads(d->docker) : d->reads;
}

unsigned long long daemon_rests(const daemon_t *d) {
  return d->docker ? docker_rests(d->docker) : d->rests;
}

static void docker_closed(void *ud) {
  daemon_t *d = ud;
  void (*cb)(void *) = d->closed;
  void *cb_ud = d->closed_ud;
  d->closed = NULL;
  if (cb) cb(cb_ud);
}

void daemon_close(daemon_t *d, void (*closed)(void *), void *ud) {
  if (!d->docker) {
    if (closed) closed(ud);
    return;
  }
  d->reads = docker_reads(d->docker);
  d->rests = docker_rests(d->docker);
  docker_t *c = d->docker;
  d->docker = NULL;
  d->closed = closed;
  d->closed_ud = ud;
  docker_close(c, docker_closed, d);
}

void daemon_free(daemon_t *d) { free(d); }
