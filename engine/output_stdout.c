/* output_stdout.c - the stdout output: JSON lines or plain lines on a file
 * descriptor.
 *
 * A batch is encoded into one reused buffer and written with write(2) as a
 * whole, so the lines of a batch reach the descriptor in one piece whenever
 * the descriptor takes it (pipes up to PIPE_BUF are atomic, larger writes are
 * looped). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lua.h>

#include "output.h"

/* A buffer that grew past this is released after the batch. */
#define STDOUT_KEEP_MAX (8u * 1024 * 1024)

typedef struct stdout_output {
  output_t base;
  int fd;
  int plain;
  strbuf_t buf;
} stdout_output_t;

int output_write_all(int fd, const char *p, size_t n)
{
  ssize_t w;

  while (n > 0) {
    w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      if (w == 0)
        errno = EIO; /* no progress: never loop on it */
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int stdout_write(output_t *o, lua_State *L, int idx, char *err, size_t n)
{
  stdout_output_t *so = (stdout_output_t *)o;
  int rc;

  so->buf.len = 0;
  rc = output_encode_batch(&so->buf, L, idx, so->plain);
  if (rc < 0) {
    snprintf(err, n, "%s: out of memory encoding a batch", o->name);
    goto done;
  }
  if (output_write_all(so->fd, so->buf.data, so->buf.len) < 0) {
    snprintf(err, n, "%s: write to fd %d: %s", o->name, so->fd, strerror(errno));
    rc = -1;
  }
done:
  if (so->buf.cap > STDOUT_KEEP_MAX)
    strbuf_free(&so->buf);
  return rc;
}

/* Every batch is written through at once: nothing is held back. */
static int stdout_flush(output_t *o, char *err, size_t n)
{
  return 0;
}

static void stdout_free(output_t *o)
{
  stdout_output_t *so = (stdout_output_t *)o;

  if (so == NULL)
    return;
  strbuf_free(&so->buf);
  free(so->base.name);
  free(so);
}

/* Creates the stdout output; format "plain" writes the line alone, anything
 * else JSON lines. Returns NULL when out of memory. */
output_t *output_stdout_new(const char *name, const char *format, int fd)
{
  stdout_output_t *so = calloc(1, sizeof *so);

  if (so == NULL)
    return NULL;
  so->base.type = "stdout";
  so->base.name = strdup(name ? name : "stdout");
  if (so->base.name == NULL) {
    free(so);
    return NULL;
  }
  so->base.write = stdout_write;
  so->base.flush = stdout_flush;
  so->base.free = stdout_free;
  so->fd = fd;
  so->plain = format != NULL && strcmp(format, "plain") == 0;
  return &so->base;
}
