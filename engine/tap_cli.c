/* tap_cli.c - `engine tap` (see tap_cli.h). */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tap_cli.h"

static const char usage[] =
    "usage: engine tap [URL] [--filter NAME | --output NAME] [--select GLOB] [--limit N]\n"
    "  URL            the engine's metrics endpoint (default http://127.0.0.1:9180;\n"
    "                 engine.metrics.listen in pipeline.lua turns it on)\n"
    "  --filter NAME  the records as filter NAME left them (default: as the\n"
    "                 filters get them)\n"
    "  --output NAME  the records as output NAME took them\n"
    "  --select GLOB  only records of containers whose name matches GLOB\n"
    "  --limit N      end after N records (default: until Ctrl-C)\n"
    "Prints one JSON object per record and line. The engine drops records for\n"
    "a tap that does not keep up; it never waits for one.\n";

typedef struct answer {
  long status;
  char err[512]; /* the body of a refusal */
  size_t err_len;
} answer_t;

static size_t on_body(char *data, size_t size, size_t n, void *ud) {
  answer_t *a = ud;
  size_t len = size * n;
  if (a->status == 200) {
    if (fwrite(data, 1, len, stdout) != len) return 0;
    fflush(stdout);
    return len;
  }
  size_t room = sizeof a->err - 1 - a->err_len;
  size_t take = len < room ? len : room;
  memcpy(a->err + a->err_len, data, take);
  a->err_len += take;
  a->err[a->err_len] = '\0';
  return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *ud) {
  answer_t *a = ud;
  size_t len = size * n;
  if (len > 12 && strncmp(data, "HTTP/1.", 7) == 0) { /* "HTTP/1.1 200 OK" */
    char digits[4] = {data[9], data[10], data[11], '\0'};
    char *end;
    long code = strtol(digits, &end, 10);
    if (!*end) a->status = code;
  }
  return len;
}

/* Appends "&key=value", value %-escaped, to q. Returns 0, or -1 when q is
 * full. */
static int add_param(char *q, size_t n, const char *key, const char *value) {
  size_t len = strlen(q);
  int w = snprintf(q + len, n - len, "%s%s=", len ? "&" : "", key);
  if (w < 0 || (size_t)w >= n - len) return -1;
  len += (size_t)w;
  for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
    int plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                *p == '-' || *p == '_' || *p == '.' || *p == '*';
    w = plain ? snprintf(q + len, n - len, "%c", *p) : snprintf(q + len, n - len, "%%%02X", *p);
    if (w < 0 || (size_t)w >= n - len) return -1;
    len += (size_t)w;
  }
  return 0;
}

int tap_main(int argc, char **argv) {
  const char *url = "http://127.0.0.1:9180", *filter = NULL, *output = NULL, *glob = NULL;
  char *end;
  unsigned long long limit = 0;
  if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    fputs(usage, stdout);
    return 0;
  }
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--filter") && i + 1 < argc) filter = argv[++i];
    else if (!strcmp(argv[i], "--output") && i + 1 < argc) output = argv[++i];
    else if (!strcmp(argv[i], "--select") && i + 1 < argc) glob = argv[++i];
    else if (!strcmp(argv[i], "--limit") && i + 1 < argc) {
      limit = strtoull(argv[++i], &end, 10);
      if (*end || limit == 0) goto bad;
    } else if (argv[i][0] == '-') goto bad;
    else url = argv[i];
  }
  if (filter && output) goto bad;
  char query[2048] = "";
  if (add_param(query, sizeof query, "point",
                filter   ? "filter"
                : output ? "output"
                         : "input") ||
      ((filter || output) && add_param(query, sizeof query, "name", filter ? filter : output)) ||
      (glob && add_param(query, sizeof query, "select", glob)))
    goto bad;
  if (limit) {
    char num[24];
    snprintf(num, sizeof num, "%llu", limit);
    if (add_param(query, sizeof query, "limit", num)) goto bad;
  }
  char full[3072];
  size_t blen = strlen(url);
  while (blen && url[blen - 1] == '/') blen--;
  snprintf(full, sizeof full, "%s%.*s/tap?%s", strstr(url, "://") ? "" : "http://", (int)blen, url,
           query);

  if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
    fprintf(stderr, "engine tap: libcurl does not start\n");
    return 1;
  }
  CURL *curl = curl_easy_init();
  if (!curl) {
    fprintf(stderr, "engine tap: out of memory\n");
    curl_global_cleanup();
    return 1;
  }
  answer_t a = {0};
  char cerr[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(curl, CURLOPT_URL, full);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &a);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &a);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, cerr);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  CURLcode rc = curl_easy_perform(curl);
  curl_easy_cleanup(curl);
  curl_global_cleanup();
  if (a.status && a.status != 200) {
    fprintf(stderr, "engine tap: %s answered %ld: %s", full, a.status, a.err_len ? a.err : "\n");
    return 1;
  }
  if (rc != CURLE_OK && !(a.status == 200 && rc == CURLE_PARTIAL_FILE)) {
    fprintf(stderr, "engine tap: %s: %s\n", full, cerr[0] ? cerr : curl_easy_strerror(rc));
    return 1;
  }
  return 0;

bad:
  fputs(usage, stderr);
  return 2;
}
