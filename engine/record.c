/* record.c - lazy Lua records (see record.h).
 *
 * One batch becomes, in Lua:
 *   box     a userdata holding a batch reference, released by its __gc;
 *   pos     a table with weak keys: record -> its index in the batch plus,
 *           times 2^32, the RECORD_F_* bits of the original fields the
 *           filters set or deleted (those no longer come from the batch);
 *   mt      the records' metatable: __index and __newindex (C closures),
 *           [1] box, [2] pos, [3] a marker telling lazy records apart,
 *           [4] the labels table, [5] container id, [6] name, [7] image,
 *           [8] host (the daemon's name, when records carry it);
 *   records tables holding `line` (and whatever the filters set), with mt.
 *
 * __index serves an original field unless its bit is set; __newindex sets
 * the bit of an original field before storing the value raw, so a field
 * once set or deleted by a filter is the filter's from then on. (`line` is
 * raw from the start, so it never reaches either.) */
#include "record.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "json.h"
#include "timestamp.h"

enum {
  MT_BOX = 1,
  MT_POS,
  MT_MARK,
  MT_LABELS,
  MT_ID,
  MT_NAME,
  MT_IMAGE,
  MT_HOST,
  MT_SLOTS = MT_HOST
};

#define N_FIELDS RECORD_N_FIELDS
/* Field numbers: field_names[f], and bit f of the RECORD_F_* bits. */
enum { F_STREAM, F_TIME, F_CONTAINER, F_NAME, F_IMAGE, F_LABELS, F_TRUNCATED, F_HOST };
_Static_assert(RECORD_TEXT_LEN == TS_LEN + 1, "room for a formatted time");
static const char *const field_names[N_FIELDS] = {"stream", "time",   "container", "name",
                                                  "image",  "labels", "truncated", "host"};
/* The lazy fields and `line`, the keys the JSON writer looks up. */
enum { K_LINE = N_FIELDS, N_KEYS };
static const char *const key_names[N_KEYS] = {"stream", "time",      "container", "name", "image",
                                              "labels", "truncated", "host",      "line"};

#define CHANGED_SHIFT 4294967296.0 /* 2^32: pos values are i + changed * 2^32 */

/* Per state, kept in the registry under &ctx_key. */
typedef struct rctx {
  const char *keys[N_KEYS]; /* the interned names (anchored: anchor_ref[k + 1]) */
  int index_ref, newindex_ref, box_mt_ref, weak_mt_ref, anchor_ref;
  int live_ref; /* weak-keyed set of the metatables of batches
                               whose box is not yet collected */
  size_t held;  /* bytes of the batches boxes hold */
} rctx_t;

/* A batch box: the batch, and the context that counts its bytes. */
typedef struct box {
  batch_t *batch;
  rctx_t *x;
  size_t bytes;
} box_t;

static char ctx_key;  /* its address keys the context in the registry */
static char mark_key; /* its address marks a lazy record's metatable */

static rctx_t *get_ctx(lua_State *L) {
  lua_pushlightuserdata(L, &ctx_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  rctx_t *x = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return x;
}

/* The RECORD_F_* index of the string key at idx, or -1. Interned strings
 * are compared by address. */
static int field_of(const rctx_t *x, lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TSTRING) return -1;
  const char *s = lua_tostring(L, idx);
  for (int f = 0; f < N_FIELDS; f++)
    if (s == x->keys[f]) return f;
  return -1;
}

/* Pushes the metatable of the lazy record at t and returns its stack index;
 * returns 0 (nothing pushed) when t is not a lazy record. */
static int push_mt(lua_State *L, int t) {
  if (lua_type(L, t) != LUA_TTABLE || !lua_getmetatable(L, t)) return 0;
  lua_rawgeti(L, -1, MT_MARK);
  int lazy = lua_touserdata(L, -1) == &mark_key;
  lua_pop(L, lazy ? 1 : 2);
  return lazy ? lua_gettop(L) : 0;
}

