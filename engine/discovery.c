/* discovery.c - list, events and reconcile (see discovery.h). */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backoff.h"
#include "checkpoint.h"
#include "container.h"
#include "discovery.h"
#include "log.h"
#include "reader.h"
#include "registry.h"
#include "timestamp.h"
#include "handles.h"

#define EVENT_LINE_MAX (1024 * 1024)
/* Created containers held, inspected, until they start. */
#define PREPARED_MAX 1024

typedef struct inspect_req {
  struct discovery *d;
  http_req_t *req;
  char id[129];
  int started;       /* seen in a start event: follow even if it exited */
  int created;       /* asked for by a create event: hold it until it starts */
  uint64_t event_ns; /* uv_hrtime of the start event, or 0 */
  struct inspect_req *next, *prev;
} inspect_req_t;

/* A created container, inspected before it starts: at its start event its
 * reader is attached at once, without a round trip to the daemon. */
typedef struct prepared {
  container_t *c;
  struct prepared *next;
} prepared_t;

struct discovery {
  runtime_t *rt;
  daemon_t *daemon;
  void (*ready)(void *, daemon_t *, const char *);
  void *ready_ud;
  int retry_start;          /* a daemon not reached at start is retried */
  int ping_pending;         /* retry the ping when the timer fires */
  int started;              /* the first list was handled */
  int listed;               /* the first list succeeded */
  uint64_t ev_window;       /* uv_now of the current one-second window */
  size_t ev_count;          /* events handled in it */
  unsigned long ev_skipped; /* events skipped in it (over the limit) */
  int stopping;
  http_req_t *ping, *list, *events;
  inspect_req_t *inspects; /* inspections in flight */
  prepared_t *prepared;    /* created containers not started yet */
  size_t n_prepared;
  uv_timer_t timer; /* events backoff and reconcile */
  int events_backoff_pending;
  backoff_t backoff;       /* events stream reconnections */
  int64_t events_since;    /* last event time seen, ns */
  uint64_t next_reconcile; /* uv_now ms */
  char *evbuf;             /* an unfinished events line */
  size_t evlen, evcap;
  unsigned long reconnects;
  int docker_ok;        /* the last ping, list or events answer was good */
  char docker_why[300]; /* why it was not */
  void (*closed)(void *);
  void *closed_ud;
};

static void start_events(discovery_t *d);
static void start_list(discovery_t *d);
static void schedule(discovery_t *d);
static void start_failed(discovery_t *d, const char *why);

/* Notes how the daemon answered discovery's last request (metrics). */
static void docker_state(discovery_t *d, int ok, const char *why) {
  d->docker_ok = ok;
  snprintf(d->docker_why, sizeof d->docker_why, "%.299s", ok ? "" : why);
}

/* --- inspect and attach ------------------------------------------------- */

static void drop_inspect(inspect_req_t *q) {
  discovery_t *d = q->d;
  if (q->prev) q->prev->next = q->next;
  else d->inspects = q->next;
  if (q->next) q->next->prev = q->prev;
  free(q);
}

/* --- created containers ------------------------------------------------ */

/* Takes the held container of id off the list: the caller owns its
 * reference. NULL when none is held. */
static container_t *take_prepared(discovery_t *d, const char *id) {
  for (prepared_t **p = &d->prepared; *p; p = &(*p)->next)
    if (strcmp((*p)->c->id, id) == 0) {
      prepared_t *found = *p;
      container_t *c = found->c;
      *p = found->next;
      free(found);
      d->n_prepared--;
      return c;
    }
  return NULL;
}

/* Holds c (a new reference) until its start event. Beyond PREPARED_MAX
 * (containers created and never started) it is not held: its start is then
 * inspected like any other. */
