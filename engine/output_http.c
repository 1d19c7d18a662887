/* output_http.c - the `http` kind and its presets `clickhouse`, `loki`,
 * `elasticsearch` and `otlp` (see output.h): one POST per body, through
 * http.h on the loop.
 *
 * Up to `concurrency` requests (4 by default) are in flight at once, each
 * with its own body; they may end in any order (output.h). The
 * line-based bodies (http NDJSON, clickhouse, elasticsearch; not
 * compressed) waiting in the queue are sent several batches to a request
 * (output.h, mergeable), up to batch_max_bytes (1 MiB unless set) and
 * batch_max_records (no limit unless set); both 0: one batch a request.
 *
 * compression = "gzip" or "zstd": each body is compressed when it is
 * encoded (pipeline thread) and sent with its Content-Encoding; a body
 * that must be cut or trimmed (413, Elasticsearch items) is decompressed,
 * cut, and each part compressed again.
 *
 * Replies: any 2xx delivers the body, whatever the reply's size: the reply
 * is read as it streams in and only what the kind needs is kept
 * (Elasticsearch's per-item statuses). 408, 429, 5xx and transport errors
 * are retried (Retry-After honoured); 413 splits a body of line-based
 * records (ndjson, clickhouse, elasticsearch) in two and sends each half,
 * down to a single record, which is dead-lettered; any other 4xx
 * dead-letters the body.
 *
 * Elasticsearch: an item that succeeded (2xx, or 409: the document exists)
 * is never sent again; items with 429 or 5xx are sent again with backoff;
 * items with any other status go to the dead-letter file, each with its own
 * reason. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include <lua.h>

#include "encode.h"
#include "http.h"
#include "log.h"
#include "output.h"

enum { K_HTTP, K_CLICKHOUSE, K_LOKI, K_ELASTICSEARCH, K_OTLP };
enum { C_NONE, C_GZIP, C_ZSTD }; /* compression: the body's Content-Encoding */

/* A mergeable output's batch_max_bytes unless set: what brought 100
 * containers' backfill to a collector answering in 100 ms within 2x of
 * one answering at once (docs/performance.md); also nginx's default
 * client_max_body_size, so a proxy in front of a collector takes it. */
#define MERGE_MAX_BYTES 1048576

/* zstd's level: its default (3), the one the figures in docs/performance.md
 * were measured with */
#define ZSTD_LEVEL 3

typedef struct http_output {
  output_t base; /* first: an output_t* is an http_output_t* */
  int kind;
  char *url;
  int json_array;
  int protobuf;   /* otlp: protobuf bodies (else JSON) */
  char **headers; /* "Name: value", as configured */
  size_t n_headers;
  char *user_env, *password_env, *bearer_env;
  char *ca_file;
  int tls_verify;
  int compression; /* C_NONE, C_GZIP or C_ZSTD */
  int record_id;   /* http: each record with its "id" (encode_json.c) */
  double timeout;
  char *table, *index;
  char **labels; /* loki: record fields */
  size_t n_labels;
  char **label_names, **label_values; /* loki: static labels */
  size_t n_label_names, n_label_values;
  char *tenant;  /* loki: X-Scope-OrgID */
  int json_line; /* loki: line_format = "json" */
  /* loop side */
  char *path, *base_url;
  char **hdr; /* the request's header lines */
  size_t n_hdr;
  char *userpwd;
  http_t *http;
  struct attempt *attempts; /* the requests in flight */
} http_output_t;

/* One request in flight. */
typedef struct attempt {
  struct attempt *next;
  http_output_t *h;
  output_body_t *body;
  http_req_t *req;
  es_reply_t *reply; /* elasticsearch: the reply being read */
} attempt_t;

/* --- pipeline thread: bodies -------------------------------------------- */

/* Replaces in's bytes with their gzip form (compress) or the reverse.
 * Returns 0, or -1 (b unchanged). */
