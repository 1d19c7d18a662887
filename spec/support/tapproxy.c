/* tapproxy - a unix-socket proxy for the specs that records what a client
 * and a server said to each other.
 *
 *   tapproxy --listen PATH --upstream PATH --dir DIR [--sndbuf BYTES]
 *
 * Every connection accepted on PATH is joined to a new connection to the
 * upstream socket; bytes are passed on unchanged both ways. Connection N
 * (counted from 1) is recorded as DIR/N.req (what the client sent) and
 * DIR/N.resp (what the server sent, appended once the write to the client
 * completed, so that it is in the client's socket). --sndbuf sets the send
 * buffer of the client side (SO_SNDBUF): what the client may not have read
 * yet when it closes is then at most about that much (the kernel doubles
 * it). When either side closes or fails, both are closed.
 *
 * Prints "ready" on stdout once listening. Single-threaded: one libuv loop.
 * Exits 0 on SIGTERM or SIGINT after closing every handle; 2 on bad
 * arguments, 1 when it cannot listen. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

typedef struct side {
  uv_pipe_t pipe;
  struct link *link;
  FILE *rec;     /* what this side sent */
  int reading;
} side_t;

typedef struct link {
  side_t client, server;
  int handles; /* open pipes */
  int closing;
  struct link *prev, *next;
} link_t;

typedef struct wreq {
  uv_write_t req;
  link_t *link;
  side_t *from;
  uv_buf_t buf;
} wreq_t;

static struct {
  uv_loop_t loop;
  uv_pipe_t server;
  uv_signal_t sigterm, sigint;
  const char *listen, *upstream, *dir;
  int sndbuf;
  unsigned long accepted;
  link_t *links;
} g;

static void on_closed(uv_handle_t *h)
{
  side_t *s = h->data;
  link_t *l = s->link;
  if (s->rec) {
    fclose(s->rec);
    s->rec = NULL;
  }
  if (--l->handles > 0)
    return;
  if (l->prev)
    l->prev->next = l->next;
  else
    g.links = l->next;
  if (l->next)
    l->next->prev = l->prev;
  free(l);
}

static void link_close(link_t *l)
{
  if (l->closing)
    return;
  l->closing = 1;
  uv_close((uv_handle_t *)&l->client.pipe, on_closed);
  uv_close((uv_handle_t *)&l->server.pipe, on_closed);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
  (void)h;
  buf->base = malloc(hint);
  buf->len = buf->base ? hint : 0;
}

static void on_written(uv_write_t *req, int status)
{
  wreq_t *w = (wreq_t *)req;
  if (status == 0 && !w->link->closing && w->from->rec)
    fwrite(w->buf.base, 1, w->buf.len, w->from->rec), fflush(w->from->rec);
  else if (status != 0)
    link_close(w->link);
  free(w->buf.base);
  free(w);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
  link_t *l = req->data;
  free(req);
  (void)status;
  link_close(l);
}

/* One side ended: the other gets what is still being written to it, then
 * both are closed. */
static void pass_eof(side_t *to)
{
  uv_shutdown_t *req = calloc(1, sizeof *req);
  if (!req || to->link->closing ||
      (req->data = to->link, uv_shutdown(req, (uv_stream_t *)&to->pipe, on_shutdown) != 0)) {
    free(req);
    link_close(to->link);
  }
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
  side_t *from = st->data;
  link_t *l = from->link;
  side_t *to = from == &l->client ? &l->server : &l->client;
  if (n <= 0) {
    free(buf->base);
    if (n == UV_EOF)
      pass_eof(to);
    else if (n < 0)
      link_close(l);
    return;
  }
  wreq_t *w = calloc(1, sizeof *w);
  if (!w) {
    free(buf->base);
    link_close(l);
    return;
  }
  w->link = l;
  w->from = from;
  w->buf = uv_buf_init(buf->base, (unsigned)n);
  if (uv_write(&w->req, (uv_stream_t *)&to->pipe, &w->buf, 1, on_written) != 0) {
    free(buf->base);
    free(w);
    link_close(l);
  }
}

static void start_reading(side_t *s)
{
  s->pipe.data = s;
  if (uv_read_start((uv_stream_t *)&s->pipe, on_alloc, on_read) != 0)
    link_close(s->link);
}

