/* pipeline_worker.c - the filter process (engine.filter_isolation =
 * "process", the default).
 *
 * A process runs the filters: a copy of the loaded program (its Lua state,
 * filters and outputs' settings), with the JIT compiler on. The zygote
 * (pipeline_zygote.c), single-threaded, forks it and passes the pipeline
 * thread its end of the channel; without a zygote (it could not start, or
 * could not load a reload's program) the pipeline thread forks it. The two
 * talk over a socketpair, one request at a time: the thread sends a batch
 * (or a timer tick, or the stop), the process runs the filters and encodes
 * the records for each output, and answers with the bodies (and the records
 * offered to a tap), then "done" with its next timer. The thread hands the
 * bodies to the outputs under the batch's ticket, exactly as when it
 * encodes them itself.
 *
 * What no filter can take down: the thread watches every call the process
 * makes (pipeline_counters_t.call_filter, in shared memory). A call past
 * filter_timeout is ended by killing the process (a stuck C call, a
 * JIT-compiled endless loop); a process that dies (SIGSEGV through FFI,
 * abort, the kernel's OOM killer) is seen as the end of the channel. Both
 * are reported like any filter error, with the filter's and the
 * container's names; the batch follows the filter's on_error (here, in the
 * thread: "pass" writes the batch as it came in, unfiltered, to the outputs
 * that did not get it yet) and a new process starts from the loaded
 * program: init hooks run again, and state kept in Lua is lost.
 *
 * The process: single-threaded, dies with its parent (PR_SET_PDEATHSIG),
 * ignores the signals the engine handles, keeps only stdio, the channel and
 * the filters' dead-letter files open, logs through log.c (one write(2) a
 * line) and ends with _exit. Its counters are the engine's: they live in
 * memory shared with the engine (pl_shared_calloc before the zygote's fork;
 * a memfd for a reload's program). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>

#include "log.h"
#include "pipeline_internal.h"
#include "strbuf.h"
#include "tap.h"

struct pl_worker {
  pid_t pid;
  int from_zygote;  /* the zygote's child: the zygote reaps it */
  int fd;           /* the thread's end of the channel */
  int64_t next_due; /* the process's next timer (CLOCK_MONOTONIC ns), 0: none */
  strbuf_t out;     /* the request being sent (kept: one allocation) */
  char *in;         /* the answer being read */
  size_t in_cap;
};

enum {
  /* to the process */
  WMSG_BATCH = 1,
  WMSG_TICK,
  WMSG_REOPEN,
  WMSG_STOP,
  /* from it */
  WMSG_BODY = 16,
  WMSG_TAP,
  WMSG_DONE
};

typedef struct msg_head {
  uint32_t type, len;
} msg_head_t;

/* A call still running this long after filter_timeout is killed (the
 * process's own guard ends interpreted code at filter_timeout). */
#define KILL_GRACE_NS 300000000LL
/* How long the thread waits between looks at the process's current call. */
#define WATCH_MS 50
/* A message larger than this is a broken channel. */
#define WMSG_MAX ((uint32_t)1 << 30)

/* ---- the channel ---- */

int pl_send_all(int fd, const void *data, size_t n) {
  const char *s = data;
  while (n > 0) {
    ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    s += w;
    n -= (size_t)w;
  }
  return 0;
}

