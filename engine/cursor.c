/* cursor.c - the resume point and the dedupe window (see cursor.h).
 *
 * The window is a FIFO ring with one key per delivery, in delivery order;
 * eviction pops its head. Delivering a line is a ring push and nothing more:
 * the multiset index that replays need is built only when a replay starts
 * (cursor_begin_replay), from the ring as it is then. That index is an
 * open-addressing hash table (linear probing, backward-shift deletion)
 * mapping a key to how many times it was delivered, how many copies the
 * current pass may still skip, and how many of its deliveries came before
 * the connection and were not returned by it yet (a drop of one of those is
 * a replay, any other drop a repeat). It covers the `indexed` oldest ring
 * entries (the ones delivered before the pass began: lines delivered during
 * a pass are newer than anything it can return; a pass that starts later
 * in the same connection indexes them too) and is freed as soon as no
 * stream of the pass can return a line it holds, so a cursor that is not
 * replaying has no table.
 *
 * A pass is open for a stream from the connection's start, or from the
 * moment the stream went back in time, until the stream returns a line
 * newer than the newest one delivered on it: json-file and local keep each
 * stream in time order, so nothing that stream returns later can be a copy,
 * short of going back again (a new pass).
 *
 * Resume rule (cursor_since), with E the newest timestamp of any key that
 * left the window:
 *
 *   since = min(oldest ts in the window, newest - margin, last floor)
 *   since = max(since, E + 1)                     (and at least 0)
 *
 * The min reaches back to everything the window or the pending line needs;
 * the max guarantees that every delivered line a replay can return is still
 * in the window, so it is skipped, never repeated. A key evicted by age has
 * ts < min(newest - margin, floor) at the time, so E + 1 only wins over the
 * min after max_keys forced keys out, or when a much older line was
 * delivered late; in both cases a line older than E could be missed, never
 * repeated. */
#include "cursor.h"

#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define LOAD_LE(w) __builtin_bswap64(w)
#else
#define LOAD_LE(w) (w)
#endif

/* 32 bytes: the two pass counts saturate at SKIP_MAX (past that many
 * copies of one key in the window, the rest are delivered again, not lost). */
typedef struct entry {
  cursor_key_t key;
  uint32_t delivered; /* 0: empty slot */
  uint16_t skip;      /* copies the current pass may still drop, <= delivered */
  uint16_t old;       /* deliveries before this connection that it did not
                         return yet, <= skip */
} entry_t;

#define SKIP_MAX UINT16_MAX

/* Per-stream state: index 0 is stdout (and TTY), 1 is stderr. */
#define STREAMS 2

struct cursor {
  int64_t margin;
  size_t max_keys;
  int any; /* something was delivered */
  int64_t newest;
  int64_t floor;       /* floor_ts of the last delivery */
  int evicted;         /* a key has left the window */
  int64_t evicted_max; /* newest ts of a key that left the window */

  int64_t newest_on[STREAMS];    /* newest delivered ts per stream, or -1 */
  cursor_key_t last_on[STREAMS]; /* key of a line delivered at newest_on */
  int have_last[STREAMS];
  int64_t returned[STREAMS]; /* ts of the stream's last line in this
                                 connection, INT64_MIN before the first */
  uint64_t repeated;

  entry_t *table;   /* NULL unless a pass is in progress */
  size_t table_cap; /* power of two */
  size_t table_used;
  size_t indexed;          /* ring entries from the head that are in the table */
  int open[STREAMS];       /* the pass may still drop lines of the stream */
  size_t keys_on[STREAMS]; /* indexed ring entries of the stream */

  cursor_key_t *ring;
  size_t ring_cap, head, count;
};

#define TABLE_MIN 16
#define RING_MIN 16

/* The i-th key of the window, oldest first. */
static cursor_key_t *ring_at(const cursor_t *c, size_t i) {
  return &c->ring[(c->head + i) % c->ring_cap];
}

static uint64_t slot_hash(const cursor_key_t *k) {
  uint64_t h =
      k->hash ^ ((uint64_t)k->ts * 0x9E3779B97F4A7C15ULL) ^ ((uint64_t)k->len << 8 | k->stream);
  h ^= h >> 31;
  h *= 0xD6E8FEB86659FD93ULL;
  h ^= h >> 32;
  return h;
}

static int key_eq(const cursor_key_t *a, const cursor_key_t *b) {
  return a->ts == b->ts && a->hash == b->hash && a->len == b->len && a->stream == b->stream;
}

