/* receiver - an HTTP/1.1 server for the output specs: it records every
 * request and answers from a script.
 *
 *   receiver --dir DIR [--port P] [--script LIST] [--body-STATUS FILE]...
 *            [--delay-ms D] [--delays LIST] [--close-after N]
 *
 * Listens on 127.0.0.1:P (P 0, the default, picks a free port) and prints
 * "ready <port>" on stdout once listening. Single-threaded: one libuv loop.
 * Exits 0 on SIGTERM or SIGINT after closing every handle; 2 on bad
 * arguments, 1 when it cannot listen.
 *
 * Requests: any method; bodies with Content-Length or chunked
 * Transfer-Encoding (no compression is undone); "Expect: 100-continue" is
 * answered with 100 Continue; connections are kept alive unless the client
 * says "Connection: close" or speaks HTTP/1.0. Request number N (counted
 * from 1 over all connections) is saved as DIR/NNNNNN.body (the body,
 * de-chunked) and then DIR/NNNNNN.req (the request line and the header
 * lines as received, each ending in LF); both appear whole (written to a
 * temporary name, then renamed), the .req last.
 *
 * Answers: --script "200,500,429:2,400" gives the status of requests 1, 2,
 * 3, ... in turn; after the last entry its status repeats (default "200").
 * "CODE:N" adds "Retry-After: N". --body-STATUS FILE sends FILE's content
 * as the body of every answer with that status (default: none), as
 * application/json. --delay-ms D answers each request D ms after it
 * arrived whole (the connection reads nothing more meanwhile). --delays
 * "300,0,120" gives request N the ((N-1) mod length)-th delay of the list in
 * ms instead (so answers on different connections come out of order).
 * --close-after N closes each connection after its N-th answer (sent with
 * "Connection: close"). A malformed request gets 400 and the connection is
 * closed. Each request is logged on stderr as "request N METHOD TARGET ->
 * STATUS at SECONDS.NANOSECONDS" (the wall clock when it arrived whole),
 * then "waiting N K": K requests, this one included, were waiting for
 * their delayed answers at that moment (over all connections).
 *
 * --bulk LIST answers a 2xx like Elasticsearch's _bulk API: the body holds
 * one item per two request lines (action and document), and item number K,
 * counted from 1 over every request, gets the K-th status of LIST
 * ("201,429,400", ...; 201 past its end), with an error object for a status
 * outside 2xx (type "status_<N>", reason "item <K> refused").
 *
 * --unique-ids (with or without --bulk) keeps the _id of every document it
 * took, as Elasticsearch does: an item whose action line names an _id
 * taken before gets 409 (type "version_conflict_engine_exception") instead
 * of its 2xx. Each document taken (2xx, never one answered 409) is appended
 * to DIR/indexed, one document line each, before the answer is sent; items
 * answered 409 are counted on stderr ("bulk conflicts N", the total). */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include <uv.h>

#include "json.h"

enum {
  HEADERS_MAX = 64 * 1024,
  BUFFER_MAX = 256 * 1024 * 1024,
  SCRIPT_MAX = 256,
  BODIES_MAX = 32,
  READ_CHUNK = 64 * 1024
};

typedef struct step {
  int status;
  long retry_after; /* < 0: none */
} step_t;

typedef struct body_file {
  int status;
  char *data;
  size_t len;
} body_file_t;

typedef struct conn conn_t;

struct conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  conn_t *prev, *next;
  int handles;       /* handles not yet closed */
  int closing;
  int busy;          /* an answer waits for its delay */
  int continue_sent; /* 100 Continue sent for the request being read */
  int close_after_answer;
  unsigned long answered;
  strbuf_t in;
  int pending_status; /* the delayed answer */
  long pending_retry;
  int pending_close;
  strbuf_t reply;     /* --bulk: the body of the answer being made */
};

typedef struct write_req {
  uv_write_t req;
  conn_t *conn;
  int close_after;
  char *data;
} write_req_t;

/* A parsed request whose bytes are all in the buffer. */
typedef struct request {
  const char *line; /* the request line */
  size_t line_len;
  const char *method, *target;
  size_t method_len, target_len;
  int http10;
  int keep_alive;
  int expect_continue;
  size_t header_end; /* offset of the body */
  size_t total;      /* bytes of the whole request */
  strbuf_t body;
} request_t;

