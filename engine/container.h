/* container.h - what the engine knows of one container (from inspect).
 *
 * Shared, immutable after creation, reference-counted with atomic counts:
 * readers hold one reference, every batch in flight holds one, so the
 * pipeline thread can read it while the loop thread drops its own. */
#ifndef ENGINE_CONTAINER_H
#define ENGINE_CONTAINER_H

#include <stdatomic.h>
#include <stddef.h>

/* Room for a daemon name (config.h: CONFIG_DAEMON_NAME_MAX) and its NUL. */
#define CONTAINER_HOST_MAX 64
/* Room for a container key: "<daemon name>/<id>" and its NUL. */
#define CONTAINER_KEY_MAX (CONTAINER_HOST_MAX + 65)

typedef struct container {
  atomic_int refs;               /* use container_ref/unref */
  char id[65];                   /* full id */
  char host[CONTAINER_HOST_MAX]; /* the daemon's name (daemon.h), "" when
                         made by hand */
  char key[CONTAINER_KEY_MAX];   /* "<host>/<id>" (container_key): how the
                         registry and the checkpoint know it; the id alone
                         while host is "" */
  int host_field;                /* records carry `host` (docker given as a list) */
  char *name;                    /* without the leading '/' */
  char *image;                   /* Config.Image (the name the user gave) */
  char **label_keys;             /* n_labels keys and values, sorted by key */
  char **label_values;
  char **label_pairs; /* "key=value", for selection */
  size_t n_labels;
  int tty;         /* Config.Tty: raw stream instead of frames */
  int running;     /* State.Running at inspect time */
  int auto_remove; /* HostConfig.AutoRemove (docker run --rm): the daemon
                         removes it, and its log, once it exits */
  int log_local;   /* HostConfig.LogConfig.Type is "local": the daemon's
                         follow stream may skip what the driver rotates
                         (reader.c checks a quiet stream against the log) */
} container_t;

/* Builds a container from an inspect document (a cJSON object, passed as
 * void* to keep cJSON out of this header). Returns NULL with a message in
 * err when a required field (Id) is missing or memory runs out. The new
 * container has one reference. */
container_t *container_from_inspect(const void *cjson, char *err, size_t errlen);

/* Builds a container by hand (tests, fake sources). labels: n "key=value". */
container_t *container_new(const char *id, const char *name, const char *image,
                           const char *const *labels, size_t n, int tty);

/* The same container under another name (a rename): a new container with
 * one reference, or NULL when out of memory. c is left as it is. */
container_t *container_renamed(const container_t *c, const char *name);

/* Sets the daemon c comes from (before c is shared): its host and key;
 * field: records carry `host`. */
void container_set_host(container_t *c, const char *host, int field);

/* Writes "<host>/<id>" into key (truncated to CONTAINER_KEY_MAX). */
void container_key(char key[CONTAINER_KEY_MAX], const char *host, const char *id);

container_t *container_ref(container_t *c);
/* Drops a reference; frees on the last. NULL is ignored. */
void container_unref(container_t *c);

#endif
