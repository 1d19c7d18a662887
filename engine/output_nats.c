/* output_nats.c - the `nats` kind (see output.h): each record is one
 * message to a NATS JetStream stream, published with a reply subject so the
 * stream's acknowledgement comes back, and the header Nats-Msg-Id set to the
 * record id (batch.h), so a re-send inside the stream's duplicate window is
 * dropped by the server.
 *
 * A body is delivered once every message of it was acknowledged. A message
 * the server refuses for good (too large for the stream or the connection)
 * goes to the dead-letter file alone; any other refusal (stream full with
 * discard=new, no stream, no leader), a lost connection or no
 * acknowledgement within `timeout` fails the whole attempt, and the retry
 * publishes the body again: the messages already stored come back as
 * duplicates.
 *
 * The body (pipeline thread, nats_encode) holds one line per record:
 * "P<subject>\t<record id>\t<JSON>\n", or "!\t<reason>\t<JSON>\n" for a
 * record whose subject cannot be made (a template field it lacks), which the
 * first attempt sends to the dead-letter file. A line done for good (dead-
 * lettered) has its first byte set to '#' and is skipped by later attempts.
 * Neither a subject nor a reason holds a tab or a newline, nor does the JSON.
 *
 * Threads. The connection runs on the engine's loop through libnats' event
 * loop interface (natsOptions_SetEventLoop): the loop polls the socket
 * (uv_poll_t) and calls natsConnection_ProcessReadEvent/WriteEvent.
 * natsConnection_Connect blocks on the TCP connect and the handshake, and
 * natsConnection_Close may wait for libnats' reconnect thread, so both run
 * in the loop's thread pool (uv_queue_work), never on the loop. libnats
 * calls the event-loop callbacks (attach, read, write, detach) from that
 * job, from its reconnect thread or from the loop; the stock libuv adapter
 * (nats/adapters/libuv.h) refuses a first attach off the loop thread and
 * keeps handles the engine cannot count, so these callbacks are the
 * engine's own: they record what libnats wants under the bridge's lock and
 * wake the loop through a uv_async_t, and the loop makes the poll handle
 * match. The acknowledgements arrive on libnats' subscription thread
 * (on_reply): parsed there, queued under the same lock, handed to the loop
 * through the same uv_async_t. The bridge outlives the output until
 * libnats reports the subscription complete (natsSubscription_SetOnCompleteCB). */
#ifndef ENGINE_NO_NATS
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <nats/nats.h>

#include "batch.h"
#include "json.h"
#include "log.h"
#include "output.h"
#include "output_nats.h"
#include "record.h"
#include "handles.h"

enum { ACK_OK, ACK_DUPLICATE, ACK_RETRY, ACK_REFUSED };

typedef struct reply { /* an acknowledgement, from libnats' thread to the loop */
  struct reply *next;
  unsigned long long attempt;
  unsigned long index;
  int kind;
  char why[240];
} reply_t;

/* What libnats' threads and the loop share. */
typedef struct bridge {
  pthread_mutex_t lock;
  int refs; /* the output's, the subscription's */
  int open; /* async may be sent */
  uv_async_t *async;
  reply_t *head, *tail;
  /* the socket libnats wants polled */
  natsConnection *nc;
  natsConnection *dead; /* a connection being closed: its attaches are ignored */
  natsSock fd;
  unsigned gen; /* attaches so far */
  int want_read, want_write, detached;
  pthread_t loop_thread;
  struct nats_output *owner; /* loop thread only */
} bridge_t;

typedef struct attempt {
  struct attempt *next;
  output_body_t *body;
  unsigned long long seq;
  size_t *lines; /* offset of message i's line in the body */
  size_t n, resolved;
  uint64_t deadline_ms;
} attempt_t;

typedef struct job { /* a connect or close in the thread pool */
  uv_work_t req;
  struct nats_output *s;
  natsConnection *nc;
  natsSubscription *sub;
  bridge_t *bridge;
  char inbox[128];
  char err[400];
  int close;
} job_t;

typedef struct nats_output {
  output_t base; /* first: an output_t* is a nats_output_t* */
  nats_template_t tpl;
  char *subject;
  char **urls;
  int n_urls;
  char *stream, *user, *password_env, *password_file, *token_env, *token_file, *creds_file,
      *tls_ca_file;
  double timeout;

  /* loop thread */
  bridge_t *bridge;
  uv_timer_t tick;
  uv_poll_t *poll;
  natsConnection *poll_nc;
  unsigned poll_gen;
  natsConnection *nc;
  natsSubscription *sub;
  char inbox[128];
  job_t *connecting;
  output_body_t **waiting; /* bodies waiting for the connection */
  size_t n_waiting, cap_waiting;
  attempt_t *attempts;
  unsigned long long seq;
  unsigned long long reconnects_before; /* of connections closed before this one */
} nats_output_t;

/* --- the subject template (nats_subject.c parses it) ---------------------- */

/* 1 when a subject made from t may fall under the stream subject pattern
 * (tokens: '*' takes one, '>' the rest; a token holding a field may be
 * anything). */
