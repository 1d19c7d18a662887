/* config.h - the settings a pipeline.lua gives the engine, with defaults.
 *
 * Filled by pipeline_load from the table pipeline.lua returns (validated by
 * lua/engine/pipeline.lua first, so C only copies checked values). Durations
 * are in seconds. Owned by the engine; config_free releases the strings. */
#ifndef ENGINE_CONFIG_H
#define ENGINE_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include "select.h"

#define ENGINE_STATE_DIR_DEFAULT "/var/lib/engine"

/* The longest daemon name (docker[i].name), without its NUL. */
#define CONFIG_DAEMON_NAME_MAX 63
/* Daemons one engine follows at most. */
#define CONFIG_DAEMONS_MAX 16

/* One Docker daemon to follow (docker, or docker[i] in the list form). */
typedef struct config_daemon {
  char *name; /* given, or derived from the host (lua/engine/pipeline.lua) */
  char *host; /* NULL: $DOCKER_HOST, else the first socket found (docker.h) */
  char *tls_ca, *tls_cert, *tls_key; /* tls; NULL: $DOCKER_TLS_VERIFY and
                               $DOCKER_CERT_PATH */
} config_daemon_t;

typedef struct config {
  config_daemon_t daemons[CONFIG_DAEMONS_MAX];
  size_t n_daemons;  /* at least 1 (config_defaults: one daemon "local") */
  int daemons_list;  /* docker was given as a list: records carry `host` */
  double read_delay; /* 0.5 s: a slow follow stream is read again after
                               this long (docker.h) */
  int attach_rm;     /* 1: a --rm container is attached to before it
                               starts (docker.attach; reader.h) */
  selection_t select;
  int since_start;               /* containers running at start with no cursor:
                               1 = read from the engine's start, 0 = whole history */
  size_t batch_max_lines;        /* 1000 */
  size_t batch_max_bytes;        /* 1 MiB */
  double flush_interval;         /* 1.0 */
  double cycle;                  /* 300: lifetime of one follow stream */
  double stop_timeout;           /* 10 */
  double filter_timeout;         /* 5: one filter call */
  int filter_isolation;          /* engine.filter_isolation: 1 "process" (the
                               default: the filters run in a supervised
                               process), 0 "thread" (on the pipeline thread) */
  double reconcile_interval;     /* 30: periodic container list */
  double backoff_initial;        /* 0.5 */
  double backoff_max;            /* 30 */
  double resume_margin;          /* 1.0 */
  size_t line_max;               /* 1 MiB */
  size_t frame_max;              /* 1 MiB */
  char *state_dir;               /* ENGINE_STATE_DIR_DEFAULT: cursors saved here;
                               NULL: in memory only */
  double checkpoint_interval;    /* 1: seconds between saves */
  int fsync;                     /* 0: fsync each save */
  size_t max_buffered;           /* 4 MiB: bytes in flight before readers pause */
  size_t max_readers;            /* 4096: live readers at most */
  size_t max_events_per_second;  /* 1000: container events handled per second */
  double stats_interval;         /* 0: off; else log a stats line this often */
  int backfill;                  /* read history between the two times and exit */
  int64_t backfill_since;        /* ns */
  int64_t backfill_until;        /* ns; 0: up to now */
  int log_level;                 /* -1: not set by the pipeline */
  char *metrics_listen;          /* NULL: no metrics endpoint; else "host:port" */
  size_t metrics_max_containers; /* 200: containers with a label of their own */
} config_t;

/* Fills c with the defaults above. Can't fail. */
void config_defaults(config_t *c);
void config_free(config_t *c);
/* Releases the daemons' strings and leaves none (n_daemons 0). */
void config_free_daemons(config_t *c);

#endif
