/* encode_record.c - record access shared by the wire-format encoders (see
 * encode_record.h). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <lua.h>

#include "encode_record.h"
#include "hash.h"
#include "record.h"
#include "timestamp.h"

_Static_assert(ENCODE_NUM_LEN >= RECORD_TEXT_LEN, "num holds an original field's text");

int encode_lit(strbuf_t *b, const char *s) { return strbuf_add(b, s, strlen(s)); }

int encode_abs(lua_State *L, int idx) {
  if (idx < 0 && idx > LUA_REGISTRYINDEX) return lua_gettop(L) + idx + 1;
  return idx;
}

int64_t encode_record_time(lua_State *L, int rec, int64_t fallback) {
  const char *s;
  size_t len, used;
  int64_t ns = fallback;

  lua_pushstring(L, "time");
  lua_rawget(L, rec);
  if (lua_isnil(L, -1) && record_original_time(L, rec, &ns)) {
    lua_pop(L, 1);
    return ns; /* a lazy record's own time, as its line came */
  }
  if (lua_type(L, -1) == LUA_TSTRING) {
    s = lua_tolstring(L, -1, &len);
    if (ts_parse(s, len, &ns, &used) < 0 || used != len) ns = fallback;
  }
  lua_pop(L, 1);
  return ns;
}

const char *encode_value_text(lua_State *L, int idx, char num[ENCODE_NUM_LEN], size_t *len) {
  double v;
  int n;

  switch (lua_type(L, idx)) {
  case LUA_TSTRING: return lua_tolstring(L, idx, len);
  case LUA_TNUMBER:
    v = lua_tonumber(L, idx);
    if (v == floor(v) && fabs(v) < 1e18) n = snprintf(num, ENCODE_NUM_LEN, "%lld", (long long)v);
    else n = snprintf(num, ENCODE_NUM_LEN, "%.17g", v);
    *len = n > 0 ? (size_t)n : 0;
    return num;
  case LUA_TBOOLEAN:
    *len = lua_toboolean(L, idx) ? 4 : 5;
    return lua_toboolean(L, idx) ? "true" : "false";
  default: *len = 0; return NULL;
  }
}

void encode_push_field(lua_State *L, int t, const char *name, size_t len) {
  lua_pushlstring(L, name, len);
  lua_rawget(L, t);
  if (lua_isnil(L, -1)) { /* a lazy record's original, if it is one */
    lua_pop(L, 1);
    if (!record_push_original(L, t, name, len)) lua_pushnil(L);
  }
}

const char *encode_field_text(lua_State *L, int rec, const char *name, char num[ENCODE_NUM_LEN],
                              size_t *len) {
  const char *s;

  lua_pushstring(L, name);
  lua_rawget(L, rec);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    /* a lazy record's original: text in the batch, or formatted into num */
    return record_original_text(L, rec, name, strlen(name), num, len);
  }
  s = encode_value_text(L, -1, num, len);
  lua_pop(L, 1); /* a string stays alive in the record */
  return s;
}

int encode_add_field_string(strbuf_t *b, lua_State *L, int rec, const char *name) {
  char num[ENCODE_NUM_LEN];
  const char *s;
  size_t len;

  s = encode_field_text(L, rec, name, num, &len);
  if (s == NULL) return strbuf_add(b, "\"\"", 2);
  return json_add_string(b, s, len);
}

static int keys_cmp(const char *a, size_t alen, const char *b, size_t blen) {
  int c = memcmp(a, b, alen < blen ? alen : blen);

  if (c != 0) return c;
  return (alen > blen) - (alen < blen);
}

/* Inserts s into the sorted arrays of k. Returns 0 or -1. */
static int keys_insert(encode_keys_t *k, const char *s, size_t len) {
  const char **ns;
  size_t *nl, cap, i;

  if (k->n == k->cap) {
    cap = k->cap ? k->cap * 2 : 16;
    ns = realloc(k->s, cap * sizeof *ns);
    if (ns == NULL) return -1;
    k->s = ns;
    nl = realloc(k->len, cap * sizeof *nl);
    if (nl == NULL) return -1;
    k->len = nl;
    k->cap = cap;
  }
  i = k->n;
  while (i > 0 && keys_cmp(k->s[i - 1], k->len[i - 1], s, len) > 0) {
    k->s[i] = k->s[i - 1];
    k->len[i] = k->len[i - 1];
    i--;
  }
  k->s[i] = s;
  k->len[i] = len;
  k->n++;
  return 0;
}

/* Whether s[0..len) is one of the n_skip names in skip. */
static int skipped(const char *s, size_t len, const char *const *skip, size_t n_skip) {
  for (size_t i = 0; i < n_skip; i++)
    if (strlen(skip[i]) == len && memcmp(skip[i], s, len) == 0) return 1;
  return 0;
}

