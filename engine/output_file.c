/* output_file.c - the local kinds (see output.h): `stdout` and `file`, JSON
 * lines or plain lines, and `null`, which keeps nothing.
 *
 * A body is written by libuv's threadpool (never on the loop thread), one at
 * a time per output. A write error leaves the body at the head of the queue
 * with what was written counted in body->done: the next attempt writes the
 * rest, so a line is never cut or glued to another, and nothing is
 * acknowledged until the whole body is written.
 *
 * The file kind appends to a file opened with O_APPEND (created with the
 * output's mode, 0600 by default). With max_bytes > 0 the file is rotated
 * between bodies, never inside one (a body larger than max_bytes goes whole
 * into a fresh file): path.1 .. path.<keep> hold the older files, the oldest
 * beyond keep is deleted (keep 0: the file is truncated). A reopen (SIGUSR1,
 * after an external logrotate) opens path afresh before the next write. */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lua.h>

#include "encode.h"
#include "output.h"

extern const output_kind_t output_null_kind;

typedef struct local {
  output_t base; /* first: an output_t* is a local_t* */
  int plain;
  int fd;           /* stdout: 1; file: -1 until opened */
  char *path;       /* file */
  size_t max_bytes; /* file: 0, no rotation */
  int keep;
  size_t size;       /* file: bytes in the current file */
  atomic_int reopen; /* file: open path afresh before the next write */
  /* the write in the threadpool: fd, size, path touched there only */
  uv_work_t work;
  output_body_t *body;
  int result;
  char why[300];
} local_t;

static int local_encode(output_t *o, lua_State *L, int idx, strbuf_t *b) {
  return encode_lines(b, L, idx, ((local_t *)o)->plain);
}

/* Threadpool or start: opens (or creates) the file for appending and learns
 * its size. Returns 0, or -1 with the reason in l->why (the old descriptor,
 * if any, stays). */
static int file_open(local_t *l) {
  struct stat st;
  int fd = open(l->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, l->base.cfg.mode);
  if (fd < 0) {
    snprintf(l->why, sizeof l->why, "cannot open %s: %s", l->path, strerror(errno));
    return -1;
  }
  if (l->fd >= 0) close(l->fd);
  l->fd = fd;
  l->size = fstat(fd, &st) == 0 ? (size_t)st.st_size : 0;
  return 0;
}

/* Threadpool: shifts path.N to path.N+1 (deleting path.keep), path to
 * path.1, and opens a new path; keep 0 truncates instead. */
static int file_rotate(local_t *l) {
  char from[PATH_MAX + 16], to[PATH_MAX + 16];
  const size_t len = sizeof from;
  if (l->keep == 0) {
    if (ftruncate(l->fd, 0) < 0) {
      snprintf(l->why, sizeof l->why, "cannot truncate %s: %s", l->path, strerror(errno));
      return -1;
    }
    l->size = 0;
    return 0;
  }
  snprintf(to, len, "%s.%d", l->path, l->keep);
  unlink(to);
  for (int i = l->keep - 1; i >= 1; i--) {
    snprintf(from, len, "%s.%d", l->path, i);
    snprintf(to, len, "%s.%d", l->path, i + 1);
    rename(from, to); /* a missing older file is fine */
  }
  snprintf(to, len, "%s.1", l->path);
  if (rename(l->path, to) < 0 && errno != ENOENT) {
    snprintf(l->why, sizeof l->why, "cannot rename %s: %s", l->path, strerror(errno));
    return -1;
  }
  return file_open(l);
}

/* Threadpool: writes what is left of the body. */
static void do_write(uv_work_t *w) {
  local_t *l = w->data;
  output_body_t *b = l->body;
  l->result = OUTPUT_FAILED;
  if (l->path) {
    if ((atomic_exchange(&l->reopen, 0) || l->fd < 0) && file_open(l) < 0) return;
    if (b->done == 0 && l->max_bytes > 0 && l->size > 0 && l->size + b->len > l->max_bytes &&
        file_rotate(l) < 0)
      return;
  }
  while (b->done < b->len) {
    ssize_t n = write(l->fd, b->data + b->done, b->len - b->done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      snprintf(l->why, sizeof l->why, "write to %s: %s", l->path ? l->path : "stdout",
               n == 0 ? "no progress" : strerror(errno));
      return;
    }
    b->done += (size_t)n;
    l->size += (size_t)n;
  }
  l->result = OUTPUT_DELIVERED;
}

static void after_write(uv_work_t *w, int status) {
  local_t *l = w->data;
  output_t *o = &l->base;
  output_body_t *b = l->body;
  l->body = NULL;
  if (status == UV_ECANCELED) output_sent(o, b, OUTPUT_FAILED, "cancelled at stop", 0);
  else output_sent(o, b, l->result, l->why, 0);
  output_handle_closed(o); /* the write counted as a handle */
}

