/* top.c - `engine top`: a live view of a running engine (see top.h). */
#include <cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include "strbuf.h"
#include "top.h"

#define BODY_MAX (16u * 1024 * 1024)
#define NAME_MAX_ 128

/* --- one sample of the engine ------------------------------------------- */

typedef struct crow { /* a container */
  char name[NAME_MAX_], id[65], state[16], host[NAME_MAX_];
  double lines, bytes, errors;
} crow_t;

typedef struct nrow { /* a filter or an output: its counters by name */
  char name[NAME_MAX_];
  double v[16];
  int msgs; /* an output that counts messages and acknowledgements (mqtt, nats) */
} nrow_t;

enum { F_CALLS, F_ERRORS, F_TIMEOUTS };
enum {
  O_SENT,
  O_FAILED,
  O_RETRIED,
  O_DEAD,
  O_PENDING,
  O_IN_FLIGHT,
  O_REQUESTS,
  O_RECORDS,
  O_BYTES,
  O_AGE,
  O_PUBLISHED,
  O_ACKED,
  O_ACKS_PENDING,
  O_RECONNECTS
};

typedef struct sample {
  double at; /* monotonic seconds */
  crow_t *c;
  size_t nc;
  nrow_t *f, *o;
  size_t nf, no;
  double readers_live, records_in, records_out, in_flight;
  int daemons, daemons_up; /* engine_docker_up samples, and those at 1 */
  int several_hosts;       /* the containers are not all on one daemon */
} sample_t;

static void sample_free(sample_t *s) {
  free(s->c);
  free(s->f);
  free(s->o);
  memset(s, 0, sizeof *s);
}

static double now_mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The row called name in the list (added when missing), or NULL when out
 * of memory. */
static nrow_t *row(nrow_t **list, size_t *n, const char *name) {
  for (size_t i = 0; i < *n; i++)
    if (strcmp((*list)[i].name, name) == 0) return &(*list)[i];
  nrow_t *p = realloc(*list, (*n + 1) * sizeof *p);
  if (!p) return NULL;
  *list = p;
  nrow_t *r = &p[(*n)++];
  memset(r, 0, sizeof *r);
  snprintf(r->name, sizeof r->name, "%s", name);
  return r;
}

static const nrow_t *find_row(const nrow_t *list, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(list[i].name, name) == 0) return &list[i];
  return NULL;
}

static const crow_t *find_container(const sample_t *s, const char *id) {
  for (size_t i = 0; s && i < s->nc; i++)
    if (strcmp(s->c[i].id, id) == 0) return &s->c[i];
  return NULL;
}

/* --- fetching ----------------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t n, void *ud) {
  strbuf_t *b = ud;
  size_t len = size * n;
  if (b->len + len > BODY_MAX || strbuf_add(b, data, len) != 0) return 0;
  return len;
}

/* GETs base+path into body (NUL-terminated). Returns 0, or -1 with err. */
static int fetch(CURL *curl, const char *base, const char *path, strbuf_t *body, char *err,
                 size_t n) {
  char url[1024];
  char cerr[CURL_ERROR_SIZE] = "";
  long status = 0;
  body->len = 0;
  snprintf(url, sizeof url, "%s%s", base, path);
  curl_easy_setopt(curl, CURLOPT_URL, url);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, body);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, cerr);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 3000L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  CURLcode rc = curl_easy_perform(curl);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, NULL);
  if (rc != CURLE_OK) {
    snprintf(err, n, "%.300s: %.250s", url, cerr[0] ? cerr : curl_easy_strerror(rc));
    return -1;
  }
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  if (status != 200) {
    snprintf(err, n, "%.300s: HTTP %ld", url, status);
    return -1;
  }
  if (strbuf_add(body, "", 1) != 0) {
    snprintf(err, n, "out of memory");
    return -1;
  }
  return 0;
}

static double num(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static void str(const cJSON *o, const char *key, char *out, size_t n) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  snprintf(out, n, "%s", cJSON_IsString(v) ? v->valuestring : "");
}