static int gzip_transform(strbuf_t *b, int compress) {
  z_stream z;
  strbuf_t out = {0};
  int rc;

  memset(&z, 0, sizeof z);
  rc = compress
           ? deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY)
           : inflateInit2(&z, 15 + 16);
  if (rc != Z_OK) return -1;
  z.next_in = (Bytef *)b->data;
  z.avail_in = (uInt)b->len;
  do {
    if (strbuf_reserve(&out, 64 * 1024) < 0) {
      rc = Z_MEM_ERROR;
      break;
    }
    z.next_out = (Bytef *)out.data + out.len;
    z.avail_out = (uInt)(out.cap - out.len);
    rc = compress ? deflate(&z, Z_FINISH) : inflate(&z, Z_NO_FLUSH);
    out.len = out.cap - z.avail_out;
  } while (rc == Z_OK || (rc == Z_BUF_ERROR && z.avail_out == 0));
  if (compress) deflateEnd(&z);
  else inflateEnd(&z);
  if (rc != Z_STREAM_END) {
    strbuf_free(&out);
    return -1;
  }
  strbuf_free(b);
  *b = out;
  return 0;
}

/* Replaces b's bytes with their zstd frame (compress) or the reverse.
 * Returns 0, or -1 (b unchanged). */
static int zstd_transform(strbuf_t *b, int compress) {
  strbuf_t out = {0};
  size_t n;

  if (compress) {
    if (strbuf_reserve(&out, ZSTD_compressBound(b->len)) < 0) return -1;
    n = ZSTD_compress(out.data, out.cap, b->data, b->len, ZSTD_LEVEL);
  } else {
    unsigned long long size = ZSTD_getFrameContentSize(b->data, b->len);
    if (size == ZSTD_CONTENTSIZE_UNKNOWN || size == ZSTD_CONTENTSIZE_ERROR || size > SIZE_MAX - 1 ||
        strbuf_reserve(&out, (size_t)size + 1) < 0)
      return -1;
    n = ZSTD_decompress(out.data, out.cap, b->data, b->len);
  }
  if (ZSTD_isError(n)) {
    strbuf_free(&out);
    return -1;
  }
  out.len = n;
  strbuf_free(b);
  *b = out;
  return 0;
}

/* Compresses (compress) or decompresses b as the output's compression
 * says. Returns 0, or -1 (b unchanged). */
static int transform(const http_output_t *h, strbuf_t *b, int compress) {
  switch (h->compression) {
  case C_GZIP: return b->len > UINT32_MAX ? -1 : gzip_transform(b, compress);
  case C_ZSTD: return zstd_transform(b, compress);
  default: return 0;
  }
}

static int http_encode(output_t *o, lua_State *L, int idx, strbuf_t *b) {
  http_output_t *h = (http_output_t *)o;
  int rc;

  switch (h->kind) {
  case K_HTTP:
    rc = h->json_array ? encode_json_array(b, L, idx, h->record_id)
                       : encode_ndjson(b, L, idx, h->record_id);
    break;
  case K_CLICKHOUSE: rc = encode_clickhouse(b, L, idx); break;
  case K_LOKI: {
    const encode_loki_opts_t lo = {(const char *const *)h->labels,
                                   h->n_labels,
                                   (const char *const *)h->label_names,
                                   (const char *const *)h->label_values,
                                   h->n_label_names < h->n_label_values ? h->n_label_names
                                                                        : h->n_label_values,
                                   h->json_line};
    rc = encode_loki(b, L, idx, &lo);
    break;
  }
  case K_ELASTICSEARCH: rc = encode_elasticsearch(b, L, idx, h->index ? h->index : "logs"); break;
  default: rc = h->protobuf ? encode_otlp_proto(b, L, idx) : encode_otlp(b, L, idx); break;
  }
  if (rc == 0 && transform(h, b, 1) != 0) rc = -1;
  return rc;
}

/* Lines per record in a body that can be cut between records; 0: cannot. */
static int lines_per_record(const http_output_t *h) {
  switch (h->kind) {
  case K_HTTP: return h->json_array ? 0 : 1;
  case K_CLICKHOUSE: return 1;
  case K_ELASTICSEARCH: return 2;
  default: return 0;
  }
}