/* Reads the record's pos entry (mt at mt). Returns 0 when it has none. */
static int read_pos(lua_State *L, int t, int mt, size_t *i, unsigned *changed) {
  lua_rawgeti(L, mt, MT_POS);
  lua_pushvalue(L, t);
  lua_rawget(L, -2);
  int ok = lua_type(L, -1) == LUA_TNUMBER;
  if (ok) {
    double v = lua_tonumber(L, -1);
    double c = (double)(unsigned long long)(v / CHANGED_SHIFT);
    *changed = (unsigned)c;
    *i = (size_t)(v - c * CHANGED_SHIFT);
  }
  lua_pop(L, 2);
  return ok;
}

static const batch_t *box_batch(lua_State *L, int mt) {
  lua_rawgeti(L, mt, MT_BOX);
  box_t *box = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return box ? box->batch : NULL;
}

/* Pushes original field f of line i of b (mt: the batch's metatable). */
static void push_field(lua_State *L, int mt, const batch_t *b, size_t i, int f) {
  const batch_rec_t *r = &b->recs[i];
  char ts[TS_LEN + 1];

  switch (f) {
  case F_STREAM:
    if (r->stream == DECODE_STDERR) lua_pushliteral(L, "stderr");
    else lua_pushliteral(L, "stdout");
    break;
  case F_TIME:
    ts_format(r->ts, ts);
    lua_pushlstring(L, ts, TS_LEN);
    break;
  case F_CONTAINER: lua_rawgeti(L, mt, MT_ID); break;
  case F_NAME: lua_rawgeti(L, mt, MT_NAME); break;
  case F_IMAGE: lua_rawgeti(L, mt, MT_IMAGE); break;
  case F_LABELS: lua_rawgeti(L, mt, MT_LABELS); break;
  case F_HOST: lua_rawgeti(L, mt, MT_HOST); break;
  default:
    if (r->flags & DECODE_TRUNCATED) lua_pushboolean(L, 1);
    else lua_pushnil(L);
  }
}

/* Whether line i of b has original field f and the filters neither set nor
 * deleted it (changed: the record's RECORD_F_* bits); `truncated` is there
 * only for a cut line, `host` only when the container's records carry it
 * (container.h: host_field). */
static int has_original(const batch_t *b, size_t i, unsigned changed, int f) {
  if (changed & (1u << f)) return 0;
  if (f == F_TRUNCATED) return (b->recs[i].flags & DECODE_TRUNCATED) != 0;
  if (f == F_HOST) return b->container->host_field;
  return 1;
}

/* Pushes the raw value of key k (N_KEYS number) of the table at t; anchor:
 * the stack index of the anchored key names. Pushes no new value. */
static void push_raw(lua_State *L, int anchor, int t, int k) {
  lua_rawgeti(L, anchor, k + 1);
  lua_rawget(L, t);
}

/* Stores in fs the fields the lazy record at idx (line i of b) still takes
 * from its batch: has_original, and no raw value set by a filter (rawset).
 * Returns how many. Pushes no new value. */
static int originals(lua_State *L, int idx, const batch_t *b, size_t i, unsigned changed,
                     int fs[N_FIELDS]) {
  int n = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, get_ctx(L)->anchor_ref);
  int anchor = lua_gettop(L);
  for (int f = 0; f < N_FIELDS; f++) {
    if (!has_original(b, i, changed, f)) continue;
    push_raw(L, anchor, idx, f);
    if (lua_isnil(L, -1)) fs[n++] = f;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return n;
}

/* 1 when the value at idx is the string "id". */
static int is_id_key(lua_State *L, int idx) {
  size_t len;
  const char *s;

  if (lua_type(L, idx) != LUA_TSTRING) return 0;
  s = lua_tolstring(L, idx, &len);
  return len == 2 && s[0] == 'i' && s[1] == 'd';
}

/* __index(t, k): an original field the filters have not set or deleted,
 * or the record id. */
static int rec_index(lua_State *L) {
  const rctx_t *x = lua_touserdata(L, lua_upvalueindex(1));
  int f = field_of(x, L, 2);
  size_t i;
  unsigned changed;

  if (f < 0 && is_id_key(L, 2)) {
    char id[BATCH_ID_LEN + 1];
    if (!record_id(L, 1, id)) return 0;
    lua_pushlstring(L, id, BATCH_ID_LEN);
    return 1;
  }
  if (f < 0) return 0;
  int mt = push_mt(L, 1);
  if (mt == 0 || !read_pos(L, 1, mt, &i, &changed) || (changed & (1u << f))) return 0;
  push_field(L, mt, box_batch(L, mt), i, f);
  return 1;
}