static void hold_prepared(discovery_t *d, container_t *c) {
  container_unref(take_prepared(d, c->id));
  if (d->n_prepared >= PREPARED_MAX) return;
  prepared_t *p = calloc(1, sizeof *p);
  if (!p) return;
  p->c = container_ref(c);
  p->next = d->prepared;
  d->prepared = p;
  d->n_prepared++;
  log_debug(c->name, "created: held until it starts");
}

/* "daemon <name>: " for messages when several daemons are followed, else
 * "" (the messages of one daemon stay as they were). */
static const char *who(const discovery_t *d, char buf[CONTAINER_HOST_MAX + 10]) {
  if (d->rt->n_daemons < 2) return "";
  snprintf(buf, CONTAINER_HOST_MAX + 10, "daemon %s: ", d->daemon->name);
  return buf;
}

/* The live reader of container id on this daemon, or NULL. */
static reader_t *find_reader(discovery_t *d, const char *id) {
  char key[CONTAINER_KEY_MAX];
  container_key(key, d->daemon->name, id);
  return registry_find(d->rt->registry, key);
}

static int selected(const discovery_t *d, const container_t *c) {
  return selection_match(&d->rt->cfg->select, c->id, c->name, c->image,
                         (const char *const *)c->label_pairs, c->n_labels);
}

static int64_t initial_since(const discovery_t *d) {
  return d->rt->cfg->since_start ? d->rt->start_ns : -1;
}

/* Follows c if the selection takes it. */
static void attach_selected(discovery_t *d, container_t *c, uint64_t event_ns) {
  if (selected(d, c)) registry_attach(d->rt->registry, d->daemon, c, initial_since(d), event_ns);
}

/* A created container is held for its start; a selected --rm one is
 * attached to at once, so that it loses no line however short it lives. */
static void hold_created(discovery_t *d, container_t *c) {
  hold_prepared(d, c);
  const config_t *cfg = d->rt->cfg;
  if (c->auto_remove && cfg->attach_rm && !cfg->backfill && selected(d, c) &&
      strncmp(docker_host(d->daemon->docker), "unix://", 7) == 0) /* the engine's clock */
    registry_attach_created(d->rt->registry, d->daemon, c, initial_since(d));
}

static void on_inspect(void *ud, const http_result_t *res) {
  inspect_req_t *q = ud;
  discovery_t *d = q->d;
  char err[300];
  cJSON *doc = docker_json(res, err, sizeof err);
  if (!doc) {
    if (res->status != 404) log_warn(NULL, "cannot inspect container %.12s: %s", q->id, err);
    drop_inspect(q);
    return;
  }
  container_t *c = container_from_inspect(doc, err, sizeof err);
  cJSON_Delete(doc);
  if (!c) {
    log_warn(NULL, "cannot read container %.12s: %s", q->id, err);
    drop_inspect(q);
    return;
  }
  container_set_host(c, d->daemon->name, d->rt->cfg->daemons_list);
  int started = q->started, created = q->created;
  uint64_t event_ns = q->event_ns;
  drop_inspect(q);
  /* A container that started and already exited is still read to its end:
   * the lines of short-lived containers are not lost. One created and not
   * started yet is held for its start. */
  if (c->running || started) attach_selected(d, c, event_ns);
  else if (created) hold_created(d, c);
  container_unref(c);
}

/* Inspects a container and follows it if it is selected and runs (or was
 * started: an event, which arrived at event_ns), or holds it until it
 * starts (created: a create event). An id already followed is not
 * inspected again. */
static void inspect(discovery_t *d, const char *id, int started, int created, uint64_t event_ns) {
  static const http_handler_t handler = {NULL, NULL, on_inspect};
  if (d->stopping) return;
  reader_t *rd = find_reader(d, id);
  if (rd && reader_state(rd) != READER_STOPPING && reader_state(rd) != READER_CLOSED) return;
  for (inspect_req_t *q = d->inspects; q; q = q->next)
    if (strcmp(q->id, id) == 0) {
      if (started && !q->started) q->event_ns = event_ns;
      q->started |= started;
      return;
    }
  inspect_req_t *q = calloc(1, sizeof *q);
  if (!q) return;
  q->d = d;
  q->started = started;
  q->created = created;
  q->event_ns = started ? event_ns : 0;
  snprintf(q->id, sizeof q->id, "%s", id);
  if (!(q->req = docker_inspect(d->daemon->docker, id, &handler, q))) {
    free(q);
    return;
  }
  q->next = d->inspects;
  if (d->inspects) d->inspects->prev = q;
  d->inspects = q;
}

