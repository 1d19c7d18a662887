/* json.c - the JSON writer the outputs share (see json.h).
 *
 * Encodes Lua values straight into a strbuf, without a tree in between. Only
 * raw table access is used (lua_rawget, lua_next), so no metamethod runs and
 * nothing here raises a Lua error short of running out of memory. A lazy
 * record (record.h) is made a plain table first, so every field is seen. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>

#include "json.h"

#define JSON_MAX_DEPTH 32

/* 1 for bytes that go into a JSON string as they are: printable ASCII
 * except '"' and '\\'. */

const char json_kind_key = 0;

/* The json_kind_t of the table at idx (absolute), or NULL for a plain one. */
static const json_kind_t *kind_of(lua_State *L, int idx) {
  const json_kind_t *k = NULL;
  if (!lua_getmetatable(L, idx)) return NULL;
  lua_pushlightuserdata(L, (void *)&json_kind_key);
  lua_rawget(L, -2);
  if (lua_type(L, -1) == LUA_TLIGHTUSERDATA) k = lua_touserdata(L, -1);
  lua_pop(L, 2);
  return k;
}

static inline int json_plain(unsigned char c) {
  return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

/* The length of the run of plain bytes (json_plain) at s[0..n). Eight bytes
 * at a time while none of them needs a look: the tests below are exact as
 * "some byte of the word is ..." (a false hit in one byte needs a true hit
 * in a lower one). */
static size_t json_plain_run(const unsigned char *s, size_t n) {
  const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
  size_t i = 0;

  while (n - i >= 8) {
    uint64_t v, q, bs;
    memcpy(&v, s + i, 8);
    q = v ^ (ones * '"');
    bs = v ^ (ones * '\\');
    if (((v | ((v - ones * 0x20) & ~v) | ((q - ones) & ~q) | ((bs - ones) & ~bs)) & highs) != 0)
      break; /* a byte >= 0x80, < 0x20, '"' or '\\' */
    i += 8;
  }
  while (i < n && json_plain(s[i])) i++;
  return i;
}

/* Length of the valid UTF-8 sequence at s[0..n) (s[0] >= 0x80), or 0 when
 * it is invalid; *bad is then the length of its maximal invalid prefix (at
 * least 1), which becomes one U+FFFD. Overlong forms, surrogates and code
 * points above U+10FFFF are invalid. */
static size_t utf8_valid(const unsigned char *s, size_t n, size_t *bad) {
  unsigned char c = s[0], lo = 0x80, hi = 0xBF;
  size_t len, i;

  if (c >= 0xC2 && c <= 0xDF) len = 2;
  else if (c >= 0xE0 && c <= 0xEF) len = 3;
  else if (c >= 0xF0 && c <= 0xF4) len = 4;
  else {
    *bad = 1;
    return 0;
  }
  if (c == 0xE0) lo = 0xA0;
  else if (c == 0xED) hi = 0x9F;
  else if (c == 0xF0) lo = 0x90;
  else if (c == 0xF4) hi = 0x8F;
  for (i = 1; i < len; i++) {
    if (i >= n || s[i] < lo || s[i] > hi) {
      *bad = i;
      return 0;
    }
    lo = 0x80;
    hi = 0xBF;
  }
  return len;
}

/* Length of the run of ASCII bytes at s[0..n). */
static size_t ascii_run(const unsigned char *s, size_t n) {
  size_t i = 0;
  uint64_t v;

  while (i + 8 <= n) {
    memcpy(&v, s + i, 8);
    if ((v & 0x8080808080808080ull) != 0) break;
    i += 8;
  }
  while (i < n && s[i] < 0x80) i++;
  return i;
}

size_t json_utf8_len(const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0, out = 0, len, bad;

  while (i < n) {
    len = ascii_run(s + i, n - i);
    i += len;
    out += len;
    if (i >= n) break;
    len = utf8_valid(s + i, n - i, &bad);
    i += len > 0 ? len : bad;
    out += len > 0 ? len : 3;
  }
  return out;
}

int json_add_utf8(strbuf_t *b, const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0, len, bad;

  while (i < n) {
    len = ascii_run(s + i, n - i);
    if (strbuf_add(b, str + i, len) < 0) return -1;
    i += len;
    if (i >= n) break;
    len = utf8_valid(s + i, n - i, &bad);
    if (len > 0 ? strbuf_add(b, str + i, len) < 0 : strbuf_add(b, "\xEF\xBF\xBD", 3) < 0) return -1;
    i += len > 0 ? len : bad;
  }
  return 0;
}

/* Writes the escape of control character or quote c into out (room for 6
 * bytes). Returns its length. */
static size_t json_escape(char *out, unsigned char c) {
  static const char hex[] = "0123456789abcdef";
  char short_form;

  switch (c) {
  case '"': short_form = '"'; break;
  case '\\': short_form = '\\'; break;
  case '\n': short_form = 'n'; break;
  case '\r': short_form = 'r'; break;
  case '\t': short_form = 't'; break;
  case '\b': short_form = 'b'; break;
  case '\f': short_form = 'f'; break;
  default:
    out[0] = '\\';
    out[1] = 'u';
    out[2] = '0';
    out[3] = '0';
    out[4] = hex[c >> 4];
    out[5] = hex[c & 15];
    return 6;
  }
  out[0] = '\\';
  out[1] = short_form;
  return 2;
}

/* Appends s as a quoted JSON string: plain ASCII runs are copied in one go,
 * valid UTF-8 is copied, invalid sequences become U+FFFD (EF BF BD).
 * Returns 0, or -1 when out of memory (the buffer may hold part of it). */
int json_add_string(strbuf_t *b, const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0, run, len, bad;

  /* Room for the rest of the input as it is and the closing quote is kept
   * (reserved here, then again wherever one input byte becomes more), so
   * the bytes are written straight into the buffer. */
  if (n > SIZE_MAX - 8 || strbuf_reserve(b, n + 2) < 0) return -1;
  b->data[b->len++] = '"';
  while (i < n) {
    run = i + json_plain_run(s + i, n - i);
    memcpy(b->data + b->len, s + i, run - i);
    b->len += run - i;
    i = run;
    if (i >= n) break;
    if (s[i] < 0x80) { /* one byte becomes up to 6 */
      if (strbuf_reserve(b, 6 + (n - i)) < 0) return -1;
      b->len += json_escape(b->data + b->len, s[i]);
      i++;
      continue;
    }
    len = utf8_valid(s + i, n - i, &bad);
    if (len > 0) {
      memcpy(b->data + b->len, s + i, len);
      b->len += len;
      i += len;
    } else { /* bad bytes (at least 1) become 3 */
      if (strbuf_reserve(b, 3 + (n - i)) < 0) return -1;
      memcpy(b->data + b->len, "\xEF\xBF\xBD", 3);
      b->len += 3;
      i += bad;
    }
  }
  b->data[b->len++] = '"';
  return 0;
}

/* Appends a number: integers without a fraction, others with 17 significant
 * digits, NaN and infinities as null. */
static int json_add_number(strbuf_t *b, double v) {
  char tmp[40];
  int n;

  if (isnan(v) || isinf(v)) return strbuf_add(b, "null", 4);
  if (v == floor(v) && fabs(v) < 1e18) n = snprintf(tmp, sizeof tmp, "%lld", (long long)v);
  else n = snprintf(tmp, sizeof tmp, "%.17g", v);
  return strbuf_add(b, tmp, (size_t)n);
}

/* An object key, as bytes: a Lua string or a formatted number. */
typedef struct json_key {
  const char *s; /* the Lua string's bytes, unless is_num */
  size_t len;
  int is_num;
  int is_true;  /* no value in the table: written as true */
  char num[40]; /* a number key, formatted */
} json_key_t;

static const char *json_key_bytes(const json_key_t *k) { return k->is_num ? k->num : k->s; }

typedef struct json_keys {
  json_key_t *v;
  size_t n, cap;
} json_keys_t;

static int json_key_cmp(const void *a, const void *b) {
  const json_key_t *x = a, *y = b;
  size_t n = x->len < y->len ? x->len : y->len;
  int c = memcmp(json_key_bytes(x), json_key_bytes(y), n);

  if (c != 0) return c;
  return (x->len > y->len) - (x->len < y->len);
}

static int json_keys_push(json_keys_t *k, json_key_t **out) {
  json_key_t *v;
  size_t cap;

  if (k->n == k->cap) {
    cap = k->cap ? k->cap * 2 : 16;
    v = realloc(k->v, cap * sizeof *v);
    if (v == NULL) return -1;
    k->v = v;
    k->cap = cap;
  }
  *out = &k->v[k->n++];
  return 0;
}

static int json_add_value(strbuf_t *b, lua_State *L, int idx, int depth);

/* Appends ,"key": (no comma before the first member; *first tracks that).
 * Returns 0 or -1. */
int json_add_key(strbuf_t *b, const char *key, size_t len, int *first) {
  int rc =
      (*first ? 0 : strbuf_add(b, ",", 1)) | json_add_string(b, key, len) | strbuf_add(b, ":", 1);
  *first = 0;
  return rc;
}

/* Appends the member key: value at vidx (at nesting depth); a value JSON
 * cannot hold writes nothing, its key taken back. Returns 0 or -1. */
static int json_add_member_at(strbuf_t *b, lua_State *L, const char *key, size_t len, int vidx,
                              int *first, int depth) {
  size_t mark = b->len;
  int was_first = *first;
  int rc = json_add_key(b, key, len, first) < 0 ? -1 : json_add_value(b, L, vidx, depth);
  if (rc == 1) {
    b->len = mark;
    *first = was_first;
  }
  return rc < 0 ? -1 : 0;
}

/* The length of the table at idx as an array (see output.h). */
size_t json_array_len(lua_State *L, int idx) {
  size_t count = 0, n = lua_objlen(L, idx);
  double k;

  if (n == 0) return 0;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_pop(L, 1); /* the value; keep the key */
    if (lua_type(L, -1) != LUA_TNUMBER) {
      lua_pop(L, 1);
      return 0;
    }
    k = lua_tonumber(L, -1);
    if (k < 1 || k > (double)n || k != floor(k)) {
      lua_pop(L, 1);
      return 0;
    }
    count++;
  }
  return count == n ? n : 0;
}