/* __newindex(t, k, v): stores raw; an original field becomes the filter's. */
static int rec_newindex(lua_State *L) {
  const rctx_t *x = lua_touserdata(L, lua_upvalueindex(1));
  int f = field_of(x, L, 2);
  size_t i;
  unsigned changed;

  lua_settop(L, 3);
  if (f < 0 && is_id_key(L, 2) && record_is_lazy(L, 1))
    return luaL_error(L, "r.id is the record's id and cannot be set (store another id "
                         "under another name)");
  if (f >= 0) {
    int mt = push_mt(L, 1);
    if (mt != 0 && read_pos(L, 1, mt, &i, &changed)) {
      changed |= 1u << f;
      lua_rawgeti(L, mt, MT_POS);
      lua_pushvalue(L, 1);
      lua_pushnumber(L, (double)i + (double)changed * CHANGED_SHIFT);
      lua_rawset(L, -3);
    }
    lua_settop(L, 3);
  }
  lua_rawset(L, 1);
  return 0;
}

/* __gc of a batch box. */
static int box_gc(lua_State *L) {
  box_t *box = lua_touserdata(L, 1);
  if (box != NULL && box->batch != NULL) {
    batch_free(box->batch);
    box->batch = NULL;
    box->x->held -= box->bytes;
  }
  return 0;
}

void record_materialize(lua_State *L, int idx) {
  size_t i;
  unsigned changed;
  int mt = push_mt(L, idx);

  if (mt == 0) return;
  if (read_pos(L, idx, mt, &i, &changed)) {
    const batch_t *b = box_batch(L, mt);
    int fs[N_FIELDS], n = originals(L, idx, b, i, changed, fs);
    for (int k = 0; k < n; k++) {
      lua_pushstring(L, field_names[fs[k]]);
      push_field(L, mt, b, i, fs[k]);
      lua_rawset(L, idx);
    }
    lua_rawgeti(L, mt, MT_POS);
    lua_pushvalue(L, idx);
    lua_pushnil(L);
    lua_rawset(L, -3);
  }
  lua_settop(L, mt - 1);
  lua_pushnil(L);
  lua_setmetatable(L, idx);
}

int record_is_lazy(lua_State *L, int idx) {
  int mt = push_mt(L, idx);
  if (mt != 0) lua_pop(L, 1);
  return mt != 0;
}

int record_origin(lua_State *L, int idx, record_origin_t *o) {
  int mt = push_mt(L, idx);
  int ok = mt != 0 && read_pos(L, idx, mt, &o->i, &o->changed);

  if (ok) o->batch = box_batch(L, mt);
  if (mt != 0) lua_pop(L, 1);
  return ok && o->batch != NULL;
}

int record_id(lua_State *L, int idx, char out[BATCH_ID_LEN + 1]) {
  record_origin_t o;

  if (!record_origin(L, idx, &o)) return 0;
  batch_rec_id(o.batch, o.i, out);
  return 1;
}

/* --- original fields one by one --------------------------------------- */

/* The RECORD_F_* index of name[0..len), or -1. */
static int field_named(const char *name, size_t len) {
  for (int f = 0; f < N_FIELDS; f++)
    if (strlen(field_names[f]) == len && memcmp(field_names[f], name, len) == 0) return f;
  return -1;
}

/* The text of original field f of line i of b (the time formatted into
 * buf), or NULL for labels, which has none. */
static const char *original_text(const batch_t *b, size_t i, int f, char buf[TS_LEN + 1]) {
  const container_t *c = b->container;

  switch (f) {
  case F_STREAM: return b->recs[i].stream == DECODE_STDERR ? "stderr" : "stdout";
  case F_TIME: ts_format(b->recs[i].ts, buf); return buf;
  case F_CONTAINER: return c->id;
  case F_NAME: return c->name ? c->name : "";
  case F_IMAGE: return c->image ? c->image : "";
  case F_TRUNCATED: return "true";
  case F_HOST: return c->host;
  default: return NULL;
  }
}

