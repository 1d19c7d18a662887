/* metrics_request.c - the metrics endpoint's request-head parser (see
 * metrics.h). Pure: no allocation, no I/O, any thread. */
#include <string.h>
#include "metrics.h"

static const char *const paths[] = {
    [METRICS_PATH_HEALTH] = "/health",     [METRICS_PATH_METRICS] = "/metrics",
    [METRICS_PATH_READY] = "/ready",       [METRICS_PATH_READERS] = "/readers",
    [METRICS_PATH_PIPELINE] = "/pipeline", [METRICS_PATH_TAP] = "/tap",
};

/* The end of the request head: a blank line ("\n\n" or "\n\r\n"). */
static int head_complete(const char *buf, size_t len) {
  for (size_t i = 0; i + 1 < len; i++) {
    if (buf[i] != '\n') continue;
    if (buf[i + 1] == '\n') return 1;
    if (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n') return 1;
  }
  return 0;
}

int metrics_request_parse(const char *buf, size_t len, metrics_request_t *r) {
  memset(r, 0, sizeof *r);
  if (!head_complete(buf, len)) {
    if (len >= METRICS_REQ_MAX) return r->code = 431;
    return 0;
  }
  /* the request line: "METHOD TARGET HTTP/1.x", up to the first newline */
  const char *eol = memchr(buf, '\n', len);
  size_t llen = (size_t)(eol - buf);
  const char *sp1 = memchr(buf, ' ', llen);
  const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', llen - (size_t)(sp1 + 1 - buf)) : NULL;
  size_t mlen = sp1 ? (size_t)(sp1 - buf) : 0;
  if (!sp2 || mlen >= 16 || (size_t)(sp2 - sp1 - 1) >= 1024 || (size_t)(eol - (sp2 + 1)) < 7 ||
      strncmp(sp2 + 1, "HTTP/1.", 7) != 0)
    return r->code = 400;
  r->head_only = mlen == 4 && memcmp(buf, "HEAD", 4) == 0;
  if (!r->head_only && !(mlen == 3 && memcmp(buf, "GET", 3) == 0)) return r->code = 405;
  const char *target = sp1 + 1;
  size_t tlen = (size_t)(sp2 - target);
  for (size_t i = 0; i < tlen; i++)
    if (target[i] == '?' || target[i] == '#') {
      if (target[i] == '?') {
        size_t q = i + 1;
        while (q < tlen && target[q] != '#') q++;
        r->query = (size_t)(target + i + 1 - buf);
        r->query_len = q - (i + 1);
      }
      tlen = i;
      break;
    }
  r->code = 404;
  for (int p = METRICS_PATH_HEALTH; p <= METRICS_PATH_TAP; p++)
    if (strlen(paths[p]) == tlen && memcmp(paths[p], target, tlen) == 0) {
      r->path = p;
      r->code = 200;
    }
  return r->code;
}