static int template_may_match(const nats_template_t *t, const char *pattern) {
  char subj[NATS_TEMPLATE_MAX * 130] = {0};
  size_t len = 0;
  for (int i = 0; i < t->n; i++) {
    /* a field becomes "\x01": a token holding one matches any literal */
    const char *s = t->parts[i].field ? "\x01" : t->parts[i].text;
    size_t l = strlen(s);
    if (len + l >= sizeof subj) return 1;
    memcpy(subj + len, s, l);
    len += l;
  }
  subj[len] = '\0';
  const char *a = subj, *b = pattern;
  for (;;) {
    size_t la = strcspn(a, "."), lb = strcspn(b, ".");
    if (lb == 1 && b[0] == '>') return 1;
    int any = memchr(a, '\x01', la) != NULL;
    if (!(lb == 1 && b[0] == '*') && !any && (la != lb || memcmp(a, b, la) != 0)) return 0;
    a += la;
    b += lb;
    if (!*a || !*b) return !*a && !*b;
    a++;
    b++;
  }
}

/* --- pipeline thread: encoding ----------------------------------------- */

/* Appends the subject for the record at rec (absolute index), or returns 1
 * with the reason in why when a field is missing; -1 when out of memory. */
static int add_subject(const nats_output_t *s, strbuf_t *b, lua_State *L, int rec, char *why,
                       size_t n) {
  for (int i = 0; i < s->tpl.n; i++) {
    const nats_part_t *p = &s->tpl.parts[i];
    size_t plen = strlen(p->text);
    if (!p->field) {
      if (strbuf_add(b, p->text, plen) < 0) return -1;
      continue;
    }
    const char *v = NULL;
    size_t vlen = 0;
    char buf[RECORD_TEXT_LEN];
    lua_pushlstring(L, p->text, plen);
    lua_rawget(L, rec);
    int t = lua_type(L, -1);
    if (t == LUA_TSTRING || t == LUA_TNUMBER) {
      v = lua_tolstring(L, -1, &vlen);
    } else if (t == LUA_TBOOLEAN) {
      v = lua_toboolean(L, -1) ? "true" : "false";
      vlen = strlen(v);
    } else if (t == LUA_TNIL) {
      v = record_original_text(L, rec, p->text, plen, buf, &vlen);
    }
    if (!v) {
      lua_pop(L, 1);
      snprintf(why, n, "the subject template's field %.100s is %s in the record", p->text,
               t == LUA_TNIL ? "missing" : "not a string, number or boolean");
      return 1;
    }
    if (strbuf_reserve(b, vlen ? vlen : 1) < 0) {
      lua_pop(L, 1);
      return -1;
    }
    b->len += nats_token(v, vlen, b->data + b->len);
    lua_pop(L, 1);
  }
  return 0;
}

static int nats_encode(output_t *o, lua_State *L, int idx, strbuf_t *b) {
  nats_output_t *s = (nats_output_t *)o;
  size_t count = lua_objlen(L, idx);
  for (size_t i = 1; i <= count; i++) {
    lua_rawgeti(L, idx, (int)i);
    int rec = lua_gettop(L);
    if (lua_type(L, rec) != LUA_TTABLE) {
      lua_pop(L, 1);
      continue;
    }
    size_t mark = b->len;
    char why[256], id[BATCH_ID_LEN + 1];
    if (strbuf_add(b, "P", 1) < 0) goto oom;
    int rc = add_subject(s, b, L, rec, why, sizeof why);
    if (rc < 0) goto oom;
    if (rc > 0) {
      b->len = mark;
      if (strbuf_add(b, "!\t", 2) < 0 || strbuf_add(b, why, strlen(why)) < 0) goto oom;
    } else {
      if (strbuf_add(b, "\t", 1) < 0) goto oom;
      if (record_id(L, rec, id) && strbuf_add(b, id, BATCH_ID_LEN) < 0) goto oom;
    }
    if (strbuf_add(b, "\t", 1) < 0 || json_add_record(b, L, rec) < 0 || strbuf_add(b, "\n", 1) < 0)
      goto oom;
    lua_pop(L, 1);
  }
  return 0;
oom:
  lua_pop(L, 1);
  return -1;
}

/* --- the bridge --------------------------------------------------------- */

static void bridge_release(bridge_t *br) {
  pthread_mutex_lock(&br->lock);
  int last = --br->refs == 0;
  pthread_mutex_unlock(&br->lock);
  if (!last) return;
  for (reply_t *r = br->head, *next; r; r = next) {
    next = r->next;
    free(r);
  }
  pthread_mutex_destroy(&br->lock);
  free(br);
}

/* Any thread, under br->lock. */
static void bridge_wake(bridge_t *br) {
  if (br->open) uv_async_send(br->async);
}

static void reconcile(struct nats_output *s);

/* After a change libnats asked for, without br->lock: on the loop thread
 * the poll handle changes at once, as libnats expects (a write event after
 * it removed its write interest would find nothing to write and take the
 * connection for closed); from other threads through the async handle. */
static void bridge_apply(bridge_t *br) {
  if (pthread_equal(pthread_self(), br->loop_thread) && br->owner) reconcile(br->owner);
}

