/* output_mqtt.c - the `mqtt` kind (see output.h): one MQTT message per
 * record, the record as JSON, published with QoS 1 to a topic made from a
 * template (`logs/{name}`), through libmosquitto driven by the engine's
 * loop (never libmosquitto's own thread).
 *
 * The loop drives the client: a uv_poll_t on mosquitto_socket() (readable:
 * mosquitto_loop_read; writable while mosquitto_want_write:
 * mosquitto_loop_write) and a one-second timer for mosquitto_loop_misc
 * (keepalive). The socket changes at each connection, so after every call
 * into libmosquitto the poll handle is checked against the socket and
 * replaced (closed through its close callback, counted) when it changed.
 * A host name is resolved with uv_getaddrinfo first and libmosquitto is
 * given the address, so its connect never waits for a resolver.
 *
 * The connection's states (set_state): IDLE (not started), RESOLVING,
 * CONNECTING (socket open, waiting for the CONNACK), UP, WAITING (the
 * backoff before the next connect). The session is persistent
 * (clean_session false, a stable client id): after a reconnect the broker
 * resumes it. Acknowledgements of messages from an earlier attempt (which
 * libmosquitto may send again on a resumed session) count for no body.
 *
 * A body is delivered once every message of it got its PUBACK; at most
 * max_inflight messages wait for one at a time. A connection lost before
 * that fails the attempt (OUTPUT_FAILED): the body is published again
 * after the retry backoff. Delivery is at least once: MQTT has no
 * de-duplication of publishes, so a subscriber may see a record twice
 * (record_id = true puts the record id in the JSON to tell).
 *
 * The body, encoded on the pipeline thread, holds one line per record:
 * 'T', the topic, NUL, the JSON record, '\n'; or for a record that lacks a
 * field the template names: 'M', the field's name, NUL, the JSON record,
 * '\n' (the record goes to the dead-letter file when the body is sent, and
 * its 'M' becomes 'D', so that a retry of the body skips it). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lua.h>
#include <mosquitto.h>

#include "encode.h"
#include "encode_record.h"
#include "log.h"
#include "output.h"
#include "handles.h"

enum { M_IDLE, M_RESOLVING, M_CONNECTING, M_UP, M_WAITING };

typedef struct mqtt_poll {
  uv_poll_t h;
  struct mqtt_output *m;
  int fd, events;
} mqtt_poll_t;

typedef struct mqtt_output {
  output_t base; /* first: an output_t* is a mqtt_output_t* */
  char *host, *topic, *client_id, *username, *password, *ca_file;
  int port, keepalive, max_inflight, record_id;
  char **parts; /* the topic template: literal text and fields */
  int *is_field;
  size_t n_parts;

  struct mosquitto *mosq;
  int state;
  mqtt_poll_t *poll; /* the current socket's poll handle, or NULL */
  uv_timer_t misc;   /* mosquitto_loop_misc, every second */
  uv_timer_t again;  /* the reconnect delay */
  uv_getaddrinfo_t resolve;
  int resolving;
  backoff_t backoff;
  char addr[INET6_ADDRSTRLEN];
  char cause[300]; /* why the connection is not up */
  int timers;      /* misc and again are open */
  int connects;
  int refused; /* the CONNACK's refusal code (0: none) */

  output_body_t *body;           /* the attempt in flight, or NULL */
  size_t off;                    /* its next message */
  size_t unacked;                /* its messages waiting for a PUBACK */
  unsigned char mids[65536 / 8]; /* their message ids */
} mqtt_output_t;

static void sync_io(mqtt_output_t *m);
static void connect_now(mqtt_output_t *m);

/* --- pipeline thread: the body ------------------------------------------ */

/* Appends the topic of the record at rec, or 'M' and the name of the field
 * it lacks. Returns 0 or -1. */