/* The slot holding k, or the empty slot where it would go. */
static size_t table_find(const cursor_t *c, const cursor_key_t *k) {
  size_t mask = c->table_cap - 1;
  size_t i = slot_hash(k) & mask;
  while (c->table[i].delivered != 0 && !key_eq(&c->table[i].key, k)) i = (i + 1) & mask;
  return i;
}

/* Makes room for one more distinct key (load factor at most 1/2).
 * Returns 0, or -1 when out of memory (the table is unchanged). */
static int table_reserve(cursor_t *c) {
  if ((c->table_used + 1) * 2 <= c->table_cap) return 0;
  size_t cap = c->table_cap ? c->table_cap * 2 : TABLE_MIN;
  entry_t *old = c->table;
  size_t old_cap = c->table_cap;
  c->table = calloc(cap, sizeof *c->table);
  if (!c->table) {
    c->table = old;
    return -1;
  }
  c->table_cap = cap;
  for (size_t i = 0; i < old_cap; i++)
    if (old[i].delivered != 0) c->table[table_find(c, &old[i].key)] = old[i];
  free(old);
  return 0;
}

/* Empties slot i, shifting later entries of its probe run back so that
 * every entry stays reachable from its home slot. */
static void table_remove(cursor_t *c, size_t i) {
  size_t mask = c->table_cap - 1;
  for (size_t j = (i + 1) & mask; c->table[j].delivered != 0; j = (j + 1) & mask) {
    size_t home = slot_hash(&c->table[j].key) & mask;
    if (((j - home) & mask) >= ((j - i) & mask)) {
      c->table[i] = c->table[j];
      i = j;
    }
  }
  memset(&c->table[i], 0, sizeof c->table[i]);
  c->table_used--;
}

/* Makes room for one more ring entry, growing up to max_keys + 1 (one
 * delivery over the cap is recorded before eviction drops one). Returns 0,
 * or -1 when out of memory. */
static int ring_reserve(cursor_t *c) {
  if (c->count < c->ring_cap) return 0;
  size_t cap = c->ring_cap ? c->ring_cap * 2 : RING_MIN;
  /* The last step goes straight to max_keys + 1, not through max_keys
   * (a window of max_keys would be copied once more for its last key). */
  if (cap >= c->max_keys) cap = c->max_keys + 1;
  if (cap <= c->count) return -1; /* no room: max_keys + 1 overflowed, or the doubling did */
  cursor_key_t *ring = malloc(cap * sizeof *ring);
  if (!ring) return -1;
  for (size_t i = 0; c->ring_cap > 0 && i < c->count; i++) ring[i] = *ring_at(c, i);
  free(c->ring);
  c->ring = ring;
  c->ring_cap = cap;
  c->head = 0;
  return 0;
}

static int stream_index(int stream) { return stream == 2; /* DECODE_STDERR */ }

/* Frees the pass index (no stream can return a line it holds). */
static void table_drop(cursor_t *c) {
  free(c->table);
  c->table = NULL;
  c->table_cap = c->table_used = c->indexed = 0;
  for (int s = 0; s < STREAMS; s++) {
    c->open[s] = 0;
    c->keys_on[s] = 0;
  }
}

/* Drops the index once no stream of the pass has a key to drop. */
static void pass_check(cursor_t *c) {
  for (int s = 0; s < STREAMS; s++)
    if (c->open[s] && c->keys_on[s] > 0) return;
  table_drop(c);
}

/* Allocates an empty index sized for the window. Out of memory: no table
 * (table_reserve tries again, smaller). */
static void table_alloc(cursor_t *c) {
  size_t cap = TABLE_MIN;
  /* table_reserve's load limit (a half) with every key of the window in:
   * a full window of 65536 keys takes 4 MiB, not twice that. */
  while (cap < c->count * 2) cap *= 2;
  c->table = calloc(cap, sizeof *c->table);
  c->table_cap = c->table ? cap : 0;
  c->table_used = c->indexed = 0;
}

/* Adds one delivery of k to the index; skippable in the current pass when
 * skip, delivered before the connection when old. Returns 0, or -1 when
 * out of memory (nothing added). */
static int index_key(cursor_t *c, const cursor_key_t *k, int skip, int old) {
  if (table_reserve(c) < 0) return -1;
  entry_t *e = &c->table[table_find(c, k)];
  if (e->delivered == 0) {
    e->key = *k;
    c->table_used++;
  }
  e->delivered++;
  if (skip && e->skip < SKIP_MAX) {
    e->skip++;
    if (old) e->old++;
  }
  c->keys_on[stream_index(k->stream)]++;
  return 0;
}