/* Whether the lazy record at idx, whose table holds no raw value for
 * original field f, still takes it from its batch: pushes the batch's
 * metatable and returns its index, or returns 0 with nothing pushed. Fills
 * *b and *i. Pushes no new value (no allocation). */
static int original_of(lua_State *L, int idx, int f, const batch_t **b, size_t *i) {
  unsigned changed;
  int mt;

  if (f < 0 || (mt = push_mt(L, idx)) == 0) return 0;
  if (!read_pos(L, idx, mt, i, &changed) || (*b = box_batch(L, mt)) == NULL ||
      !has_original(*b, *i, changed, f)) {
    lua_settop(L, mt - 1);
    return 0;
  }
  return mt;
}

const char *record_original_text(lua_State *L, int idx, const char *name, size_t len,
                                 char buf[RECORD_TEXT_LEN], size_t *out_len) {
  int f = field_named(name, len), mt;
  const batch_t *b = NULL;
  const char *s = NULL;
  size_t i = 0;

  *out_len = 0;
  if ((mt = original_of(L, idx, f, &b, &i)) == 0) return NULL;
  s = original_text(b, i, f, buf);
  lua_settop(L, mt - 1);
  if (s != NULL) *out_len = strlen(s);
  return s;
}

int record_original_time(lua_State *L, int idx, int64_t *ns) {
  const batch_t *b = NULL;
  size_t i = 0;
  int mt = original_of(L, idx, F_TIME, &b, &i);

  if (mt == 0) return 0;
  *ns = b->recs[i].ts;
  lua_settop(L, mt - 1);
  return 1;
}

int record_push_original(lua_State *L, int idx, const char *name, size_t len) {
  int f = field_named(name, len), mt;
  const batch_t *b = NULL;
  size_t i = 0;

  if ((mt = original_of(L, idx, f, &b, &i)) == 0) return 0;
  push_field(L, mt, b, i, f);
  lua_replace(L, mt);
  return 1;
}

size_t record_original_names(lua_State *L, int idx, const char **names) {
  size_t i;
  unsigned changed;
  int mt = push_mt(L, idx), fs[N_FIELDS], n = 0;
  const batch_t *b;

  if (mt == 0) return 0;
  if (read_pos(L, idx, mt, &i, &changed) && (b = box_batch(L, mt)) != NULL)
    n = originals(L, idx, b, i, changed, fs); /* a raw value: lua_next finds it */
  for (int k = 0; k < n; k++) names[k] = field_names[fs[k]];
  lua_settop(L, mt - 1);
  return (size_t)n;
}

/* The wrappers: upvalue 1 is the original function; argument 1 is
 * materialized first when it is a lazy record. */
static int wrap_call(lua_State *L) {
  if (lua_gettop(L) >= 1) record_materialize(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

static void wrap_global(lua_State *L, const char *name) {
  lua_getglobal(L, name);
  lua_pushcclosure(L, wrap_call, 1);
  lua_setglobal(L, name);
}

void record_setup(lua_State *L) {
  static const char *const wrapped[] = {"pairs", "next", "rawget", "getmetatable", "setmetatable"};
  int top = lua_gettop(L);
  rctx_t *x = lua_newuserdata(L, sizeof *x); /* top + 1 */

  memset(x, 0, sizeof *x);
  lua_pushlightuserdata(L, &ctx_key);
  lua_pushvalue(L, top + 1);
  lua_rawset(L, LUA_REGISTRYINDEX);

  lua_createtable(L, N_KEYS, 0); /* the key names, kept alive */
  for (int k = 0; k < N_KEYS; k++) {
    lua_pushstring(L, key_names[k]);
    x->keys[k] = lua_tostring(L, -1);
    lua_rawseti(L, -2, k + 1);
  }
  x->anchor_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  lua_pushvalue(L, top + 1);
  lua_pushcclosure(L, rec_index, 1);
  x->index_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, top + 1);
  lua_pushcclosure(L, rec_newindex, 1);
  x->newindex_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, box_gc);
  lua_setfield(L, -2, "__gc");
  x->box_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  x->weak_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  lua_newtable(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, x->weak_mt_ref);
  lua_setmetatable(L, -2);
  x->live_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  for (size_t k = 0; k < sizeof wrapped / sizeof wrapped[0]; k++) wrap_global(L, wrapped[k]);
  lua_settop(L, top);
}

