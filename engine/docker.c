/* docker.c - Docker Engine API requests (see docker.h). */
#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "docker.h"
#include "timestamp.h"

#define DEFAULT_HOST "unix:///var/run/docker.sock"
#define PING_MAX 4096
/* The receive buffer of every request but a history read. Each reader
 * holds one for as long as it follows its container, and at start every
 * container is inspected at once: 2 KiB keeps a thousand readers small (2
 * MiB of buffers instead of 16, and no 16 MiB burst left behind in the
 * heap), and a busy stream still gets several buffers a wake-up, as libcurl
 * reads while data is waiting. A history read (a backfill, not following)
 * takes libcurl's default, 16 KiB. */
#define RECV_BUFFER 2048

struct docker {
  http_t *http;
  char *host;
  char version[16]; /* "1.41" */
  char prefix[20];  /* "/v1.41" or "" */
  unsigned read_delay_ms;
  void (*closed)(void *);
  void *closed_ud;
};

/* The first of the usual sockets that exists: Docker's, then rootful
 * Podman's, then rootless Podman's; Docker's when none does (the error then
 * names it). At start, before the loop runs: a few stat calls. */
static const char *default_host(char *buf, size_t n) {
  const char *xdg = getenv("XDG_RUNTIME_DIR");
  char rootless[300] = "";
  if (xdg && *xdg && strlen(xdg) < 256)
    snprintf(rootless, sizeof rootless, "%s/podman/podman.sock", xdg);
  const char *paths[] = {"/var/run/docker.sock", "/run/podman/podman.sock", rootless};
  for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
    struct stat st;
    if (*paths[i] && stat(paths[i], &st) == 0 && S_ISSOCK(st.st_mode)) {
      snprintf(buf, n, "unix://%s", paths[i]);
      return buf;
    }
  }
  return DEFAULT_HOST;
}

/* The TLS files for host: tls's, else $DOCKER_CERT_PATH's when
 * $DOCKER_TLS_VERIFY is set (paths written into bufs). Returns 1 when TLS
 * files apply, 0 when none do, -1 with a message when one cannot be read. */
static int tls_files(const char *host, const docker_tls_t *tls, docker_tls_t *out,
                     char bufs[3][600], char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  if (strncmp(host, "tcp://", 6) != 0 && strncmp(host, "https://", 8) != 0) return 0;
  if (tls && (tls->ca || tls->cert || tls->key)) {
    *out = *tls;
  } else {
    const char *verify = getenv("DOCKER_TLS_VERIFY");
    if (!verify || !*verify) return 0;
    const char *dir = getenv("DOCKER_CERT_PATH");
    const char *home = getenv("HOME");
    char def[520];
    if (!dir || !*dir) {
      snprintf(def, sizeof def, "%s/.docker", home && *home ? home : "");
      dir = def;
    }
    const char *names[] = {"ca.pem", "cert.pem", "key.pem"};
    for (int i = 0; i < 3; i++) snprintf(bufs[i], 600, "%s/%s", dir, names[i]);
    out->ca = bufs[0];
    out->cert = bufs[1];
    out->key = bufs[2];
  }
  const char *paths[] = {out->ca, out->cert, out->key};
  for (int i = 0; i < 3; i++) {
    FILE *f = paths[i] ? fopen(paths[i], "r") : NULL;
    if (paths[i] && !f) {
      snprintf(err, errlen, "docker host %s: cannot read the TLS file %s: %s", host, paths[i],
               strerror(errno));
      return -1;
    }
    if (f) fclose(f);
  }
  return 1;
}

docker_t *docker_new(uv_loop_t *loop, const char *host, const docker_tls_t *tls, char *err,
                     size_t errlen) {
  char found[320];
  if (!host || !*host) host = getenv("DOCKER_HOST");
  if (!host || !*host) host = default_host(found, sizeof found);
  docker_t *d = calloc(1, sizeof *d);
  if (!d || !(d->host = strdup(host))) {
    snprintf(err, errlen, "out of memory");
    free(d);
    return NULL;
  }
  char inner[400];
  if (!(d->http = http_new(loop, host, inner, sizeof inner))) {
    snprintf(err, errlen, "docker host: %s", inner);
    free(d->host);
    free(d);
    return NULL;
  }
  docker_tls_t files;
  char bufs[3][600];
  int use_tls = tls_files(host, tls, &files, bufs, err, errlen);
  if (use_tls > 0 && http_set_tls(d->http, files.ca, files.cert, files.key) != 0) {
    snprintf(err, errlen, "out of memory");
    use_tls = -1;
  }
  if (use_tls < 0) {
    docker_close(d, NULL, NULL);
    return NULL;
  }
  return d;
}