static int add_topic(mqtt_output_t *m, strbuf_t *b, lua_State *L, int rec) {
  size_t mark = b->len;
  if (strbuf_add(b, "T", 1) < 0) return -1;
  for (size_t i = 0; i < m->n_parts; i++) {
    if (!m->is_field[i]) {
      if (strbuf_add(b, m->parts[i], strlen(m->parts[i])) < 0) return -1;
      continue;
    }
    char num[ENCODE_NUM_LEN];
    size_t len;
    const char *s = encode_field_text(L, rec, m->parts[i], num, &len);
    if (!s) {
      b->len = mark;
      return strbuf_add(b, "M", 1) < 0 || strbuf_add(b, m->parts[i], strlen(m->parts[i])) < 0 ? -1
                                                                                              : 0;
    }
    if (len == 0) s = "_", len = 1;
    if (strbuf_reserve(b, len) < 0) return -1;
    for (size_t k = 0; k < len; k++) {
      char c = s[k];
      /* no level separator or wildcard inside a value, no control character */
      if (c == '/' || c == '+' || c == '#' || (unsigned char)c < 0x20 || c == 0x7f) c = '_';
      b->data[b->len++] = c;
    }
  }
  return 0;
}

static int mqtt_encode(output_t *o, lua_State *L, int idx, strbuf_t *b) {
  mqtt_output_t *m = (mqtt_output_t *)o;
  strbuf_t json = {0};
  int rc = 0;
  idx = encode_abs(L, idx);
  /* the records as JSON lines (non-tables skipped), then one by one */
  if (encode_ndjson(&json, L, idx, m->record_id) < 0) {
    strbuf_free(&json);
    return -1;
  }
  size_t count = lua_objlen(L, idx), at = 0;
  for (size_t i = 1; i <= count && rc == 0; i++) {
    lua_rawgeti(L, idx, (int)i);
    if (lua_type(L, -1) == LUA_TTABLE && at < json.len) {
      const char *nl = memchr(json.data + at, '\n', json.len - at);
      size_t len = nl ? (size_t)(nl - (json.data + at)) + 1 : json.len - at;
      if (add_topic(m, b, L, lua_gettop(L)) < 0 || strbuf_add(b, "", 1) < 0 ||
          strbuf_add(b, json.data + at, len) < 0)
        rc = -1;
      at += len;
    }
    lua_pop(L, 1);
  }
  strbuf_free(&json);
  return rc;
}

/* --- loop thread: the attempt ------------------------------------------- */

static void set_state(mqtt_output_t *m, int state) { m->state = state; }

static void end_attempt(mqtt_output_t *m, int result, const char *why) {
  output_body_t *b = m->body;
  m->body = NULL;
  memset(m->mids, 0, sizeof m->mids);
  m->unacked = 0;
  m->base.st.pending_acks = 0;
  if (b) output_sent(&m->base, b, result, why, 0);
}

/* Publishes the body's messages, up to max_inflight waiting for a PUBACK;
 * the body is delivered once each got its PUBACK. */
static void pump(mqtt_output_t *m) {
  output_t *o = &m->base;
  output_body_t *b = m->body;
  if (!b || m->state != M_UP) return;
  while (m->off < b->len && m->unacked < (size_t)m->max_inflight) {
    char *p = b->data + m->off, *end = b->data + b->len;
    char *nul = memchr(p, '\0', (size_t)(end - p));
    char *json = nul ? nul + 1 : end;
    char *nl = memchr(json, '\n', (size_t)(end - json));
    size_t jlen = (size_t)((nl ? nl : end) - json);
    size_t next = (size_t)((nl ? nl + 1 : end) - b->data);
    if (!nul) { /* cannot happen: the encoder wrote it */
      m->off = b->len;
      break;
    }
    if (p[0] == 'D') { /* dead-lettered by an earlier attempt */
      m->off = next;
      continue;
    }
    if (p[0] == 'M') {
      char why[300];
      snprintf(why, sizeof why,
               "the topic template names the field \"%.200s\", which the record lacks", p + 1);
      output_dead_letter(o, json, jlen, 1, why);
      p[0] = 'D';
      m->off = next;
      continue;
    }
    int mid = 0;
    int rc = mosquitto_publish(m->mosq, &mid, p + 1, (int)jlen, json, 1, false);
    if (rc == MOSQ_ERR_SUCCESS) {
      m->mids[(unsigned)mid / 8 % sizeof m->mids] |= (unsigned char)(1u << ((unsigned)mid % 8));
      m->unacked++;
      o->st.published++;
      o->st.pending_acks = m->unacked;
      m->off = next;
    } else if (rc == MOSQ_ERR_MALFORMED_UTF8 || rc == MOSQ_ERR_PAYLOAD_SIZE ||
               rc == MOSQ_ERR_OVERSIZE_PACKET || rc == MOSQ_ERR_INVAL) {
      char why[300];
      snprintf(why, sizeof why, "the broker cannot take the message on topic \"%.150s\": %s", p + 1,
               mosquitto_strerror(rc));
      output_dead_letter(o, json, jlen, 1, why);
      p[0] = 'D';
      m->off = next;
    } else {
      /* the connection went down: the poll sees it; memory: try again */
      if (rc == MOSQ_ERR_NOMEM) end_attempt(m, OUTPUT_FAILED, "out of memory");
      return;
    }
  }
  if (m->off >= b->len && m->unacked == 0) end_attempt(m, OUTPUT_DELIVERED, NULL);
}

