/* daemon.h - one Docker (or Podman) daemon the engine follows.
 *
 * The engine follows one daemon (docker = { host = ... }) or several
 * (docker = { { host = ... }, { host = ... } }). Each has a daemon_t: its
 * name (docker[i].name, unique; records carry it as `host` in the list
 * form, metrics as the `host` label), its API client (docker.h), its
 * discovery (discovery.h: ping, list, events, reconcile, with its own
 * backoff and readiness) and the counts that outlive its discovery. A
 * reader points at the daemon its container belongs to, and the registry
 * and the checkpoint key containers by daemon name and id (container.h,
 * container_key), so equal ids on two daemons never collide.
 *
 * One daemon down never stops the others: with several daemons, a daemon
 * that cannot be reached at start is retried with backoff like a broken
 * events stream (discovery.h), and /ready names the daemons that fail.
 * With one daemon, or in a backfill, a daemon that cannot be reached at
 * start stops the engine, as it always did.
 *
 * The engine (engine.c) owns the daemons through runtime_t (rt->daemons):
 * made before the loop runs, each discovery started with discovery_start
 * and stopped at the stop's input phase (engine_stop.c), the clients
 * closed in the closing phase (every handle through its close callback,
 * counted: handles.h), freed after the loop. This module holds no
 * discovery logic, so that discovery, readers and the registry may all
 * depend on it. Loop thread only. */
#ifndef ENGINE_DAEMON_H
#define ENGINE_DAEMON_H

#include <stddef.h>
#include "config.h"
#include "docker.h"

struct discovery;

typedef struct daemon {
  char name[CONFIG_DAEMON_NAME_MAX + 1];
  size_t index;                    /* its place in rt->daemons (docker[index + 1]) */
  docker_t *docker;                /* NULL once closed */
  struct discovery *discovery;     /* its discovery (discovery.h), started and
                                   stopped by the engine; NULL before and after */
  unsigned long reconnects;        /* events-stream reconnects (discovery.c) */
  unsigned long long reads, rests; /* docker_reads/rests of a closed client */
  void (*closed)(void *ud);        /* daemon_close in progress */
  void *closed_ud;
} daemon_t;

/* A daemon for cfg, its client made (docker_new). Returns NULL with a
 * message in err (the daemon's name first) when the client cannot be made
 * (a TLS file unreadable) or memory runs out. */
daemon_t *daemon_new(uv_loop_t *loop, size_t index, const config_daemon_t *cfg, char *err,
                     size_t errlen);

/* Events-stream reconnects since start (its discovery counts them). */
unsigned long daemon_reconnects(const daemon_t *d);

/* docker_reads and docker_rests of its client, kept once it closed. */
unsigned long long daemon_reads(const daemon_t *d);
unsigned long long daemon_rests(const daemon_t *d);

/* Closes its client (after its discovery and its readers closed);
 * closed(ud) once its handles are closed. */
void daemon_close(daemon_t *d, void (*closed)(void *ud), void *ud);

/* Frees a daemon whose client is closed (or that never ran). NULL is
 * ignored. */
void daemon_free(daemon_t *d);

#endif