static void consider(discovery_t *d, const char *id, int started) { inspect(d, id, started, 0, 0); }

/* A start event (arrived at event_ns): a held container's reader starts at
 * once; any other is inspected first. */
static void on_start(discovery_t *d, const char *id, uint64_t event_ns, int64_t started_ns) {
  reader_t *rd = find_reader(d, id);
  if (rd) reader_container_started(rd, event_ns, started_ns);
  container_t *c = take_prepared(d, id);
  if (!c) {
    inspect(d, id, 1, 0, event_ns);
    return;
  }
  if (!d->stopping) attach_selected(d, c, event_ns);
  container_unref(c);
}

/* A rename event: the held container or the reader takes the new name. A
 * container neither held nor followed is considered again, as the new name
 * may be selected. */
static void on_rename(discovery_t *d, const char *id, const char *name) {
  container_t *c = take_prepared(d, id);
  if (c) {
    container_t *renamed = container_renamed(c, name);
    hold_prepared(d, renamed ? renamed : c);
    container_unref(renamed);
    container_unref(c);
    return;
  }
  reader_t *rd = find_reader(d, id);
  if (rd && reader_state(rd) != READER_STOPPING && reader_state(rd) != READER_CLOSED) {
    if (reader_rename(rd, name) != 0)
      log_warn(reader_container(rd)->name, "out of memory: the rename to %s is not followed", name);
    return;
  }
  consider(d, id, 0);
}

/* --- list --------------------------------------------------------------- */

static void on_list(void *ud, const http_result_t *res) {
  discovery_t *d = ud;
  char err[300];
  d->list = NULL;
  cJSON *doc = docker_json(res, err, sizeof err);
  docker_state(d, doc != NULL, err);
  if (!doc) {
    if (!d->started) {
      char msg[400];
      snprintf(msg, sizeof msg, "cannot list containers at %s: %s", docker_host(d->daemon->docker),
               err);
      start_failed(d, msg);
      return;
    }
    char w[CONTAINER_HOST_MAX + 10];
    log_warn(NULL, "%scannot list containers: %s", who(d, w), err);
    return;
  }
  /* The list holds every container, running or not: a backfill reads
   * stopped ones too, and the saved cursors of containers it lacks go. */
  const cJSON *c;
  size_t n = 0;
  size_t cap = (size_t)cJSON_GetArraySize(doc) + 1;
  const char **ids = malloc(cap * sizeof *ids);
  char *keys = d->rt->checkpoint ? malloc(cap * CONTAINER_KEY_MAX) : NULL;
  cJSON_ArrayForEach(c, doc) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "Id");
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(c, "State");
    const char *st = cJSON_IsString(state) ? state->valuestring : "running";
    if (!cJSON_IsString(id)) continue;
    if (ids && keys) {
      container_key(keys + n * CONTAINER_KEY_MAX, d->daemon->name, id->valuestring);
      ids[n] = keys + n * CONTAINER_KEY_MAX;
      n++;
    }
    if (d->rt->cfg->backfill || !strcmp(st, "running") || !strcmp(st, "paused") ||
        !strcmp(st, "restarting"))
      consider(d, id->valuestring, d->rt->cfg->backfill);
  }
  if (ids && keys) {
    char prefix[CONTAINER_KEY_MAX];
    snprintf(prefix, sizeof prefix, "%s/", d->daemon->name);
    checkpoint_reconcile(d->rt->checkpoint, prefix, ids, n, 2 * d->rt->cfg->reconcile_interval);
  }
  free(ids);
  free(keys);
  cJSON_Delete(doc);
  if (!d->started) {
    d->started = 1;
    d->listed = 1;
    if (!d->rt->cfg->backfill) { /* a backfill lists once and follows nothing */
      start_events(d);
      schedule(d);
    }
    d->ready(d->ready_ud, d->daemon, NULL);
  }
}

