/* protobuf.c - the protocol buffers wire format (see protobuf.h). */
#include <string.h>

#include "json.h"
#include "protobuf.h"

size_t pb_varint_len(uint64_t v) {
  size_t n = 1;

  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

/* Writes v as a varint at out (room for 10 bytes). Returns its length. */
static size_t put_varint(unsigned char *out, uint64_t v) {
  size_t n = 0;

  while (v >= 0x80) {
    out[n++] = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  out[n++] = (unsigned char)v;
  return n;
}

int pb_add_varint(strbuf_t *b, uint64_t v) {
  if (strbuf_reserve(b, 10) < 0) return -1;
  b->len += put_varint((unsigned char *)b->data + b->len, v);
  return 0;
}

int pb_add_tag(strbuf_t *b, unsigned field, unsigned wire) {
  return pb_add_varint(b, ((uint64_t)field << 3) | wire);
}

int pb_add_uint(strbuf_t *b, unsigned field, uint64_t v) {
  if (pb_add_tag(b, field, PB_VARINT) < 0) return -1;
  return pb_add_varint(b, v);
}

int pb_add_fixed64(strbuf_t *b, unsigned field, uint64_t v) {
  unsigned char le[8];
  int i;

  for (i = 0; i < 8; i++) le[i] = (unsigned char)(v >> (8 * i));
  if (pb_add_tag(b, field, PB_I64) < 0) return -1;
  return strbuf_add(b, (const char *)le, 8);
}

int pb_add_double(strbuf_t *b, unsigned field, double v) {
  uint64_t bits;

  memcpy(&bits, &v, sizeof bits);
  return pb_add_fixed64(b, field, bits);
}

int pb_add_bytes(strbuf_t *b, unsigned field, const char *s, size_t n) {
  if (pb_add_tag(b, field, PB_LEN) < 0 || pb_add_varint(b, n) < 0) return -1;
  return strbuf_add(b, s, n);
}

int pb_add_string(strbuf_t *b, unsigned field, const char *s, size_t n) {
  size_t len = json_utf8_len(s, n);

  if (len == n) return pb_add_bytes(b, field, s, n);
  if (pb_add_tag(b, field, PB_LEN) < 0 || pb_add_varint(b, len) < 0) return -1;
  return json_add_utf8(b, s, n);
}

int pb_open(strbuf_t *b, unsigned field, size_t *mark) {
  if (pb_add_tag(b, field, PB_LEN) < 0 || strbuf_add(b, "", 1) < 0) return -1;
  *mark = b->len - 1;
  return 0;
}

int pb_close(strbuf_t *b, size_t mark) {
  size_t len = b->len - mark - 1, n = pb_varint_len(len);

  if (n > 1) {
    if (strbuf_reserve(b, n - 1) < 0) return -1;
    memmove(b->data + mark + n, b->data + mark + 1, len);
    b->len += n - 1;
  }
  put_varint((unsigned char *)b->data + mark, len);
  return 0;
}