int encode_keys_collect(lua_State *L, int t, const char *const *skip, size_t n_skip,
                        encode_keys_t *k) {
  const char *s, *originals[RECORD_N_FIELDS];
  size_t len, i, n;

  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    lua_pop(L, 1); /* the value; keep the key */
    if (lua_type(L, -1) != LUA_TSTRING) continue;
    s = lua_tolstring(L, -1, &len);
    if (!skipped(s, len, skip, n_skip) && keys_insert(k, s, len) < 0) {
      lua_pop(L, 1);
      return -1;
    }
  }
  n = record_original_names(L, t, originals); /* a lazy record's other fields */
  for (i = 0; i < n; i++) {
    len = strlen(originals[i]);
    if (!skipped(originals[i], len, skip, n_skip) && keys_insert(k, originals[i], len) < 0)
      return -1;
  }
  return 0;
}

void encode_keys_free(encode_keys_t *k) {
  free(k->s);
  free(k->len);
  k->s = NULL;
  k->len = NULL;
  k->n = k->cap = 0;
}

/* Severity names, with their RFC 5424 severity and OTLP SeverityNumber. */
static const struct {
  const char *name;
  int syslog, otlp;
} severities[] = {
    {"emerg", 0, 21}, {"emergency", 0, 21},  {"panic", 0, 21},        {"alert", 1, 21},
    {"crit", 2, 21},  {"critical", 2, 21},   {"fatal", 2, 21},        {"err", 3, 17},
    {"error", 3, 17}, {"warn", 4, 13},       {"warning", 4, 13},      {"notice", 5, 10},
    {"info", 6, 9},   {"information", 6, 9}, {"informational", 6, 9}, {"debug", 7, 5},
    {"trace", 7, 1},
};

void encode_record_severity(lua_State *L, int rec, encode_severity_t *sev) {
  static const char *const fields[] = {"severity", "level"};
  size_t i;
  double v;

  sev->text = NULL;
  sev->len = 0;
  sev->field = NULL;
  sev->syslog = -1;
  sev->otlp = 0;
  for (i = 0; i < 2 && sev->text == NULL; i++) {
    lua_pushstring(L, fields[i]);
    lua_rawget(L, rec);
    if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) {
      sev->text = encode_value_text(L, -1, sev->num, &sev->len);
      sev->field = fields[i];
      if (lua_type(L, -1) == LUA_TNUMBER) {
        v = lua_tonumber(L, -1);
        if (v >= 0 && v <= 7 && v == floor(v)) sev->syslog = (int)v;
      }
    }
    lua_pop(L, 1);
  }
  if (sev->text == NULL || sev->syslog >= 0) return;
  for (i = 0; i < sizeof severities / sizeof severities[0]; i++) {
    if (strlen(severities[i].name) == sev->len &&
        strncasecmp(severities[i].name, sev->text, sev->len) == 0) {
      sev->syslog = severities[i].syslog;
      sev->otlp = severities[i].otlp;
      return;
    }
  }
}

static uint64_t key_hash(const char *s, size_t len) {
  return hash_fnv64(HASH_FNV64_OFFSET, s, len);
}

/* Makes room for one more group. Returns 0 or -1. */
static int groups_grow(encode_groups_t *g) {
  size_t cap = g->cap ? g->cap * 2 : 8;
  size_t *off, *len, *first, *last;
  uint64_t *hash;

  if (g->n < g->cap) return 0;
  if ((off = realloc(g->key_off, cap * sizeof *off)) == NULL) return -1;
  g->key_off = off;
  if ((len = realloc(g->key_len, cap * sizeof *len)) == NULL) return -1;
  g->key_len = len;
  if ((hash = realloc(g->hash, cap * sizeof *hash)) == NULL) return -1;
  g->hash = hash;
  if ((first = realloc(g->first, cap * sizeof *first)) == NULL) return -1;
  g->first = first;
  if ((last = realloc(g->last, cap * sizeof *last)) == NULL) return -1;
  g->last = last;
  g->cap = cap;
  return 0;
}

/* Makes next[] hold record rec, new slots unlinked. Returns 0 or -1. */
static int groups_reserve_rec(encode_groups_t *g, size_t rec) {
  size_t cap = g->cap_rec ? g->cap_rec : 64, i;
  size_t *next;

  if (rec < g->cap_rec) {
    if (rec >= g->n_rec) g->n_rec = rec + 1;
    return 0;
  }
  while (cap <= rec) cap *= 2;
  next = realloc(g->next, cap * sizeof *next);
  if (next == NULL) return -1;
  for (i = g->cap_rec; i < cap; i++) next[i] = SIZE_MAX;
  g->next = next;
  g->cap_rec = cap;
  g->n_rec = rec + 1;
  return 0;
}