static int json_add_array(strbuf_t *b, lua_State *L, int idx, size_t n, int depth) {
  size_t i;
  int rc = 0;

  if (strbuf_add(b, "[", 1) < 0) return -1;
  for (i = 1; i <= n && rc == 0; i++) {
    if (i > 1 && strbuf_add(b, ",", 1) < 0) return -1;
    lua_rawgeti(L, idx, (int)i);
    rc = json_add_value(b, L, lua_gettop(L), depth + 1);
    if (rc == 1) rc = strbuf_add(b, "null", 4); /* keep the positions */
    lua_pop(L, 1);
  }
  if (rc < 0) return -1;
  return strbuf_add(b, "]", 1);
}

/* Collects the string and number keys of the table at idx, except the n_skip
 * names in skip, sorted by their bytes. Returns 0 or -1. */
static int json_collect_keys(lua_State *L, int idx, json_keys_t *keys, const char *const *skip,
                             size_t n_skip) {
  json_key_t *k;
  const char *s;
  size_t len, i;
  int t, skipped;

  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_pop(L, 1); /* the value; keep the key */
    t = lua_type(L, -1);
    if (t != LUA_TSTRING && t != LUA_TNUMBER) continue;
    if (t == LUA_TSTRING) {
      s = lua_tolstring(L, -1, &len);
      skipped = 0;
      for (i = 0; i < n_skip && !skipped; i++)
        skipped = strlen(skip[i]) == len && memcmp(skip[i], s, len) == 0;
      if (skipped) continue;
    }
    if (json_keys_push(keys, &k) < 0) {
      lua_pop(L, 1);
      return -1;
    }
    k->is_num = t == LUA_TNUMBER;
    k->is_true = 0;
    if (t == LUA_TSTRING) {
      k->s = s;
      k->len = len;
    } else {
      /* lua_tolstring would turn the key into a string and break lua_next */
      double v = lua_tonumber(L, -1);
      if (v == floor(v) && fabs(v) < 1e18)
        k->len = (size_t)snprintf(k->num, sizeof k->num, "%lld", (long long)v);
      else k->len = (size_t)snprintf(k->num, sizeof k->num, "%.17g", v);
      k->s = NULL;
    }
  }
  if (keys->n > 1) qsort(keys->v, keys->n, sizeof *keys->v, json_key_cmp);
  return 0;
}