static struct {
  uv_loop_t loop;
  uv_tcp_t server;
  uv_signal_t sigterm, sigint;
  conn_t *conns;
  const char *dir;
  int port;
  step_t script[SCRIPT_MAX];
  size_t n_script;
  body_file_t bodies[BODIES_MAX];
  size_t n_bodies;
  unsigned long delay_ms;
  unsigned long delays[SCRIPT_MAX]; /* --delays */
  size_t n_delays;
  unsigned long waiting; /* requests waiting for their delayed answers */
  unsigned long close_after;
  unsigned long requests;
  int *bulk;          /* --bulk statuses */
  size_t n_bulk;
  unsigned long bulk_items;
  int unique_ids;     /* --unique-ids */
  char **ids;         /* the _ids taken: open addressing, cap_ids slots */
  size_t n_ids, cap_ids;
  unsigned long conflicts;
  int stopping;
} g;

static void conn_close(conn_t *c);
static void conn_process(conn_t *c);

static const char *reason_phrase(int status)
{
  switch (status) {
  case 100: return "Continue";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 413: return "Payload Too Large";
  case 429: return "Too Many Requests";
  case 500: return "Internal Server Error";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  default: return "Status";
  }
}

/* ------------------------------------------------------------ files */

/* Writes data to dir/name through a temporary file and a rename. Returns 0
 * or -1 (with a message on stderr). */
static int save_file(const char *name, const char *data, size_t len)
{
  char path[PATH_MAX], tmp[PATH_MAX];
  FILE *f;
  int rc = -1;

  snprintf(path, sizeof path, "%s/%s", g.dir, name);
  snprintf(tmp, sizeof tmp, "%s/.%s.tmp", g.dir, name);
  f = fopen(tmp, "wb");
  if (f == NULL)
    goto err;
  if (len > 0 && fwrite(data, 1, len, f) != len) {
    fclose(f);
    goto err;
  }
  if (fclose(f) != 0 || rename(tmp, path) != 0)
    goto err;
  rc = 0;
err:
  if (rc < 0)
    fprintf(stderr, "receiver: cannot write %s: %s\n", path, strerror(errno));
  return rc;
}

/* Saves request number n: its body, then its head with LF line ends. */
static void save_request(unsigned long n, const request_t *r, const char *head)
{
  strbuf_t text = { 0 };
  const char *p = head, *end = head + r->header_end, *eol;
  char name[64];

  snprintf(name, sizeof name, "%06lu.body", n);
  save_file(name, r->body.data, r->body.len);
  while (p < end) {
    eol = memchr(p, '\n', (size_t)(end - p));
    if (eol == NULL)
      break;
    if (eol - p > 1 || (eol - p == 1 && p[0] != '\r'))
      strbuf_add(&text, p, (size_t)(eol - p) - (eol > p && eol[-1] == '\r' ? 1 : 0));
    else
      break; /* the blank line ending the headers */
    strbuf_add(&text, "\n", 1);
    p = eol + 1;
  }
  snprintf(name, sizeof name, "%06lu.req", n);
  save_file(name, text.data, text.len);
  strbuf_free(&text);
}

static int read_file(const char *path, char **data, size_t *len)
{
  strbuf_t b = { 0 };
  char chunk[8192];
  size_t n;
  FILE *f = fopen(path, "rb");

  if (f == NULL)
    return -1;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
    if (strbuf_add(&b, chunk, n) < 0) {
      fclose(f);
      strbuf_free(&b);
      return -1;
    }
  }
  fclose(f);
  *data = b.data;
  *len = b.len;
  return 0;
}

/* ---------------------------------------------------------- parsing */

/* 1 when the header line [p, p+len) is "name: <value>" (name without case);
 * then *value and *vlen give the value without surrounding blanks. */
