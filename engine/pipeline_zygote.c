/* pipeline_zygote.c - the zygote: the process the filter processes fork
 * from (engine.filter_isolation = "process").
 *
 * A filter process (pipeline_worker.c) is a copy of the loaded program.
 * Forking it from the pipeline thread forks a multi-threaded process, and
 * the ASan and TSan runtimes do not take their allocators' locks around
 * fork(): a child forked while another thread allocates can hang in its
 * first malloc. So pipeline_prefork forks the zygote first, while the
 * process has no thread but the caller's (engine_run calls it before
 * anything starts a thread: the pipeline thread, libuv's pool, the
 * outputs' libraries). The zygote is single-threaded, holds the loaded
 * program and, on request over a socket pair, forks a filter process and
 * passes back its pid and the engine's end of its channel (SCM_RIGHTS);
 * from there the pipeline thread talks to the filter process directly, as
 * to one it forked itself.
 *
 * Who reaps: a filter process is the zygote's child, and the zygote reaps
 * it, only when the pipeline thread asks (ZMSG_WAIT, after killing it or
 * seeing its channel end) and answers with its wait status. Until then the
 * pid stays a zombie, so the thread's kill(pid) can never reach another
 * process.
 *
 * A reload: the pipeline thread loads the new program, then sends the
 * zygote the same text (the file is read once) and a memfd for the
 * filters' counts (ZMSG_LOAD); the zygote loads it in turn, maps the counts
 * as the program's (what its filter processes count is the engine's), and
 * frees the old program. When that fails, filter processes fork from the
 * pipeline thread until the next reload that the zygote loads.
 *
 * Its life: PR_SET_PDEATHSIG ends it with the thread that forked it; it
 * ignores the signals the engine handles, keeps only stdio, its channel and
 * the filters' dead-letter files open. The end of its channel
 * (pl_zygote_stop: at the end of the pipeline thread, or pipeline_free)
 * ends it: it kills and reaps the filter processes it still has, then
 * exits, and the engine reaps it. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lua.h>

#include "log.h"
#include "pipeline_internal.h"

enum {
  ZMSG_FORK = 1, /* -> ZMSG_OK {pid} and the channel's fd */
  ZMSG_WAIT,     /* {pid} -> ZMSG_OK {status} */
  ZMSG_LOAD,     /* {path, source} and the counts' fd -> ZMSG_OK, or ZMSG_FAIL {message} */
  ZMSG_OK = 16,
  ZMSG_FAIL
};

typedef struct zhead {
  uint32_t type, len;
} zhead_t;

/* A message larger than this is a broken channel. */
#define ZMSG_MAX ((uint32_t)1 << 28)
/* Children the zygote keeps unreaped at most (one filter process runs at a
 * time; a few more while the pipeline thread reaps). */
#define ZYGOTE_CHILDREN 64

/* ---- the channel ---- */

/* Sends a message (head, then the payload's two parts), with pass_fd (-1:
 * none) attached to its head. */
static int zsend(int fd, uint32_t type, const void *a, uint32_t alen, const void *b, uint32_t blen,
                 int pass_fd) {
  zhead_t h = {type, alen + blen};
  struct iovec iov = {&h, sizeof h};
  struct msghdr m = {0};
  union {
    struct cmsghdr c;
    char buf[CMSG_SPACE(sizeof(int))];
  } u;
  ssize_t w;

  memset(&u, 0, sizeof u);
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  if (pass_fd >= 0) {
    m.msg_control = u.buf;
    m.msg_controllen = sizeof u.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
  }
  while ((w = sendmsg(fd, &m, MSG_NOSIGNAL)) < 0 && errno == EINTR)
    ;
  if (w <= 0) return -1;
  if ((size_t)w < sizeof h && pl_send_all(fd, (char *)&h + w, sizeof h - (size_t)w) != 0) return -1;
  if (alen && pl_send_all(fd, a, alen) != 0) return -1;
  if (blen && pl_send_all(fd, b, blen) != 0) return -1;
  return 0;
}

/* Reads a message's head, and the descriptor attached to it in *got (-1:
 * none; close-on-exec). Returns 0, or -1 (the channel ended or broke). */