/* The body's bytes as written, in a new buffer (unzipped). Returns 0 or -1. */
static int plain_copy(http_output_t *h, const output_body_t *b, strbuf_t *out) {
  out->len = 0;
  if (strbuf_add(out, b->data, b->len) < 0) return -1;
  return transform(h, out, 0);
}

/* Puts text (unzipped) back as the body, zipped when the output zips. */
static int set_body(http_output_t *h, output_body_t *b, strbuf_t *text) {
  if (transform(h, text, 1) != 0) return -1;
  free(b->data);
  b->data = text->data;
  b->len = text->len;
  memset(text, 0, sizeof *text);
  return 0;
}

/* The offset after the first `lines` lines of s, or len. */
static size_t after_lines(const char *s, size_t len, size_t lines) {
  size_t off = 0;

  while (lines-- > 0 && off < len) {
    const char *nl = memchr(s + off, '\n', len - off);
    off = nl ? (size_t)(nl - s) + 1 : len;
  }
  return off;
}

/* --- loop thread: replies ----------------------------------------------- */

/* A 413: cuts body b in two halves of records, or dead-letters a
 * body of one record (or one that cannot be cut). */
static void too_large(http_output_t *h, output_body_t *b, const char *why) {
  output_t *o = &h->base;
  int per = lines_per_record(h);
  strbuf_t text = {0};
  char msg[400];

  if (per == 0 || b->records < 2) {
    snprintf(msg, sizeof msg, "%s (the server takes no body this large%s)", why,
             b->records < 2 ? " even for one record" : "");
    output_sent(o, b, OUTPUT_REJECTED, msg, 0);
    return;
  }
  size_t half = b->records / 2;
  if (plain_copy(h, b, &text) != 0) {
    strbuf_free(&text);
    output_sent(o, b, OUTPUT_FAILED, "out of memory splitting a body", 1);
    return;
  }
  size_t at = after_lines(text.data, text.len, half * (size_t)per);
  strbuf_t second = {0};
  if (strbuf_add(&second, text.data + at, text.len - at) < 0) {
    strbuf_free(&text);
    output_sent(o, b, OUTPUT_FAILED, "out of memory splitting a body", 1);
    return;
  }
  text.len = at;
  /* the head keeps the first half; the second goes right behind it */
  size_t second_records = b->records - half;
  if (set_body(h, b, &text) != 0 || output_split(o, b, b->len, half) != 0) {
    strbuf_free(&text);
    strbuf_free(&second);
    output_sent(o, b, OUTPUT_FAILED, "out of memory splitting a body", 1);
    return;
  }
  if (set_body(h, b->next, &second) != 0) { /* keep the two halves whole: merge back */
    strbuf_free(&second);
    output_sent(o, b, OUTPUT_REJECTED, "out of memory splitting a body", 0);
    return;
  }
  b->next->records = second_records;
  log_info(NULL, "output %s: %s: sending the batch in two parts (%zu and %zu records)", o->name,
           why, half, second_records);
  output_sent(o, b, OUTPUT_AGAIN, NULL, 0);
}