static void local_send(output_t *o, output_body_t *b) {
  local_t *l = (local_t *)o;
  if (o->kind == &output_null_kind || b->done == b->len) {
    output_sent(o, b, OUTPUT_DELIVERED, NULL, 0);
    return;
  }
  l->body = b;
  l->work.data = l;
  if (uv_queue_work(o->loop, &l->work, do_write, after_write) != 0) {
    l->body = NULL;
    output_sent(o, b, OUTPUT_FAILED, "cannot queue a write", 0);
    return;
  }
  o->handles++;
}

static int file_start(output_t *o, uv_loop_t *loop, char *err, size_t n) {
  local_t *l = (local_t *)o;
  if (file_open(l) < 0) {
    snprintf(err, n, "output %s: %s", o->name, l->why);
    return -1;
  }
  return 0;
}

static void file_reopen(output_t *o) { atomic_store(&((local_t *)o)->reopen, 1); }

/* A write in the threadpool cannot be taken back: after_write reports it. */
static int local_stop(output_t *o) {
  local_t *l = (local_t *)o;
  if (l->body) uv_cancel((uv_req_t *)&l->work);
  return l->body != NULL;
}

static void local_free(output_t *o) {
  local_t *l = (local_t *)o;
  if (l->path && l->fd >= 0) close(l->fd);
  free(l->path);
}

const output_kind_t output_stdout_kind = {"stdout", local_encode, NULL,       local_send,
                                          NULL,     local_stop,   local_free, NULL};
const output_kind_t output_file_kind = {"file",      local_encode, file_start, local_send,
                                        file_reopen, local_stop,   local_free, NULL};
const output_kind_t output_null_kind = {"null", NULL, NULL, local_send, NULL, NULL, NULL, NULL};

static int capture_take(output_t *o, const char *data, size_t len, char *err, size_t n) {
  if (write_all(((local_t *)o)->fd, data, len) == 0) return 0;
  snprintf(err, n, "write: %s", strerror(errno));
  return -1;
}

static const output_kind_t output_capture_kind = {"capture", local_encode, NULL, local_send,
                                                  NULL,      NULL,         NULL, capture_take};

output_t *output_capture_new(const char *name, int fd) {
  local_t *l = calloc(1, sizeof *l);
  if (!l) return NULL;
  l->fd = fd;
  atomic_init(&l->reopen, 0);
  l->base.kind = &output_capture_kind;
  l->base.dl_fd = -1;
  pthread_mutex_init(&l->base.lock, NULL);
  if (!(l->base.name = strdup(name))) {
    output_free(&l->base);
    return NULL;
  }
  return &l->base;
}

/* 0 when the file at path exists and is writable, or can be created in its
 * folder; else -1 with the reason in err. Creates nothing. */
static int file_writable(const char *path, char *err, size_t n) {
  char dir[PATH_MAX];
  const char *slash = strrchr(path, '/');
  if (access(path, W_OK) == 0) return 0;
  if (errno != ENOENT) goto bad;
  if (!slash) snprintf(dir, sizeof dir, ".");
  else snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
  if (access(dir, W_OK | X_OK) == 0) return 0;
bad:
  snprintf(err, n, "cannot open %s: %s", path, strerror(errno));
  return -1;
}

/* The stdout, file or null output from its validated table at idx. Returns
 * NULL with a message in err. */
output_t *output_local_new(lua_State *L, int idx, const output_kind_t *kind, char *err, size_t n) {
  local_t *l = calloc(1, sizeof *l);
  if (!l) return NULL;
  l->fd = kind == &output_stdout_kind ? 1 : -1;
  atomic_init(&l->reopen, 0);
  int oom = output_init(&l->base, kind, L, idx) != 0;
  lua_getfield(L, idx, "format");
  l->plain = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "plain") == 0;
  lua_getfield(L, idx, "path");
  if (kind == &output_file_kind && lua_isstring(L, -1) && !(l->path = strdup(lua_tostring(L, -1))))
    oom = 1;
  lua_getfield(L, idx, "max_bytes");
  l->max_bytes = lua_isnumber(L, -1) ? (size_t)lua_tonumber(L, -1) : 0;
  lua_getfield(L, idx, "keep");
  l->keep = lua_isnumber(L, -1) ? (int)lua_tonumber(L, -1) : 0;
  lua_pop(L, 4);
  if (oom || (kind == &output_file_kind && !l->path)) {
    snprintf(err, n, "out of memory");
    output_free(&l->base);
    return NULL;
  }
  if (l->path && file_writable(l->path, err, n) != 0) {
    output_free(&l->base);
    return NULL;
  }
  return &l->base;
}