static int header_is(const char *p, size_t len, const char *name, const char **value,
                     size_t *vlen)
{
  size_t n = strlen(name);
  const char *v, *e;

  if (len <= n || p[n] != ':' || strncasecmp(p, name, n) != 0)
    return 0;
  v = p + n + 1;
  e = p + len;
  while (v < e && (*v == ' ' || *v == '\t'))
    v++;
  while (e > v && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
    e--;
  *value = v;
  *vlen = (size_t)(e - v);
  return 1;
}

/* 1 when the comma-separated header value contains token (without case). */
static int has_token(const char *v, size_t vlen, const char *token)
{
  size_t n = strlen(token), i = 0, start;

  while (i < vlen) {
    while (i < vlen && (v[i] == ' ' || v[i] == ','))
      i++;
    start = i;
    while (i < vlen && v[i] != ',' && v[i] != ' ')
      i++;
    if (i - start == n && strncasecmp(v + start, token, n) == 0)
      return 1;
  }
  return 0;
}

/* Decodes a chunked body from s[0..len). Returns 1 with the data in out and
 * the bytes used in *used, 0 when more bytes are needed, -1 when it is
 * malformed. */
static int dechunk(const char *s, size_t len, strbuf_t *out, size_t *used)
{
  size_t pos = 0, size;
  const char *eol;
  char *end;

  out->len = 0;
  for (;;) {
    eol = memchr(s + pos, '\n', len - pos);
    if (eol == NULL)
      return len - pos > 1024 ? -1 : 0;
    errno = 0;
    size = strtoul(s + pos, &end, 16);
    if (end == s + pos || errno != 0 || size > BUFFER_MAX)
      return -1;
    pos = (size_t)(eol - s) + 1;
    if (size == 0)
      break;
    if (len - pos < size + 2)
      return 0;
    if (strbuf_add(out, s + pos, size) < 0)
      return -1;
    pos += size;
    if (s[pos] == '\r')
      pos++;
    if (s[pos] != '\n')
      return -1;
    pos++;
  }
  for (;;) { /* trailers, up to the blank line */
    eol = memchr(s + pos, '\n', len - pos);
    if (eol == NULL)
      return 0;
    if (eol == s + pos || (eol == s + pos + 1 && s[pos] == '\r')) {
      *used = (size_t)(eol - s) + 1;
      return 1;
    }
    pos = (size_t)(eol - s) + 1;
  }
}

/* Parses the request at the start of c->in into r. Returns 1 when it is
 * whole, 0 when more bytes are needed, -1 when it is malformed. */
static int parse_request(conn_t *c, request_t *r)
{
  const char *s = c->in.data, *p, *eol, *end, *sp1, *sp2, *v;
  const char *hend;
  size_t vlen, used = 0;
  unsigned long long clen = 0;
  int chunked = 0, close_req = 0, keep = 0, rc;
  char *num_end;

  memset(r, 0, sizeof *r);
  if (c->in.len == 0)
    return 0;
  hend = memmem(s, c->in.len, "\r\n\r\n", 4);
  if (hend == NULL)
    return c->in.len > HEADERS_MAX ? -1 : 0;
  r->header_end = (size_t)(hend - s) + 4;
  eol = memchr(s, '\n', r->header_end);
  r->line = s;
  r->line_len = (size_t)(eol - s) - (eol > s && eol[-1] == '\r' ? 1 : 0);
  sp1 = memchr(s, ' ', r->line_len);
  sp2 = sp1 ? memchr(sp1 + 1, ' ', r->line_len - (size_t)(sp1 + 1 - s)) : NULL;
  if (sp1 == NULL || sp2 == NULL)
    return -1;
  r->method = s;
  r->method_len = (size_t)(sp1 - s);
  r->target = sp1 + 1;
  r->target_len = (size_t)(sp2 - sp1 - 1);
  r->http10 = r->line_len - (size_t)(sp2 + 1 - s) == 8 && strncmp(sp2 + 1, "HTTP/1.0", 8) == 0;
  end = s + r->header_end;
  for (p = eol + 1; p < end; p = eol + 1) {
    eol = memchr(p, '\n', (size_t)(end - p));
    if (eol == NULL || eol - p <= 1)
      break;
    if (header_is(p, (size_t)(eol - p), "Content-Length", &v, &vlen)) {
      errno = 0;
      clen = strtoull(v, &num_end, 10);
      if (num_end != v + vlen || errno != 0 || clen > BUFFER_MAX)
        return -1;
    } else if (header_is(p, (size_t)(eol - p), "Transfer-Encoding", &v, &vlen)) {
      chunked = has_token(v, vlen, "chunked");
    } else if (header_is(p, (size_t)(eol - p), "Connection", &v, &vlen)) {
      close_req = has_token(v, vlen, "close");
      keep = has_token(v, vlen, "keep-alive");
    } else if (header_is(p, (size_t)(eol - p), "Expect", &v, &vlen)) {
      r->expect_continue = vlen == 12 && strncasecmp(v, "100-continue", 12) == 0;
    }
  }
  r->keep_alive = !close_req && (!r->http10 || keep);
  if (chunked) {
    rc = dechunk(s + r->header_end, c->in.len - r->header_end, &r->body, &used);
    if (rc <= 0) {
      strbuf_free(&r->body);
      return rc;
    }
    r->total = r->header_end + used;
    return 1;
  }
  if (c->in.len - r->header_end < clen)
    return 0;
  r->total = r->header_end + (size_t)clen;
  if (strbuf_add(&r->body, s + r->header_end, (size_t)clen) < 0)
    return -1;
  return 1;
}

/* --------------------------------------------------------- answering */

static void on_write(uv_write_t *req, int status)
{
  write_req_t *w = (write_req_t *)req;

  if (w->close_after || status < 0)
    conn_close(w->conn);
  free(w->data);
  free(w);
}

/* Queues bytes on the connection; with close_after the connection closes
 * once they are written. */
static void send_bytes(conn_t *c, const char *data, size_t len, int close_after)
{
  write_req_t *w;
  uv_buf_t buf;

  if (c->closing)
    return;
  w = calloc(1, sizeof *w);
  if (w == NULL || (w->data = malloc(len)) == NULL) {
    free(w);
    conn_close(c);
    return;
  }
  memcpy(w->data, data, len);
  w->conn = c;
  w->close_after = close_after;
  buf = uv_buf_init(w->data, (unsigned)len);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write) < 0) {
    free(w->data);
    free(w);
    conn_close(c);
  }
}

