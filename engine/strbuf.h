/* strbuf.h - a growable byte buffer, and a write(2) that writes everything.
 *
 * Plain memory: no locking, no thread of its own; the owner of a buffer
 * decides which thread uses it. */
#ifndef ENGINE_STRBUF_H
#define ENGINE_STRBUF_H

#include <stddef.h>

typedef struct strbuf {
  char *data;
  size_t len, cap;
} strbuf_t;

/* Makes room for `more` bytes after len. Each returns 0, or -1 when out of
 * memory (the buffer keeps what it had). */
int strbuf_reserve(strbuf_t *b, size_t more);
int strbuf_add(strbuf_t *b, const char *s, size_t n);

/* Frees the bytes; the buffer is empty and usable afterwards. */
void strbuf_free(strbuf_t *b);

/* Writes all n bytes to fd, retrying after EINTR and partial writes.
 * Returns 0, or -1 with errno set (EIO when write makes no progress). */
int write_all(int fd, const char *p, size_t n);

#endif
