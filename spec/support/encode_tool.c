/* encode_tool - runs one wire-format encoder (engine/encode.h) on records
 * read from stdin, for the specs.
 *
 *   encode_tool FORMAT [options] < records.jsonl
 *
 * Each non-blank input line is one JSON object, turned into a Lua record
 * table (objects and arrays become tables, null the NULL light userdata);
 * the records form one array, which the encoder gets; the body it produces
 * goes to stdout as it is.
 *
 * FORMAT: ndjson, array, clickhouse, loki, elasticsearch, otlp, otlp-proto
 * (encode_otlp_proto), syslog,
 * syslog-one (encode_syslog_one per record, each message followed by LF),
 * or bulk-errors / bulk-items (stdin is a _bulk reply: prints "<result> <reason>",
 * then with bulk-items "<status> <reason>" per item).
 *
 * Options:
 *   --labels a,b       loki: the label fields
 *   --static NAME=VALUE   loki: a static label (repeatable; the value is
 *                      everything after the first '=')
 *   --json-line        loki: each line is the whole record as JSON
 *   --index NAME       elasticsearch: the index (default "logs")
 *   --octet | --newline   syslog framing (default --octet)
 *   --hostname H       syslog hostname (default "host")
 *   --facility N       syslog facility (default 1)
 *   --share-labels     records of one container that have labels share
 *                      the first one's labels table, as in the engine's
 *                      batches
 *   --lazy             the encoder gets lazy records (engine/record.h), as
 *                      filters hand them on: each run of records of one
 *                      container becomes a batch (time, stream, line,
 *                      truncated) of a container (container, name, image,
 *                      labels); every other field is then set on the lazy
 *                      record as a filter sets it, and the directives
 *                      "=f": v and "-f": true set and delete field f
 *   --repeat N         encodes the records N times (each body replacing
 *                      the last; only the last is written), for timing an
 *                      encoder (scripts/bench/bench-otlp.sh)
 *
 * Exits 0; 1 when the encoder fails, leaves the Lua stack changed or (with
 * --lazy) made a record a plain table; 2 on bad arguments or input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "batch.h"
#include "container.h"
#include "decode.h"
#include "encode.h"
#include "json.h"
#include "record.h"
#include "timestamp.h"

#define MAX_LABELS 16

typedef struct options {
  const char *format;
  const char *labels[MAX_LABELS];
  size_t n_labels;
  char *labels_arg;
  const char *static_names[MAX_LABELS];
  const char *static_values[MAX_LABELS];
  size_t n_static;
  int json_line;
  const char *index;
  const char *hostname;
  int facility;
  int octet;
  int share_labels;
  int lazy;
  long repeat;
} options_t;

static void usage(void)
{
  fprintf(stderr, "usage: encode_tool ndjson|array|clickhouse|loki|elasticsearch|otlp|otlp-proto|"
                  "syslog|syslog-one|bulk-errors|bulk-items [--labels a,b] [--index NAME] "
                  "[--octet|--newline] [--hostname H] [--facility N] [--share-labels] [--lazy] "
                  "[--repeat N]\n");
}

/* Parses argv into o. Returns 0 or -1. */
static int parse_args(options_t *o, int argc, char **argv)
{
  char *tok, *save = NULL;
  int i;

  if (argc < 2)
    return -1;
  o->format = argv[1];
  o->index = "logs";
  o->hostname = "host";
  o->facility = 1;
  o->octet = 1;
  for (i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--labels") == 0 && i + 1 < argc) {
      o->labels_arg = argv[++i];
      for (tok = strtok_r(o->labels_arg, ",", &save); tok != NULL && o->n_labels < MAX_LABELS;
           tok = strtok_r(NULL, ",", &save))
        o->labels[o->n_labels++] = tok;
    } else if (strcmp(argv[i], "--static") == 0 && i + 1 < argc && o->n_static < MAX_LABELS) {
      char *eq = strchr(argv[++i], '=');
      if (eq == NULL)
        return -1;
      *eq = '\0';
      o->static_names[o->n_static] = argv[i];
      o->static_values[o->n_static++] = eq + 1;
    } else if (strcmp(argv[i], "--json-line") == 0) {
      o->json_line = 1;
    } else if (strcmp(argv[i], "--index") == 0 && i + 1 < argc) {
      o->index = argv[++i];
    } else if (strcmp(argv[i], "--hostname") == 0 && i + 1 < argc) {
      o->hostname = argv[++i];
    } else if (strcmp(argv[i], "--facility") == 0 && i + 1 < argc) {
      o->facility = (int)strtol(argv[++i], NULL, 10);
    } else if (strcmp(argv[i], "--octet") == 0) {
      o->octet = 1;
    } else if (strcmp(argv[i], "--newline") == 0) {
      o->octet = 0;
    } else if (strcmp(argv[i], "--share-labels") == 0) {
      o->share_labels = 1;
    } else if (strcmp(argv[i], "--lazy") == 0) {
      o->lazy = 1;
    } else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
      o->repeat = strtol(argv[++i], NULL, 10);
      if (o->repeat < 1)
        return -1;
    } else {
      return -1;
    }
  }
  return 0;
}