/* Elasticsearch: settles the items of body b by their statuses. */
static void bulk_settled(http_output_t *h, output_body_t *b, const es_reply_t *reply) {
  output_t *o = &h->base;
  const es_item_t *items;
  size_t n, i, off = 0, retry = 0, failed = 0;
  strbuf_t text = {0}, keep = {0};
  const char *why = NULL;

  if (es_reply_items(reply, &items, &n) < 0) {
    output_sent(o, b, OUTPUT_REJECTED, "the answer is not a _bulk reply", 0);
    return;
  }
  for (i = 0; i < n; i++)
    if (items[i].reason) failed++;
  if (failed == 0 && n >= b->records) {
    output_sent(o, b, OUTPUT_DELIVERED, NULL, 0);
    return;
  }
  if (plain_copy(h, b, &text) != 0) {
    strbuf_free(&text);
    output_sent(o, b, OUTPUT_FAILED, "out of memory reading a _bulk reply", 1);
    return;
  }
  size_t total = text.len;
  for (i = 0; i < b->records && off < total; i++) {
    size_t end = off + after_lines(text.data + off, total - off, 2);
    int status = i < n ? items[i].status : 0;
    if (i < n && (!items[i].reason || status == 409)) {
      /* taken (409: a document with this id exists already) */
    } else if (i >= n || status == 429 || status >= 500 || status == 408) {
      if (strbuf_add(&keep, text.data + off, end - off) < 0) break;
      retry++;
      if (!why) why = i < n ? items[i].reason : "the _bulk reply names fewer items than were sent";
    } else {
      output_dead_letter(o, text.data + off, end - off, 1, items[i].reason);
    }
    off = end;
  }
  strbuf_free(&text);
  if (i < b->records && off < total) { /* out of memory: send it all again */
    strbuf_free(&keep);
    output_sent(o, b, OUTPUT_FAILED, "out of memory reading a _bulk reply", 1);
    return;
  }
  if (retry == 0) {
    strbuf_free(&keep);
    output_sent(o, b, OUTPUT_DELIVERED, NULL, 0);
    return;
  }
  b->records = retry;
  if (set_body(h, b, &keep) != 0) {
    strbuf_free(&keep);
    output_sent(o, b, OUTPUT_FAILED, "out of memory reading a _bulk reply", 1);
    return;
  }
  char msg[400];
  snprintf(msg, sizeof msg, "%zu items to send again: %s", retry, why);
  output_sent(o, b, OUTPUT_FAILED, msg, 0);
}

static int on_reply_body(void *ud, const char *data, size_t len) {
  attempt_t *a = ud;

  if (a->reply) es_reply_feed(a->reply, data, len);
  return 0;
}

/* Takes a out of its output's list and frees it. */
static void attempt_free(attempt_t *a) {
  for (attempt_t **link = &a->h->attempts; *link; link = &(*link)->next)
    if (*link == a) {
      *link = a->next;
      break;
    }
  es_reply_free(a->reply);
  free(a);
}

static void on_done(void *ud, const http_result_t *r) {
  attempt_t *a = ud;
  http_output_t *h = a->h;
  output_t *o = &h->base;
  output_body_t *b = a->body;
  es_reply_t *reply = a->reply; /* output_sent may start the next request */
  char why[300];

  a->reply = NULL;
  attempt_free(a);
  if (r->ok && r->status >= 200 && r->status < 300) {
    if (h->kind == K_ELASTICSEARCH) bulk_settled(h, b, reply);
    else output_sent(o, b, OUTPUT_DELIVERED, NULL, 0);
  } else if (r->status == 0 || (r->status >= 200 && r->status < 300)) {
    snprintf(why, sizeof why, "%s", r->error ? r->error : "no answer");
    output_sent(o, b, OUTPUT_FAILED, why, 0);
  } else {
    snprintf(why, sizeof why, "HTTP %ld: %.200s", r->status,
             r->body_len ? r->body : (r->error ? r->error : ""));
    for (char *p = why; *p; p++)
      if (*p == '\n' || *p == '\r') *p = ' ';
    if (r->status == 413) too_large(h, b, why);
    else if (r->status == 408 || r->status == 429 || r->status >= 500 || !r->ok)
      output_sent(o, b, OUTPUT_FAILED, why, r->retry_after);
    else output_sent(o, b, OUTPUT_REJECTED, why, 0); /* the server will never take this body */
  }
  es_reply_free(reply);
}