/* Takes the oldest indexed delivery k out of the pass index. */
static void unindex(cursor_t *c, const cursor_key_t *k) {
  size_t i = table_find(c, k);
  entry_t *e = &c->table[i];
  c->indexed--;
  if (e->delivered == 0) /* not indexed (out of memory when it was built) */
    return;
  e->delivered--;
  if (e->skip > e->delivered) e->skip = (uint16_t)e->delivered;
  if (e->old > e->skip) e->old = e->skip;
  size_t *on = &c->keys_on[stream_index(k->stream)];
  if (*on > 0) (*on)--;
  if (e->delivered == 0) table_remove(c, i);
  pass_check(c);
}

/* Removes the oldest delivery from the window. */
static void drop_head(cursor_t *c) {
  const cursor_key_t *k = &c->ring[c->head];
  if (!c->evicted || k->ts > c->evicted_max) c->evicted_max = k->ts;
  c->evicted = 1;
  if (c->indexed > 0) unindex(c, k);
  c->head = (c->head + 1) % c->ring_cap;
  c->count--;
}

static int64_t sub_sat(int64_t a, int64_t b) {
  int64_t r;
  return __builtin_sub_overflow(a, b, &r) ? INT64_MIN : r;
}

/* Drops deliveries from the head while they are older than the window
 * must cover, and while there are more than max_keys. */
static void evict(cursor_t *c) {
  int64_t cutoff = sub_sat(c->newest, c->margin);
  if (c->floor < cutoff) cutoff = c->floor;
  while (c->count > 0 && (c->ring[c->head].ts < cutoff || c->count > c->max_keys)) drop_head(c);
}

cursor_t *cursor_new(int64_t margin_ns, size_t max_keys) {
  cursor_t *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->margin = margin_ns > 0 ? margin_ns : 0;
  c->max_keys = max_keys ? max_keys : CURSOR_MAX_KEYS_DEFAULT;
  c->newest = -1;
  c->floor = INT64_MAX;
  for (int s = 0; s < STREAMS; s++) {
    c->newest_on[s] = -1;
    c->returned[s] = INT64_MIN;
  }
  return c;
}

void cursor_free(cursor_t *c) {
  if (!c) return;
  free(c->table);
  free(c->ring);
  free(c);
}

/* Loads 8 bytes as a little-endian word, whatever the host's byte order,
 * so that saved keys mean the same on every machine. */
static uint64_t load64(const unsigned char *p) {
  uint64_t w;
  memcpy(&w, p, sizeof w);
  return LOAD_LE(w);
}

static uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static uint64_t avalanche(uint64_t h) {
  h ^= h >> 33;
  h *= 0xFF51AFD7ED558CCDULL;
  h ^= h >> 33;
  h *= 0xC4CEB9FE1A85EC53ULL;
  h ^= h >> 33;
  return h;
}

/* A 64-bit hash of the line's bytes: two independent lanes of 8-byte words
 * (multiply, rotate), the tail zero-padded, then mixed with the length. */
cursor_key_t cursor_key(int64_t ts, int stream, const char *data, size_t len) {
  const unsigned char *p = (const unsigned char *)data;
  uint64_t a = 0x9E3779B97F4A7C15ULL, b = 0xC2B2AE3D27D4EB4FULL;
  size_t i = 0;
  for (; i + 16 <= len; i += 16) {
    a = rotl64(a ^ (load64(p + i) * 0x87C37B91114253D5ULL), 31) * 0x4CF5AD432745937FULL;
    b = rotl64(b ^ (load64(p + i + 8) * 0x4CF5AD432745937FULL), 29) * 0x87C37B91114253D5ULL;
  }
  unsigned char tail[16] = {0};
  memcpy(tail, p + i, len - i);
  a = rotl64(a ^ (load64(tail) * 0x87C37B91114253D5ULL), 31) * 0x4CF5AD432745937FULL;
  b = rotl64(b ^ (load64(tail + 8) * 0x4CF5AD432745937FULL), 29) * 0x87C37B91114253D5ULL;

  cursor_key_t k;
  memset(&k, 0, sizeof k);
  k.ts = ts;
  k.hash = avalanche(a ^ rotl64(b, 17) ^ (uint64_t)len);
  k.len = (uint32_t)len;
  k.stream = (uint8_t)stream;
  return k;
}