static natsStatus ev_attach(void **ud, void *loop, natsConnection *nc, natsSock fd) {
  bridge_t *br = loop;
  *ud = br;
  pthread_mutex_lock(&br->lock);
  if (nc == br->dead) {
    pthread_mutex_unlock(&br->lock);
    return NATS_OK;
  }
  br->nc = nc;
  br->fd = fd;
  br->gen++;
  br->want_read = 1;
  br->want_write = 0;
  br->detached = 0;
  bridge_wake(br);
  pthread_mutex_unlock(&br->lock);
  bridge_apply(br);
  return NATS_OK;
}

static natsStatus ev_read(void *ud, bool add) {
  bridge_t *br = ud;
  pthread_mutex_lock(&br->lock);
  br->want_read = add;
  bridge_wake(br);
  pthread_mutex_unlock(&br->lock);
  bridge_apply(br);
  return NATS_OK;
}

static natsStatus ev_write(void *ud, bool add) {
  bridge_t *br = ud;
  pthread_mutex_lock(&br->lock);
  br->want_write = add;
  bridge_wake(br);
  pthread_mutex_unlock(&br->lock);
  bridge_apply(br);
  return NATS_OK;
}

static natsStatus ev_detach(void *ud) {
  bridge_t *br = ud;
  pthread_mutex_lock(&br->lock);
  br->detached = 1;
  bridge_wake(br);
  pthread_mutex_unlock(&br->lock);
  bridge_apply(br);
  return NATS_OK;
}

/* Where the value of "key" starts in the JSON object data (spaces after
 * the colon skipped), or NULL. JetStream's answers are small flat objects
 * but for "error", whose members are looked up the same way. */
static const char *json_value(const char *data, size_t len, const char *key) {
  char pat[64];
  int pl = snprintf(pat, sizeof pat, "\"%s\"", key);
  const char *end = data + len, *p = memmem(data, len, pat, (size_t)pl);
  if (!p) return NULL;
  p += pl;
  while (p < end && (*p == ' ' || *p == ':' || *p == '\t')) p++;
  return p < end ? p : NULL;
}

/* Copies the JSON string value of key into out (escapes kept as they
 * are). Returns 1 when found. */
static int json_str(const char *data, size_t len, const char *key, char *out, size_t n) {
  const char *end = data + len, *p = json_value(data, len, key);
  if (!p || *p != '"') return 0;
  p++;
  size_t i = 0;
  while (p < end && *p != '"' && i + 1 < n) {
    if (*p == '\\' && p + 1 < end && i + 2 < n) out[i++] = *p++;
    out[i++] = *p++;
  }
  out[i] = '\0';
  return 1;
}

static long json_num(const char *data, size_t len, const char *key) {
  const char *end = data + len, *p = json_value(data, len, key);
  long v = 0;
  int digits = 0;
  while (p && p < end && *p >= '0' && *p <= '9' && digits < 12) {
    v = v * 10 + (*p++ - '0');
    digits++;
  }
  return digits ? v : -1;
}

/* libnats' subscription thread: a JetStream acknowledgement (or refusal). */
static void on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure) {
  bridge_t *br = closure;
  reply_t *r = calloc(1, sizeof *r);
  const char *subj = natsMsg_GetSubject(msg);
  const char *last = subj ? strrchr(subj, '.') : NULL;
  char *mid = NULL, *end = NULL;
  if (r && last) {
    r->attempt = strtoull(last + 1, &mid, 10);
    if (mid && *mid == '_') r->index = strtoul(mid + 1, &end, 10);
  }
  if (!r || !end || *end || end == mid + 1) {
    free(r);
    natsMsg_Destroy(msg);
    return;
  }
  const char *data = natsMsg_GetData(msg), *dup;
  size_t len = (size_t)natsMsg_GetDataLength(msg);
  if (natsMsg_IsNoResponders(msg)) {
    r->kind = ACK_RETRY;
    snprintf(r->why, sizeof r->why, "no JetStream stream takes the subject (no responders)");
  } else if (data && json_value(data, len, "error")) {
    char desc[200] = "";
    long code = json_num(data, len, "err_code");
    json_str(data, len, "description", desc, sizeof desc);
    /* 10054: the message is larger than the stream takes; nothing else is
     * the record's own fault (a full stream, no leader: retried) */
    r->kind = code == 10054 ? ACK_REFUSED : ACK_RETRY;
    snprintf(r->why, sizeof r->why, "JetStream refused a message: %s (error %ld)", desc, code);
  } else if (!data || json_num(data, len, "seq") < 0) {
    r->kind = ACK_RETRY;
    snprintf(r->why, sizeof r->why, "JetStream answered without a sequence number");
  } else if ((dup = json_value(data, len, "duplicate")) && (size_t)(data + len - dup) >= 4 &&
             memcmp(dup, "true", 4) == 0) {
    r->kind = ACK_DUPLICATE;
  }
  natsMsg_Destroy(msg);
  pthread_mutex_lock(&br->lock);
  if (br->tail) br->tail->next = r;
  else br->head = r;
  br->tail = r;
  bridge_wake(br);
  pthread_mutex_unlock(&br->lock);
}

static void on_sub_complete(void *closure) { bridge_release(closure); }

/* --- loop thread: the socket -------------------------------------------- */