static const body_file_t *body_for(int status)
{
  size_t i;

  for (i = 0; i < g.n_bodies; i++)
    if (g.bodies[i].status == status)
      return &g.bodies[i];
  return NULL;
}

/* Sends the answer; closes the connection after it when close_conn. */
static void answer(conn_t *c, int status, long retry_after, int close_conn)
{
  const body_file_t *body = body_for(status);
  strbuf_t out = { 0 };
  char head[512];
  const char *bdata = body ? body->data : NULL;
  size_t blen = body && status != 204 ? body->len : 0;
  if (c->reply.len > 0 && status >= 200 && status < 300) {
    bdata = c->reply.data;
    blen = c->reply.len;
  }
  int n;

  c->answered++;
  if (g.close_after > 0 && c->answered >= g.close_after)
    close_conn = 1;
  n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n",
               status, reason_phrase(status));
  strbuf_add(&out, head, (size_t)n);
  if (status != 204) {
    n = snprintf(head, sizeof head, "Content-Length: %zu\r\n", blen);
    strbuf_add(&out, head, (size_t)n);
  }
  if (retry_after >= 0) {
    n = snprintf(head, sizeof head, "Retry-After: %ld\r\n", retry_after);
    strbuf_add(&out, head, (size_t)n);
  }
  if (close_conn)
    strbuf_add(&out, "Connection: close\r\n", 19);
  strbuf_add(&out, "\r\n", 2);
  if (blen > 0)
    strbuf_add(&out, bdata, blen);
  send_bytes(c, out.data, out.len, close_conn);
  strbuf_free(&out);
  c->reply.len = 0;
  if (close_conn)
    c->closing = 1; /* reads nothing more; closed once the answer is out */
}

static void on_delay(uv_timer_t *t)
{
  conn_t *c = t->data;

  c->busy = 0;
  g.waiting--;
  answer(c, c->pending_status, c->pending_retry, c->pending_close);
  conn_process(c);
}

static size_t id_slot(char **ids, size_t cap, const char *id, size_t len)
{
  size_t h = 5381, i;

  for (i = 0; i < len; i++)
    h = h * 33 + (unsigned char)id[i];
  for (i = h & (cap - 1); ids[i] != NULL; i = (i + 1) & (cap - 1))
    if (strlen(ids[i]) == len && memcmp(ids[i], id, len) == 0)
      break;
  return i;
}

/* --unique-ids: 1 when id[0..len) was taken before, else takes it and
 * returns 0 (out of memory: exits). */
static int id_taken(const char *id, size_t len)
{
  size_t i;

  if ((g.n_ids + 1) * 2 > g.cap_ids) {
    size_t cap = g.cap_ids ? g.cap_ids * 2 : 1024;
    char **ids = calloc(cap, sizeof *ids);
    if (ids == NULL)
      abort();
    for (i = 0; i < g.cap_ids; i++)
      if (g.ids[i] != NULL)
        ids[id_slot(ids, cap, g.ids[i], strlen(g.ids[i]))] = g.ids[i];
    free(g.ids);
    g.ids = ids;
    g.cap_ids = cap;
  }
  i = id_slot(g.ids, g.cap_ids, id, len);
  if (g.ids[i] != NULL)
    return 1;
  if ((g.ids[i] = strndup(id, len)) == NULL)
    abort();
  g.n_ids++;
  return 0;
}

