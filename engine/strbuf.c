/* strbuf.c - the growable byte buffer and write_all (see strbuf.h). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "strbuf.h"

/* Makes room for `more` bytes after len. Returns 0, or -1 when out of memory
 * (the buffer is unchanged). */
int strbuf_reserve(strbuf_t *b, size_t more) {
  size_t need, cap;
  char *data;

  if (b->cap - b->len >= more) return 0;
  if (more > SIZE_MAX - b->len) return -1;
  need = b->len + more;
  cap = b->cap ? b->cap : 256;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  data = realloc(b->data, cap);
  if (data == NULL) return -1;
  b->data = data;
  b->cap = cap;
  return 0;
}

/* Appends n bytes. Returns 0, or -1 when out of memory. */
int strbuf_add(strbuf_t *b, const char *s, size_t n) {
  if (strbuf_reserve(b, n) < 0) return -1;
  if (n > 0) memcpy(b->data + b->len, s, n);
  b->len += n;
  return 0;
}

/* Frees the bytes; the buffer is empty and usable afterwards. */
void strbuf_free(strbuf_t *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

int write_all(int fd, const char *p, size_t n) {
  ssize_t w;

  while (n > 0) {
    w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      if (w == 0) errno = EIO; /* no progress: never loop on it */
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}