static int parse_readers(const char *text, sample_t *s, char *err, size_t n) {
  cJSON *doc = cJSON_Parse(text);
  if (!cJSON_IsArray(doc)) {
    cJSON_Delete(doc);
    snprintf(err, n, "/readers is not a JSON array");
    return -1;
  }
  int count = cJSON_GetArraySize(doc);
  s->c = count > 0 ? calloc((size_t)count, sizeof *s->c) : NULL;
  if (count > 0 && !s->c) {
    cJSON_Delete(doc);
    snprintf(err, n, "out of memory");
    return -1;
  }
  const cJSON *r;
  cJSON_ArrayForEach(r, doc) {
    if (!s->c || s->nc >= (size_t)count) break;
    crow_t *c = &s->c[s->nc++];
    str(r, "name", c->name, sizeof c->name);
    str(r, "id", c->id, sizeof c->id);
    str(r, "state", c->state, sizeof c->state);
    str(r, "host", c->host, sizeof c->host);
    if (strcmp(c->host, s->c[0].host) != 0) s->several_hosts = 1;
    c->lines = num(r, "lines");
    c->bytes = num(r, "bytes");
    c->errors = num(r, "errors");
  }
  cJSON_Delete(doc);
  return 0;
}

/* Splits one sample line of the text format in place: the metric name, the
 * value of its first label ("" without labels), and the value. Returns 0,
 * or -1 for a line that is no sample. */
static int split_sample(char *line, char **name, char **label, double *value) {
  static char empty[] = "";
  char *p = line + strcspn(line, "{ ");
  *name = line;
  *label = empty;
  if (*p == '{') {
    *p++ = '\0';
    char *q = strchr(p, '"');
    if (!q) return -1;
    char *out = ++q;
    *label = out;
    for (; *q && *q != '"'; q++) { /* unescape \\ \" \n */
      if (*q == '\\' && q[1]) {
        q++;
        if (*q == 'n') *out++ = '\n';
        else *out++ = *q;
      } else {
        *out++ = *q;
      }
    }
    if (*q != '"') return -1;
    *out = '\0';
    p = strchr(q + 1, '}');
    if (!p) return -1;
    p++;
  } else if (*p == ' ') {
    *p++ = '\0';
  } else {
    return -1;
  }
  char *end;
  *value = strtod(p, &end);
  return end == p ? -1 : 0;
}

/* Takes the families top shows from a /metrics text. */
/* One engine_docker_up sample: there is one per daemon. */
static void count_daemon(sample_t *s, double up) {
  s->daemons++;
  s->daemons_up += up > 0;
}

static int parse_metrics(char *text, sample_t *s) {
  static const struct {
    const char *name;
    int output, idx;
  } fams[] = {
      {"engine_filter_calls_total", 0, F_CALLS},
      {"engine_filter_errors_total", 0, F_ERRORS},
      {"engine_filter_timeouts_total", 0, F_TIMEOUTS},
      {"engine_output_batches_sent_total", 1, O_SENT},
      {"engine_output_batches_failed_total", 1, O_FAILED},
      {"engine_output_batches_retried_total", 1, O_RETRIED},
      {"engine_output_dead_letters_total", 1, O_DEAD},
      {"engine_output_batches_pending", 1, O_PENDING},
      {"engine_output_requests_in_flight", 1, O_IN_FLIGHT},
      {"engine_output_requests_total", 1, O_REQUESTS},
      {"engine_output_records_total", 1, O_RECORDS},
      {"engine_output_request_bytes_total", 1, O_BYTES},
      {"engine_output_queue_age_seconds", 1, O_AGE},
      {"engine_output_messages_published_total", 1, O_PUBLISHED},
      {"engine_output_messages_acked_total", 1, O_ACKED},
      {"engine_output_acks_pending", 1, O_ACKS_PENDING},
      {"engine_output_reconnects_total", 1, O_RECONNECTS},
  };
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char *name, *label;
    double v;
    if (line[0] == '#' || split_sample(line, &name, &label, &v) != 0) continue;
    if (!strcmp(name, "engine_readers_live")) s->readers_live = v;
    else if (!strcmp(name, "engine_records_in_total")) s->records_in = v;
    else if (!strcmp(name, "engine_records_out_total")) s->records_out = v;
    else if (!strcmp(name, "engine_bytes_in_flight")) s->in_flight = v;
    else if (!strcmp(name, "engine_docker_up")) count_daemon(s, v);
    for (size_t i = 0; i < sizeof fams / sizeof *fams; i++) {
      if (strcmp(name, fams[i].name) != 0) continue;
      nrow_t *r = fams[i].output ? row(&s->o, &s->no, label) : row(&s->f, &s->nf, label);
      if (!r) return -1;
      r->v[fams[i].idx] = v;
      if (fams[i].idx == O_PUBLISHED) r->msgs = 1;
    }
  }
  return 0;
}