int encode_groups_add(encode_groups_t *g, size_t rec, const char *key, size_t len) {
  uint64_t h = key_hash(key, len);
  size_t i;

  if (groups_reserve_rec(g, rec) < 0) return -1;
  for (i = 0; i < g->n; i++) {
    if (g->hash[i] == h && g->key_len[i] == len &&
        (len == 0 || memcmp(g->keys.data + g->key_off[i], key, len) == 0)) {
      g->next[g->last[i]] = rec;
      g->last[i] = rec;
      return 0;
    }
  }
  if (groups_grow(g) < 0) return -1;
  g->key_off[g->n] = g->keys.len;
  if (strbuf_add(&g->keys, key, len) < 0) return -1;
  g->key_len[g->n] = len;
  g->hash[g->n] = h;
  g->first[g->n] = g->last[g->n] = rec;
  g->n++;
  return 0;
}

void encode_groups_free(encode_groups_t *g) {
  strbuf_free(&g->keys);
  free(g->key_off);
  free(g->key_len);
  free(g->hash);
  free(g->first);
  free(g->last);
  free(g->next);
  memset(g, 0, sizeof *g);
}

int encode_key_add_field(strbuf_t *key, lua_State *L, int rec, const char *name) {
  char num[ENCODE_NUM_LEN], len_text[32];
  const char *s;
  size_t len;
  int n;

  s = encode_field_text(L, rec, name, num, &len);
  if (s == NULL) return encode_lit(key, "-");
  n = snprintf(len_text, sizeof len_text, "%zu:", len);
  if (strbuf_add(key, len_text, (size_t)n) < 0) return -1;
  return strbuf_add(key, s, len);
}

/* Calls fn with record number r (0-based) of the array at idx pushed.
 * Returns what fn returns. */
static int with_record(strbuf_t *b, lua_State *L, int idx, size_t r,
                       int (*fn)(strbuf_t *, lua_State *, int, void *), void *ud) {
  int rc;

  lua_rawgeti(L, idx, (int)r + 1);
  rc = fn(b, L, lua_gettop(L), ud);
  lua_pop(L, 1);
  return rc;
}

/* Groups the table records of the array at idx by how->key. Returns 0 or
 * -1. */
static int group_records(encode_groups_t *g, lua_State *L, int idx, const encode_grouping_t *how) {
  strbuf_t key = {0};
  size_t i, count = lua_objlen(L, idx);
  int rc = 0, is_table;

  for (i = 0; i < count && rc == 0; i++) {
    lua_rawgeti(L, idx, (int)i + 1);
    is_table = lua_type(L, -1) == LUA_TTABLE;
    key.len = 0;
    rc = is_table ? how->key(&key, L, lua_gettop(L), how->ud) : 0;
    lua_pop(L, 1);
    if (rc == 0 && is_table) rc = encode_groups_add(g, i, key.data, key.len);
  }
  strbuf_free(&key);
  return rc;
}

/* Appends group gi: its head, its records, group_close. Returns 0 or -1. */
static int add_group(strbuf_t *b, lua_State *L, int idx, const encode_groups_t *g, size_t gi,
                     const encode_grouping_t *how) {
  size_t r;

  if (with_record(b, L, idx, g->first[gi], how->head, how->ud) < 0) return -1;
  for (r = g->first[gi]; r != SIZE_MAX; r = g->next[r]) {
    if ((r != g->first[gi] && encode_lit(b, how->sep ? how->sep : ",") < 0) ||
        with_record(b, L, idx, r, how->item, how->ud) < 0)
      return -1;
  }
  if (how->tail != NULL && with_record(b, L, idx, g->first[gi], how->tail, how->ud) < 0) return -1;
  return encode_lit(b, how->group_close);
}

int encode_grouped(strbuf_t *b, lua_State *L, int idx, const encode_grouping_t *how) {
  encode_groups_t g = {0};
  size_t i;
  int rc = -1;

  idx = encode_abs(L, idx);
  if (!lua_checkstack(L, 12)) return -1;
  if (group_records(&g, L, idx, how) < 0 || encode_lit(b, how->open) < 0) goto err;
  for (i = 0; i < g.n; i++) {
    if ((i > 0 && encode_lit(b, how->sep ? how->sep : ",") < 0) ||
        add_group(b, L, idx, &g, i, how) < 0)
      goto err;
  }
  rc = encode_lit(b, how->close);
err:
  encode_groups_free(&g);
  return rc;
}
