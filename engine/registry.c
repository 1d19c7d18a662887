/* registry.c - every reader and cursor, by container key (see registry.h). */
#include <stdlib.h>
#include <string.h>
#include "checkpoint.h"
#include "idtable.h"
#include "log.h"
#include "reader.h"
#include "cursor.h"
#include "registry.h"

typedef struct entry {
  idlink_t link;               /* in the registry's table, by key */
  char key[CONTAINER_KEY_MAX]; /* container.h: "<daemon>/<id>" */
  daemon_t *daemon;
  cursor_t *cursor;
  reader_t *reader; /* live reader, or NULL */
  int reattach;     /* attach again once the closing reader is gone */
  int64_t reattach_since;
  container_t *reattach_c;
  int forget;     /* forget the entry once its reader is gone */
  int unreadable; /* its log driver cannot be read: never attach */
  int over_limit; /* refused for max_readers (warned once) */
} entry_t;

struct registry {
  runtime_t *rt;
  idtable_t entries; /* entry_t by container id */
  registry_stats_t stats;
  int stopping;
  void (*stopped)(void *);
  void *stopped_ud;
};

static entry_t *entry_of(idlink_t *l) { return l ? IDTABLE_ENTRY(l, entry_t, link) : NULL; }

static entry_t *find_entry(const registry_t *r, const char *id) {
  return entry_of(idtable_find(&r->entries, id));
}

/* for (entry_t *e = first(r); e; e = next(r, e)) */
static entry_t *first(const registry_t *r) { return entry_of(idtable_first(&r->entries)); }
static entry_t *next(const registry_t *r, const entry_t *e) {
  return entry_of(idtable_next(&r->entries, &e->link));
}

registry_t *registry_new(runtime_t *rt) {
  registry_t *r = calloc(1, sizeof *r);
  if (r) r->rt = rt;
  return r;
}

const double registry_start_bounds[REGISTRY_START_BUCKETS] = {0.0005, 0.001, 0.002, 0.005, 0.01,
                                                              0.02,   0.05,  0.1,   0.5,   1};

static const reader_owner_t owner; /* below */

static int start_reader(registry_t *r, entry_t *e, container_t *c, int64_t since_ns,
                        uint64_t event_ns, int attach) {
  r->stats.by_state[READER_CLOSED]++; /* a new reader starts out closed */
  e->reader = reader_start(r->rt, e->daemon, c, e->cursor, since_ns, event_ns, attach, &owner, r);
  if (!e->reader) {
    r->stats.by_state[READER_CLOSED]--;
    log_error(c->name, "out of memory: cannot follow this container");
    return -1;
  }
  r->stats.started++;
  r->stats.live++;
  log_info(c->name, "following container %.12s", c->id);
  return 0;
}

static int attach(registry_t *r, daemon_t *d, container_t *c, int64_t since_ns, uint64_t event_ns,
                  int created) {
  if (r->stopping || r->rt->stopping) return -1;
  entry_t *e = find_entry(r, c->key);
  if (!e) {
    if (!(e = calloc(1, sizeof *e))) return -1;
    memcpy(e->key, c->key, sizeof e->key);
    e->daemon = d;
    if (r->rt->checkpoint && (e->cursor = checkpoint_resume(r->rt->checkpoint, c->key)))
      log_info(c->name, "resuming from the saved cursor");
    else
      e->cursor = cursor_new((int64_t)(r->rt->cfg->resume_margin * 1e9), CURSOR_MAX_KEYS_DEFAULT);
    if (!e->cursor) {
      free(e);
      return -1;
    }
    idtable_add(&r->entries, &e->link, e->key);
  }
  e->forget = 0;
  if (e->unreadable) return 0;
  if (e->reader) {
    reader_state_t s = reader_state(e->reader);
    if (s == READER_STOPPING || s == READER_CLOSED) { /* finishing: start again after */
      if (!e->reattach) {
        e->reattach = 1;
        e->reattach_since = since_ns;
        e->reattach_c = container_ref(c);
      }
    }
    return 0;
  }
  if (r->stats.live >= r->rt->cfg->max_readers) {
    if (!e->over_limit)
      log_warn(c->name, "not followed: max_readers (%zu) readers are live",
               r->rt->cfg->max_readers);
    e->over_limit = 1;
    return -1; // NOLINT(clang-analyzer-unix.Malloc): a new e is held by r->entries
  }
  e->over_limit = 0;
  return start_reader(r, e, c, since_ns, event_ns, created);
}