const char *docker_host(const docker_t *d) { return d->host; }

void docker_set_read_delay(docker_t *d, unsigned ms) { d->read_delay_ms = ms; }

void docker_set_max_connections(docker_t *d, long n) { http_set_max_connections(d->http, n); }

uint64_t docker_reads(const docker_t *d) { return http_reads(d->http); }
uint64_t docker_rests(const docker_t *d) { return http_rests(d->http); }

const char *docker_api_version(const docker_t *d) { return d->version; }

http_req_t *docker_ping(docker_t *d, const http_handler_t *cb, void *ud) {
  return http_get(d->http, "/_ping", PING_MAX, cb, ud);
}

/* Parses "major.minor". Returns 0 or -1. */
static int parse_version(const char *s, int *major, int *minor) {
  char *end;
  long a = strtol(s, &end, 10);
  if (end == s || *end != '.') return -1;
  const char *m = end + 1;
  long b = strtol(m, &end, 10);
  if (end == m || *end) return -1;
  *major = (int)a;
  *minor = (int)b;
  return 0;
}

int docker_negotiate(docker_t *d, const http_result_t *r, char *err, size_t errlen) {
  if (!r->ok) {
    snprintf(err, errlen, "cannot reach the Docker daemon at %s: %s", d->host,
             r->error ? r->error : "no answer");
    return -1;
  }
  if (r->status != 200) {
    snprintf(err, errlen, "the Docker daemon at %s answered /_ping with HTTP %ld", d->host,
             r->status);
    return -1;
  }
  /* Without the header the daemon predates version negotiation: 1.24 is the
   * oldest API that has every request the engine makes. */
  const char *v = r->api_version && *r->api_version ? r->api_version : "1.24";
  int major, minor;
  if (parse_version(v, &major, &minor) != 0) {
    snprintf(err, errlen, "the Docker daemon at %s sent a malformed API version '%s'", d->host, v);
    return -1;
  }
  if (major < 1 || (major == 1 && minor < 24)) {
    snprintf(err, errlen, "the Docker daemon at %s speaks API %s; the engine needs 1.24 or later",
             d->host, v);
    return -1;
  }
  snprintf(d->version, sizeof d->version, "%d.%d", major, minor);
  snprintf(d->prefix, sizeof d->prefix, "/v%s", d->version);
  return 0;
}

/* A request for an API path (without the version prefix). */
/* post: an empty POST instead of a GET. */
static http_req_t *request_method(docker_t *d, const char *api_path, int post, size_t max,
                                  long recv_buffer, unsigned read_delay_ms,
                                  const http_handler_t *cb, void (*on_sent)(void *), void *ud) {
  char path[1024];
  snprintf(path, sizeof path, "%s%s", d->prefix, api_path);
  http_opts_t o = {0};
  o.recv_buffer = recv_buffer;
  o.read_delay_ms = read_delay_ms;
  o.on_sent = on_sent;
  if (post && !(o.body = calloc(1, 1))) return NULL;
  return http_request(d->http, path, max, &o, cb, ud);
}

static http_req_t *request(docker_t *d, const char *api_path, size_t max, long recv_buffer,
                           unsigned read_delay_ms, const http_handler_t *cb,
                           void (*on_sent)(void *), void *ud) {
  return request_method(d, api_path, 0, max, recv_buffer, read_delay_ms, cb, on_sent, ud);
}

static http_req_t *get(docker_t *d, const char *api_path, size_t max, const http_handler_t *cb,
                       void *ud) {
  return request(d, api_path, max, RECV_BUFFER, 0, cb, NULL, ud);
}

http_req_t *docker_list(docker_t *d, int all, const http_handler_t *cb, void *ud) {
  return get(d, all ? "/containers/json?all=1" : "/containers/json", DOCKER_LIST_MAX, cb, ud);
}

/* Container ids and names are [A-Za-z0-9_.-]; anything else is refused
 * rather than escaped, so a path can never be altered. */
