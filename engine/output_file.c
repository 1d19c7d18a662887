/* output_file.c - the file output: JSON or plain lines appended to a file,
 * with size-based rotation and a reopen for external rotation (see
 * output.h).
 *
 * A batch is encoded into one reused buffer and appended with write(2) on a
 * descriptor opened with O_APPEND. Rotation happens between batches, never
 * inside one: a batch larger than max_bytes goes whole into a fresh file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lua.h>

#include "output.h"

#define FILE_KEEP_MAX (8u * 1024 * 1024) /* a larger buffer is released */

typedef struct file_output {
  output_t base;
  char *path;
  int fd;
  int plain;
  size_t max_bytes; /* 0: no rotation */
  int keep;
  size_t size;      /* bytes in the current file */
  strbuf_t buf;
} file_output_t;

/* Opens (or creates) the file for appending and learns its size. Returns 0,
 * or -1 with a message in err (the old descriptor, if any, stays). */
static int file_open(file_output_t *fo, char *err, size_t n)
{
  struct stat st;
  int fd = open(fo->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);

  if (fd < 0) {
    snprintf(err, n, "%s: cannot open %s: %s", fo->base.name, fo->path, strerror(errno));
    return -1;
  }
  if (fo->fd >= 0)
    close(fo->fd);
  fo->fd = fd;
  fo->size = fstat(fd, &st) == 0 ? (size_t)st.st_size : 0;
  return 0;
}

/* Shifts path.N to path.N+1 (deleting path.keep), path to path.1, and opens
 * a new path. keep 0: truncates instead. Returns 0 or -1 with err. */
static int file_rotate(file_output_t *fo, char *err, size_t n)
{
  size_t len = strlen(fo->path) + 16;
  char *from = malloc(len), *to = malloc(len);
  int i, rc = -1;

  if (from == NULL || to == NULL) {
    snprintf(err, n, "%s: out of memory rotating", fo->base.name);
    goto err;
  }
  if (fo->keep == 0) {
    if (ftruncate(fo->fd, 0) < 0) {
      snprintf(err, n, "%s: cannot truncate %s: %s", fo->base.name, fo->path, strerror(errno));
      goto err;
    }
    fo->size = 0;
    rc = 0;
    goto err;
  }
  snprintf(to, len, "%s.%d", fo->path, fo->keep);
  unlink(to);
  for (i = fo->keep - 1; i >= 1; i--) {
    snprintf(from, len, "%s.%d", fo->path, i);
    snprintf(to, len, "%s.%d", fo->path, i + 1);
    rename(from, to); /* a missing older file is fine */
  }
  snprintf(to, len, "%s.1", fo->path);
  if (rename(fo->path, to) < 0 && errno != ENOENT) {
    snprintf(err, n, "%s: cannot rename %s: %s", fo->base.name, fo->path, strerror(errno));
    goto err;
  }
  rc = file_open(fo, err, n);
err:
  free(from);
  free(to);
  return rc;
}

static int file_write(output_t *o, lua_State *L, int idx, char *err, size_t n)
{
  file_output_t *fo = (file_output_t *)o;
  int rc;

  fo->buf.len = 0;
  rc = output_encode_batch(&fo->buf, L, idx, fo->plain);
  if (rc < 0) {
    snprintf(err, n, "%s: out of memory encoding a batch", o->name);
    goto done;
  }
  if (fo->buf.len == 0)
    goto done;
  if (fo->fd < 0 && file_open(fo, err, n) < 0) {
    rc = -1;
    goto done;
  }
  if (fo->max_bytes > 0 && fo->size > 0 && fo->size + fo->buf.len > fo->max_bytes &&
      file_rotate(fo, err, n) < 0) {
    rc = -1;
    goto done;
  }
  if (output_write_all(fo->fd, fo->buf.data, fo->buf.len) < 0) {
    snprintf(err, n, "%s: write to %s: %s", o->name, fo->path, strerror(errno));
    rc = -1;
    goto done;
  }
  fo->size += fo->buf.len;
done:
  if (fo->buf.cap > FILE_KEEP_MAX)
    strbuf_free(&fo->buf);
  return rc;
}

/* Data is handed to the kernel with every batch; nothing is held back. */
static int file_flush(output_t *o, char *err, size_t n)
{
  return 0;
}

static int file_reopen(output_t *o, char *err, size_t n)
{
  return file_open((file_output_t *)o, err, n);
}

static void file_free(output_t *o)
{
  file_output_t *fo = (file_output_t *)o;

  if (fo == NULL)
    return;
  if (fo->fd >= 0)
    close(fo->fd);
  strbuf_free(&fo->buf);
  free(fo->path);
  free(fo->base.name);
  free(fo);
}

output_t *output_file_new(const char *name, const char *path, const char *format,
                          size_t max_bytes, int keep, char *err, size_t n)
{
  file_output_t *fo = calloc(1, sizeof *fo);

  if (fo == NULL) {
    snprintf(err, n, "out of memory");
    return NULL;
  }
  fo->fd = -1;
  fo->base.type = "file";
  fo->base.write = file_write;
  fo->base.flush = file_flush;
  fo->base.free = file_free;
  fo->base.reopen = file_reopen;
  fo->base.name = strdup(name ? name : "file");
  fo->path = strdup(path);
  if (fo->base.name == NULL || fo->path == NULL) {
    snprintf(err, n, "out of memory");
    goto err;
  }
  fo->plain = format != NULL && strcmp(format, "plain") == 0;
  fo->max_bytes = max_bytes;
  fo->keep = keep < 0 ? 0 : keep;
  if (file_open(fo, err, n) < 0)
    goto err;
  return &fo->base;
err:
  file_free(&fo->base);
  return NULL;
}