/* Appends the members named in keys (without braces), each preceded by a
 * comma unless it is the first (*first tracks that). Values JSON cannot hold
 * are left out. Returns 0 or -1. */
static int json_add_members(strbuf_t *b, lua_State *L, int idx, const json_keys_t *keys, int *first,
                            int depth) {
  size_t i;
  int rc;

  for (i = 0; i < keys->n; i++) {
    const json_key_t *k = &keys->v[i];
    if (k->is_true) {
      if (json_add_key(b, k->s, k->len, first) < 0 || strbuf_add(b, "true", 4) < 0) return -1;
      continue;
    }
    if (k->is_num) lua_pushnumber(L, strtod(k->num, NULL));
    else lua_pushlstring(L, k->s, k->len);
    lua_rawget(L, idx);
    rc = json_add_member_at(b, L, json_key_bytes(k), k->len, lua_gettop(L), first, depth + 1);
    lua_pop(L, 1);
    if (rc < 0) return -1;
  }
  return 0;
}

static int json_add_object(strbuf_t *b, lua_State *L, int idx, int depth) {
  json_keys_t keys = {0};
  int first = 1, rc = -1;

  if (json_collect_keys(L, idx, &keys, NULL, 0) < 0) goto err;
  if (strbuf_add(b, "{", 1) < 0) goto err;
  if (json_add_members(b, L, idx, &keys, &first, depth) < 0) goto err;
  rc = strbuf_add(b, "}", 1);
err:
  free(keys.v);
  return rc;
}