static int safe_id(const char *id) {
  if (!*id || strlen(id) > 128) return 0;
  for (const char *p = id; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '_' || *p == '.' || *p == '-'))
      return 0;
  return 1;
}

http_req_t *docker_inspect(docker_t *d, const char *id, const http_handler_t *cb, void *ud) {
  if (!safe_id(id)) return NULL;
  char path[256];
  snprintf(path, sizeof path, "/containers/%s/json", id);
  return get(d, path, DOCKER_INSPECT_MAX, cb, ud);
}

http_req_t *docker_logs(docker_t *d, const char *id, int64_t since_ns, int64_t until_ns, int follow,
                        const http_handler_t *cb, void (*on_sent)(void *), void *ud) {
  if (!safe_id(id)) return NULL;
  char since[32] = "0", until[40] = "";
  if (since_ns >= 0) ts_format_since(since_ns, since);
  if (until_ns > 0) {
    memcpy(until, "&until=", 8);
    ts_format_since(until_ns, until + 7);
  }
  char path[512];
  snprintf(path, sizeof path,
           "/containers/%s/logs?stdout=1&stderr=1&timestamps=1&follow=%d&since=%s%s", id,
           follow ? 1 : 0, since, until);
  return request(d, path, 0, follow ? RECV_BUFFER : 0, follow ? d->read_delay_ms : 0, cb, on_sent,
                 ud);
}

http_req_t *docker_logs_tail(docker_t *d, const char *id, unsigned n, const http_handler_t *cb,
                             void *ud) {
  if (!safe_id(id)) return NULL;
  char path[512];
  snprintf(path, sizeof path, "/containers/%s/logs?stdout=1&stderr=1&timestamps=1&tail=%u", id, n);
  return get(d, path, DOCKER_TAIL_MAX, cb, ud);
}

http_req_t *docker_attach(docker_t *d, const char *id, const http_handler_t *cb, void *ud) {
  if (!safe_id(id)) return NULL;
  char path[512];
  snprintf(path, sizeof path, "/containers/%s/attach?stream=1&stdout=1&stderr=1", id);
  return request_method(d, path, 1, 0, RECV_BUFFER, 0, cb, NULL, ud);
}

http_req_t *docker_events(docker_t *d, int64_t since_ns, const http_handler_t *cb, void *ud) {
  char since[32];
  ts_format_since(since_ns, since);
  char path[512];
  /* filters={"type":["container"]}, URL-encoded */
  snprintf(path, sizeof path,
           "/events?since=%s&filters=%%7B%%22type%%22%%3A%%5B%%22container%%22%%5D%%7D", since);
  return get(d, path, 0, cb, ud);
}

void docker_describe_error(const http_result_t *r, char *out, size_t n) {
  if (!r->ok && r->status == 0) {
    snprintf(out, n, "%s", r->error ? r->error : "no answer");
    return;
  }
  const char *msg = NULL;
  cJSON *j = r->body_len ? cJSON_ParseWithLength(r->body, r->body_len) : NULL;
  const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "message");
  if (cJSON_IsString(m)) msg = m->valuestring;
  if (msg) snprintf(out, n, "HTTP %ld: %s", r->status, msg);
  else if (!r->ok) snprintf(out, n, "HTTP %ld: %s", r->status, r->error ? r->error : "failed");
  else snprintf(out, n, "HTTP %ld: %.200s", r->status, r->body_len ? r->body : "(no message)");
  cJSON_Delete(j);
}

void *docker_json(const http_result_t *r, char *err, size_t errlen) {
  if (!r->ok || r->status < 200 || r->status >= 300) {
    docker_describe_error(r, err, errlen);
    return NULL;
  }
  cJSON *j = cJSON_ParseWithLength(r->body, r->body_len);
  if (!j) snprintf(err, errlen, "the daemon's answer is not valid JSON");
  return j;
}

static void http_closed(void *ud) {
  docker_t *d = ud;
  void (*cb)(void *) = d->closed;
  void *cud = d->closed_ud;
  free(d->host);
  free(d);
  if (cb) cb(cud);
}

void docker_close(docker_t *d, void (*closed)(void *), void *ud) {
  d->closed = closed;
  d->closed_ud = ud;
  http_close(d->http, http_closed, d);
}