static void poll_closed(uv_handle_t *h) {
  output_t *o = h->data;
  handles_closed(h);
  free(h);
  output_handle_closed(o);
}

static void drop_poll(nats_output_t *s) {
  if (!s->poll) return;
  handles_close((uv_handle_t *)s->poll, poll_closed);
  s->poll = NULL;
  s->poll_nc = NULL;
}

static void on_poll(uv_poll_t *h, int status, int events) {
  nats_output_t *s = h->data;
  if (!s->poll_nc || s->poll != h) return;
  if (status < 0 || (events & UV_READABLE)) natsConnection_ProcessReadEvent(s->poll_nc);
  if (s->poll == h && s->poll_nc && status >= 0 && (events & UV_WRITABLE))
    natsConnection_ProcessWriteEvent(s->poll_nc);
}

/* Makes the poll handle match what libnats asked for. */
static void reconcile(nats_output_t *s) {
  bridge_t *br = s->bridge;
  pthread_mutex_lock(&br->lock);
  natsConnection *nc = br->nc;
  natsSock fd = br->fd;
  unsigned gen = br->gen;
  int r = br->want_read, w = br->want_write, det = br->detached;
  pthread_mutex_unlock(&br->lock);
  if (s->base.closing) return;
  if (s->poll && (det || gen != s->poll_gen)) drop_poll(s);
  if (det || !nc || gen == 0) return;
  if (!s->poll) {
    uv_poll_t *p = malloc(sizeof *p);
    if (!p || uv_poll_init_socket(s->base.loop, p, fd) != 0) {
      free(p);
      log_error(NULL, "output %s: cannot poll the NATS connection's socket", s->base.name);
      return;
    }
    handles_opened((uv_handle_t *)p);
    s->base.handles++;
    p->data = s;
    s->poll = p;
    s->poll_nc = nc;
    s->poll_gen = gen;
  }
  int ev = (r ? UV_READABLE : 0) | (w ? UV_WRITABLE : 0);
  if (ev) uv_poll_start(s->poll, ev, on_poll);
  else uv_poll_stop(s->poll);
}

/* --- loop thread: attempts ---------------------------------------------- */

static void attempt_end(nats_output_t *s, attempt_t *a, int result, const char *why) {
  attempt_t **link = &s->attempts;
  while (*link && *link != a) link = &(*link)->next;
  if (*link) *link = a->next;
  output_body_t *b = a->body;
  if (s->base.st.pending_acks >= a->n - a->resolved) s->base.st.pending_acks -= a->n - a->resolved;
  free(a->lines);
  free(a);
  output_sent(&s->base, b, result, why, 0);
}

/* The JSON of a body line that starts at p (its third field). */
static const char *line_json(const char *p, const char *end, size_t *len) {
  const char *t1 = memchr(p, '\t', (size_t)(end - p));
  const char *t2 = t1 ? memchr(t1 + 1, '\t', (size_t)(end - t1 - 1)) : NULL;
  if (!t2) {
    *len = 0;
    return end;
  }
  const char *nl = memchr(t2 + 1, '\n', (size_t)(end - t2 - 1));
  *len = (size_t)((nl ? nl : end) - (t2 + 1));
  return t2 + 1;
}

static void take_replies(nats_output_t *s) {
  bridge_t *br = s->bridge;
  pthread_mutex_lock(&br->lock);
  reply_t *r = br->head;
  br->head = br->tail = NULL;
  pthread_mutex_unlock(&br->lock);
  while (r) {
    reply_t *next = r->next;
    attempt_t *a = s->attempts;
    while (a && a->seq != r->attempt) a = a->next;
    if (a && r->index < a->n && !s->base.closing) {
      if (r->kind == ACK_RETRY) {
        attempt_end(s, a, OUTPUT_FAILED, r->why);
      } else {
        output_body_t *b = a->body;
        if (r->kind == ACK_REFUSED) {
          char *line = b->data + a->lines[r->index];
          size_t jl;
          const char *json = line_json(line, b->data + b->len, &jl);
          output_dead_letter(&s->base, json, jl, 1, r->why);
          line[0] = '#'; /* not sent again */
        } else {
          s->base.st.acked++;
          s->base.st.duplicates += r->kind == ACK_DUPLICATE;
        }
        a->resolved++;
        s->base.st.pending_acks--;
        if (a->resolved == a->n) attempt_end(s, a, OUTPUT_DELIVERED, NULL);
      }
    }
    free(r);
    r = next;
  }
}

/* The connection's reconnects so far, into the output's counts. */
static void count_reconnects(nats_output_t *s) {
  natsStatistics *stats = NULL;
  uint64_t rc = 0;
  if (s->nc && natsStatistics_Create(&stats) == NATS_OK &&
      natsConnection_GetStats(s->nc, stats) == NATS_OK &&
      natsStatistics_GetCounts(stats, NULL, NULL, NULL, NULL, &rc) == NATS_OK)
    s->base.st.reconnects = s->reconnects_before + rc;
  natsStatistics_Destroy(stats);
}

static void on_async(uv_async_t *h) {
  nats_output_t *s = h->data;
  if (s->base.closing) return;
  reconcile(s);
  take_replies(s);
  count_reconnects(s); /* an attach (a reconnect) wakes the loop too */
}