/* The value of "_id" in the action line [s, end), or NULL. */
static const char *action_id(const char *s, const char *end, size_t *len)
{
  static const char key[] = "\"_id\":\"";
  const char *p, *q;

  for (p = s; p + sizeof key - 1 <= end; p++) {
    if (memcmp(p, key, sizeof key - 1) != 0)
      continue;
    p += sizeof key - 1;
    for (q = p; q < end && *q != '"'; q++)
      ;
    *len = (size_t)(q - p);
    return q < end ? p : NULL;
  }
  return NULL;
}

/* --bulk: the _bulk reply to a request body, into out. */
static void bulk_reply(strbuf_t *out, const strbuf_t *body)
{
  size_t lines = 0, i;
  char item[256];
  int n, errors = 0;
  strbuf_t items = { 0 }, indexed = { 0 };
  const char *p = body->data, *end = body->data + body->len;

  for (i = 0; i < body->len; i++)
    lines += body->data[i] == '\n';
  for (i = 0; i < lines / 2; i++) {
    unsigned long k = ++g.bulk_items;
    int st = k <= g.n_bulk ? g.bulk[k - 1] : 201;
    const char *action = p, *action_end = memchr(p, '\n', (size_t)(end - p));
    const char *doc = action_end + 1, *doc_end = memchr(doc, '\n', (size_t)(end - doc));
    const char *id;
    size_t id_len;
    p = doc_end + 1;
    if (g.unique_ids && st >= 200 && st < 300) {
      id = action_id(action, action_end, &id_len);
      if (id != NULL && id_taken(id, id_len)) {
        st = 409;
        g.conflicts++;
      } else {
        strbuf_add(&indexed, doc, (size_t)(doc_end - doc) + 1);
      }
    }
    if (st == 409)
      n = snprintf(item, sizeof item,
                   "%s{\"create\":{\"_index\":\"logs\",\"status\":409,\"error\":"
                   "{\"type\":\"version_conflict_engine_exception\",\"reason\":\"item %lu: "
                   "document already exists\"}}}",
                   i ? "," : "", k);
    else if (st >= 200 && st < 300)
      n = snprintf(item, sizeof item, "%s{\"create\":{\"_index\":\"logs\",\"status\":%d}}",
                   i ? "," : "", st);
    else
      n = snprintf(item, sizeof item,
                   "%s{\"create\":{\"_index\":\"logs\",\"status\":%d,\"error\":"
                   "{\"type\":\"status_%d\",\"reason\":\"item %lu refused\"}}}",
                   i ? "," : "", st, st, k);
    errors |= st < 200 || st > 299;
    strbuf_add(&items, item, (size_t)n);
  }
  out->len = 0;
  n = snprintf(item, sizeof item, "{\"took\":1,\"errors\":%s,\"items\":[", errors ? "true" : "false");
  strbuf_add(out, item, (size_t)n);
  strbuf_add(out, items.data ? items.data : "", items.len);
  strbuf_add(out, "]}", 2);
  strbuf_free(&items);
  if (indexed.len > 0) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/indexed", g.dir);
    FILE *f = fopen(path, "ab");
    if (f == NULL || fwrite(indexed.data, 1, indexed.len, f) != indexed.len || fclose(f) != 0)
      abort();
  }
  strbuf_free(&indexed);
  if (g.unique_ids)
    fprintf(stderr, "bulk conflicts %lu\n", g.conflicts);
}

/* Answers every whole request in the buffer, in order, until one must wait
 * for its delay. */