static void http_send(output_t *o, output_body_t *b) {
  static const http_handler_t handler = {NULL, on_reply_body, on_done};
  http_output_t *h = (http_output_t *)o;
  char *copy = malloc(b->len ? b->len : 1);
  attempt_t *a = calloc(1, sizeof *a);

  if (!copy || !a || (h->kind == K_ELASTICSEARCH && !(a->reply = es_reply_new()))) {
    free(copy);
    free(a);
    output_sent(o, b, OUTPUT_FAILED, "out of memory", 1);
    return;
  }
  a->h = h;
  a->body = b;
  a->next = h->attempts;
  h->attempts = a;
  memcpy(copy, b->data, b->len);
  http_opts_t opts = {.body = copy,
                      .body_len = b->len,
                      .headers = (const char *const *)h->hdr,
                      .n_headers = h->n_hdr,
                      .timeout_ms = (long)(h->timeout * 1000),
                      .ca_file = h->ca_file,
                      .insecure = !h->tls_verify,
                      .userpwd = h->userpwd};
  a->req = http_request(h->http, h->path, 0, &opts, &handler, a);
  if (!a->req) {
    attempt_free(a);
    output_sent(o, b, OUTPUT_FAILED, "cannot start a request (out of memory)", 1);
  }
}

/* --- loop thread: life -------------------------------------------------- */

static void free_list(char **l, size_t n) {
  for (size_t i = 0; i < n; i++) free(l[i]);
  free(l);
}

/* Splits url into scheme://host:port and the path (default def). */
static int split_url(const char *url, char **base, char **path, const char *def) {
  const char *hp = strstr(url, "://");
  if (!hp) return -1;
  const char *slash = strchr(hp + 3, '/');
  size_t blen = slash ? (size_t)(slash - url) : strlen(url);
  *base = strndup(url, blen);
  *path = strdup(slash && slash[1] ? slash : def);
  return *base && *path ? 0 : -1;
}

static const char *default_path(int kind) {
  switch (kind) {
  case K_LOKI: return "/loki/api/v1/push";
  case K_ELASTICSEARCH: return "/_bulk";
  case K_OTLP: return "/v1/logs";
  default: return "/";
  }
}

static int add_header(http_output_t *h, const char *fmt, const char *a) {
  size_t len = strlen(fmt) + strlen(a) + 1;
  char **grown = realloc(h->hdr, (h->n_hdr + 1) * sizeof *grown);
  char *line = malloc(len);

  if (grown) h->hdr = grown;
  if (!grown || !line) {
    free(line);
    return -1;
  }
  snprintf(line, len, fmt, a);
  h->hdr[h->n_hdr++] = line;
  return 0;
}

static char *url_escape_query(const char *s) {
  size_t n = strlen(s);
  char *out = malloc(n * 3 + 1), *o = out;
  if (!out) return NULL;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
        *p == '-' || *p == '_' || *p == '.')
      *o++ = (char)*p;
    else o += sprintf(o, "%%%02X", *p);
  }
  *o = '\0';
  return out;
}

