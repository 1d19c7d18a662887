/* nats_subject.c - the nats output's subject template (see output_nats.h):
 * pure functions, built with or without libnats. */
#include <stdio.h>
#include <string.h>

#include "output_nats.h"

int nats_template_parse(nats_template_t *t, const char *text, char *err, size_t n) {
  memset(t, 0, sizeof *t);
  const char *p = text;
  if (!*p) {
    snprintf(err, n, "is empty");
    return -1;
  }
  while (*p) {
    if (t->n == NATS_TEMPLATE_MAX) {
      snprintf(err, n, "has more than %d parts", NATS_TEMPLATE_MAX);
      return -1;
    }
    nats_part_t *part = &t->parts[t->n];
    if (*p == '{') {
      const char *close = strchr(p + 1, '}');
      size_t len = close ? (size_t)(close - p - 1) : 0;
      if (!close || len == 0 || len >= sizeof part->text) {
        snprintf(err, n, "has an unclosed or empty {field}");
        return -1;
      }
      for (const char *c = p + 1; c < close; c++)
        if (!(*c == '_' || (*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z') ||
              (*c >= 'A' && *c <= 'Z'))) {
          snprintf(err, n, "names a field with a character other than letters, digits and _");
          return -1;
        }
      part->field = 1;
      memcpy(part->text, p + 1, len);
      p = close + 1;
    } else {
      size_t len = strcspn(p, "{");
      if (len >= sizeof part->text) {
        snprintf(err, n, "is too long");
        return -1;
      }
      for (size_t i = 0; i < len; i++)
        if (p[i] == '}' || p[i] == '*' || p[i] == '>' || (unsigned char)p[i] <= ' ' ||
            p[i] == 0x7f) {
          snprintf(err, n, "holds '%c' outside a {field}: a subject takes no spaces, *, > or }",
                   (unsigned char)p[i] <= ' ' ? ' ' : p[i]);
          return -1;
        }
      memcpy(part->text, p, len);
      p += len;
    }
    t->n++;
  }
  /* no empty token: no leading or trailing dot, no ".." */
  if (text[0] == '.' || text[strlen(text) - 1] == '.' || strstr(text, "..")) {
    snprintf(err, n, "has an empty token (a leading or trailing dot, or \"..\")");
    return -1;
  }
  return 0;
}

size_t nats_token(const char *in, size_t len, char *out) {
  if (len == 0) {
    out[0] = '_';
    return 1;
  }
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)in[i];
    int bad = c <= ' ' || c == 0x7f || c == '.' || c == '*' || c == '>';
    out[i] = in[i];
    if (bad) out[i] = '_';
  }
  return len;
}