static void conn_process(conn_t *c)
{
  request_t r;
  const step_t *step;
  int rc;

  while (!c->busy && !c->closing) {
    rc = parse_request(c, &r);
    if (rc == 0) {
      if (r.header_end > 0 && r.expect_continue && !c->continue_sent) {
        send_bytes(c, "HTTP/1.1 100 Continue\r\n\r\n", 25, 0);
        c->continue_sent = 1;
      }
      return;
    }
    if (rc < 0) {
      fprintf(stderr, "receiver: malformed request\n");
      answer(c, 400, -1, 1);
      return;
    }
    g.requests++;
    step = g.n_script == 0 ? NULL
         : &g.script[g.requests <= g.n_script ? g.requests - 1 : g.n_script - 1];
    save_request(g.requests, &r, c->in.data);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    fprintf(stderr, "request %lu %.*s %.*s -> %d at %lld.%09ld\n", g.requests, (int)r.method_len,
            r.method, (int)r.target_len, r.target, step ? step->status : 200,
            (long long)now.tv_sec, now.tv_nsec);
    c->pending_status = step ? step->status : 200;
    c->pending_retry = step ? step->retry_after : -1;
    c->pending_close = !r.keep_alive;
    c->continue_sent = 0;
    if ((g.n_bulk > 0 || g.unique_ids) && c->pending_status >= 200 && c->pending_status < 300)
      bulk_reply(&c->reply, &r.body);
    strbuf_free(&r.body);
    memmove(c->in.data, c->in.data + r.total, c->in.len - r.total);
    c->in.len -= r.total;
    unsigned long delay = g.n_delays ? g.delays[(g.requests - 1) % g.n_delays] : g.delay_ms;
    fprintf(stderr, "waiting %lu %lu\n", g.requests, g.waiting + 1);
    if (delay > 0) {
      c->busy = 1;
      g.waiting++;
      uv_timer_start(&c->timer, on_delay, delay, 0);
      return;
    }
    answer(c, c->pending_status, c->pending_retry, c->pending_close);
  }
}

/* ------------------------------------------------------- connections */

static void on_conn_closed(uv_handle_t *h)
{
  conn_t *c = h->data;

  if (--c->handles > 0)
    return;
  strbuf_free(&c->in);
  strbuf_free(&c->reply);
  free(c);
}

