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
 * FORMAT: ndjson, array, clickhouse, loki, elasticsearch, otlp, syslog,
 * syslog-one (encode_syslog_one per record, each message followed by LF),
 * or bulk-errors (stdin is a _bulk reply: prints "<result> <reason>").
 *
 * Options:
 *   --labels a,b       loki: the label fields
 *   --index NAME       elasticsearch: the index (default "logs")
 *   --octet | --newline   syslog framing (default --octet)
 *   --hostname H       syslog hostname (default "host")
 *   --facility N       syslog facility (default 1)
 *   --share-labels     records of one container share the first one's
 *                      labels table, as in the engine's batches
 *
 * Exits 0; 1 when the encoder fails or leaves the Lua stack changed; 2 on
 * bad arguments or input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <lauxlib.h>
#include <lua.h>

#include "encode.h"
#include "output.h"

#define MAX_LABELS 16

typedef struct options {
  const char *format;
  const char *labels[MAX_LABELS];
  size_t n_labels;
  char *labels_arg;
  const char *index;
  const char *hostname;
  int facility;
  int octet;
  int share_labels;
} options_t;

static void usage(void)
{
  fprintf(stderr, "usage: encode_tool ndjson|array|clickhouse|loki|elasticsearch|otlp|"
                  "syslog|syslog-one|bulk-errors [--labels a,b] [--index NAME] "
                  "[--octet|--newline] [--hostname H] [--facility N] [--share-labels]\n");
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

/* With --share-labels: gives the record on top of the stack the labels
 * table of the first record of its container (shared at index `shared`). */
static void share_labels(lua_State *L, int shared)
{
  int rec = lua_gettop(L);

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

/* Runs the encoder of o->format on the array at (absolute) index arr,
 * handing it the relative form of the index. Returns its result, or -2 for
 * an unknown format. */
static int encode(strbuf_t *b, lua_State *L, int abs_arr, const options_t *o)
{
  int arr = abs_arr - lua_gettop(L) - 1;
  size_t i, n;
  int rc = 0;

  if (strcmp(o->format, "ndjson") == 0)
    return encode_ndjson(b, L, arr);
  if (strcmp(o->format, "array") == 0)
    return encode_json_array(b, L, arr);
  if (strcmp(o->format, "clickhouse") == 0)
    return encode_clickhouse(b, L, arr);
  if (strcmp(o->format, "loki") == 0)
    return encode_loki(b, L, arr, o->labels, o->n_labels);
  if (strcmp(o->format, "elasticsearch") == 0)
    return encode_elasticsearch(b, L, arr, o->index);
  if (strcmp(o->format, "otlp") == 0)
    return encode_otlp(b, L, arr);
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

/* bulk-errors: stdin is a _bulk reply. */
static int bulk_errors(void)
{
  strbuf_t in = { 0 };
  char buf[4096], err[512];
  size_t n;
  int rc;

  while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) {
    if (strbuf_add(&in, buf, n) < 0) {
      strbuf_free(&in);
      return 1;
    }
  }
  rc = elasticsearch_bulk_errors(in.data ? in.data : "", in.len, err, sizeof err);
  printf("%d %s\n", rc, err);
  strbuf_free(&in);
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
    return bulk_errors();
  L = luaL_newstate();
  if (L == NULL)
    return 1;
  lua_newtable(L); /* 1: the records */
  lua_newtable(L); /* 2: labels tables by container */
  if (read_records(L, 1, 2, &o) < 0)
    goto err;
  lua_pushinteger(L, 42); /* a value above the array, left alone */
  top = lua_gettop(L);
  rc = encode(&b, L, 1, &o);
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
  if (b.len > 0 && fwrite(b.data, 1, b.len, stdout) != b.len)
    goto err;
  status = 0;
err:
  strbuf_free(&b);
  lua_close(L);
  return status;
}