static void on_tick(uv_timer_t *t);

static void publish_body(nats_output_t *s, output_body_t *b) {
  output_t *o = &s->base;
  size_t lines = 0;
  for (size_t i = 0; i < b->len; i++) lines += b->data[i] == '\n';
  attempt_t *a = calloc(1, sizeof *a);
  if (!a || !(a->lines = malloc((lines ? lines : 1) * sizeof *a->lines))) {
    free(a);
    output_sent(o, b, OUTPUT_FAILED, "out of memory", 1);
    return;
  }
  a->body = b;
  a->seq = ++s->seq;
  char *p = b->data, *end = b->data + b->len;
  const char *fail = NULL;
  char why[300];
  while (p < end) {
    char *nl = memchr(p, '\n', (size_t)(end - p));
    char *line = p;
    p = nl ? nl + 1 : end;
    if (line[0] == '#') continue;
    size_t jl;
    const char *json = line_json(line, end, &jl);
    if (line[0] == '!') { /* no subject: "!\t<reason>\t<json>" */
      char reason[220];
      const char *t2 = json - 1;
      snprintf(reason, sizeof reason, "%.*s", (int)(t2 - line - 2), line + 2);
      output_dead_letter(o, json, jl, 1, reason);
      line[0] = '#';
      continue;
    }
    char *t1 = memchr(line, '\t', (size_t)(end - line));
    char *t2 = memchr(t1 + 1, '\t', (size_t)(end - t1 - 1));
    char id[BATCH_ID_LEN + 1], reply[200];
    char *subject = strndup(line + 1, (size_t)(t1 - line - 1));
    if (!subject) {
      fail = "out of memory";
      break;
    }
    snprintf(id, sizeof id, "%.*s", (int)(t2 - t1 - 1), t1 + 1);
    snprintf(reply, sizeof reply, "%s.%llu_%zu", s->inbox, a->seq, a->n);
    natsMsg *m = NULL;
    natsStatus st = natsMsg_Create(&m, subject, reply, json, (int)jl);
    if (st == NATS_OK && id[0]) st = natsMsgHeader_Set(m, "Nats-Msg-Id", id);
    if (st == NATS_OK) st = natsConnection_PublishMsg(s->nc, m);
    natsMsg_Destroy(m);
    free(subject);
    if (st == NATS_MAX_PAYLOAD) {
      snprintf(why, sizeof why, "a message of %zu bytes is larger than the server takes (%lld)", jl,
               (long long)natsConnection_GetMaxPayload(s->nc));
      output_dead_letter(o, json, jl, 1, why);
      line[0] = '#';
      continue;
    }
    if (st != NATS_OK) {
      snprintf(why, sizeof why, "publishing to NATS: %s", natsStatus_GetText(st));
      fail = why;
      break;
    }
    a->lines[a->n++] = (size_t)(line - b->data);
    o->st.published++;
    o->st.pending_acks++;
  }
  a->deadline_ms = uv_now(o->loop) + (uint64_t)(s->timeout * 1000);
  a->next = s->attempts;
  s->attempts = a;
  if (!uv_is_active((uv_handle_t *)&s->tick)) uv_timer_start(&s->tick, on_tick, 200, 200);
  if (fail) attempt_end(s, a, OUTPUT_FAILED, fail);
  else if (a->n == 0) attempt_end(s, a, OUTPUT_DELIVERED, NULL);
}

static void on_tick(uv_timer_t *t) {
  nats_output_t *s = t->data;
  uint64_t now = uv_now(s->base.loop);
  attempt_t *a = s->attempts;
  while (a) {
    attempt_t *next = a->next;
    if (now >= a->deadline_ms) {
      char why[200];
      snprintf(why, sizeof why, "no JetStream acknowledgement within %gs for %zu of %zu messages",
               s->timeout, a->n - a->resolved, a->n);
      attempt_end(s, a, OUTPUT_FAILED, why);
      next = s->attempts; /* output_sent may have started new attempts */
      while (next && next->deadline_ms > now) next = next->next;
    }
    a = next;
  }
  if (!s->attempts) /* nothing to watch: no wake-ups while idle */
    uv_timer_stop(&s->tick);
}

/* --- connecting (thread pool) ------------------------------------------ */

/* Reads a secret from a file (first line). Returns a malloc'ed string or NULL. */
static char *read_secret(const char *path, char *err, size_t n, const char *what) {
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, n, "cannot read the %s file %s: %s", what, path, strerror(errno));
    return NULL;
  }
  char buf[4096];
  size_t len = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[len] = '\0';
  buf[strcspn(buf, "\r\n")] = '\0';
  char *copy = strdup(buf);
  memset(buf, 0, sizeof buf);
  if (!copy) snprintf(err, n, "out of memory");
  return copy;
}

static const char *secret_env(const char *name, char *err, size_t n, const char *what) {
  const char *v = getenv(name);
  if (!v) snprintf(err, n, "the environment variable %s (the %s) is not set", name, what);
  return v;
}