static void conn_close(conn_t *c)
{
  if (c->handles < 2 || uv_is_closing((uv_handle_t *)&c->tcp))
    return;
  c->closing = 1;
  if (c->busy) {
    c->busy = 0;
    g.waiting--;
  }
  if (c->prev)
    c->prev->next = c->next;
  else
    g.conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  uv_close((uv_handle_t *)&c->timer, on_conn_closed);
  uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
  conn_t *c = h->data;

  (void)suggested;
  if (c->in.len + READ_CHUNK > BUFFER_MAX || strbuf_reserve(&c->in, READ_CHUNK) < 0) {
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  *buf = uv_buf_init(c->in.data + c->in.len, READ_CHUNK);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
  conn_t *c = s->data;

  (void)buf;
  if (n < 0) {
    conn_close(c); /* EOF, reset, or a buffer we could not give */
    return;
  }
  c->in.len += (size_t)n;
  conn_process(c);
}

static void on_connection(uv_stream_t *server, int status)
{
  conn_t *c;

  if (status < 0 || g.stopping)
    return;
  c = calloc(1, sizeof *c);
  if (c == NULL)
    return;
  uv_tcp_init(&g.loop, &c->tcp);
  uv_timer_init(&g.loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->handles = 2;
  c->next = g.conns;
  if (g.conns)
    g.conns->prev = c;
  g.conns = c;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0 ||
      uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
    conn_close(c);
}

static void on_signal(uv_signal_t *s, int signum)
{
  (void)s;
  (void)signum;
  if (g.stopping)
    return;
  g.stopping = 1;
  while (g.conns)
    conn_close(g.conns);
  uv_close((uv_handle_t *)&g.server, NULL);
  uv_close((uv_handle_t *)&g.sigterm, NULL);
  uv_close((uv_handle_t *)&g.sigint, NULL);
}

/* ----------------------------------------------------------- startup */

/* Parses "200,500,429:2". Returns 0 or -1. */
static int parse_script(char *text)
{
  char *tok, *save = NULL, *end;
  long status, retry;

  g.n_script = 0;
  for (tok = strtok_r(text, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
    if (g.n_script == SCRIPT_MAX)
      return -1;
    status = strtol(tok, &end, 10);
    retry = -1;
    if (*end == ':')
      retry = strtol(end + 1, &end, 10);
    if (*end != '\0' || status < 200 || status > 599 || (retry < 0 && retry != -1))
      return -1;
    g.script[g.n_script].status = (int)status;
    g.script[g.n_script].retry_after = retry;
    g.n_script++;
  }
  return g.n_script > 0 ? 0 : -1;
}

static int parse_args(int argc, char **argv)
{
  body_file_t *b;
  char *end;
  int i;

  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--unique-ids") == 0) {
      g.unique_ids = 1;
      continue;
    }
    if (i + 1 >= argc)
      return -1;
    if (strcmp(argv[i], "--dir") == 0) {
      g.dir = argv[++i];
    } else if (strcmp(argv[i], "--port") == 0) {
      g.port = (int)strtol(argv[++i], &end, 10);
      if (*end != '\0' || g.port < 0 || g.port > 65535)
        return -1;
    } else if (strcmp(argv[i], "--script") == 0) {
      if (parse_script(argv[++i]) < 0)
        return -1;
    } else if (strcmp(argv[i], "--delay-ms") == 0) {
      g.delay_ms = strtoul(argv[++i], &end, 10);
      if (*end != '\0')
        return -1;
    } else if (strcmp(argv[i], "--delays") == 0) {
      char *tok, *save = NULL;
      for (tok = strtok_r(argv[++i], ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (g.n_delays == SCRIPT_MAX)
          return -1;
        g.delays[g.n_delays++] = strtoul(tok, &end, 10);
        if (*end != '\0')
          return -1;
      }
    } else if (strcmp(argv[i], "--close-after") == 0) {
      g.close_after = strtoul(argv[++i], &end, 10);
      if (*end != '\0')
        return -1;
    } else if (strcmp(argv[i], "--bulk") == 0) {
      char *tok, *save = NULL;
      for (tok = strtok_r(argv[++i], ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int *grown = realloc(g.bulk, (g.n_bulk + 1) * sizeof *grown);
        if (grown == NULL)
          return -1;
        g.bulk = grown;
        g.bulk[g.n_bulk++] = (int)strtol(tok, &end, 10);
        if (*end != '\0')
          return -1;
      }
    } else if (strncmp(argv[i], "--body-", 7) == 0 && g.n_bodies < BODIES_MAX) {
      b = &g.bodies[g.n_bodies];
      b->status = (int)strtol(argv[i] + 7, &end, 10);
      if (*end != '\0' || read_file(argv[++i], &b->data, &b->len) < 0) {
        fprintf(stderr, "receiver: cannot read %s\n", argv[i]);
        return -1;
      }
      g.n_bodies++;
    } else {
      return -1;
    }
  }
  return g.dir != NULL ? 0 : -1;
}

int main(int argc, char **argv)
{
  struct sockaddr_in addr;
  struct sockaddr_in bound;
  int len = sizeof bound, rc, status = 1;
  size_t i;

  if (parse_args(argc, argv) < 0) {
    fprintf(stderr, "usage: receiver --dir DIR [--port P] [--script 200,500,429:2,...] "
                    "[--body-STATUS FILE]... [--delay-ms D] [--delays LIST] [--close-after N] "
                    "[--bulk LIST] [--unique-ids]\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  uv_loop_init(&g.loop);
  uv_tcp_init(&g.loop, &g.server);
  uv_signal_init(&g.loop, &g.sigterm);
  uv_signal_init(&g.loop, &g.sigint);
  uv_ip4_addr("127.0.0.1", g.port, &addr);
  rc = uv_tcp_bind(&g.server, (const struct sockaddr *)&addr, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&g.server, 128, on_connection);
  memset(&bound, 0, sizeof bound);
  if (rc == 0)
    rc = uv_tcp_getsockname(&g.server, (struct sockaddr *)&bound, &len);
  if (rc < 0) {
    fprintf(stderr, "receiver: cannot listen on 127.0.0.1:%d: %s\n", g.port, uv_strerror(rc));
    on_signal(&g.sigterm, SIGTERM);
    goto out;
  }
  uv_signal_start(&g.sigterm, on_signal, SIGTERM);
  uv_signal_start(&g.sigint, on_signal, SIGINT);
  printf("ready %d\n", ntohs(bound.sin_port));
  fflush(stdout);
  status = 0;
out:
  uv_run(&g.loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&g.loop) != 0) {
    fprintf(stderr, "receiver: handles left open\n");
    status = 1;
  }
  for (i = 0; i < g.n_bodies; i++)
    free(g.bodies[i].data);
  free(g.bulk);
  for (i = 0; i < g.cap_ids; i++)
    free(g.ids[i]);
  free(g.ids);
  return status;
}