static int http_start(output_t *o, uv_loop_t *loop, char *err, size_t errlen) {
  http_output_t *h = (http_output_t *)o;

  /* a start that failed may be tried again: begin afresh */
  free_list(h->hdr, h->n_hdr);
  h->hdr = NULL;
  h->n_hdr = 0;
  free(h->path);
  free(h->base_url);
  free(h->userpwd);
  h->path = h->base_url = h->userpwd = NULL;
  if (split_url(h->url, &h->base_url, &h->path, default_path(h->kind)) != 0) {
    snprintf(err, errlen, "output %s: bad url '%s'", o->name, h->url);
    return -1;
  }
  if (h->kind == K_CLICKHOUSE) { /* the query goes in the URL */
    char *q = NULL, *t = url_escape_query(h->table ? h->table : "logs");
    size_t len = strlen(h->path) + (t ? strlen(t) : 0) + 96;
    if (t && (q = malloc(len)))
      snprintf(q, len, "%s%squery=INSERT%%20INTO%%20%s%%20FORMAT%%20JSONEachRow", h->path,
               strchr(h->path, '?') ? "&" : "?", t);
    free(t);
    if (!q) goto oom;
    free(h->path);
    h->path = q;
  }
  const char *ctype = (h->kind == K_HTTP && !h->json_array) || h->kind == K_ELASTICSEARCH
                          ? "application/x-ndjson"
                      : h->protobuf ? "application/x-protobuf"
                                    : "application/json";
  if (add_header(h, "Content-Type: %s", ctype) != 0) goto oom;
  if (h->compression != C_NONE &&
      add_header(h, "Content-Encoding: %s", h->compression == C_GZIP ? "gzip" : "zstd") != 0)
    goto oom;
  for (size_t i = 0; i < h->n_headers; i++)
    if (add_header(h, "%s", h->headers[i]) != 0) goto oom;
  if (h->tenant && add_header(h, "X-Scope-OrgID: %s", h->tenant) != 0) goto oom;
  if (h->bearer_env) {
    const char *tok = getenv(h->bearer_env);
    if (!tok || !*tok) {
      snprintf(err, errlen, "output %s: the environment variable %s (bearer token) is not set",
               o->name, h->bearer_env);
      return -1;
    }
    if (add_header(h, "Authorization: Bearer %s", tok) != 0) goto oom;
  }
  if (h->user_env) {
    const char *u = getenv(h->user_env), *p = h->password_env ? getenv(h->password_env) : "";
    if (!u || !p) {
      snprintf(err, errlen,
               "output %s: the environment variables for basic auth (%s, %s) are not set", o->name,
               h->user_env, h->password_env ? h->password_env : "-");
      return -1;
    }
    size_t len = strlen(u) + strlen(p) + 2;
    if (!(h->userpwd = malloc(len))) goto oom;
    snprintf(h->userpwd, len, "%s:%s", u, p);
  }
  if (!(h->http = http_new(loop, h->base_url, err, errlen))) return -1;
  o->handles++; /* the client counts as one handle until it is closed */
  return 0;
oom:
  snprintf(err, errlen, "out of memory");
  return -1;
}

static void client_closed(void *ud) {
  http_output_t *h = ud;

  h->http = NULL;
  output_handle_closed(&h->base);
}

static int http_stop(output_t *o) {
  http_output_t *h = (http_output_t *)o;

  for (attempt_t *a = h->attempts, *next; a; a = next) { /* every request taken back */
    next = a->next;
    http_cancel(a->req); /* no callback of it runs again */
    es_reply_free(a->reply);
    free(a);
  }
  h->attempts = NULL;
  if (h->http) http_close(h->http, client_closed, h);
  return 0;
}

static void http_free(output_t *o) {
  http_output_t *h = (http_output_t *)o;

  free(h->url);
  free_list(h->headers, h->n_headers);
  free(h->user_env);
  free(h->password_env);
  free(h->bearer_env);
  free(h->ca_file);
  free(h->table);
  free(h->index);
  free_list(h->labels, h->n_labels);
  free_list(h->label_names, h->n_label_names);
  free_list(h->label_values, h->n_label_values);
  free(h->tenant);
  free(h->path);
  free(h->base_url);
  free_list(h->hdr, h->n_hdr);
  free(h->userpwd);
  for (attempt_t *a = h->attempts, *next; a; a = next) {
    next = a->next;
    es_reply_free(a->reply);
    free(a);
  }
}

static const output_kind_t kinds[] = {
    {"http", http_encode, http_start, http_send, NULL, http_stop, http_free, NULL},
    {"clickhouse", http_encode, http_start, http_send, NULL, http_stop, http_free, NULL},
    {"loki", http_encode, http_start, http_send, NULL, http_stop, http_free, NULL},
    {"elasticsearch", http_encode, http_start, http_send, NULL, http_stop, http_free, NULL},
    {"otlp", http_encode, http_start, http_send, NULL, http_stop, http_free, NULL},
};

static char *opt_strdup(lua_State *L, int idx, const char *key, int *oom) {
  lua_getfield(L, idx, key);
  const char *s = lua_tostring(L, -1);
  char *copy = s ? strdup(s) : NULL;
  if (s && !copy) *oom = 1;
  lua_pop(L, 1);
  return copy;
}

