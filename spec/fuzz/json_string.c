/* json_string.c - libFuzzer target for the JSON string encoder
 * (json_add_string, engine/json.c).
 *
 * Any bytes must encode to one valid JSON string literal holding valid
 * UTF-8, that decodes back to the input with every invalid UTF-8 sequence
 * replaced by U+FFFD (one per maximal invalid subpart, as Unicode
 * recommends). The literal is decoded here by a strict reader written for
 * this target, and must also be accepted by cJSON. */
#include <cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

/* Unicode's table of well-formed sequences: for a lead byte, the length
 * and the range allowed for the second byte (the others are 80..BF). */
static int seq_shape(unsigned char c, unsigned char *lo, unsigned char *hi)
{
  *lo = 0x80;
  *hi = 0xBF;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return 2;
  if (c == 0xE0) { *lo = 0xA0; return 3; }
  if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) return 3;
  if (c == 0xED) { *hi = 0x9F; return 3; }
  if (c == 0xF0) { *lo = 0x90; return 4; }
  if (c >= 0xF1 && c <= 0xF3) return 4;
  if (c == 0xF4) { *hi = 0x8F; return 4; }
  return 0;
}

/* Writes s with each maximal invalid subpart replaced by EF BF BD into out
 * (room for 3 * n bytes); returns the length. */
static size_t replace_invalid(const unsigned char *s, size_t n, unsigned char *out)
{
  size_t o = 0, i = 0;
  while (i < n) {
    unsigned char lo, hi;
    int len = seq_shape(s[i], &lo, &hi);
    int ok = 1;
    size_t j = 1;
    if (len == 0) {
      ok = 0;
    } else {
      for (; j < (size_t)len; j++) {
        unsigned char b = s[i + j < n ? i + j : i]; /* past the end: invalid */
        if (i + j >= n || b < (j == 1 ? lo : 0x80) || b > (j == 1 ? hi : 0xBF)) {
          ok = 0;
          break;
        }
      }
    }
    if (ok) {
      memcpy(out + o, s + i, (size_t)len);
      o += (size_t)len;
      i += (size_t)len;
    } else {
      memcpy(out + o, "\xEF\xBF\xBD", 3);
      o += 3;
      i += j; /* the subpart that was a valid start, at least one byte */
    }
  }
  return o;
}

static int hexval(unsigned char c)
{
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Decodes the JSON string literal p[0..n) (the whole of it) into out.
 * Returns the decoded length, or -1 when it is not a valid literal. Only
 * \u escapes below U+0080 are expected from the encoder. */
static long decode_literal(const unsigned char *p, size_t n, unsigned char *out)
{
  size_t o = 0;
  if (n < 2 || p[0] != '"' || p[n - 1] != '"')
    return -1;
  for (size_t i = 1; i < n - 1; i++) {
    unsigned char c = p[i];
    if (c < 0x20 || c == '"')
      return -1;
    if (c != '\\') {
      out[o++] = c;
      continue;
    }
    if (++i >= n - 1)
      return -1;
    switch (p[i]) {
    case '"': out[o++] = '"'; break;
    case '\\': out[o++] = '\\'; break;
    case '/': out[o++] = '/'; break;
    case 'b': out[o++] = '\b'; break;
    case 'f': out[o++] = '\f'; break;
    case 'n': out[o++] = '\n'; break;
    case 'r': out[o++] = '\r'; break;
    case 't': out[o++] = '\t'; break;
    case 'u': {
      if (i + 4 >= n - 1)
        return -1;
      int v = 0;
      for (int k = 1; k <= 4; k++) {
        int h = hexval(p[i + k]);
        if (h < 0)
          return -1;
        v = v * 16 + h;
      }
      if (v >= 0x80)
        return -1;
      out[o++] = (unsigned char)v;
      i += 4;
      break;
    }
    default:
      return -1;
    }
  }
  return (long)o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char *in = malloc(size ? size : 1); /* exact size: overreads are caught */
  unsigned char *want = malloc(3 * size + 1), *got = malloc(3 * size + 1);
  if (!in || !want || !got)
    abort();
  memcpy(in, data, size);

  strbuf_t b = {0};
  if (strbuf_add(&b, "x", 1) != 0 || json_add_string(&b, in, size) != 0)
    abort();
  if (b.data[0] != 'x')
    abort(); /* appends, keeps what was there */
  const unsigned char *lit = (const unsigned char *)b.data + 1;
  size_t lit_len = b.len - 1;

  size_t want_len = replace_invalid(data, size, want);
  long got_len = decode_literal(lit, lit_len, got);
  if (got_len < 0 || (size_t)got_len != want_len || memcmp(got, want, want_len) != 0)
    abort();
  /* The literal itself is valid UTF-8. */
  unsigned char *again = malloc(3 * lit_len + 1);
  if (!again)
    abort();
  if (replace_invalid(lit, lit_len, again) != lit_len || memcmp(again, lit, lit_len) != 0)
    abort();

  cJSON *j = cJSON_ParseWithLength((const char *)lit, lit_len);
  if (!j || !cJSON_IsString(j))
    abort();
  size_t upto = strlen(j->valuestring); /* cJSON strings end at a NUL */
  const unsigned char *nul = memchr(want, 0, want_len);
  if (upto != (nul ? (size_t)(nul - want) : want_len) || memcmp(j->valuestring, want, upto) != 0)
    abort();
  cJSON_Delete(j);

  strbuf_free(&b);
  free(in);
  free(want);
  free(got);
  free(again);
  return 0;
}