/* How json.c writes a lazy record (json.h: json_kind_t). */
static const json_kind_t record_json_kind = {record_materialize, record_add_json};

/* Pushes the metatable of b's records. */
static void push_batch_mt(lua_State *L, const rctx_t *x, batch_t *b) {
  const container_t *c = b->container;

  lua_createtable(L, MT_SLOTS, 3);
  int mt = lua_gettop(L);
  lua_pushlightuserdata(L, (void *)&json_kind_key); /* json.h: how to write it */
  lua_pushlightuserdata(L, (void *)&record_json_kind);
  lua_rawset(L, mt);
  lua_rawgeti(L, LUA_REGISTRYINDEX, x->index_ref);
  lua_setfield(L, mt, "__index");
  lua_rawgeti(L, LUA_REGISTRYINDEX, x->newindex_ref);
  lua_setfield(L, mt, "__newindex");

  box_t *box = lua_newuserdata(L, sizeof(box_t));
  box->batch = NULL;
  lua_rawgeti(L, LUA_REGISTRYINDEX, x->box_mt_ref);
  lua_setmetatable(L, -2);
  box->batch = batch_ref(b);
  box->x = (rctx_t *)x;
  box->bytes = sizeof *b + b->cap * sizeof *b->recs + b->bytes_cap;
  box->x->held += box->bytes;
  lua_rawseti(L, mt, MT_BOX);
  lua_rawgeti(L, LUA_REGISTRYINDEX, x->live_ref);
  lua_pushvalue(L, mt);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  lua_pop(L, 1);

  lua_createtable(L, 0, b->n > INT32_MAX ? INT32_MAX : (int)b->n);
  lua_rawgeti(L, LUA_REGISTRYINDEX, x->weak_mt_ref);
  lua_setmetatable(L, -2);
  lua_rawseti(L, mt, MT_POS);

  lua_pushlightuserdata(L, &mark_key);
  lua_rawseti(L, mt, MT_MARK);

  lua_createtable(L, 0, (int)c->n_labels);
  for (size_t i = 0; i < c->n_labels; i++) {
    lua_pushstring(L, c->label_values[i]);
    lua_setfield(L, -2, c->label_keys[i]);
  }
  lua_rawseti(L, mt, MT_LABELS);
  lua_pushstring(L, c->id);
  lua_rawseti(L, mt, MT_ID);
  lua_pushstring(L, c->name ? c->name : "");
  lua_rawseti(L, mt, MT_NAME);
  lua_pushstring(L, c->image ? c->image : "");
  lua_rawseti(L, mt, MT_IMAGE);
  if (c->host_field) {
    lua_pushstring(L, c->host);
    lua_rawseti(L, mt, MT_HOST);
  }
}

void record_push_batch(lua_State *L, batch_t *b) {
  const rctx_t *x = get_ctx(L);

  lua_createtable(L, b->n > INT32_MAX ? INT32_MAX : (int)b->n, 0);
  int recs = lua_gettop(L);
  push_batch_mt(L, x, b);
  int mt = lua_gettop(L);
  lua_rawgeti(L, mt, MT_POS);
  int pos = lua_gettop(L);
  lua_pushliteral(L, "line");
  int line = lua_gettop(L);

  for (size_t i = 0; i < b->n; i++) {
    const batch_rec_t *r = &b->recs[i];
    lua_createtable(L, 0, 4); /* line, and room for a few new fields */
    lua_pushvalue(L, line);
    lua_pushlstring(L, b->bytes + r->off, r->len);
    lua_rawset(L, -3);
    lua_pushvalue(L, mt);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_pushnumber(L, (double)i);
    lua_rawset(L, pos);
    lua_rawseti(L, recs, (int)(i + 1));
  }
  lua_settop(L, recs);
}

size_t record_held(lua_State *L) {
  const rctx_t *x = get_ctx(L);
  return x ? x->held : 0;
}