static int zrecv_head(int fd, zhead_t *h, int *got) {
  struct iovec iov = {h, sizeof *h};
  struct msghdr m = {0};
  union {
    struct cmsghdr c;
    char buf[CMSG_SPACE(sizeof(int))];
  } u;
  ssize_t r;

  *got = -1;
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = u.buf;
  m.msg_controllen = sizeof u.buf;
  while ((r = recvmsg(fd, &m, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
    ;
  if (r <= 0) return -1;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c != NULL; c = CMSG_NXTHDR(&m, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
        c->cmsg_len == CMSG_LEN(sizeof(int)))
      memcpy(got, CMSG_DATA(c), sizeof(int));
  if ((size_t)r < sizeof *h && pl_recv_all(fd, (char *)h + r, sizeof *h - (size_t)r) != 0) {
    if (*got >= 0) close(*got);
    *got = -1;
    return -1;
  }
  if (h->len > ZMSG_MAX) {
    if (*got >= 0) close(*got);
    *got = -1;
    return -1;
  }
  return 0;
}

/* Reads a message: head, payload (malloc'd into *data, NUL-terminated),
 * descriptor. Returns 0, or -1 (nothing to free). */
static int zrecv(int fd, zhead_t *h, char **data, int *got) {
  if (zrecv_head(fd, h, got) != 0) return -1;
  if ((*data = malloc((size_t)h->len + 1)) == NULL || pl_recv_all(fd, *data, h->len) != 0) {
    free(*data);
    *data = NULL;
    if (*got >= 0) close(*got);
    *got = -1;
    return -1;
  }
  (*data)[h->len] = '\0';
  return 0;
}

/* ---- the zygote's side ---- */

typedef struct zygote {
  pipeline_t *p;
  int fd;
  pid_t self;
  pid_t kids[ZYGOTE_CHILDREN];
  size_t n_kids;
} zygote_t;

static void z_fork(zygote_t *z) {
  int sv[2];
  pid_t pid;
  int32_t v;

  if (z->n_kids == ZYGOTE_CHILDREN || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    if (zsend(z->fd, ZMSG_FAIL, NULL, 0, NULL, 0, -1) != 0) _exit(0);
    return;
  }
  pid = fork();
  if (pid == 0) {
    close(z->fd);
    close(sv[0]);
    pl_worker_main(z->p, z->p->prog, sv[1], z->self);
  }
  close(sv[1]);
  if (pid < 0) {
    close(sv[0]);
    if (zsend(z->fd, ZMSG_FAIL, NULL, 0, NULL, 0, -1) != 0) _exit(0);
    return;
  }
  z->kids[z->n_kids++] = pid;
  v = (int32_t)pid;
  if (zsend(z->fd, ZMSG_OK, &v, sizeof v, NULL, 0, sv[0]) != 0) _exit(0);
  close(sv[0]);
}

static void z_wait(zygote_t *z, const char *data, uint32_t len) {
  int32_t v = 0;
  int status = 0;
  size_t i;

  if (len == sizeof v) memcpy(&v, data, sizeof v);
  for (i = 0; i < z->n_kids && z->kids[i] != (pid_t)v; i++)
    ;
  if (i == z->n_kids) { /* not ours */
    if (zsend(z->fd, ZMSG_FAIL, NULL, 0, NULL, 0, -1) != 0) _exit(0);
    return;
  }
  while (waitpid((pid_t)v, &status, 0) < 0 && errno == EINTR)
    ;
  z->kids[i] = z->kids[--z->n_kids];
  v = (int32_t)status;
  if (zsend(z->fd, ZMSG_OK, &v, sizeof v, NULL, 0, -1) != 0) _exit(0);
}

static void z_load(zygote_t *z, const char *data, uint32_t len, int counts_fd) {
  pipeline_t *p = z->p;
  const char *path = data, *source;
  char err[PIPELINE_ERR_MAX];
  filter_counts_t *counts = NULL;
  program_t *g;
  config_t cfg;
  size_t i, plen = strnlen(data, len);

  if (plen == len || counts_fd < 0) {
    snprintf(err, sizeof err, "a broken request");
    goto fail;
  }
  source = data + plen + 1;
  config_defaults(&cfg);
  g = pl_program_load(p, path, source, &cfg, err, sizeof err);
  config_free(&cfg);
  if (g == NULL) goto fail;
  counts = pl_shared_map(counts_fd, g->n_filters ? g->n_filters : 1, sizeof *counts);
  if (counts == NULL) {
    snprintf(err, sizeof err, "its filters differ from the engine's, or out of memory");
    pl_program_free(g, p->prog);
    goto fail;
  }
  pl_shared_free(g->counts);
  g->counts = counts;
  for (i = 0; i < g->n_filters; i++) g->filters[i].n = &counts[i];
  g->reuse = NULL;
  pl_close_dead_letters(g);
  pl_program_free(p->prog, g);
  p->prog = g;
  close(counts_fd);
  if (zsend(z->fd, ZMSG_OK, NULL, 0, NULL, 0, -1) != 0) _exit(0);
  return;
fail:
  if (counts_fd >= 0) close(counts_fd);
  if (zsend(z->fd, ZMSG_FAIL, err, (uint32_t)strlen(err), NULL, 0, -1) != 0) _exit(0);
}

static void zygote_main(pipeline_t *p, int fd, pid_t engine) {
  zygote_t z = {p, fd, getpid(), {0}, 0};

  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != engine) _exit(0);
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  signal(SIGUSR1, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  /* The descriptors are closed, their numbers held (/dev/null): a
   * pthread_atfork handler may close in each child the ones it remembers
   * (libuv's signal lock pipe), which must not be a filter process's
   * channel by then. */
  pl_close_fds(p->prog, fd, 1);
  pl_close_dead_letters(p->prog);
  for (;;) {
    zhead_t h = {0, 0};
    char *data = NULL;
    int got;
    if (zrecv(fd, &h, &data, &got) != 0) break;
    if (h.type != ZMSG_LOAD && got >= 0) close(got);
    switch (h.type) {
    case ZMSG_FORK: z_fork(&z); break;
    case ZMSG_WAIT: z_wait(&z, data, h.len); break;
    case ZMSG_LOAD: z_load(&z, data, h.len, got); break;
    default: free(data); goto end;
    }
    free(data);
  }
end:
  for (size_t i = 0; i < z.n_kids; i++) {
    kill(z.kids[i], SIGKILL);
    while (waitpid(z.kids[i], NULL, 0) < 0 && errno == EINTR)
      ;
  }
  _exit(0);
}

/* ---- the engine's side ---- */

int pipeline_prefork(pipeline_t *p) {
  int sv[2];
  pid_t engine = getpid(), pid;

  if (p->zygote_pid > 0 || p->prog == NULL || !p->prog->isolate || p->simulated) return 0;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    log_error(NULL, "the zygote cannot start (%s): filter processes fork from the pipeline thread",
              strerror(errno));
    return -1;
  }
  pid = fork();
  if (pid == 0) {
    close(sv[0]);
    zygote_main(p, sv[1], engine);
  }
  close(sv[1]);
  if (pid < 0) {
    close(sv[0]);
    log_error(NULL, "the zygote cannot start (%s): filter processes fork from the pipeline thread",
              strerror(errno));
    return -1;
  }
  p->zygote_pid = pid;
  p->zygote_fd = sv[0];
  p->zygote_current = 1;
  log_debug(NULL, "zygote %ld started", (long)pid);
  return 0;
}

/* The zygote did not answer: it is gone. */
static int lost(pipeline_t *p) {
  log_error(NULL, "the zygote ended: filter processes fork from the pipeline thread");
  pl_zygote_stop(p);
  return -1;
}

int pl_zygote_fork(pipeline_t *p, pid_t *pid, int *fd) {
  zhead_t h = {0, 0};
  char *data = NULL;
  int32_t v;

  if (p->zygote_pid <= 0) return -1;
  if (zsend(p->zygote_fd, ZMSG_FORK, NULL, 0, NULL, 0, -1) != 0 ||
      zrecv(p->zygote_fd, &h, &data, fd) != 0)
    return lost(p);
  if (h.type != ZMSG_OK || h.len != sizeof v || *fd < 0) {
    if (*fd >= 0) close(*fd);
    free(data);
    return -1; /* it could not fork: the thread tries */
  }
  memcpy(&v, data, sizeof v);
  free(data);
  *pid = (pid_t)v;
  return 0;
}

int pl_zygote_wait(pipeline_t *p, pid_t pid, int *status) {
  zhead_t h = {0, 0};
  char *data = NULL;
  int32_t v = (int32_t)pid;
  int got;

  if (p->zygote_pid <= 0) return -1;
  if (zsend(p->zygote_fd, ZMSG_WAIT, &v, sizeof v, NULL, 0, -1) != 0 ||
      zrecv(p->zygote_fd, &h, &data, &got) != 0)
    return lost(p);
  if (got >= 0) close(got);
  if (h.type != ZMSG_OK || h.len != sizeof v) {
    free(data);
    return -1;
  }
  memcpy(&v, data, sizeof v);
  free(data);
  *status = (int)v;
  return 0;
}

void pl_zygote_load(pipeline_t *p, program_t *g, const char *path, const char *source) {
  size_t n = g->n_filters ? g->n_filters : 1, i;
  filter_counts_t *counts;
  zhead_t h = {0, 0};
  char *data = NULL;
  int fd, got;

  p->zygote_current = 0;
  if (p->zygote_pid <= 0) return;
  if ((counts = pl_shared_fd_calloc(n, sizeof *counts, &fd)) == NULL) {
    log_error(NULL, "reload: out of memory for the zygote; filter processes fork from the "
                    "pipeline thread");
    return;
  }
  /* nothing counted yet: the init hooks have not run */
  pl_shared_free(g->counts);
  g->counts = counts;
  for (i = 0; i < g->n_filters; i++) g->filters[i].n = &counts[i];
  if (zsend(p->zygote_fd, ZMSG_LOAD, path, (uint32_t)strlen(path) + 1, source,
            (uint32_t)strlen(source), fd) != 0 ||
      zrecv(p->zygote_fd, &h, &data, &got) != 0) {
    close(fd);
    lost(p);
    return;
  }
  close(fd);
  if (got >= 0) close(got);
  if (h.type == ZMSG_OK) p->zygote_current = 1;
  else
    log_error(NULL,
              "reload: the zygote could not load %s (%s): filter processes fork from the "
              "pipeline thread",
              path, data);
  free(data);
}

void pl_zygote_stop(pipeline_t *p) {
  pid_t pid = p->zygote_pid;

  if (pid <= 0) return;
  p->zygote_pid = 0;
  p->zygote_current = 0;
  close(p->zygote_fd);
  p->zygote_fd = -1;
  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
    ;
}