static void start_list(discovery_t *d) {
  static const http_handler_t handler = {NULL, NULL, on_list};
  if (d->list || d->stopping) return;
  d->list = docker_list(d->daemon->docker, 1, &handler, d);
}

/* --- events ------------------------------------------------------------- */

/* The events limit: returns 1 when this event may be handled. Over
 * max_events_per_second, events are skipped and a container list soon after
 * (the periodic reconcile, brought forward) catches up with them. */
static int event_allowed(discovery_t *d) {
  uint64_t now = uv_now(d->rt->loop);
  if (now - d->ev_window >= 1000) {
    d->ev_window = now;
    d->ev_count = 0;
    d->ev_skipped = 0;
  }
  if (++d->ev_count <= d->rt->cfg->max_events_per_second) return 1;
  if (d->ev_skipped++ == 0) { /* list once the window is over */
    log_warn(NULL,
             "skipping container events over max_events_per_second (%zu); "
             "a container list catches up",
             d->rt->cfg->max_events_per_second);
    d->next_reconcile = now + 1000;
    schedule(d);
  }
  return 0;
}

static void handle_event(discovery_t *d, const char *text, size_t len) {
  uint64_t arrived = uv_hrtime();
  if (!event_allowed(d)) return;
  cJSON *ev = cJSON_ParseWithLength(text, len);
  if (!ev) {
    log_warn(NULL, "ignoring a malformed event from the daemon");
    return;
  }
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(ev, "Type");
  const cJSON *action = cJSON_GetObjectItemCaseSensitive(ev, "Action");
  const cJSON *actor = cJSON_GetObjectItemCaseSensitive(ev, "Actor");
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(actor, "ID");
  const cJSON *tn = cJSON_GetObjectItemCaseSensitive(ev, "timeNano");
  int64_t ev_ns = 0;
  if (cJSON_IsNumber(tn) && tn->valuedouble > 0 && tn->valuedouble < 9.2e18) {
    ev_ns = (int64_t)tn->valuedouble;
    /* A double holds the ns time to within a microsecond; the replay is
     * inclusive and handling is idempotent, so a step back is harmless. */
    int64_t t = (int64_t)tn->valuedouble - 1000;
    if (t > d->events_since) d->events_since = t;
  }
  if (cJSON_IsString(type) && strcmp(type->valuestring, "container") == 0 &&
      cJSON_IsString(action) && cJSON_IsString(id)) {
    const char *a = action->valuestring;
    log_debug(NULL, "event %s %.12s", a, id->valuestring);
    if (!strcmp(a, "start")) {
      on_start(d, id->valuestring, arrived, ev_ns);
    } else if (!strcmp(a, "create")) {
      inspect(d, id->valuestring, 0, 1, 0);
    } else if (!strcmp(a, "restart") || !strcmp(a, "unpause")) {
      consider(d, id->valuestring, 1);
    } else if (!strcmp(a, "die") || !strcmp(a, "died")) { /* "died": older Podman */
      reader_t *rd = find_reader(d, id->valuestring);
      if (rd) reader_container_died(rd);
    } else if (!strcmp(a, "destroy") || !strcmp(a, "remove")) { /* "remove": Podman */
      container_unref(take_prepared(d, id->valuestring));
      char key[CONTAINER_KEY_MAX];
      container_key(key, d->daemon->name, id->valuestring);
      registry_forget(d->rt->registry, key);
    } else if (!strcmp(a, "rename")) {
      const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(actor, "Attributes");
      const cJSON *name = cJSON_GetObjectItemCaseSensitive(attrs, "name");
      if (cJSON_IsString(name) && name->valuestring[0])
        on_rename(d, id->valuestring, name->valuestring);
    }
  }
  cJSON_Delete(ev);
}