static int set_auth(nats_output_t *s, natsOptions *opts, char *err, size_t n) {
  char *owned = NULL;
  const char *secret = NULL;
  natsStatus st = NATS_OK;
  if (s->creds_file) st = natsOptions_SetUserCredentialsFromFiles(opts, s->creds_file, NULL);
  if (s->token_env && !(secret = secret_env(s->token_env, err, n, "token"))) return -1;
  if (s->token_file && !(secret = owned = read_secret(s->token_file, err, n, "token"))) return -1;
  if (secret && st == NATS_OK) st = natsOptions_SetToken(opts, secret);
  if (owned) {
    memset(owned, 0, strlen(owned));
    free(owned);
    owned = NULL;
  }
  if (s->user) {
    secret = "";
    if (s->password_env && !(secret = secret_env(s->password_env, err, n, "password"))) return -1;
    if (s->password_file && !(secret = owned = read_secret(s->password_file, err, n, "password")))
      return -1;
    if (st == NATS_OK) st = natsOptions_SetUserInfo(opts, s->user, secret);
  }
  if (owned) {
    memset(owned, 0, strlen(owned));
    free(owned);
  }
  if (s->tls_ca_file && st == NATS_OK) {
    st = natsOptions_SetSecure(opts, true);
    if (st == NATS_OK) st = natsOptions_LoadCATrustedCertificates(opts, s->tls_ca_file);
  }
  if (st != NATS_OK) {
    snprintf(err, n, "the NATS credentials or TLS settings: %s", nats_GetLastError(NULL));
    return -1;
  }
  return 0;
}

/* Does the stream named in the settings take the template's subjects? */
static int check_stream(nats_output_t *s, natsConnection *nc, char *err, size_t n) {
  jsCtx *js = NULL;
  jsStreamInfo *si = NULL;
  jsErrCode jerr = 0;
  natsStatus st = natsConnection_JetStream(&js, nc, NULL);
  if (st == NATS_OK) st = js_GetStreamInfo(&si, js, s->stream, NULL, &jerr);
  int rc = 0;
  if (st == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
    snprintf(err, n, "there is no JetStream stream %s", s->stream);
    rc = -1;
  } else if (st != NATS_OK) {
    snprintf(err, n, "cannot read the JetStream stream %s: %s", s->stream, nats_GetLastError(NULL));
    rc = -1;
  } else {
    int ok = 0;
    size_t len = 0;
    char list[300] = "";
    for (int i = 0; i < si->Config->SubjectsLen; i++) {
      ok |= template_may_match(&s->tpl, si->Config->Subjects[i]);
      len += (size_t)snprintf(list + len, len < sizeof list ? sizeof list - len : 0, "%s%s",
                              i ? ", " : "", si->Config->Subjects[i]);
      if (len >= sizeof list) len = sizeof list - 1;
    }
    if (!ok) {
      snprintf(err, n, "the JetStream stream %s does not take the subject %s (its subjects: %s)",
               s->stream, s->subject, list);
      rc = -1;
    }
  }
  jsStreamInfo_Destroy(si);
  jsCtx_Destroy(js);
  return rc;
}

static void connect_work(uv_work_t *req) {
  job_t *j = req->data;
  nats_output_t *s = j->s;
  natsOptions *opts = NULL;
  natsStatus st = natsOptions_Create(&opts);
  if (st == NATS_OK) st = natsOptions_SetServers(opts, (const char **)s->urls, s->n_urls);
  if (st == NATS_OK)
    st = natsOptions_SetEventLoop(opts, j->bridge, ev_attach, ev_read, ev_write, ev_detach);
  if (st == NATS_OK) st = natsOptions_SetTimeout(opts, (int64_t)(s->timeout * 1000));
  if (st == NATS_OK) st = natsOptions_SetMaxReconnect(opts, -1);
  if (st == NATS_OK) st = natsOptions_SetReconnectWait(opts, 500);
  if (st == NATS_OK) st = natsOptions_SetSendAsap(opts, true);
  if (st == NATS_OK) st = natsOptions_SetName(opts, "engine");
  if (st != NATS_OK) {
    snprintf(j->err, sizeof j->err, "NATS options: %s", natsStatus_GetText(st));
    natsOptions_Destroy(opts);
    return;
  }
  if (set_auth(s, opts, j->err, sizeof j->err) != 0) {
    natsOptions_Destroy(opts);
    return;
  }
  st = natsConnection_Connect(&j->nc, opts);
  natsOptions_Destroy(opts);
  if (st != NATS_OK) {
    const char *last = nats_GetLastError(NULL);
    snprintf(j->err, sizeof j->err, "cannot connect to NATS: %s%s%s", natsStatus_GetText(st),
             last && *last ? ": " : "", last && *last ? last : "");
    j->nc = NULL;
    return;
  }
  natsInbox *inbox = NULL;
  st = natsInbox_Create(&inbox);
  if (st == NATS_OK) {
    snprintf(j->inbox, sizeof j->inbox, "%s", (const char *)inbox);
    char wild[140];
    snprintf(wild, sizeof wild, "%s.*", j->inbox);
    natsInbox_Destroy(inbox);
    st = natsConnection_Subscribe(&j->sub, j->nc, wild, on_reply, j->bridge);
    if (st == NATS_OK) {
      pthread_mutex_lock(&j->bridge->lock);
      j->bridge->refs++; /* the subscription's, until it completes */
      pthread_mutex_unlock(&j->bridge->lock);
      if (natsSubscription_SetOnCompleteCB(j->sub, on_sub_complete, j->bridge) != NATS_OK)
        bridge_release(j->bridge); /* cannot happen on an open subscription */
      natsSubscription_SetPendingLimits(j->sub, -1, -1);
    }
  }
  if (st != NATS_OK)
    snprintf(j->err, sizeof j->err, "NATS: subscribing to the acknowledgements: %s",
             natsStatus_GetText(st));
  else if (s->stream) check_stream(s, j->nc, j->err, sizeof j->err);
}