static void on_upstream(uv_connect_t *req, int status)
{
  link_t *l = req->data;
  free(req);
  if (l->closing)
    return;
  if (status != 0) {
    fprintf(stderr, "tapproxy: cannot reach %s: %s\n", g.upstream, uv_strerror(status));
    link_close(l);
    return;
  }
  start_reading(&l->client);
  start_reading(&l->server);
}

static FILE *record(unsigned long n, const char *ext)
{
  char path[4096];
  snprintf(path, sizeof path, "%s/%lu.%s", g.dir, n, ext);
  FILE *f = fopen(path, "wb");
  if (!f)
    fprintf(stderr, "tapproxy: cannot write %s\n", path);
  return f;
}

static void on_connection(uv_stream_t *server, int status)
{
  if (status != 0)
    return;
  link_t *l = calloc(1, sizeof *l);
  uv_connect_t *req = calloc(1, sizeof *req);
  if (!l || !req) {
    free(l);
    free(req);
    return;
  }
  l->client.link = l->server.link = l;
  l->client.pipe.data = &l->client;
  l->server.pipe.data = &l->server;
  uv_pipe_init(&g.loop, &l->client.pipe, 0);
  uv_pipe_init(&g.loop, &l->server.pipe, 0);
  l->handles = 2;
  l->next = g.links;
  if (g.links)
    g.links->prev = l;
  g.links = l;
  if (uv_accept(server, (uv_stream_t *)&l->client.pipe) != 0) {
    free(req);
    link_close(l);
    return;
  }
  unsigned long n = ++g.accepted;
  l->client.rec = record(n, "req");
  l->server.rec = record(n, "resp");
  if (g.sndbuf > 0) {
    int v = g.sndbuf;
    uv_send_buffer_size((uv_handle_t *)&l->client.pipe, &v);
  }
  req->data = l;
  uv_pipe_connect(req, &l->server.pipe, g.upstream, on_upstream);
}

static void on_signal(uv_signal_t *s, int signum)
{
  (void)s;
  (void)signum;
  uv_signal_stop(&g.sigterm);
  uv_signal_stop(&g.sigint);
  uv_close((uv_handle_t *)&g.sigterm, NULL);
  uv_close((uv_handle_t *)&g.sigint, NULL);
  uv_close((uv_handle_t *)&g.server, NULL);
  for (link_t *l = g.links; l; l = l->next)
    link_close(l);
}

static void usage(void)
{
  fprintf(stderr, "usage: tapproxy --listen PATH --upstream PATH --dir DIR [--sndbuf BYTES]\n");
  exit(2);
}

int main(int argc, char **argv)
{
  for (int i = 1; i < argc; i++) {
    if (i + 1 >= argc)
      usage();
    if (strcmp(argv[i], "--listen") == 0)
      g.listen = argv[++i];
    else if (strcmp(argv[i], "--upstream") == 0)
      g.upstream = argv[++i];
    else if (strcmp(argv[i], "--dir") == 0)
      g.dir = argv[++i];
    else if (strcmp(argv[i], "--sndbuf") == 0)
      g.sndbuf = atoi(argv[++i]);
    else
      usage();
  }
  if (!g.listen || !g.upstream || !g.dir)
    usage();
  signal(SIGPIPE, SIG_IGN);
  uv_loop_init(&g.loop);
  uv_pipe_init(&g.loop, &g.server, 0);
  int rc = uv_pipe_bind(&g.server, g.listen);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&g.server, 64, on_connection);
  if (rc != 0) {
    fprintf(stderr, "tapproxy: cannot listen on %s: %s\n", g.listen, uv_strerror(rc));
    return 1;
  }
  uv_signal_init(&g.loop, &g.sigterm);
  uv_signal_init(&g.loop, &g.sigint);
  uv_signal_start(&g.sigterm, on_signal, SIGTERM);
  uv_signal_start(&g.sigint, on_signal, SIGINT);
  printf("ready\n");
  fflush(stdout);
  uv_run(&g.loop, UV_RUN_DEFAULT);
  uv_loop_close(&g.loop);
  return 0;
}