/* Appends the value at idx (absolute). Returns 0, 1 when the value has no
 * JSON form (nothing was written), or -1 when out of memory. */
static int json_add_value(strbuf_t *b, lua_State *L, int idx, int depth) {
  const json_kind_t *kind;
  const char *s;
  size_t len, n;

  switch (lua_type(L, idx)) {
  case LUA_TSTRING: s = lua_tolstring(L, idx, &len); return json_add_string(b, s, len);
  case LUA_TNUMBER: return json_add_number(b, lua_tonumber(L, idx));
  case LUA_TBOOLEAN:
    return lua_toboolean(L, idx) ? strbuf_add(b, "true", 4) : strbuf_add(b, "false", 5);
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == NULL) return strbuf_add(b, "null", 4);
    return 1;
  case LUA_TTABLE:
    if (depth >= JSON_MAX_DEPTH) return strbuf_add(b, "null", 4);
    if (!lua_checkstack(L, 4)) return -1;
    if ((kind = kind_of(L, idx)) != NULL) kind->materialize(L, idx);
    n = json_array_len(L, idx);
    if (n > 0) return json_add_array(b, L, idx, n, depth);
    return json_add_object(b, L, idx, depth);
  default: return 1;
  }
}

/* The record fields in output order, before the others; the last one,
 * `output`, is the routing field and is never written. */
static const char *const record_fields[] = {
    "time", "stream", "container", "name", "image", "host", "line", "labels", "output",
};
#define N_RECORD_FIELDS (sizeof record_fields / sizeof record_fields[0])
#define N_WRITTEN_FIELDS (N_RECORD_FIELDS - 1)

/* Appends the record table at idx as one JSON object: the known fields in
 * their fixed order, then the other keys sorted. Returns 0, or -1 when out
 * of memory or when the value is not a table. */
int json_add_record(strbuf_t *b, lua_State *L, int idx) {
  json_keys_t keys = {0};
  json_key_t *k;
  const json_kind_t *kind;
  size_t i;
  int first = 1, rc = -1;

  if (idx < 0 && idx > LUA_REGISTRYINDEX) idx = lua_gettop(L) + idx + 1;
  if (lua_type(L, idx) != LUA_TTABLE || !lua_checkstack(L, 4)) return -1;
  if ((kind = kind_of(L, idx)) != NULL)
    return kind->add_record(b, L, idx); /* the same bytes, from where it keeps them */
  for (i = 0; i < N_WRITTEN_FIELDS; i++) {
    lua_pushstring(L, record_fields[i]);
    lua_rawget(L, idx);
    if (!lua_isnil(L, -1)) {
      if (json_keys_push(&keys, &k) < 0) {
        lua_pop(L, 1);
        goto err;
      }
      k->is_num = 0;
      k->is_true = 0;
      k->s = record_fields[i];
      k->len = strlen(record_fields[i]);
    }
    lua_pop(L, 1);
  }
  if (strbuf_add(b, "{", 1) < 0) goto err;
  if (json_add_members(b, L, idx, &keys, &first, 0) < 0) goto err;
  if (json_add_record_rest(b, L, idx, 0, &first) < 0) goto err;
  rc = strbuf_add(b, "}", 1);
err:
  free(keys.v);
  return rc;
}

/* Appends the members after the fixed ones (see output.h). */
int json_add_record_rest(strbuf_t *b, lua_State *L, int idx, int truncated, int *first) {
  json_keys_t keys = {0};
  json_key_t *k;
  int rc = -1;

  if (json_collect_keys(L, idx, &keys, record_fields, N_RECORD_FIELDS) < 0) goto err;
  if (truncated) {
    if (json_keys_push(&keys, &k) < 0) goto err;
    k->s = "truncated";
    k->len = 9;
    k->is_num = 0;
    k->is_true = 1;
    qsort(keys.v, keys.n, sizeof *keys.v, json_key_cmp);
  }
  rc = json_add_members(b, L, idx, &keys, first, 0);
err:
  free(keys.v);
  return rc;
}

/* Appends a record's member (see output.h). */
int json_add_member(strbuf_t *b, lua_State *L, const char *key, size_t len, int vidx, int *first) {
  return json_add_member_at(b, L, key, len, vidx, first, 1);
}

/* Appends any value (see output.h). */
int json_add_lua(strbuf_t *b, lua_State *L, int idx) {
  if (idx < 0 && idx > LUA_REGISTRYINDEX) idx = lua_gettop(L) + idx + 1;
  if (!lua_checkstack(L, 4)) return -1;
  return json_add_value(b, L, idx, 0);
}