int registry_attach(registry_t *r, daemon_t *d, container_t *c, int64_t since_ns,
                    uint64_t event_ns) {
  return attach(r, d, c, since_ns, event_ns, 0);
}

int registry_attach_created(registry_t *r, daemon_t *d, container_t *c, int64_t since_ns) {
  return attach(r, d, c, since_ns, 0, 1);
}

reader_t *registry_find(registry_t *r, const char *key) {
  entry_t *e = find_entry(r, key);
  return e ? e->reader : NULL;
}

static void drop_entry(registry_t *r, entry_t *e) {
  idtable_remove(&r->entries, &e->link);
  cursor_free(e->cursor);
  container_unref(e->reattach_c);
  free(e);
}

void registry_forget(registry_t *r, const char *key) {
  if (r->rt->checkpoint) checkpoint_forget(r->rt->checkpoint, key);
  entry_t *e = find_entry(r, key);
  if (!e) return;
  if (e->reader) e->forget = 1;
  else drop_entry(r, e);
}

static void check_stopped(registry_t *r) {
  if (!r->stopping || r->stats.live || !r->stopped) return;
  void (*cb)(void *) = r->stopped;
  r->stopped = NULL;
  cb(r->stopped_ud);
}

void registry_stop_all(registry_t *r, void (*done)(void *), void *ud) {
  if (r->stopping) return;
  r->stopping = 1;
  r->stopped = done;
  r->stopped_ud = ud;
  for (entry_t *e = first(r); e; e = next(r, e)) {
    e->reattach = 0;
    if (e->reader) reader_stop(e->reader);
  }
  check_stopped(r);
}

void registry_stats(const registry_t *r, registry_stats_t *out) { *out = r->stats; }

/* --- what readers tell (reader_owner_t) ---------------------------------- */

static void on_state_changed(void *ud, reader_t *rd, reader_state_t from, reader_state_t to) {
  registry_t *r = ud;
  (void)rd;
  r->stats.by_state[from]--;
  r->stats.by_state[to]++;
}

static void on_cycled(void *ud) {
  registry_t *r = ud;
  r->stats.cycled++;
}

static void on_attach_result(void *ud, reader_attach_result_t result) {
  registry_t *r = ud;
  if ((unsigned)result < READER_ATTACH_N_RESULTS) r->stats.attach[result]++;
}

static void on_start_latency(void *ud, uint64_t ns) {
  registry_t *r = ud;
  double s = (double)ns / 1e9;
  size_t i = 0;
  while (i < REGISTRY_START_BUCKETS && s > registry_start_bounds[i]) i++;
  r->stats.start_buckets[i]++;
  r->stats.start_ns += ns;
}

static void on_unreadable(void *ud, reader_t *rd) {
  registry_t *r = ud;
  entry_t *e = find_entry(r, reader_container(rd)->key);
  if (e) e->unreadable = 1;
}

static void on_reader_closed(void *ud, reader_t *rd) {
  registry_t *r = ud;
  entry_t *e = find_entry(r, reader_container(rd)->key);
  r->stats.by_state[READER_CLOSED]--;
  r->stats.live--;
  r->stats.stopped++;
  if (e && e->reader == rd) e->reader = NULL;
  reader_free(rd);
  if (e && e->reattach && !r->stopping && !r->rt->stopping) {
    container_t *c = e->reattach_c;
    e->reattach = 0;
    e->reattach_c = NULL;
    start_reader(r, e, c, e->reattach_since, 0, 0);
    container_unref(c);
  } else if (e && e->forget) {
    drop_entry(r, e);
  }
  check_stopped(r);
}

static const reader_owner_t owner = {
    .state_changed = on_state_changed,
    .unreadable = on_unreadable,
    .start_latency = on_start_latency,
    .attach_result = on_attach_result,
    .cycled = on_cycled,
    .closed = on_reader_closed,
};

void registry_resume_paused(registry_t *r) {
  for (entry_t *e = first(r); e; e = next(r, e))
    if (e->reader) reader_resume(e->reader);
}

void registry_each(registry_t *r, void (*fn)(void *, reader_t *), void *ud) {
  for (entry_t *e = first(r); e; e = next(r, e))
    if (e->reader) fn(ud, e->reader);
}

void registry_free(registry_t *r) {
  if (!r) return;
  for (entry_t *e = first(r), *after; e; e = after) {
    after = next(r, e);
    drop_entry(r, e);
  }
  free(r);
}