/* Reads one sample. Returns 0, or -1 with err. */
static int take_sample(CURL *curl, const char *base, sample_t *s, char *err, size_t n) {
  strbuf_t body = {0};
  int rc = -1;
  memset(s, 0, sizeof *s);
  s->at = now_mono();
  if (fetch(curl, base, "/readers", &body, err, n) != 0 || parse_readers(body.data, s, err, n) != 0)
    goto out;
  if (fetch(curl, base, "/metrics", &body, err, n) != 0) goto out;
  if (parse_metrics(body.data, s) != 0) {
    snprintf(err, n, "out of memory");
    goto out;
  }
  rc = 0;
out:
  strbuf_free(&body);
  if (rc != 0) sample_free(s);
  return rc;
}

/* --- rates -------------------------------------------------------------- */

/* (now - before) per second, or -1 when there is no earlier sample. */
static double rate(double now, double before, double dt, int have) {
  if (!have || dt <= 0) return -1;
  return now >= before ? (now - before) / dt : now / dt; /* a restart */
}

static void fmt_rate(char *out, size_t n, double r) {
  if (r < 0) snprintf(out, n, "-");
  else if (r >= 1e6) snprintf(out, n, "%.1fM", r / 1e6);
  else if (r >= 1e4) snprintf(out, n, "%.1fk", r / 1e3);
  else snprintf(out, n, "%.1f", r);
}

static double c_rate(const sample_t *cur, const sample_t *prev, const crow_t *c, int bytes) {
  const crow_t *p = find_container(prev, c->id);
  double dt = prev ? cur->at - prev->at : 0;
  return rate(bytes ? c->bytes : c->lines, p ? (bytes ? p->bytes : p->lines) : 0, dt, prev != NULL);
}

static double n_rate(const sample_t *cur, const sample_t *prev, const nrow_t *r, int output,
                     int idx) {
  const nrow_t *p =
      prev ? find_row(output ? prev->o : prev->f, output ? prev->no : prev->nf, r->name) : NULL;
  return rate(r->v[idx], p ? p->v[idx] : 0, prev ? cur->at - prev->at : 0, prev != NULL);
}

/* An output's records (idx O_RECORDS) or bytes (O_BYTES) per request: over
 * the interval since prev when requests started in it, else since the
 * output started; -1 before its first request. */
static double per_request(const sample_t *prev, const nrow_t *o, int idx) {
  const nrow_t *p = prev ? find_row(prev->o, prev->no, o->name) : NULL;
  double req = o->v[O_REQUESTS], v = o->v[idx];
  if (p && req > p->v[O_REQUESTS] && v >= p->v[idx]) {
    v -= p->v[idx];
    req -= p->v[O_REQUESTS];
  }
  return req > 0 ? v / req : -1;
}

/* --- plain lines -------------------------------------------------------- */