static void on_events_headers(void *ud, long status, const char *content_type) {
  discovery_t *d = ud;
  if (status == 200) docker_state(d, 1, NULL);
}

static int on_events_body(void *ud, const char *data, size_t len) {
  discovery_t *d = ud;
  backoff_reset(&d->backoff);
  while (len) {
    const char *nl = memchr(data, '\n', len);
    size_t n = nl ? (size_t)(nl - data) : len;
    if (d->evlen + n > EVENT_LINE_MAX) {
      log_warn(NULL, "an event larger than %d bytes was skipped", EVENT_LINE_MAX);
      d->evlen = 0;
      return -1; /* the stream restarts */
    }
    if (d->evlen || !nl) { /* keep the unfinished part */
      if (d->evlen + n > d->evcap) {
        size_t cap = d->evcap ? d->evcap : 4096;
        while (cap < d->evlen + n) cap *= 2;
        char *p = realloc(d->evbuf, cap);
        if (!p) return -1;
        d->evbuf = p;
        d->evcap = cap;
      }
      memcpy(d->evbuf + d->evlen, data, n);
      d->evlen += n;
    }
    if (!nl) break;
    if (d->evlen) {
      handle_event(d, d->evbuf, d->evlen);
      d->evlen = 0;
    } else if (n) {
      handle_event(d, data, n);
    }
    data += n + 1;
    len -= n + 1;
  }
  return 0;
}

static void on_events_done(void *ud, const http_result_t *res) {
  discovery_t *d = ud;
  char why[300];
  d->events = NULL;
  d->evlen = 0;
  if (res->ok && res->status == 200)
    snprintf(why, sizeof why, "the daemon ended the events stream");
  else docker_describe_error(res, why, sizeof why);
  docker_state(d, 0, why);
  double delay = backoff_next(&d->backoff);
  char w[CONTAINER_HOST_MAX + 10];
  log_warn(NULL, "%sevents stream: %s; reconnecting in %.2f s", who(d, w), why, delay);
  d->events_backoff_pending = 1;
  d->next_reconcile = uv_now(d->rt->loop) + (uint64_t)(delay * 1000);
  schedule(d);
}

static void start_events(discovery_t *d) {
  static const http_handler_t handler = {on_events_headers, on_events_body, on_events_done};
  if (d->events || d->stopping) return;
  d->events = docker_events(d->daemon->docker, d->events_since, &handler, d);
}

/* --- the timer: events reconnect and periodic reconcile ----------------- */

static void start_ping(discovery_t *d);

static void on_timer(uv_timer_t *t) {
  discovery_t *d = t->data;
  if (d->ping_pending) { /* not reached at start: try again */
    d->ping_pending = 0;
    start_ping(d);
    return;
  }
  if (d->events_backoff_pending) {
    d->events_backoff_pending = 0;
    d->reconnects++;
    d->daemon->reconnects++;
    start_events(d);
  }
  start_list(d); /* a reconnect also reconciles: events may have been missed */
  d->next_reconcile = uv_now(d->rt->loop) + (uint64_t)(d->rt->cfg->reconcile_interval * 1000);
  schedule(d);
}

static void schedule(discovery_t *d) {
  if (d->stopping) return;
  uint64_t now = uv_now(d->rt->loop);
  if (!d->next_reconcile)
    d->next_reconcile = now + (uint64_t)(d->rt->cfg->reconcile_interval * 1000);
  uv_timer_start(&d->timer, on_timer, d->next_reconcile > now ? d->next_reconcile - now : 0, 0);
}

/* --- start -------------------------------------------------------------- */