int pl_recv_all(int fd, void *data, size_t n) {
  char *s = data;
  while (n > 0) {
    ssize_t r = read(fd, s, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    s += r;
    n -= (size_t)r;
  }
  return 0;
}

/* Sends one message whose payload is the n pieces of parts. */
static int send_msg(int fd, uint32_t type, const struct iovec *parts, size_t n) {
  msg_head_t h = {type, 0};
  size_t i;
  for (i = 0; i < n; i++) h.len += (uint32_t)parts[i].iov_len;
  if (pl_send_all(fd, &h, sizeof h) != 0) return -1;
  for (i = 0; i < n; i++)
    if (parts[i].iov_len && pl_send_all(fd, parts[i].iov_base, parts[i].iov_len) != 0) return -1;
  return 0;
}

/* A reader of a message's payload. */
typedef struct rd {
  const char *p, *end;
  int bad;
} rd_t;

static const void *take(rd_t *r, size_t n) {
  const char *at = r->p;
  if (r->bad || (size_t)(r->end - r->p) < n) {
    r->bad = 1;
    return NULL;
  }
  r->p += n;
  return at;
}

static uint32_t take_u32(rd_t *r) {
  uint32_t v = 0;
  const void *at = take(r, sizeof v);
  if (at) memcpy(&v, at, sizeof v);
  return v;
}

static int64_t take_i64(rd_t *r) {
  int64_t v = 0;
  const void *at = take(r, sizeof v);
  if (at) memcpy(&v, at, sizeof v);
  return v;
}

/* A string: u32 length, bytes. Returns a NUL-terminated copy in buf (cut
 * to n - 1 bytes), or NULL when the payload is short. */
static const char *take_str(rd_t *r, char **own) {
  uint32_t len = take_u32(r);
  const char *s = take(r, len);
  char *copy;
  if (s == NULL || (copy = malloc((size_t)len + 1)) == NULL) {
    r->bad = 1;
    return NULL;
  }
  memcpy(copy, s, len);
  copy[len] = '\0';
  *own = copy;
  return copy;
}

static int put(strbuf_t *b, const void *data, size_t n) { return strbuf_add(b, data, n); }

static int put_u32(strbuf_t *b, uint32_t v) { return put(b, &v, sizeof v); }

static int put_str(strbuf_t *b, const char *s) {
  size_t n = s ? strlen(s) : 0;
  return put_u32(b, (uint32_t)n) | put(b, s ? s : "", n);
}

/* ---- the process's side ---- */

/* Sends a body for output i (its records encoded in data). */
static void child_send_body(pipeline_t *p, uint32_t i, size_t records, const char *data,
                            size_t len) {
  uint32_t head[3] = {i, (uint32_t)records, (uint32_t)p->in_batch};
  struct iovec parts[2] = {{head, sizeof head}, {(void *)data, len}};
  if (send_msg(p->worker_fd, WMSG_BODY, parts, 2) != 0) _exit(0); /* the engine is gone */
}

int pl_worker_write(pipeline_t *p, program_t *g, output_t *o, lua_State *L, int idx) {
  size_t records = lua_objlen(L, idx), i;
  strbuf_t b = {0};

  if (records == 0) return 0;
  for (i = 0; i < g->n_outputs && g->outputs[i] != o; i++)
    ;
  if (o->kind->encode && o->kind->encode(o, L, idx, &b) != 0) {
    strbuf_free(&b);
    return -1;
  }
  child_send_body(p, (uint32_t)i, records, b.data, b.len);
  strbuf_free(&b);
  return 0;
}

int pl_worker_tap_wanted(const pipeline_t *p, int point, const char *name) {
  const char *w = p->tap_want;
  size_t i;

  for (i = 0; i < p->n_tap_want; i++) {
    if ((unsigned char)w[0] == (unsigned)point && strcmp(w + 1, name ? name : "") == 0) return 1;
    w += strlen(w + 1) + 2;
  }
  return 0;
}

void pl_worker_tap(pipeline_t *p, int point, const char *name, const char *cname, const char *data,
                   size_t len) {
  uint32_t pt = (uint32_t)point;
  strbuf_t head = {0};
  int rc = put_u32(&head, pt) | put_str(&head, name) | put_str(&head, cname);
  struct iovec parts[2] = {{head.data, head.len}, {(void *)data, len}};
  if (rc == 0 && send_msg(p->worker_fd, WMSG_TAP, parts, 2) != 0) _exit(0);
  strbuf_free(&head);
}

static void child_done(pipeline_t *p, program_t *g) {
  int64_t due = pl_next_due(g);
  struct iovec part = {&due, sizeof due};
  atomic_store(&p->stats->child_lua_bytes, atomic_load(&g->mem.used));
  if (send_msg(p->worker_fd, WMSG_DONE, &part, 1) != 0) _exit(0);
}

/* Closes every descriptor but stdio, the channel and the filters'
 * dead-letter files: the process must hold no connection of the engine's
 * open (a stream the engine closes would stay open in it). */
void pl_close_fds(const program_t *g, int keep, int hold) {
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  int fds[1024], n = 0, i;
  size_t k;

  if (d == NULL) return;
  while ((e = readdir(d)) != NULL && n < 1024) {
    char *end;
    long fd = strtol(e->d_name, &end, 10);
    if (*end != '\0' || e->d_name[0] == '\0' || fd <= 2 || fd == keep || fd == dirfd(d)) continue;
    for (k = 0; k < g->n_filters; k++)
      if (g->filters[k].dl_fd == fd) break;
    if (k == g->n_filters) fds[n++] = (int)fd;
  }
  closedir(d);
  int null = hold ? open("/dev/null", O_RDWR | O_CLOEXEC) : -1;
  for (i = 0; i < n; i++)
    if (null < 0 || dup3(null, fds[i], O_CLOEXEC) < 0) close(fds[i]);
  if (null >= 0) close(null);
}

/* A batch from its message. NULL when the message is broken or out of
 * memory. */
static batch_t *child_batch(pipeline_t *p, rd_t *r) {
  char *id = NULL, *name = NULL, *image = NULL, *host = NULL, **labels = NULL;
  container_t *c = NULL;
  batch_t *b = NULL;
  uint32_t n_labels, n, used, i, tap_len;
  int tty;

  take_str(r, &id);
  take_str(r, &name);
  take_str(r, &image);
  take_str(r, &host);
  int host_field = (int)take_u32(r);
  tty = (int)take_u32(r);
  n_labels = take_u32(r);
  if (!r->bad && n_labels < 100000 && (labels = calloc(n_labels + 1, sizeof *labels)) != NULL)
    for (i = 0; i < n_labels && !r->bad; i++) take_str(r, &labels[i]);
  else r->bad = 1;
  int64_t floor_ts = take_i64(r);
  n = take_u32(r);
  used = take_u32(r);
  const void *recs = take(r, (size_t)n * sizeof(batch_rec_t));
  const void *bytes = take(r, used);
  tap_len = take_u32(r);
  const void *tap = take(r, tap_len);
  uint32_t n_tap = take_u32(r);
  if (!r->bad) c = container_new(id, name, image, (const char *const *)labels, n_labels, tty);
  if (c != NULL && host && host[0]) container_set_host(c, host, host_field);
  if (c != NULL && (b = batch_new(c)) != NULL) {
    b->recs = malloc(n ? (size_t)n * sizeof(batch_rec_t) : 1);
    b->bytes = malloc(used ? used : 1);
    if (b->recs == NULL || b->bytes == NULL) {
      batch_free(b);
      b = NULL;
    } else {
      memcpy(b->recs, recs, (size_t)n * sizeof(batch_rec_t));
      memcpy(b->bytes, bytes, used);
      b->n = b->cap = n;
      b->used = b->bytes_cap = used;
      b->floor_ts = floor_ts;
    }
  }
  container_unref(c);
  free(p->tap_want);
  p->tap_want = NULL;
  p->n_tap_want = 0;
  if (b != NULL && tap_len > 0 && (p->tap_want = malloc(tap_len)) != NULL) {
    memcpy(p->tap_want, tap, tap_len);
    p->n_tap_want = n_tap;
  }
  for (i = 0; labels && i < n_labels; i++) free(labels[i]);
  free(labels);
  free(id);
  free(name);
  free(image);
  free(host);
  return b;
}

void pl_worker_main(pipeline_t *p, program_t *g, int fd, pid_t parent) {
  char *buf = NULL;
  size_t cap = 0;

  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(0);
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  signal(SIGUSR1, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  pl_close_fds(g, fd, 0);
  pl_reopen_dead_letters(g);
  p->worker_fd = fd;
  p->in_worker = 1;
  /* The JIT compiles the filters. The runaway guard's count hook stays:
   * it still ends interpreted code at filter_timeout with a Lua error (the
   * process and its state go on); compiled code and C calls never call it,
   * and the engine's watch ends those (by killing the process). */
  luaJIT_setmode(g->L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_ON);
  pl_program_start(p, g);
  child_done(p, g);
  for (;;) {
    msg_head_t h;
    if (pl_recv_all(fd, &h, sizeof h) != 0 || h.len > WMSG_MAX) _exit(0);
    if (h.len > cap) {
      free(buf);
      cap = h.len;
      if ((buf = malloc(cap)) == NULL) _exit(1);
    }
    if (h.len && pl_recv_all(fd, buf, h.len) != 0) _exit(0);
    rd_t r = {buf, buf + h.len, 0};
    switch (h.type) {
    case WMSG_BATCH: {
      batch_t *b = child_batch(p, &r);
      if (b == NULL) {
        log_error(NULL, "filter process: a batch could not be read (out of memory)");
        _exit(1);
      }
      p->in_batch = 1;
      pl_process_batch(p, g, b);
      p->in_batch = 0;
      batch_free(b);
      child_done(p, g);
      break;
    }
    case WMSG_TICK:
      pl_run_timers(p, g);
      child_done(p, g);
      break;
    case WMSG_REOPEN: atomic_store(&p->reopen, 1); break;
    case WMSG_STOP:
      pl_program_stop(p, g);
      child_done(p, g);
      _exit(0);
    default: _exit(1);
    }
  }
}

/* ---- the engine's side ---- */

static const char *signal_name(int sig) {
  switch (sig) {
  case SIGSEGV: return "SIGSEGV";
  case SIGBUS: return "SIGBUS";
  case SIGABRT: return "SIGABRT (abort)";
  case SIGKILL: return "SIGKILL (the kernel's OOM killer, or someone else)";
  case SIGFPE: return "SIGFPE";
  case SIGILL: return "SIGILL";
  default: return "a signal";
  }
}

/* Ends the process for good: kills it unless it already exited, and reaps
 * it (the zygote does, for its children: until then the pid is not reused,
 * so the kill cannot reach another process). Returns its wait status (0
 * when the zygote is gone: the process died with it). */
static int reap(pipeline_t *p, pl_worker_t *w, int kill_it) {
  int status = 0;
  if (kill_it) kill(w->pid, SIGKILL);
  if (w->from_zygote) {
    if (pl_zygote_wait(p, w->pid, &status) != 0) status = 0;
  } else {
    while (waitpid(w->pid, &status, 0) < 0 && errno == EINTR)
      ;
  }
  close(w->fd);
  strbuf_free(&w->out);
  free(w->in);
  free(w);
  return status;
}

/* The outcome of waiting for the process's answer. */
enum { WAIT_DONE, WAIT_DIED, WAIT_TIMEOUT, WAIT_ABORTED };

/* Reads the process's messages until "done", handing bodies to g's
 * outputs (under t when they belong to the batch), taps to the tap, and
 * marking in sent the outputs that got a body. Watches the current call:
 * past filter_timeout (or on abort) it kills the process. */
static int collect(pipeline_t *p, program_t *g, ticket_t *t, const char *cname, unsigned char *sent,
                   int *status) {
  pl_worker_t *w = p->worker;
  int rc = WAIT_DIED;

  for (;;) {
    struct pollfd pfd = {w->fd, POLLIN, 0};
    int n = poll(&pfd, 1, WATCH_MS);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) {
      int f = atomic_load(&p->stats->call_filter);
      int64_t since = atomic_load(&p->stats->call_started_ns);
      if (atomic_load(&p->aborted)) {
        rc = WAIT_ABORTED;
        break;
      }
      if (f >= 0 && g->filter_timeout > 0 &&
          pl_clock_ns(CLOCK_MONOTONIC) - since >
              (int64_t)(g->filter_timeout * 1e9) + KILL_GRACE_NS) {
        rc = WAIT_TIMEOUT;
        break;
      }
      continue;
    }
    msg_head_t h;
    if (pl_recv_all(w->fd, &h, sizeof h) != 0 || h.len > WMSG_MAX) break;
    if (h.len > w->in_cap) {
      char *nb = realloc(w->in, h.len);
      if (nb == NULL) break;
      w->in = nb;
      w->in_cap = h.len;
    }
    if (h.len && pl_recv_all(w->fd, w->in, h.len) != 0) break;
    rd_t r = {w->in, w->in + h.len, 0};
    if (h.type == WMSG_DONE) {
      w->next_due = take_i64(&r);
      rc = WAIT_DONE;
      break;
    }
    if (h.type == WMSG_BODY) {
      uint32_t i = take_u32(&r), records = take_u32(&r), in_batch = take_u32(&r);
      size_t len = (size_t)(r.end - r.p);
      char *data, err[512];
      if (r.bad || i >= g->n_outputs) break;
      if ((data = malloc(len ? len : 1)) == NULL) {
        pl_count(&p->stats->output_errors, 1);
        log_error(cname, "output %s: out of memory", g->outputs[i]->name);
        continue;
      }
      memcpy(data, r.p, len);
      if (sent) sent[i] = 1;
      if (output_hand_over(g->outputs[i], data, len, records, in_batch ? t : NULL, err,
                           sizeof err) != 0) {
        pl_count(&p->stats->output_errors, 1);
        log_error(cname, "output %s: %s", g->outputs[i]->name, err);
      }
    } else if (h.type == WMSG_TAP) {
      char *name = NULL, *tcname = NULL;
      int point = (int)take_u32(&r);
      take_str(&r, &name);
      take_str(&r, &tcname);
      if (!r.bad && name != NULL && tcname != NULL && p->tap)
        tap_offer(p->tap, point, name[0] ? name : NULL, tcname[0] ? tcname : NULL, r.p,
                  (size_t)(r.end - r.p));
      free(name);
      free(tcname);
    } else {
      break;
    }
  }
  *status = 0;
  if (rc != WAIT_DONE) {
    p->worker = NULL;
    *status = reap(p, w, 1);
  }
  return rc;
}

static void pl_worker_report(pipeline_t *p, program_t *g, int rc, int status, const char *cname,
                             char *msg, size_t n, int *filter) {
  int f = atomic_load(&p->stats->call_filter);
  const char *fname = f >= 0 && (size_t)f < g->n_filters ? g->filters[f].name : NULL;

  atomic_store(&p->stats->call_filter, -1);
  *filter = fname ? f : -1;
  if (rc == WAIT_ABORTED) snprintf(msg, n, "filter aborted: engine stopping");
  else if (rc == WAIT_TIMEOUT)
    snprintf(msg, n,
             "filter timed out after %g s, in compiled code or a C call (the filter "
             "process was stopped)",
             g->filter_timeout);
  else if (WIFSIGNALED(status))
    snprintf(msg, n, "the filter process died of %s", signal_name(WTERMSIG(status)));
  else
    snprintf(msg, n, "the filter process ended (exit status %d)",
             WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  if (fname) {
    filter_t *fl = &g->filters[f];
    pl_count(rc == WAIT_TIMEOUT || rc == WAIT_ABORTED ? &p->stats->filter_timeouts
                                                      : &p->stats->filter_errors,
             1);
    pl_count(rc == WAIT_TIMEOUT || rc == WAIT_ABORTED ? &fl->n->timeouts : &fl->n->errors, 1);
    log_error(cname, "filter %s (on_error=%s): %s", fname, pl_on_error_names[fl->on_error], msg);
  } else {
    pl_count(&p->stats->filter_errors, 1);
    log_error(cname, "pipeline: %s", msg);
  }
}

/* Forks the process from the pipeline thread (no zygote, or it does not
 * hold g): its pid and the thread's end of the channel. Returns 0, or -1. */
static int fork_here(pipeline_t *p, program_t *g, pid_t *pid, int *fd) {
  int sv[2];
  pid_t engine = getpid();

  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return -1;
  *pid = fork();
  if (*pid < 0) {
    close(sv[0]);
    close(sv[1]);
    return -1;
  }
  if (*pid == 0) {
    close(sv[0]);
    pl_worker_main(p, g, sv[1], engine);
  }
  close(sv[1]);
  *fd = sv[0];
  return 0;
}

int pl_worker_start(pipeline_t *p, program_t *g) {
  int status, rc;
  pl_worker_t *w;

  if (p->worker != NULL) return 0;
  if ((w = calloc(1, sizeof *w)) == NULL) return -1;
  atomic_store(&p->stats->call_filter, -1);
  if (p->zygote_pid > 0 && p->zygote_current && pl_zygote_fork(p, &w->pid, &w->fd) == 0)
    w->from_zygote = 1;
  else if (fork_here(p, g, &w->pid, &w->fd) != 0) {
    free(w);
    return -1;
  }
  p->worker = w;
  /* the init hooks run first; what they emit goes to the outputs */
  rc = collect(p, g, NULL, NULL, NULL, &status);
  if (rc != WAIT_DONE) {
    char msg[256];
    int f;
    pl_worker_report(p, g, rc, status, NULL, msg, sizeof msg, &f);
    return -1;
  }
  log_debug(NULL, "filter process %ld started (forked by the %s)", (long)w->pid,
            w->from_zygote ? "zygote" : "pipeline thread");
  return 0;
}

/* The tap points a client wants for a batch of container cname, as the
 * process reads them (pl_worker_tap_wanted): entries of a point byte and a
 * NUL-terminated name. */
static int tap_list(pipeline_t *p, program_t *g, const char *cname, strbuf_t *b, uint32_t *count) {
  size_t i;
  int rc = 0;
  *count = 0;
  if (p->tap == NULL) return 0;
#define WANT(point, name)                                                                  \
  if (tap_wanted(p->tap, point, name, cname)) {                                            \
    unsigned char pt = (unsigned char)(point);                                             \
    rc |= put(b, &pt, 1) | put(b, (name) ? (name) : "", strlen((name) ? (name) : "") + 1); \
    (*count)++;                                                                            \
  }
  WANT(TAP_INPUT, NULL)
  for (i = 0; i < g->n_filters; i++) WANT(TAP_FILTER, g->filters[i].name)
  for (i = 0; i < g->n_outputs; i++) WANT(TAP_OUTPUT, g->outputs[i]->name)
#undef WANT
  return rc;
}

/* Sends a request (forwarding a reopen first) and collects the answer.
 * When it fails the process is gone (killed if need be, and reaped) and
 * *status says how it ended. Returns WAIT_*. */
static int request(pipeline_t *p, program_t *g, uint32_t type, const struct iovec *parts, size_t n,
                   ticket_t *t, const char *cname, unsigned char *sent, int *status) {
  pl_worker_t *w = p->worker;
  int rc;

  *status = 0;
  if (atomic_exchange(&p->reopen, 0)) { /* the thread writes a crashed batch's dead letter */
    pl_reopen_dead_letters(g);
    send_msg(w->fd, WMSG_REOPEN, NULL, 0);
  }
  rc = send_msg(w->fd, type, parts, n) == 0 ? collect(p, g, t, cname, sent, status) : WAIT_DIED;
  if (rc != WAIT_DONE && p->worker == w) { /* the send failed: the process is gone */
    p->worker = NULL;
    *status = reap(p, w, 1);
  }
  return rc;
}

int pl_worker_batch(pipeline_t *p, program_t *g, batch_t *b, ticket_t *t, unsigned char *sent,
                    char *msg, size_t n, int *filter) {
  const container_t *c = b->container;
  strbuf_t *mp = &p->worker->out, taps = {0};
  uint32_t n_tap = 0;
  size_t i;
  int rc, status;

  mp->len = 0;
  rc = put_str(mp, c->id) | put_str(mp, c->name) | put_str(mp, c->image) | put_str(mp, c->host) |
       put_u32(mp, (uint32_t)c->host_field) | put_u32(mp, (uint32_t)c->tty) |
       put_u32(mp, (uint32_t)c->n_labels);
  for (i = 0; i < c->n_labels; i++) rc |= put_str(mp, c->label_pairs[i]);
  rc |= put(mp, &b->floor_ts, sizeof b->floor_ts) | put_u32(mp, (uint32_t)b->n) |
        put_u32(mp, (uint32_t)b->used) | put(mp, b->recs, b->n * sizeof *b->recs) |
        put(mp, b->bytes, b->used) | tap_list(p, g, c->name, &taps, &n_tap);
  rc |= put_u32(mp, (uint32_t)taps.len) | put(mp, taps.data, taps.len) | put_u32(mp, n_tap);
  strbuf_free(&taps);
  if (rc != 0) {
    strbuf_free(mp);
    snprintf(msg, n, "out of memory");
    *filter = -1;
    return -1;
  }
  struct iovec part = {mp->data, mp->len};
  /* mp is the process's: gone with it when the request fails */
  rc = request(p, g, WMSG_BATCH, &part, 1, t, c->name, sent, &status);
  if (rc == WAIT_DONE) return 0;
  pl_worker_report(p, g, rc, status, c->name, msg, n, filter);
  return -1;
}

int pl_worker_tick(pipeline_t *p, program_t *g) {
  char msg[256];
  int rc, status, f;

  if (p->worker == NULL) return -1;
  rc = request(p, g, WMSG_TICK, NULL, 0, NULL, NULL, NULL, &status);
  if (rc == WAIT_DONE) return 0;
  pl_worker_report(p, g, rc, status, NULL, msg, sizeof msg, &f);
  return -1;
}

int64_t pl_worker_due(const pipeline_t *p) { return p->worker ? p->worker->next_due : 0; }

void pl_worker_stop(pipeline_t *p, program_t *g, int shutdown) {
  pl_worker_t *w = p->worker;
  char msg[256];
  int status, f, rc;

  if (w == NULL) return;
  if (!shutdown) {
    p->worker = NULL;
    reap(p, w, 1);
    return;
  }
  rc = request(p, g, WMSG_STOP, NULL, 0, NULL, NULL, NULL, &status);
  if (rc == WAIT_DONE) { /* it exits right after "done" */
    p->worker = NULL;
    reap(p, w, 0);
    return;
  }
  pl_worker_report(p, g, rc, status, NULL, msg, sizeof msg, &f);
}