static void utc_now(char out[32]) {
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void print_plain(const sample_t *s, const sample_t *prev) {
  char when[32], r1[32], r2[32];
  utc_now(when);
  for (size_t i = 0; i < s->nc; i++) {
    const crow_t *c = &s->c[i];
    fmt_rate(r1, sizeof r1, c_rate(s, prev, c, 0));
    fmt_rate(r2, sizeof r2, c_rate(s, prev, c, 1));
    printf(
        "%s container %s state=%s lines=%.0f lines_per_s=%s bytes_per_s=%s errors=%.0f host=%s\n",
        when, c->name, c->state, c->lines, r1, r2, c->errors, c->host);
  }
  for (size_t i = 0; i < s->nf; i++) {
    const nrow_t *f = &s->f[i];
    fmt_rate(r1, sizeof r1, n_rate(s, prev, f, 0, F_CALLS));
    printf("%s filter %s calls=%.0f calls_per_s=%s errors=%.0f timeouts=%.0f\n", when, f->name,
           f->v[F_CALLS], r1, f->v[F_ERRORS], f->v[F_TIMEOUTS]);
  }
  for (size_t i = 0; i < s->no; i++) {
    const nrow_t *o = &s->o[i];
    char r3[32];
    fmt_rate(r1, sizeof r1, n_rate(s, prev, o, 1, O_SENT));
    fmt_rate(r2, sizeof r2, per_request(prev, o, O_RECORDS));
    fmt_rate(r3, sizeof r3, per_request(prev, o, O_BYTES));
    printf("%s output %s sent=%.0f sent_per_s=%s failed=%.0f retried=%.0f dead_letters=%.0f "
           "pending=%.0f in_flight=%.0f requests=%.0f records_per_request=%s "
           "bytes_per_request=%s queue_age=%.3f\n",
           when, o->name, o->v[O_SENT], r1, o->v[O_FAILED], o->v[O_RETRIED], o->v[O_DEAD],
           o->v[O_PENDING], o->v[O_IN_FLIGHT], o->v[O_REQUESTS], r2, r3, o->v[O_AGE]);
    if (o->msgs)
      printf("%s output %s published=%.0f acked=%.0f acks_pending=%.0f reconnects=%.0f\n", when,
             o->name, o->v[O_PUBLISHED], o->v[O_ACKED], o->v[O_ACKS_PENDING], o->v[O_RECONNECTS]);
  }
  fflush(stdout);
}

/* --- the terminal ------------------------------------------------------- */

static volatile sig_atomic_t got_signal, got_winch;
static struct termios saved_tio;
static int tio_saved, screen_on;

static void restore_terminal(void) {
  if (screen_on) {
    fputs("\033[?25h\033[?1049l", stdout); /* cursor back, main screen */
    fflush(stdout);
    screen_on = 0;
  }
  if (tio_saved) {
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tio);
    tio_saved = 0;
  }
}

static void on_signal(int sig) {
  if (sig == SIGWINCH) got_winch = 1;
  else got_signal = sig;
}

static void catch_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal; /* no SA_RESTART: select returns at once */
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  sigaction(SIGQUIT, &sa, NULL);
  sigaction(SIGWINCH, &sa, NULL);
}

/* Raw keyboard (no echo, no line buffering; Ctrl-C still signals) and the
 * alternate screen with the cursor hidden. */
static void setup_terminal(void) {
  if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved_tio) == 0) {
    struct termios raw = saved_tio;
    raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw) == 0) tio_saved = 1;
  }
  fputs("\033[?1049h\033[?25l\033[H\033[2J", stdout);
  fflush(stdout);
  screen_on = 1;
  atexit(restore_terminal);
}

static void term_size(int *rows, int *cols) {
  struct winsize ws;
  *rows = 24;
  *cols = 80;
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col) {
    *rows = ws.ws_row;
    *cols = ws.ws_col;
  }
}

typedef struct screen {
  strbuf_t b;
  int rows, cols, used;
} screen_t;