/* Pushes the Lua form of item. */
static void push_item(lua_State *L, const cJSON *item)
{
  const cJSON *c;
  int i = 0;

  luaL_checkstack(L, 4, "input nested too deep");
  if (cJSON_IsString(item)) {
    lua_pushstring(L, item->valuestring);
  } else if (cJSON_IsNumber(item)) {
    lua_pushnumber(L, item->valuedouble);
  } else if (cJSON_IsBool(item)) {
    lua_pushboolean(L, cJSON_IsTrue(item));
  } else if (cJSON_IsArray(item)) {
    lua_newtable(L);
    for (c = item->child; c != NULL; c = c->next) {
      push_item(L, c);
      lua_rawseti(L, -2, ++i);
    }
  } else if (cJSON_IsObject(item)) {
    lua_newtable(L);
    for (c = item->child; c != NULL; c = c->next) {
      lua_pushstring(L, c->string);
      push_item(L, c);
      lua_rawset(L, -3);
    }
  } else {
    lua_pushlightuserdata(L, NULL);
  }
}

/* With --share-labels: gives the record on top of the stack, when it has
 * labels, the labels table of the first record of its container that had
 * them (shared at index `shared`). */
static void share_labels(lua_State *L, int shared)
{
  int rec = lua_gettop(L);

  lua_getfield(L, rec, "labels");
  int has = lua_istable(L, -1);
  lua_pop(L, 1);
  if (!has)
    return;
  lua_getfield(L, rec, "container");
  if (!lua_isstring(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  lua_pushvalue(L, -1);
  lua_rawget(L, shared); /* container, shared labels */
  if (lua_istable(L, -1)) {
    lua_setfield(L, rec, "labels");
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  lua_getfield(L, rec, "labels"); /* container, labels */
  lua_rawset(L, shared);
}

/* Reads stdin's JSON lines into the array at index `arr`. Returns 0 or -1. */
static int read_records(lua_State *L, int arr, int shared, const options_t *o)
{
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  cJSON *item;
  int count = 0, rc = 0;

  while (rc == 0 && (n = getline(&line, &cap, stdin)) >= 0) {
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
      n--;
    if (n == 0)
      continue;
    item = cJSON_ParseWithLength(line, (size_t)n);
    if (!cJSON_IsObject(item)) {
      fprintf(stderr, "encode_tool: input line %d is not a JSON object\n", count + 1);
      rc = -1;
    } else {
      push_item(L, item);
      if (o->share_labels)
        share_labels(L, shared);
      lua_rawseti(L, arr, ++count);
    }
    cJSON_Delete(item);
  }
  free(line);
  return rc;
}

/* The fields of a record that make its batch and container. */
static const char *const originals[] = { "time", "stream", "line", "truncated",
                                         "container", "name", "image", "labels" };

static int is_original(const char *k)
{
  for (size_t i = 0; i < sizeof originals / sizeof originals[0]; i++)
    if (strcmp(k, originals[i]) == 0)
      return 1;
  return 0;
}

/* The string field k of the table at t, or def. */
static const char *text_of(lua_State *L, int t, const char *k, const char *def)
{
  const char *s;

  lua_getfield(L, t, k);
  s = lua_isstring(L, -1) ? lua_tostring(L, -1) : def;
  lua_pop(L, 1);
  return s; /* held by the record */
}

/* The container of the record at rec (its labels as "k=v"). */
static container_t *container_of(lua_State *L, int rec)
{
  char *labels[MAX_LABELS];
  size_t n = 0, i;
  container_t *c;

  lua_getfield(L, rec, "labels");
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (lua_next(L, -2) != 0 && n < MAX_LABELS) {
      size_t kl, vl;
      const char *k = lua_tolstring(L, -2, &kl), *v = lua_tolstring(L, -1, &vl);
      if ((labels[n] = malloc(kl + vl + 2)) != NULL) {
        snprintf(labels[n], kl + vl + 2, "%s=%s", k, v);
        n++;
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  c = container_new(text_of(L, rec, "container", ""), text_of(L, rec, "name", ""),
                    text_of(L, rec, "image", ""), (const char *const *)labels, n, 0);
  for (i = 0; i < n; i++)
    free(labels[i]);
  return c;
}

/* Replaces records from..to-1 of the array at arr by lazy records of one
 * batch, and sets their other fields. Returns 0 or -1. */
static int lazy_run(lua_State *L, int arr, int from, int to)
{
  container_t *c;
  batch_t *b;
  int i, lazy;

  lua_rawgeti(L, arr, from);
  c = container_of(L, lua_gettop(L));
  lua_pop(L, 1);
  if (c == NULL || (b = batch_new(c)) == NULL)
    return -1;
  container_unref(c); /* the batch holds it */
  for (i = from; i < to; i++) {
    int64_t ts = 0;
    size_t len, used;
    const char *s, *line;
    int rec;

    lua_rawgeti(L, arr, i);
    rec = lua_gettop(L);
    s = text_of(L, rec, "time", "");
    if (ts_parse(s, strlen(s), &ts, &used) < 0 || used != strlen(s))
      ts = 0;
    lua_getfield(L, rec, "truncated");
    unsigned flags = lua_toboolean(L, -1) ? DECODE_TRUNCATED : 0;
    lua_pop(L, 1);
    line = text_of(L, rec, "line", "");
    len = strlen(line);
    if (batch_add(b, ts, strcmp(text_of(L, rec, "stream", ""), "stderr") == 0 ? DECODE_STDERR
                                                                            : DECODE_STDOUT,
                  flags, line, len) < 0) {
      batch_free(b);
      return -1;
    }
    lua_pop(L, 1);
  }
  record_push_batch(L, b);
  batch_free(b); /* the records hold it */
  lazy = lua_gettop(L);
  for (i = from; i < to; i++) {
    lua_rawgeti(L, arr, i); /* the plain record */
    lua_rawgeti(L, lazy, i - from + 1);
    int plain = lua_gettop(L) - 1, rec = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, plain) != 0) {
      const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
      if (k == NULL || is_original(k)) {
        lua_pop(L, 1);
        continue;
      }
      if (k[0] == '=' || k[0] == '-') {
        lua_pushstring(L, k + 1);
        if (k[0] == '-')
          lua_pushnil(L);
        else
          lua_pushvalue(L, -2);
      } else {
        lua_pushvalue(L, -2);
        lua_pushvalue(L, -2);
      }
      lua_settable(L, rec); /* through the metatable, as a filter sets it */
      lua_pop(L, 1);
    }
    lua_rawseti(L, arr, i);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 0;
}

/* --lazy: makes the records of the array at arr lazy, a batch per run of
 * records of one container. Returns 0 or -1. */
static int make_lazy(lua_State *L, int arr)
{
  int n = (int)lua_objlen(L, arr), from = 1, i;

  for (i = 2; i <= n + 1; i++) {
    int same = 0;
    if (i <= n) {
      lua_rawgeti(L, arr, from);
      lua_rawgeti(L, arr, i);
      same = strcmp(text_of(L, -2, "container", ""), text_of(L, -1, "container", "")) == 0;
      lua_pop(L, 2);
    }
    if (!same) {
      if (lazy_run(L, arr, from, i) < 0)
        return -1;
      from = i;
    }
  }
  return 0;
}

/* Runs the encoder of o->format on the array at (absolute) index arr,
 * handing it the relative form of the index. Returns its result, or -2 for
 * an unknown format. */
static int encode(strbuf_t *b, lua_State *L, int abs_arr, const options_t *o)
{
  int arr = abs_arr - lua_gettop(L) - 1;
  size_t i, n;
  int rc = 0;

  if (strcmp(o->format, "ndjson") == 0)
    return encode_ndjson(b, L, arr, 0);
  if (strcmp(o->format, "ndjson-id") == 0)
    return encode_ndjson(b, L, arr, 1);
  if (strcmp(o->format, "array") == 0)
    return encode_json_array(b, L, arr, 0);
  if (strcmp(o->format, "array-id") == 0)
    return encode_json_array(b, L, arr, 1);
  if (strcmp(o->format, "clickhouse") == 0)
    return encode_clickhouse(b, L, arr);
  if (strcmp(o->format, "loki") == 0) {
    const encode_loki_opts_t lo = { o->labels, o->n_labels, o->static_names, o->static_values,
                                    o->n_static, o->json_line };
    return encode_loki(b, L, arr, &lo);
  }
  if (strcmp(o->format, "elasticsearch") == 0)
    return encode_elasticsearch(b, L, arr, o->index);
  if (strcmp(o->format, "otlp") == 0)
    return encode_otlp(b, L, arr);
  if (strcmp(o->format, "otlp-proto") == 0)
    return encode_otlp_proto(b, L, arr);
  if (strcmp(o->format, "syslog") == 0)
    return encode_syslog(b, L, arr, o->hostname, o->facility, o->octet);
  if (strcmp(o->format, "syslog-one") == 0) {
    n = lua_objlen(L, abs_arr);
    for (i = 1; i <= n && rc == 0; i++) {
      lua_rawgeti(L, abs_arr, (int)i);
      rc = encode_syslog_one(b, L, -1, o->hostname, o->facility);
      if (rc == 0)
        rc = strbuf_add(b, "\n", 1);
      lua_pop(L, 1);
    }
    return rc;
  }
  return -2;
}

/* bulk-errors: stdin is a _bulk reply, read in slices of 7 bytes. Prints
 * "-1 not a _bulk reply", or the number of failed items and the first
 * reason; with items set, then a line "status reason" per item. */
static int bulk_errors(int items)
{
  strbuf_t in = { 0 };
  char buf[4096];
  size_t n, i, failed = 0;
  const es_item_t *it;
  es_reply_t *r = es_reply_new();
  const char *first = "";

  while (r != NULL && (n = fread(buf, 1, sizeof buf, stdin)) > 0) {
    if (strbuf_add(&in, buf, n) < 0) {
      strbuf_free(&in);
      es_reply_free(r);
      return 1;
    }
  }
  if (r == NULL)
    return 1;
  for (i = 0; i < in.len; i += 7)
    es_reply_feed(r, in.data + i, in.len - i < 7 ? in.len - i : 7);
  if (es_reply_items(r, &it, &n) < 0) {
    printf("-1 not a _bulk reply\n");
  } else {
    for (i = 0; i < n; i++)
      if (it[i].reason != NULL && failed++ == 0)
        first = it[i].reason;
    printf("%zu %s\n", failed, first);
    for (i = 0; items && i < n; i++)
      printf("%d %s\n", it[i].status, it[i].reason ? it[i].reason : "");
  }
  strbuf_free(&in);
  es_reply_free(r);
  return 0;
}

int main(int argc, char **argv)
{
  options_t o = { 0 };
  strbuf_t b = { 0 };
  lua_State *L = NULL;
  int status = 2, rc, top;

  if (parse_args(&o, argc, argv) < 0) {
    usage();
    return 2;
  }
  if (strcmp(o.format, "bulk-errors") == 0)
    return bulk_errors(0);
  if (strcmp(o.format, "bulk-items") == 0)
    return bulk_errors(1);
  L = luaL_newstate();
  if (L == NULL)
    return 1;
  lua_newtable(L); /* 1: the records */
  lua_newtable(L); /* 2: labels tables by container */
  if (read_records(L, 1, 2, &o) < 0)
    goto err;
  if (o.lazy) {
    luaL_openlibs(L);
    record_setup(L);
    if (make_lazy(L, 1) < 0) {
      fprintf(stderr, "encode_tool: out of memory\n");
      goto err;
    }
  }
  lua_pushinteger(L, 42); /* a value above the array, left alone */
  top = lua_gettop(L);
  rc = encode(&b, L, 1, &o);
  for (long r = 1; rc == 0 && r < o.repeat; r++) {
    b.len = 0;
    rc = encode(&b, L, 1, &o);
  }
  if (rc == -2) {
    usage();
    goto err;
  }
  status = 1;
  if (rc < 0) {
    fprintf(stderr, "encode_tool: the encoder failed\n");
    goto err;
  }
  if (lua_gettop(L) != top || lua_tointeger(L, -1) != 42) {
    fprintf(stderr, "encode_tool: the encoder changed the Lua stack\n");
    goto err;
  }
  if (o.lazy) {
    size_t i, n = lua_objlen(L, 1);
    for (i = 1; i <= n; i++) {
      lua_rawgeti(L, 1, (int)i);
      int lazy = record_is_lazy(L, lua_gettop(L));
      lua_pop(L, 1);
      if (!lazy) {
        fprintf(stderr, "encode_tool: record %zu is no longer lazy\n", i);
        goto err;
      }
    }
  }
  if (b.len > 0 && fwrite(b.data, 1, b.len, stdout) != b.len)
    goto err;
  status = 0;
err:
  strbuf_free(&b);
  lua_close(L);
  return status;
}