/* Closes what a job or the output held (thread pool). */
static void close_work(uv_work_t *req) {
  job_t *j = req->data;
  if (j->nc) natsConnection_Close(j->nc);
  natsSubscription_Destroy(j->sub);
  natsConnection_Destroy(j->nc);
  j->sub = NULL;
  j->nc = NULL;
}

static void close_done(uv_work_t *req, int status) {
  job_t *j = req->data;
  output_t *o = &j->s->base;
  free(j);
  output_handle_closed(o);
}

/* Hands a connection over to a close job (counted as a handle). */
static void close_conn(nats_output_t *s, natsConnection *nc, natsSubscription *sub) {
  if (!nc) return;
  pthread_mutex_lock(&s->bridge->lock);
  s->bridge->dead = nc;
  if (s->bridge->nc == nc) s->bridge->nc = NULL;
  pthread_mutex_unlock(&s->bridge->lock);
  job_t *j = calloc(1, sizeof *j);
  if (!j) { /* closes it here rather than keep it */
    natsConnection_Close(nc);
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(nc);
    return;
  }
  j->s = s;
  j->nc = nc;
  j->sub = sub;
  j->req.data = j;
  s->base.handles++;
  if (uv_queue_work(s->base.loop, &j->req, close_work, close_done) != 0) {
    close_work(&j->req);
    free(j);
    s->base.handles--;
  }
}

static void fail_waiting(nats_output_t *s, const char *why) {
  size_t n = s->n_waiting;
  output_body_t **list = s->waiting;
  s->waiting = NULL;
  s->n_waiting = s->cap_waiting = 0;
  for (size_t i = 0; i < n; i++) output_sent(&s->base, list[i], OUTPUT_FAILED, why, 0);
  free(list);
}

static void connect_done(uv_work_t *req, int status) {
  job_t *j = req->data;
  nats_output_t *s = j->s;
  s->connecting = NULL;
  if (s->base.closing || j->err[0]) {
    if (j->err[0] && !s->base.closing) {
      drop_poll(s);
      fail_waiting(s, j->err);
    }
    close_conn(s, j->nc, j->sub);
  } else {
    s->nc = j->nc;
    s->sub = j->sub;
    snprintf(s->inbox, sizeof s->inbox, "%s", j->inbox);
    reconcile(s);
    size_t n = s->n_waiting;
    output_body_t **list = s->waiting;
    s->waiting = NULL;
    s->n_waiting = s->cap_waiting = 0;
    for (size_t i = 0; i < n; i++) publish_body(s, list[i]);
    free(list);
  }
  free(j);
  output_handle_closed(&s->base);
}

static void start_connect(nats_output_t *s) {
  job_t *j = calloc(1, sizeof *j);
  if (!j) {
    fail_waiting(s, "out of memory");
    return;
  }
  j->s = s;
  j->bridge = s->bridge;
  j->req.data = j;
  s->connecting = j;
  s->base.handles++;
  int r = uv_queue_work(s->base.loop, &j->req, connect_work, connect_done);
  if (r != 0) {
    s->connecting = NULL;
    s->base.handles--;
    free(j);
    fail_waiting(s, "cannot start connecting to NATS");
  }
}

static void nats_send(output_t *o, output_body_t *b) {
  nats_output_t *s = (nats_output_t *)o;
  if (s->nc && natsConnection_IsClosed(s->nc)) { /* libnats gave up on it */
    count_reconnects(s);
    s->reconnects_before = s->base.st.reconnects;
    drop_poll(s);
    close_conn(s, s->nc, s->sub);
    s->nc = NULL;
    s->sub = NULL;
  }
  if (s->nc) {
    publish_body(s, b);
    return;
  }
  if (s->n_waiting == s->cap_waiting) {
    size_t cap = s->cap_waiting ? s->cap_waiting * 2 : 4;
    output_body_t **w = realloc(s->waiting, cap * sizeof(output_body_t *));
    if (!w) {
      output_sent(o, b, OUTPUT_FAILED, "out of memory", 1);
      return;
    }
    s->waiting = w;
    s->cap_waiting = cap;
  }
  s->waiting[s->n_waiting++] = b;
  if (!s->connecting) start_connect(s);
}

/* --- life --------------------------------------------------------------- */

static void handle_closed(uv_handle_t *h) {
  handles_closed(h);
  output_handle_closed(h->data);
}

static void async_closed(uv_handle_t *h) {
  output_t *o = h->data;
  handles_closed(h);
  free(h);
  output_handle_closed(o);
}