/* Copies the strings of the list at idx.key. */
static char **opt_list(lua_State *L, int idx, const char *key, size_t *n, int *oom) {
  lua_getfield(L, idx, key);
  size_t len = lua_istable(L, -1) ? lua_objlen(L, -1) : 0;
  char **out = calloc(len ? len : 1, sizeof *out);
  *n = 0;
  if (!out) *oom = 1;
  for (size_t i = 1; out && i <= len; i++) {
    lua_rawgeti(L, -1, (int)i);
    const char *s = lua_tostring(L, -1);
    if (s && (out[*n] = strdup(s))) (*n)++;
    else if (s) *oom = 1;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return out;
}

static int opt_flag(lua_State *L, int idx, const char *key, int def) {
  lua_getfield(L, idx, key);
  int v = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* An http-kind output from its validated table at idx. */
output_t *output_http_new(lua_State *L, int idx, const char *type) {
  http_output_t *h = calloc(1, sizeof *h);
  int oom = 0, k;

  if (!h) return NULL;
  for (k = 0; k < (int)(sizeof kinds / sizeof *kinds) - 1; k++)
    if (strcmp(kinds[k].type, type) == 0) break;
  h->kind = k;
  oom |= output_init(&h->base, &kinds[k], L, idx) != 0;
  h->url = opt_strdup(L, idx, "url", &oom);
  lua_getfield(L, idx, "format");
  h->json_array = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "json") == 0;
  lua_pop(L, 1);
  lua_getfield(L, idx, "encoding");
  h->protobuf =
      h->kind == K_OTLP && !(lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "json") == 0);
  lua_pop(L, 1);
  h->headers = opt_list(L, idx, "headers", &h->n_headers, &oom);
  h->user_env = opt_strdup(L, idx, "user_env", &oom);
  h->password_env = opt_strdup(L, idx, "password_env", &oom);
  h->bearer_env = opt_strdup(L, idx, "bearer_env", &oom);
  h->ca_file = opt_strdup(L, idx, "ca_file", &oom);
  h->tls_verify = opt_flag(L, idx, "tls_verify", 1);
  lua_getfield(L, idx, "compression");
  if (lua_isstring(L, -1))
    h->compression = strcmp(lua_tostring(L, -1), "gzip") == 0   ? C_GZIP
                     : strcmp(lua_tostring(L, -1), "zstd") == 0 ? C_ZSTD
                                                                : C_NONE;
  lua_pop(L, 1);
  h->record_id = opt_flag(L, idx, "record_id", 0);
  /* NDJSON, JSONEachRow and _bulk bodies can be sent several as one; a
   * compressed body is one stream */
  h->base.mergeable = lines_per_record(h) > 0 && h->compression == C_NONE;
  h->base.binary = h->protobuf || h->compression != C_NONE;
  lua_getfield(L, idx, "concurrency");
  if (lua_isnil(L, -1)) h->base.cfg.concurrency = 4;
  lua_pop(L, 1);
  lua_getfield(L, idx, "batch_max_bytes");
  if (lua_isnil(L, -1) && h->base.mergeable) h->base.cfg.batch_max_bytes = MERGE_MAX_BYTES;
  lua_pop(L, 1);
  lua_getfield(L, idx, "timeout");
  h->timeout = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 30;
  lua_pop(L, 1);
  h->table = opt_strdup(L, idx, "table", &oom);
  h->index = opt_strdup(L, idx, "index", &oom);
  h->labels = opt_list(L, idx, "labels", &h->n_labels, &oom);
  h->label_names = opt_list(L, idx, "label_names", &h->n_label_names, &oom);
  h->label_values = opt_list(L, idx, "label_values", &h->n_label_values, &oom);
  h->tenant = opt_strdup(L, idx, "tenant", &oom);
  lua_getfield(L, idx, "line_format");
  h->json_line = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "json") == 0;
  lua_pop(L, 1);
  if (oom || !h->url) {
    output_free(&h->base);
    return NULL;
  }
  return &h->base;
}