/* --- loop thread: the connection ---------------------------------------- */

static void on_connect(struct mosquitto *mosq, void *ud, int rc) {
  mqtt_output_t *m = ud;
  if (rc != 0) {
    m->refused = rc;
    return;
  }
  set_state(m, M_UP);
  backoff_reset(&m->backoff);
  m->cause[0] = '\0';
  log_info(NULL, "output %s: connected to %s:%d as %s", m->base.name, m->host, m->port,
           m->client_id);
}

static void on_publish(struct mosquitto *mosq, void *ud, int mid) {
  mqtt_output_t *m = ud;
  unsigned char *byte = &m->mids[(unsigned)mid / 8 % sizeof m->mids];
  unsigned char bit = (unsigned char)(1u << ((unsigned)mid % 8));
  m->base.st.acked++;
  if (!(*byte & bit)) return; /* a message of an earlier attempt */
  *byte &= (unsigned char)~bit;
  m->unacked--;
  m->base.st.pending_acks = m->unacked;
}

static void on_disconnect(struct mosquitto *mosq, void *ud, int rc) {
  mqtt_output_t *m = ud;
  if (m->cause[0] || m->state == M_WAITING) return;
  if (m->refused)
    snprintf(m->cause, sizeof m->cause, "the broker %s:%d refused the connection: %s", m->host,
             m->port, mosquitto_connack_string(m->refused));
  else if (m->state == M_UP)
    snprintf(m->cause, sizeof m->cause, "lost the connection to %s:%d: %s", m->host, m->port,
             rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
  else
    snprintf(m->cause, sizeof m->cause, "cannot connect to %s:%d: %s", m->host, m->port,
             rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
}

static void poll_closed(uv_handle_t *h) {
  mqtt_poll_t *p = h->data;
  output_t *o = &p->m->base;
  handles_closed(h);
  free(p);
  output_handle_closed(o);
}

static void drop_poll(mqtt_output_t *m) {
  mqtt_poll_t *p = m->poll;
  if (!p) return;
  m->poll = NULL;
  handles_close((uv_handle_t *)&p->h, poll_closed);
}

static void on_again(uv_timer_t *t) { connect_now(t->data); }

/* The connection is down (cause says why): the attempt fails, and the next
 * connect waits for the backoff. */
static void went_down(mqtt_output_t *m) {
  drop_poll(m);
  if (!m->cause[0])
    snprintf(m->cause, sizeof m->cause, "lost the connection to %s:%d", m->host, m->port);
  set_state(m, M_WAITING);
  end_attempt(m, OUTPUT_FAILED, m->cause);
  if (!m->base.closing)
    uv_timer_start(&m->again, on_again, (uint64_t)(backoff_next(&m->backoff) * 1000), 0);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  mqtt_poll_t *p = h->data;
  mqtt_output_t *m = p->m;
  if (m->poll != p || m->base.closing) return;
  if (status < 0 || (events & UV_READABLE)) mosquitto_loop_read(m->mosq, 1);
  if (m->poll == p && mosquitto_socket(m->mosq) == p->fd && (events & UV_WRITABLE))
    mosquitto_loop_write(m->mosq, 1);
  sync_io(m);
}

/* After each call into libmosquitto: follows the socket (a new poll handle
 * for a new socket; down when it is gone), sends what may go, and watches
 * for writability while libmosquitto has bytes to write. */
static void sync_io(mqtt_output_t *m) {
  if (m->base.closing) return;
  pump(m); /* first: what it ends may start the next body, and come back here */
  int fd = mosquitto_socket(m->mosq);
  if (m->poll && m->poll->fd != fd) drop_poll(m);
  if (fd < 0) {
    if (m->state == M_CONNECTING || m->state == M_UP) went_down(m);
    return;
  }
  if (m->state != M_CONNECTING && m->state != M_UP) return;
  if (!m->poll) {
    mqtt_poll_t *p = calloc(1, sizeof *p);
    if (!p || uv_poll_init_socket(m->base.loop, &p->h, fd) != 0) {
      free(p);
      snprintf(m->cause, sizeof m->cause, "cannot watch the connection to %s:%d", m->host, m->port);
      mosquitto_disconnect(m->mosq);
      went_down(m);
      return;
    }
    handles_opened((uv_handle_t *)&p->h);
    m->base.handles++;
    p->h.data = p;
    p->m = m;
    p->fd = fd;
    m->poll = p;
  }
  int events = UV_READABLE | (mosquitto_want_write(m->mosq) ? UV_WRITABLE : 0);
  if (events != m->poll->events) {
    m->poll->events = events;
    uv_poll_start(&m->poll->h, events, on_poll);
  }
}

static void on_misc(uv_timer_t *t) {
  mqtt_output_t *m = t->data;
  if (m->state != M_CONNECTING && m->state != M_UP) return;
  mosquitto_loop_misc(m->mosq);
  sync_io(m);
}

static void start_connect(mqtt_output_t *m) {
  m->refused = 0;
  m->cause[0] = '\0';
  set_state(m, M_CONNECTING);
  if (m->connects++ > 0) m->base.st.reconnects++;
  int rc = mosquitto_connect_async(m->mosq, m->addr, m->port, m->keepalive);
  if (rc != MOSQ_ERR_SUCCESS && mosquitto_socket(m->mosq) < 0) {
    snprintf(m->cause, sizeof m->cause, "cannot connect to %s:%d: %s", m->host, m->port,
             rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
    went_down(m);
    return;
  }
  sync_io(m);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  mqtt_output_t *m = req->data;
  m->resolving = 0;
  if (status == UV_ECANCELED || m->base.closing) {
    uv_freeaddrinfo(res);
    output_handle_closed(&m->base);
    return;
  }
  output_handle_closed(&m->base);
  if (status < 0 || !res) {
    snprintf(m->cause, sizeof m->cause, "cannot resolve %s: %s", m->host, uv_strerror(status));
    uv_freeaddrinfo(res);
    set_state(m, M_CONNECTING);
    went_down(m);
    return;
  }
  int r = uv_ip_name(res->ai_addr, m->addr, sizeof m->addr);
  uv_freeaddrinfo(res);
  if (r != 0) {
    snprintf(m->cause, sizeof m->cause, "cannot resolve %s: %s", m->host, uv_strerror(r));
    set_state(m, M_CONNECTING);
    went_down(m);
    return;
  }
  start_connect(m);
}

/* Resolves the host unless it is an address, then connects. */
static void connect_now(mqtt_output_t *m) {
  unsigned char bin[sizeof(struct in6_addr)];
  if (m->base.closing) return;
  if (inet_pton(AF_INET, m->host, bin) == 1 || inet_pton(AF_INET6, m->host, bin) == 1) {
    snprintf(m->addr, sizeof m->addr, "%s", m->host);
    start_connect(m);
    return;
  }
  struct addrinfo hints = {0};
  hints.ai_socktype = SOCK_STREAM;
  m->resolve.data = m;
  set_state(m, M_RESOLVING);
  int r = uv_getaddrinfo(m->base.loop, &m->resolve, on_resolved, m->host, NULL, &hints);
  if (r != 0) {
    snprintf(m->cause, sizeof m->cause, "cannot resolve %s: %s", m->host, uv_strerror(r));
    set_state(m, M_CONNECTING);
    went_down(m);
    return;
  }
  m->resolving = 1;
  m->base.handles++; /* the request: the output closes only once it ended */
}

static void mqtt_send(output_t *o, output_body_t *b) {
  mqtt_output_t *m = (mqtt_output_t *)o;
  if (m->state == M_WAITING) { /* fails at once, with the cause (logged once) */
    output_sent(o, b, OUTPUT_FAILED, m->cause, 0);
    return;
  }
  m->body = b; /* one at a time: an mqtt output's concurrency is 1 */
  m->off = 0;
  m->unacked = 0;
  if (m->state != M_UP) return; /* a connect is in progress: published once it is up */
  pump(m);
  if (m->state == M_UP) sync_io(m);
}

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static void lib_init(void) { mosquitto_lib_init(); }

static void timer_closed(uv_handle_t *h) {
  handles_closed(h);
  output_handle_closed(h->data);
}

static int mqtt_start(output_t *o, uv_loop_t *loop, char *err, size_t n) {
  mqtt_output_t *m = (mqtt_output_t *)o;
  pthread_once(&lib_once, lib_init);
  m->mosq = mosquitto_new(m->client_id, false, m);
  if (!m->mosq) {
    snprintf(err, n, "output %s: cannot make an MQTT client: %s", o->name, strerror(errno));
    return -1;
  }
  mosquitto_int_option(m->mosq, MOSQ_OPT_SEND_MAXIMUM, m->max_inflight);
  mosquitto_connect_callback_set(m->mosq, on_connect);
  mosquitto_disconnect_callback_set(m->mosq, on_disconnect);
  mosquitto_publish_callback_set(m->mosq, on_publish);
  if (m->username && mosquitto_username_pw_set(m->mosq, m->username, m->password) != 0) {
    snprintf(err, n, "output %s: cannot set the MQTT credentials", o->name);
    return -1;
  }
  if (m->ca_file) {
    int rc = mosquitto_tls_set(m->mosq, m->ca_file, NULL, NULL, NULL, NULL);
    if (rc != MOSQ_ERR_SUCCESS) {
      snprintf(err, n, "output %s: cannot use tls_ca_file %s: %s", o->name, m->ca_file,
               mosquitto_strerror(rc));
      return -1;
    }
  }
  backoff_init(&m->backoff, o->cfg.backoff_initial, o->cfg.backoff_max);
  uv_timer_init(loop, &m->misc);
  handles_opened((uv_handle_t *)&m->misc);
  uv_timer_init(loop, &m->again);
  handles_opened((uv_handle_t *)&m->again);
  m->misc.data = m->again.data = m;
  o->handles += 2;
  m->timers = 1;
  uv_timer_start(&m->misc, on_misc, 1000, 1000);
  connect_now(m);
  return 0;
}

static int mqtt_stop(output_t *o) {
  mqtt_output_t *m = (mqtt_output_t *)o;
  m->body = NULL;
  if (m->resolving) uv_cancel((uv_req_t *)&m->resolve);
  drop_poll(m);
  if (m->timers) {
    m->timers = 0;
    handles_close((uv_handle_t *)&m->misc, timer_closed);
    handles_close((uv_handle_t *)&m->again, timer_closed);
  }
  return 0; /* the attempt is taken back: its body is abandoned */
}

static void mqtt_free(output_t *o) {
  mqtt_output_t *m = (mqtt_output_t *)o;
  if (m->mosq) {
    mosquitto_disconnect(m->mosq);
    mosquitto_destroy(m->mosq);
  }
  for (size_t i = 0; i < m->n_parts; i++) free(m->parts[i]);
  free(m->parts);
  free(m->is_field);
  free(m->host);
  free(m->topic);
  free(m->client_id);
  free(m->username);
  if (m->password) {
    memset(m->password, 0, strlen(m->password));
    free(m->password);
  }
  free(m->ca_file);
}

const output_kind_t output_mqtt_kind = {"mqtt", mqtt_encode, mqtt_start, mqtt_send,
                                        NULL,   mqtt_stop,   mqtt_free,  NULL};

/* Splits the validated template into literal parts and {field} parts.
 * Returns 0 or -1 (out of memory). */
static int parse_topic(mqtt_output_t *m) {
  const char *p = m->topic;
  size_t cap = strlen(p) + 1;
  m->parts = calloc(cap, sizeof *m->parts);
  m->is_field = calloc(cap, sizeof *m->is_field);
  if (!m->parts || !m->is_field) return -1;
  while (*p) {
    const char *close = *p == '{' ? strchr(p, '}') : NULL;
    size_t len;
    if (close) {
      len = (size_t)(close - p - 1);
      m->is_field[m->n_parts] = 1;
      m->parts[m->n_parts] = strndup(p + 1, len);
      p = close + 1;
    } else {
      const char *brace = strchr(p, '{');
      len = brace ? (size_t)(brace - p) : strlen(p);
      m->parts[m->n_parts] = strndup(p, len);
      p += len;
    }
    if (!m->parts[m->n_parts++]) return -1;
  }
  return 0;
}

/* The first line of the file at path, into *out. Returns 0, or -1 with a
 * message in err (never the file's content). */
static int read_secret(const char *path, char **out, char *err, size_t n) {
  char buf[1024];
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t got = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
  int e = errno;
  if (fd >= 0) close(fd);
  if (got < 0) {
    snprintf(err, n, "cannot read password_file %s: %s", path, strerror(e));
    return -1;
  }
  buf[got] = '\0';
  buf[strcspn(buf, "\r\n")] = '\0';
  *out = strdup(buf);
  memset(buf, 0, sizeof buf);
  if (!*out) {
    snprintf(err, n, "out of memory");
    return -1;
  }
  return 0;
}

static char *opt_strdup(lua_State *L, int idx, const char *key, int *oom) {
  lua_getfield(L, idx, key);
  const char *s = lua_tostring(L, -1);
  char *copy = s ? strdup(s) : NULL;
  if (s && !copy) *oom = 1;
  lua_pop(L, 1);
  return copy;
}

static int opt_int(lua_State *L, int idx, const char *key, int def) {
  lua_getfield(L, idx, key);
  int v = lua_isnumber(L, -1) ? (int)lua_tonumber(L, -1) : def;
  lua_pop(L, 1);
  return v;
}

/* The mqtt output from its validated table at idx. Returns NULL with a
 * message in err. */
output_t *output_mqtt_new(lua_State *L, int idx, char *err, size_t n) {
  mqtt_output_t *m = calloc(1, sizeof *m);
  if (!m) {
    snprintf(err, n, "out of memory");
    return NULL;
  }
  int oom = output_init(&m->base, &output_mqtt_kind, L, idx) != 0;
  m->base.st.acks = 1;
  m->base.cfg.concurrency = 1;
  m->base.mergeable = 1;
  m->host = opt_strdup(L, idx, "host", &oom);
  m->topic = opt_strdup(L, idx, "topic", &oom);
  m->client_id = opt_strdup(L, idx, "client_id", &oom);
  m->username = opt_strdup(L, idx, "username", &oom);
  m->ca_file = opt_strdup(L, idx, "tls_ca_file", &oom);
  m->port = opt_int(L, idx, "port", 1883);
  m->keepalive = opt_int(L, idx, "keepalive", 60);
  m->max_inflight = opt_int(L, idx, "max_inflight", 100);
  lua_getfield(L, idx, "record_id");
  m->record_id = lua_toboolean(L, -1);
  lua_pop(L, 1);
  char *pw_env = opt_strdup(L, idx, "password_env", &oom);
  char *pw_file = opt_strdup(L, idx, "password_file", &oom);
  if (!oom && !m->client_id && m->base.name) {
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0) snprintf(host, sizeof host, "localhost");
    size_t len = strlen(m->base.name) + strlen(host) + 8;
    if ((m->client_id = malloc(len)))
      snprintf(m->client_id, len, "engine-%s-%s", m->base.name, host);
    else oom = 1;
  }
  int bad = 0;
  if (!oom && pw_env) {
    const char *v = getenv(pw_env);
    if (!v) {
      snprintf(err, n, "output %s: password_env names %s, which is not set", m->base.name, pw_env);
      bad = 1;
    } else if (!(m->password = strdup(v))) {
      oom = 1;
    }
  } else if (!oom && pw_file && read_secret(pw_file, &m->password, err, n) != 0) {
    bad = 1;
  }
  free(pw_env);
  free(pw_file);
  if (!oom && !bad && (!m->host || !m->topic || parse_topic(m) != 0)) oom = 1;
  if (oom || bad) {
    if (oom) snprintf(err, n, "out of memory");
    output_free(&m->base);
    return NULL;
  }
  return &m->base;
}