/* One screen line, cut at the width; lines past the height are dropped. */
static void line(screen_t *sc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void line(screen_t *sc, const char *fmt, ...) {
  char text[1024];
  va_list ap;
  if (sc->used >= sc->rows - 1) return; /* the last row holds the key help */
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  size_t n = strlen(text);
  if (n > (size_t)sc->cols) n = (size_t)sc->cols;
  strbuf_add(&sc->b, text, n);
  strbuf_add(&sc->b, "\033[K\r\n", 5);
  sc->used++;
}

static int by_rate_desc(const void *a, const void *b) {
  const double *x = a, *y = b;
  return x[0] < y[0] ? 1 : x[0] > y[0] ? -1 : (int)(x[1] - y[1]);
}

static void draw(const char *base, const sample_t *s, const sample_t *prev, const char *error) {
  screen_t sc = {{0}, 0, 0, 0};
  char r1[32], r2[32], r3[32];
  term_size(&sc.rows, &sc.cols);
  strbuf_add(&sc.b, "\033[H", 3);
  if (s) {
    double dt = prev ? s->at - prev->at : 0;
    fmt_rate(r1, sizeof r1, rate(s->records_in, prev ? prev->records_in : 0, dt, prev != NULL));
    fmt_rate(r2, sizeof r2, rate(s->records_out, prev ? prev->records_out : 0, dt, prev != NULL));
    fmt_rate(r3, sizeof r3, s->in_flight);
    char docker[32];
    if (s->daemons <= 1) snprintf(docker, sizeof docker, "%s", s->daemons_up ? "up" : "DOWN");
    else snprintf(docker, sizeof docker, "%d/%d up", s->daemons_up, s->daemons);
    line(&sc, "%s  readers %.0f  docker %s  records/s in %s out %s  buffered %sB", base,
         s->readers_live, docker, r1, r2, r3);
  } else {
    line(&sc, "engine top  %s", base);
  }
  line(&sc, "%s", error ? error : "");
  if (s) {
    int hosts = s->several_hosts; /* a HOST column */
    line(&sc, "%-32s %-11s %10s %10s %12s %8s%s", "CONTAINER", "STATE", "LINES/S", "BYTES/S",
         "LINES", "ERRORS", hosts ? "  HOST" : "");
    double *order = s->nc ? malloc(s->nc * 2 * sizeof *order) : NULL;
    for (size_t i = 0; order && i < s->nc; i++) {
      order[2 * i] = c_rate(s, prev, &s->c[i], 0);
      order[2 * i + 1] = (double)i;
    }
    if (order) qsort(order, s->nc, 2 * sizeof *order, by_rate_desc);
    for (size_t k = 0; k < s->nc; k++) {
      const crow_t *c = &s->c[order ? (size_t)order[2 * k + 1] : k];
      fmt_rate(r1, sizeof r1, c_rate(s, prev, c, 0));
      fmt_rate(r2, sizeof r2, c_rate(s, prev, c, 1));
      line(&sc, "%-32.32s %-11s %10s %10s %12.0f %8.0f%s%.32s", c->name, c->state, r1, r2, c->lines,
           c->errors, hosts ? "  " : "", hosts ? c->host : "");
    }
    free(order);
    line(&sc, "%s", "");
    line(&sc, "%-32s %10s %8s %9s", "FILTER", "CALLS/S", "ERRORS", "TIMEOUTS");
    for (size_t i = 0; i < s->nf; i++) {
      fmt_rate(r1, sizeof r1, n_rate(s, prev, &s->f[i], 0, F_CALLS));
      line(&sc, "%-32.32s %10s %8.0f %9.0f", s->f[i].name, r1, s->f[i].v[F_ERRORS],
           s->f[i].v[F_TIMEOUTS]);
    }
    if (s->no) {
      line(&sc, "%s", "");
      line(&sc, "%-32s %10s %8s %8s %6s %8s %9s %8s %9s %7s", "OUTPUT", "SENT/S", "FAILED",
           "RETRIED", "DEAD", "PENDING", "IN_FLIGHT", "REC/REQ", "BYTES/REQ", "AGE_S");
    }
    for (size_t i = 0; i < s->no; i++) {
      const nrow_t *o = &s->o[i];
      fmt_rate(r3, sizeof r3, n_rate(s, prev, o, 1, O_SENT));
      fmt_rate(r1, sizeof r1, per_request(prev, o, O_RECORDS));
      fmt_rate(r2, sizeof r2, per_request(prev, o, O_BYTES));
      line(&sc, "%-32.32s %10s %8.0f %8.0f %6.0f %8.0f %9.0f %8s %9s %7.1f", o->name, r3,
           o->v[O_FAILED], o->v[O_RETRIED], o->v[O_DEAD], o->v[O_PENDING], o->v[O_IN_FLIGHT], r1,
           r2, o->v[O_AGE]);
    }
    int msgs = 0;
    for (size_t i = 0; i < s->no; i++) msgs |= s->o[i].msgs;
    if (msgs) {
      line(&sc, "%s", "");
      line(&sc, "%-32s %12s %12s %12s %10s", "MESSAGES", "PUBLISHED/S", "ACKED/S", "ACKS_PENDING",
           "RECONNECTS");
    }
    for (size_t i = 0; i < s->no && msgs; i++) {
      const nrow_t *o = &s->o[i];
      if (!o->msgs) continue;
      fmt_rate(r1, sizeof r1, n_rate(s, prev, o, 1, O_PUBLISHED));
      fmt_rate(r2, sizeof r2, n_rate(s, prev, o, 1, O_ACKED));
      line(&sc, "%-32.32s %12s %12s %12.0f %10.0f", o->name, r1, r2, o->v[O_ACKS_PENDING],
           o->v[O_RECONNECTS]);
    }
  }
  strbuf_add(&sc.b, "\033[J", 3); /* clear what the last frame left below */
  char help[64];
  snprintf(help, sizeof help, "\033[%d;1Hq: quit\033[K", sc.rows);
  strbuf_add(&sc.b, help, strlen(help));
  fwrite(sc.b.data, 1, sc.b.len, stdout);
  fflush(stdout);
  strbuf_free(&sc.b);
}

/* Waits up to seconds for a key or a signal. Returns 1 to quit. */
static int wait_key(double seconds) {
  double until = now_mono() + seconds;
  for (;;) {
    if (got_signal) return 1;
    double left = until - now_mono();
    if (left <= 0 || got_winch) return 0;
    fd_set fds;
    FD_ZERO(&fds);
    FD_SET(STDIN_FILENO, &fds);
    struct timeval tv = {(time_t)left, (suseconds_t)((left - (double)(time_t)left) * 1e6)};
    int r = select(tio_saved ? STDIN_FILENO + 1 : 0, tio_saved ? &fds : NULL, NULL, NULL, &tv);
    if (r > 0) {
      char ch[16];
      ssize_t n = read(STDIN_FILENO, ch, sizeof ch);
      for (ssize_t i = 0; i < n; i++)
        if (ch[i] == 'q' || ch[i] == 'Q' || ch[i] == 3) return 1;
    } else if (r < 0 && errno != EINTR) {
      return 0;
    }
  }
}

/* --- the command -------------------------------------------------------- */

static const char usage[] =
    "usage: engine top [URL] [-n COUNT] [-d SECONDS]\n"
    "  URL      the engine's metrics endpoint (default http://127.0.0.1:9180;\n"
    "           engine.metrics.listen in pipeline.lua turns it on)\n"
    "  -n COUNT stop after COUNT refreshes (default: until q or Ctrl-C)\n"
    "  -d SECS  seconds between refreshes (default 1)\n";

static int parse_args(int argc, char **argv, char *base, size_t n, long *count, double *every) {
  const char *url = "http://127.0.0.1:9180";
  for (int i = 1; i < argc; i++) {
    char *end;
    if (!strcmp(argv[i], "-n") && i + 1 < argc) {
      *count = strtol(argv[++i], &end, 10);
      if (*end || *count < 1) return -1;
    } else if (!strcmp(argv[i], "-d") && i + 1 < argc) {
      *every = strtod(argv[++i], &end);
      if (*end || !(*every >= 0.1 && *every <= 3600)) return -1;
    } else if (argv[i][0] == '-') {
      return -1;
    } else {
      url = argv[i];
    }
  }
  snprintf(base, n, "%s%s", strstr(url, "://") ? "" : "http://", url);
  size_t len = strlen(base);
  while (len && base[len - 1] == '/') base[--len] = '\0';
  return 0;
}

int top_main(int argc, char **argv) {
  char base[512], err[600];
  long count = 0;
  double every = 1.0;
  if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    fputs(usage, stdout);
    return 0;
  }
  if (parse_args(argc, argv, base, sizeof base, &count, &every) != 0) {
    fputs(usage, stderr);
    return 2;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  CURL *curl = curl_easy_init();
  if (!curl) {
    fprintf(stderr, "engine top: libcurl failed to start\n");
    return 1;
  }
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  int tty = isatty(STDOUT_FILENO);
  catch_signals();
  if (tty) setup_terminal();
  sample_t prev = {0}, cur;
  int have_prev = 0, reached = 0;
  for (long done = 0; !got_signal && (!count || done < count); done++) {
    if (done && wait_key(every)) break;
    got_winch = 0;
    int ok = take_sample(curl, base, &cur, err, sizeof err) == 0;
    if (ok) reached = 1;
    if (tty)
      draw(base, ok ? &cur : (have_prev ? &prev : NULL), ok && have_prev ? &prev : NULL,
           ok ? NULL : err);
    else if (ok) print_plain(&cur, have_prev ? &prev : NULL);
    else fprintf(stderr, "engine top: cannot read %s\n", err);
    if (ok) {
      sample_free(&prev);
      prev = cur;
      have_prev = 1;
    }
  }
  restore_terminal();
  sample_free(&prev);
  curl_easy_cleanup(curl);
  curl_global_cleanup();
  return reached ? 0 : 1;
}