/* The daemon could not be used at start (why): retried with backoff when
 * retry_start, else the engine is told (and nothing is retried). */
static void start_failed(discovery_t *d, const char *why) {
  docker_state(d, 0, why);
  if (!d->retry_start) {
    d->started = 1;
    d->ready(d->ready_ud, d->daemon, why);
    return;
  }
  double delay = backoff_next(&d->backoff);
  log_warn(NULL, "daemon %s: %s; trying again in %.2f s", d->daemon->name, why, delay);
  d->ping_pending = 1;
  d->next_reconcile = uv_now(d->rt->loop) + (uint64_t)(delay * 1000);
  schedule(d);
}

static void on_ping(void *ud, const http_result_t *res) {
  discovery_t *d = ud;
  char err[400];
  d->ping = NULL;
  if (docker_negotiate(d->daemon->docker, res, err, sizeof err) != 0) {
    start_failed(d, err);
    return;
  }
  backoff_reset(&d->backoff);
  d->next_reconcile = 0; /* from the first list on (schedule) */
  log_info(NULL, "connected to the Docker daemon %s%sat %s (API %s)",
           d->rt->n_daemons > 1 ? d->daemon->name : "", d->rt->n_daemons > 1 ? " " : "",
           docker_host(d->daemon->docker), docker_api_version(d->daemon->docker));
  /* Events from just before the list on, so none falls between the two. */
  d->events_since = ts_now() - 1000000000LL;
  start_list(d);
}

static void start_ping(discovery_t *d) {
  static const http_handler_t handler = {NULL, NULL, on_ping};
  if (d->ping || d->stopping) return;
  d->ping = docker_ping(d->daemon->docker, &handler, d);
}

discovery_t *discovery_start(runtime_t *rt, daemon_t *daemon, int retry_start,
                             void (*ready)(void *, daemon_t *, const char *), void *ud) {
  discovery_t *d = calloc(1, sizeof *d);
  if (!d) return NULL;
  d->rt = rt;
  d->daemon = daemon;
  d->retry_start = retry_start;
  d->ready = ready;
  d->ready_ud = ud;
  backoff_init(&d->backoff, rt->cfg->backoff_initial, rt->cfg->backoff_max);
  uv_timer_init(rt->loop, &d->timer);
  handles_opened((uv_handle_t *)&d->timer);
  d->timer.data = d;
  start_ping(d);
  return d;
}

unsigned long discovery_reconnects(const discovery_t *d) { return d->reconnects; }

int discovery_settled(const discovery_t *d) { return d->listed && !d->inspects; }

void discovery_reconcile(discovery_t *d) {
  if (d->started) start_list(d);
}

int discovery_docker_ok(const discovery_t *d, char *why, size_t n) {
  if (why && n)
    snprintf(why, n, "%s",
             d->docker_ok       ? ""
             : d->docker_why[0] ? d->docker_why
                                : "no answer from the Docker daemon yet");
  return d->docker_ok;
}

static void timer_closed(uv_handle_t *h) {
  discovery_t *d = h->data;
  void (*cb)(void *) = d->closed;
  void *ud = d->closed_ud;
  handles_closed(h);
  while (d->prepared) container_unref(take_prepared(d, d->prepared->c->id));
  free(d->evbuf);
  free(d);
  if (cb) cb(ud);
}

void discovery_stop(discovery_t *d, void (*closed)(void *), void *ud) {
  if (d->stopping) return;
  d->stopping = 1;
  d->closed = closed;
  d->closed_ud = ud;
  http_cancel(d->ping);
  http_cancel(d->list);
  http_cancel(d->events);
  d->ping = d->list = d->events = NULL;
  for (inspect_req_t *q = d->inspects, *next; q; q = next) {
    next = q->next;
    http_cancel(q->req);
    drop_inspect(q);
  }
  uv_timer_stop(&d->timer);
  handles_close((uv_handle_t *)&d->timer, timer_closed);
}