static int nats_start(output_t *o, uv_loop_t *loop, char *err, size_t n) {
  nats_output_t *s = (nats_output_t *)o;
  bridge_t *br = calloc(1, sizeof *br);
  uv_async_t *async = malloc(sizeof *async);
  if (!br || !async) {
    free(br);
    free(async);
    snprintf(err, n, "out of memory");
    return -1;
  }
  pthread_mutex_init(&br->lock, NULL);
  br->refs = 1;
  br->open = 1;
  br->loop_thread = pthread_self();
  br->owner = s;
  br->async = async;
  uv_async_init(loop, async, on_async);
  handles_opened((uv_handle_t *)async);
  async->data = s;
  o->handles++;
  uv_timer_init(loop, &s->tick);
  handles_opened((uv_handle_t *)&s->tick);
  s->tick.data = s;
  o->handles++;
  s->bridge = br;
  return 0;
}

static int nats_stop(output_t *o) {
  nats_output_t *s = (nats_output_t *)o;
  if (!s->bridge) return 0;
  bridge_t *br = s->bridge;
  pthread_mutex_lock(&br->lock);
  br->open = 0;
  uv_async_t *async = br->async;
  pthread_mutex_unlock(&br->lock);
  br->owner = NULL;
  drop_poll(s);
  while (s->attempts) { /* taken back: the next run sends them again */
    attempt_t *a = s->attempts;
    s->attempts = a->next;
    free(a->lines);
    free(a);
  }
  o->st.pending_acks = 0;
  free(s->waiting);
  s->waiting = NULL;
  s->n_waiting = s->cap_waiting = 0;
  close_conn(s, s->nc, s->sub); /* a connect job in flight closes its own (connect_done) */
  s->nc = NULL;
  s->sub = NULL;
  handles_close((uv_handle_t *)async, async_closed);
  handles_close((uv_handle_t *)&s->tick, handle_closed);
  return 0;
}

static void nats_free(output_t *o) {
  nats_output_t *s = (nats_output_t *)o;
  if (s->bridge) bridge_release(s->bridge);
  for (int i = 0; i < s->n_urls; i++) free(s->urls[i]);
  free(s->urls);
  free(s->waiting);
  free(s->subject);
  free(s->stream);
  free(s->user);
  free(s->password_env);
  free(s->password_file);
  free(s->token_env);
  free(s->token_file);
  free(s->creds_file);
  free(s->tls_ca_file);
}

const output_kind_t output_nats_kind = {"nats", nats_encode, nats_start, nats_send,
                                        NULL,   nats_stop,   nats_free,  NULL};

static char *opt_strdup(lua_State *L, int idx, const char *key, int *oom) {
  lua_getfield(L, idx, key);
  const char *v = lua_tostring(L, -1);
  char *copy = v ? strdup(v) : NULL;
  if (v && !copy) *oom = 1;
  lua_pop(L, 1);
  return copy;
}

/* The nats output from its validated table at idx (pipeline.lua: urls is a
 * list). */
output_t *output_nats_new(lua_State *L, int idx, char *err, size_t n) {
  nats_output_t *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  int oom = output_init(&s->base, &output_nats_kind, L, idx) != 0;
  s->base.st.acks = 1;
  s->subject = opt_strdup(L, idx, "subject", &oom);
  s->stream = opt_strdup(L, idx, "stream", &oom);
  s->user = opt_strdup(L, idx, "user", &oom);
  s->password_env = opt_strdup(L, idx, "password_env", &oom);
  s->password_file = opt_strdup(L, idx, "password_file", &oom);
  s->token_env = opt_strdup(L, idx, "token_env", &oom);
  s->token_file = opt_strdup(L, idx, "token_file", &oom);
  s->creds_file = opt_strdup(L, idx, "creds_file", &oom);
  s->tls_ca_file = opt_strdup(L, idx, "tls_ca_file", &oom);
  lua_getfield(L, idx, "timeout");
  s->timeout = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 10;
  lua_pop(L, 1);
  lua_getfield(L, idx, "urls");
  int count = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
  if (count > 0 && !(s->urls = calloc((size_t)count, sizeof *s->urls))) oom = 1;
  for (int i = 0; s->urls && i < count; i++) {
    lua_rawgeti(L, -1, i + 1);
    const char *u = lua_tostring(L, -1);
    if (u && (s->urls[s->n_urls] = strdup(u))) s->n_urls++;
    else if (u) oom = 1;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (oom) {
    output_free(&s->base);
    return NULL;
  }
  if (!s->subject || s->n_urls == 0 || nats_template_parse(&s->tpl, s->subject, err, n) != 0) {
    if (!err[0]) snprintf(err, n, "output %s: needs url and subject", s->base.name);
    output_free(&s->base);
    return NULL;
  }
  return &s->base;
}

#else /* built without libnats (a cross build without the target's libnats-dev) */
#include <stdio.h>

#include "output.h"

struct lua_State;

output_t *output_nats_new(struct lua_State *L, int idx, char *err, size_t n) {
  snprintf(err, n, "this engine was built without the nats output (libnats-dev was missing)");
  return NULL;
}
#endif