/* The rule is in the comment at the top; O(window) for the oldest key. */
int64_t cursor_since(const cursor_t *c) {
  if (!c->any) return -1;
  int64_t since = sub_sat(c->newest, c->margin);
  for (size_t i = 0; i < c->count; i++) {
    int64_t ts = ring_at(c, i)->ts;
    if (ts < since) since = ts;
  }
  if (c->floor < since) since = c->floor;
  int64_t start = cursor_window_start(c);
  if (since < start) since = start;
  return since < 0 ? 0 : since;
}

void cursor_begin_replay(cursor_t *c) {
  table_drop(c);
  table_alloc(c);
  /* Out of memory: the rest is not skipped (repeated, never lost). */
  while (c->indexed < c->count && index_key(c, ring_at(c, c->indexed), 1, 1) == 0) c->indexed++;
  for (int s = 0; s < STREAMS; s++) {
    c->open[s] = 1;
    c->returned[s] = INT64_MIN;
  }
  pass_check(c);
}

/* Stream s went back in time within the connection: a new pass over the
 * whole window, in which each delivered copy of s may be dropped once. */
static void begin_pass(cursor_t *c, int s) {
  if (!c->table) table_alloc(c);
  /* Lines delivered since the index was built: this connection's own. */
  while (c->indexed < c->count && index_key(c, ring_at(c, c->indexed), 0, 0) == 0) c->indexed++;
  for (size_t i = 0; i < c->table_cap; i++) {
    entry_t *e = &c->table[i];
    if (e->delivered != 0 && stream_index(e->key.stream) == s)
      e->skip = (uint16_t)(e->delivered < SKIP_MAX ? e->delivered : SKIP_MAX);
  }
  c->open[s] = 1;
  pass_check(c);
}

/* The rules are at the top of cursor.h. */
int cursor_seen(cursor_t *c, const cursor_key_t *k, unsigned flags) {
  int s = stream_index(k->stream);
  if (k->ts > c->newest_on[s]) { /* the common path: a new line */
    c->returned[s] = k->ts;
    if (c->open[s]) { /* the stream is past what the pass can drop */
      c->open[s] = 0;
      pass_check(c);
    }
    return CURSOR_NEW;
  }
  if (k->ts < c->returned[s]) begin_pass(c, s);
  c->returned[s] = k->ts;
  int verdict = CURSOR_NEW;
  if (c->table && c->open[s]) {
    entry_t *e = &c->table[table_find(c, k)];
    if (e->delivered != 0 && (e->skip > 0 || k->ts < c->newest_on[s])) {
      if (e->skip > 0) e->skip--;
      if (e->old > 0) {
        e->old--;
        return CURSOR_REPLAYED;
      }
      verdict = CURSOR_REPEATED;
    }
  }
  if (verdict == CURSOR_NEW && !(flags & CURSOR_PIECE) && k->ts % 1000000000 != 0 &&
      c->have_last[s] && key_eq(k, &c->last_on[s]))
    verdict = CURSOR_REPEATED; /* the newest line again, stamped to the ns */
  if (verdict == CURSOR_REPEATED) c->repeated++;
  return verdict;
}

uint64_t cursor_repeated(const cursor_t *c) { return c->repeated; }

/* Adds one delivery of k to the window (the ring), without evicting.
 * Returns 0, or -1 when out of memory (nothing recorded). */
static int record(cursor_t *c, const cursor_key_t *k) {
  if (ring_reserve(c) < 0) return -1;
  *ring_at(c, c->count) = *k;
  c->count++;
  return 0;
}

int cursor_deliver(cursor_t *c, const cursor_key_t *k, int64_t floor_ts) {
  if (!c->any || k->ts > c->newest) c->newest = k->ts;
  c->any = 1;
  int s = stream_index(k->stream);
  if (k->ts >= c->newest_on[s]) {
    c->newest_on[s] = k->ts;
    c->last_on[s] = *k;
    c->have_last[s] = 1;
  }
  c->floor = floor_ts;

  int rc = 0;
  if (record(c, k) != 0) {
    /* Unrecorded: resume past it, as if it had been evicted. */
    if (!c->evicted || k->ts > c->evicted_max) c->evicted_max = k->ts;
    c->evicted = 1;
    rc = -1;
  }
  evict(c);
  return rc;
}

int64_t cursor_newest(const cursor_t *c) { return c->any ? c->newest : -1; }

size_t cursor_window(const cursor_t *c) { return c->count; }