/* Pushes an array of the keys of the table at t (to go through them while
 * the table changes). Returns how many. */
static int push_keys(lua_State *L, int t) {
  lua_newtable(L);
  int list = lua_gettop(L), n = 0;
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_rawseti(L, list, ++n);
  }
  return n;
}

/* Materializes the records of the batch whose metatable is at mt. */
static void detach_batch(lua_State *L, int mt) {
  lua_rawgeti(L, mt, MT_POS);
  int pos = lua_gettop(L);
  int n = push_keys(L, pos); /* materializing edits pos */
  int list = lua_gettop(L);
  for (int k = 1; k <= n; k++) {
    lua_rawgeti(L, list, k);
    record_materialize(L, lua_gettop(L));
    lua_pop(L, 1);
  }
  lua_settop(L, pos - 1);
}

int record_detach(lua_State *L) {
  const rctx_t *x = get_ctx(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, x->live_ref);
  int live = lua_gettop(L);
  int n = push_keys(L, live);
  int list = lua_gettop(L);
  for (int k = 1; k <= n; k++) {
    lua_rawgeti(L, list, k);
    detach_batch(L, lua_gettop(L));
    lua_pushnil(L);
    lua_rawset(L, live); /* live[mt] = nil */
  }
  lua_settop(L, live - 1);
  return 0;
}

/* --- JSON straight from the batch ------------------------------------ */

/* Appends the original value of lazy field f of line i of b as a member
 * (mt: the batch's metatable). Returns 0 or -1. */
static int add_original(strbuf_t *bf, lua_State *L, int mt, const batch_t *b, size_t i, int f,
                        int *first) {
  char ts[TS_LEN + 1];
  const char *s = original_text(b, i, f, ts);

  if (s == NULL) { /* labels: a filter may have changed the shared table */
    lua_rawgeti(L, mt, MT_LABELS);
    int rc = json_add_member(bf, L, field_names[f], strlen(field_names[f]), lua_gettop(L), first);
    lua_pop(L, 1);
    return rc;
  }
  return json_add_key(bf, field_names[f], strlen(field_names[f]), first) |
         json_add_string(bf, s, strlen(s));
}

int record_add_json(strbuf_t *b, lua_State *L, int idx) {
  /* The fixed members in json_add_record's order (json.c: time, stream,
   * container, name, image, host, line, labels), then the rest as it writes
   * them. `truncated`, when original, goes among the rest. */
  static const int fixed[] = {F_TIME,  F_STREAM, F_CONTAINER, F_NAME,
                              F_IMAGE, F_HOST,   K_LINE,      F_LABELS};
  const rctx_t *x = get_ctx(L);
  int top = lua_gettop(L), first = 1, rc = -1;
  size_t i;
  unsigned changed;

  if (!lua_checkstack(L, 8)) return -1;
  int mt = push_mt(L, idx);
  if (mt == 0 || !read_pos(L, idx, mt, &i, &changed)) goto done;
  const batch_t *bt = box_batch(L, mt);
  if (bt == NULL || strbuf_add(b, "{", 1) < 0) goto done;
  lua_rawgeti(L, LUA_REGISTRYINDEX, x->anchor_ref);
  int anchor = lua_gettop(L);
  for (size_t k = 0; k < sizeof fixed / sizeof fixed[0]; k++) {
    int f = fixed[k], r = 0;
    push_raw(L, anchor, idx, f);
    if (!lua_isnil(L, -1))
      r = json_add_member(b, L, key_names[f], strlen(key_names[f]), lua_gettop(L), &first);
    else if (f < N_FIELDS && has_original(bt, i, changed, f))
      r = add_original(b, L, mt, bt, i, f, &first);
    lua_pop(L, 1);
    if (r < 0) goto done;
  }
  push_raw(L, anchor, idx, F_TRUNCATED); /* a raw `truncated` is one of the rest */
  int truncated = lua_isnil(L, -1) && has_original(bt, i, changed, F_TRUNCATED);
  lua_pop(L, 1);
  if (json_add_record_rest(b, L, idx, truncated, &first) < 0 || strbuf_add(b, "}", 1) < 0)
    goto done;
  rc = 0;
done:
  lua_settop(L, top);
  return rc;
}