void cursor_get_state(const cursor_t *c, cursor_state_t *s) {
  s->any = c->any;
  s->newest = c->newest;
  s->floor = c->floor;
  s->evicted = c->evicted;
  s->evicted_max = c->evicted_max;
  s->n_keys = c->count;
}

size_t cursor_keys(const cursor_t *c, cursor_key_t *out, size_t max) {
  size_t n = c->count < max ? c->count : max;
  for (size_t i = 0; i < n; i++) out[i] = *ring_at(c, i);
  return n;
}

cursor_t *cursor_restore(int64_t margin_ns, size_t max_keys, const cursor_state_t *s,
                         const cursor_key_t *keys, size_t n) {
  cursor_t *c = cursor_new(margin_ns, max_keys);
  if (!c) return NULL;
  /* The keys are restored as they were saved: the live window had already
   * applied its eviction rule (with the floor of a line then pending), so
   * none is evicted again here, except beyond max_keys. */
  size_t first = n > c->max_keys ? n - c->max_keys : 0;
  for (size_t i = first; i < n; i++)
    if (record(c, &keys[i]) != 0) {
      cursor_free(c);
      return NULL;
    }
  c->any = s->any || n > 0;
  c->newest = s->newest;
  /* Which stream the newest lines were on is not saved: either may have
   * it (a later first comparison on a stream costs a look-up, no more). */
  for (int i = 0; i < STREAMS; i++) c->newest_on[i] = c->any ? s->newest : -1;
  c->floor = s->floor;
  c->evicted = s->evicted;
  c->evicted_max = s->evicted_max;
  if (first > 0) { /* keys over the cap left the window */
    for (size_t i = 0; i < first; i++)
      if (!c->evicted || keys[i].ts > c->evicted_max) c->evicted_max = keys[i].ts, c->evicted = 1;
  }
  return c;
}

/* --- spans ---------------------------------------------------------------- */

struct cursor_span {
  cursor_key_t *keys; /* sorted by key_cmp */
  unsigned char *taken;
  size_t n;
};

static int key_cmp(const void *pa, const void *pb) {
  const cursor_key_t *a = pa, *b = pb;
  if (a->ts != b->ts) return a->ts < b->ts ? -1 : 1;
  if (a->hash != b->hash) return a->hash < b->hash ? -1 : 1;
  if (a->stream != b->stream) return a->stream < b->stream ? -1 : 1;
  return a->len < b->len ? -1 : a->len > b->len;
}

cursor_span_t *cursor_span_new(const cursor_t *c, int64_t from, int64_t to) {
  cursor_span_t *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  size_t n = 0;
  for (size_t i = 0; i < c->count; i++) {
    int64_t ts = ring_at(c, i)->ts;
    n += ts >= from && ts <= to;
  }
  if (n && (!(s->keys = malloc(n * sizeof *s->keys)) || !(s->taken = calloc(n, 1)))) {
    cursor_span_free(s);
    return NULL;
  }
  for (size_t i = 0; i < c->count; i++) {
    const cursor_key_t *k = ring_at(c, i);
    if (k->ts >= from && k->ts <= to) s->keys[s->n++] = *k;
  }
  if (s->n > 1) qsort(s->keys, s->n, sizeof *s->keys, key_cmp);
  return s;
}

void cursor_span_free(cursor_span_t *s) {
  if (!s) return;
  free(s->keys);
  free(s->taken);
  free(s);
}

int cursor_span_take(cursor_span_t *s, const cursor_key_t *k) {
  size_t lo = 0, hi = s->n; /* the first key with (ts, hash) not less than k's */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const cursor_key_t *m = &s->keys[mid];
    if (m->ts < k->ts || (m->ts == k->ts && m->hash < k->hash)) lo = mid + 1;
    else hi = mid;
  }
  for (size_t i = lo; i < s->n && s->keys[i].ts == k->ts && s->keys[i].hash == k->hash; i++)
    if (!s->taken[i] && s->keys[i].len == k->len && s->keys[i].stream == k->stream) {
      s->taken[i] = 1;
      return 1;
    }
  return 0;
}

size_t cursor_span_left(const cursor_span_t *s) {
  size_t left = 0;
  for (size_t i = 0; i < s->n; i++) left += !s->taken[i];
  return left;
}

int64_t cursor_window_start(const cursor_t *c) {
  if (!c->evicted) return INT64_MIN;
  return c->evicted_max == INT64_MAX ? INT64_MAX : c->evicted_max + 1;
}
