/* pipeline_config.c - the table pipeline.lua returned, validated by
 * lua/engine/pipeline.lua (its normal form), copied into the program (its
 * filters, their timers and selections, its outputs) and the config (see
 * pipeline_internal.h: pl_copy_config). The copy runs in a protected call:
 * running out of memory raises a Lua error. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "log.h"
#include "json.h"
#include "output.h"
#include "pipeline_internal.h"
#include "select.h"

const char *const pl_on_error_names[3] = {"pass", "drop", "dead_letter"};

/* Field key of the table at idx as a number, if present. */
static void opt_number(lua_State *L, int idx, const char *key, double *out) {
  lua_getfield(L, idx, key);
  if (lua_type(L, -1) == LUA_TNUMBER) *out = lua_tonumber(L, -1);
  lua_pop(L, 1);
}

static void opt_size(lua_State *L, int idx, const char *key, size_t *out) {
  double v = -1;

  opt_number(L, idx, key, &v);
  if (v >= 1) *out = (size_t)v;
}

static char *dup_or_raise(lua_State *L, const char *s) {
  char *d = strdup(s);

  if (d == NULL) luaL_error(L, "out of memory");
  return d;
}

/* Adds the rules of one list (select.include or select.exclude). */
static void copy_rules(lua_State *L, int idx, const char *which, int exclude, selection_t *sel) {
  static const struct {
    const char *key;
    int kind;
  } kinds[] = {
      {"name", SELECT_NAME},
      {"id", SELECT_ID},
      {"label", SELECT_LABEL},
      {"image", SELECT_IMAGE},
  };
  size_t k, i, n;

  lua_getfield(L, idx, which);
  for (k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    lua_getfield(L, -1, kinds[k].key);
    n = lua_objlen(L, -1);
    for (i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, (int)i);
      if (selection_add(sel, exclude, kinds[k].kind, lua_tostring(L, -1)) < 0)
        luaL_error(L, "out of memory");
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* Stores field key of the table at idx (a function or nil) in the registry;
 * LUA_NOREF when nil. */
static int ref_field(lua_State *L, int idx, const char *key) {
  lua_getfield(L, idx, key);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return LUA_NOREF;
  }
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

static void copy_timers(lua_State *L, int idx, filter_t *f) {
  size_t i, n;

  lua_getfield(L, idx, "timers");
  n = lua_objlen(L, -1);
  if (n > 0 && (f->timers = calloc(n, sizeof *f->timers)) == NULL) luaL_error(L, "out of memory");
  for (i = 1; i <= n; i++) {
    ltimer_t *t = &f->timers[f->n_timers];
    lua_rawgeti(L, -1, (int)i);
    t->ref = LUA_NOREF;
    f->n_timers++;
    opt_number(L, lua_gettop(L), "every", &t->every);
    t->ref = ref_field(L, lua_gettop(L), "handler");
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* Copies the filter table at idx (normal form) into f; opens its
 * dead-letter file unless check_only. */
static void copy_filter(lua_State *L, int idx, filter_t *f, int check_only) {
  const char *s;
  int i;

  lua_getfield(L, idx, "name");
  f->name = dup_or_raise(L, lua_tostring(L, -1));
  lua_getfield(L, idx, "on_error");
  s = lua_tostring(L, -1);
  for (i = 0; i < 3; i++)
    if (strcmp(s, pl_on_error_names[i]) == 0) f->on_error = i;
  lua_pop(L, 2);
  f->process_ref = ref_field(L, idx, "process");
  f->init_ref = ref_field(L, idx, "init");
  f->shutdown_ref = ref_field(L, idx, "shutdown");
  lua_newtable(L);
  f->state_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  copy_timers(L, idx, f);
  lua_getfield(L, idx, "select");
  if (!lua_isnil(L, -1)) {
    if ((f->sel = calloc(1, sizeof *f->sel)) == NULL) luaL_error(L, "out of memory");
    copy_rules(L, lua_gettop(L), "include", 0, f->sel);
    copy_rules(L, lua_gettop(L), "exclude", 1, f->sel);
  }
  lua_pop(L, 1);
  lua_getfield(L, idx, "dead_letter");
  if (lua_isstring(L, -1)) f->dl_path = dup_or_raise(L, lua_tostring(L, -1));
  if (f->dl_path != NULL && !check_only) {
    f->dl_fd = open(f->dl_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (f->dl_fd < 0)
      luaL_error(L, "filter %s: cannot open the dead-letter file %s: %s", f->name, f->dl_path,
                 strerror(errno));
  }
  lua_pop(L, 1);
}

static void copy_filters(lua_State *L, int idx, program_t *g) {
  size_t i, n;
  filter_t *f;

  lua_getfield(L, idx, "filters");
  n = lua_objlen(L, -1);
  g->filters = calloc(n ? n : 1, sizeof *g->filters);
  g->counts = pl_shared_calloc(n ? n : 1, sizeof *g->counts);
  if (g->filters == NULL || g->counts == NULL) {
    luaL_error(L, "out of memory"); /* does not return */
    return;
  }
  for (i = 1; i <= n; i++) {
    f = &g->filters[g->n_filters];
    f->process_ref = f->init_ref = f->shutdown_ref = f->state_ref = LUA_NOREF;
    f->dl_fd = -1;
    f->n = &g->counts[g->n_filters];
    g->n_filters++;
    lua_rawgeti(L, -1, (int)i);
    copy_filter(L, lua_gettop(L), f, g->check_only);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* The output of the running program with the settings of the table at
 * idx (its fingerprint, see output.h), or NULL. */
static output_t *unchanged_output(lua_State *L, int idx, const program_t *old) {
  strbuf_t fp = {0};
  output_t *found = NULL;

  if (old == NULL) return NULL;
  if (json_add_lua(&fp, L, idx) < 0 || strbuf_add(&fp, "", 1) < 0) {
    strbuf_free(&fp);
    luaL_error(L, "out of memory"); /* does not return */
    return NULL;
  }
  for (size_t i = 0; i < old->n_outputs && found == NULL; i++)
    if (strcmp(old->outputs[i]->fingerprint, fp.data) == 0) found = old->outputs[i];
  strbuf_free(&fp);
  return found;
}

/* The environment variable named by idx.key goes into a header at start
 * (auth: bearer token, user, password): a line break in its value would end
 * that header and begin another. Raises an error naming the variable, never
 * its value. A variable that is not set is reported when the output starts. */
static void check_env_value(lua_State *L, int idx, const char *key, const char *output) {
  lua_getfield(L, idx, key);
  const char *var = lua_tostring(L, -1);
  const char *v = var ? getenv(var) : NULL;
  if (v && strpbrk(v, "\r\n"))
    luaL_error(L,
               "output %s: the environment variable %s (auth.%s) holds a line break (CR or LF); "
               "a header value must be one line (the value is not shown)",
               output, var, key);
  lua_pop(L, 1);
}

static void copy_outputs(lua_State *L, int idx, program_t *g) {
  size_t i, n;
  output_t *o;
  char err[512];

  lua_getfield(L, idx, "outputs");
  n = lua_objlen(L, -1);
  g->outputs = calloc(n ? n : 1, sizeof(output_t *));
  if (g->outputs == NULL) {
    luaL_error(L, "out of memory"); /* does not return */
    return;
  }
  g->routing = n > 1;
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, (int)i);
    lua_getfield(L, -1, "name");
    const char *name = lua_tostring(L, -1);
    check_env_value(L, lua_gettop(L) - 1, "bearer_env", name ? name : "?");
    check_env_value(L, lua_gettop(L) - 1, "user_env", name ? name : "?");
    check_env_value(L, lua_gettop(L) - 1, "password_env", name ? name : "?");
    lua_pop(L, 1);
    o = unchanged_output(L, lua_gettop(L), g->reuse);
    if (o == NULL && (o = output_new(L, lua_gettop(L), err, sizeof err)) == NULL) {
      luaL_error(L, "outputs[%d]: %s", (int)i, err); /* does not return */
      return;
    }
    g->outputs[g->n_outputs++] = o;
    g->routing |= o->routed_only;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* A string field of the table at -1, copied (NULL when absent). */
static char *opt_dup(lua_State *L, const char *key) {
  lua_getfield(L, -1, key);
  char *v = lua_isstring(L, -1) ? dup_or_raise(L, lua_tostring(L, -1)) : NULL;
  lua_pop(L, 1);
  return v;
}

/* docker.daemons (the normal form, lua/engine/pipeline.lua) into
 * cfg->daemons. Each copy belongs to cfg at once, so a memory error
 * leaves nothing to leak. */
static void copy_daemons(lua_State *L, int docker, config_t *cfg) {
  if (!lua_istable(L, docker)) return;
  lua_getfield(L, docker, "list");
  cfg->daemons_list = lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, docker, "daemons");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  size_t n = lua_objlen(L, -1);
  if (n > CONFIG_DAEMONS_MAX) n = CONFIG_DAEMONS_MAX;
  if (n == 0) {
    lua_pop(L, 1);
    return;
  }
  config_free_daemons(cfg);
  for (size_t i = 0; i < n; i++) {
    config_daemon_t *d = &cfg->daemons[i];
    lua_rawgeti(L, -1, (int)i + 1);
    cfg->n_daemons = i + 1; /* owned by cfg from here on */
    d->name = opt_dup(L, "name");
    d->host = opt_dup(L, "host");
    lua_getfield(L, -1, "tls");
    if (lua_istable(L, -1)) {
      d->tls_ca = opt_dup(L, "ca");
      d->tls_cert = opt_dup(L, "cert");
      d->tls_key = opt_dup(L, "key");
    }
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
}

/* Protected: copies the validated table (argument 1) into the config
 * (argument 3) and the program (argument 2). */
int pl_copy_config(lua_State *L) {
  program_t *g = lua_touserdata(L, 2);
  config_t *cfg = lua_touserdata(L, 3);
  size_t lua_memory = LUA_MEMORY_DEFAULT;
  const char *s;

  lua_getfield(L, 1, "docker");
  copy_daemons(L, lua_gettop(L), cfg);
  opt_number(L, lua_gettop(L), "read_delay", &cfg->read_delay);
  lua_getfield(L, -1, "attach");
  if (lua_isboolean(L, -1)) cfg->attach_rm = lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_pop(L, 1);
  lua_getfield(L, 1, "select");
  copy_rules(L, lua_gettop(L), "include", 0, &cfg->select);
  copy_rules(L, lua_gettop(L), "exclude", 1, &cfg->select);
  lua_pop(L, 1);
  lua_getfield(L, 1, "history");
  if (lua_isstring(L, -1)) cfg->since_start = strcmp(lua_tostring(L, -1), "start") == 0;
  lua_pop(L, 1);
  lua_getfield(L, 1, "batch");
  opt_size(L, 4, "max_lines", &cfg->batch_max_lines);
  opt_size(L, 4, "max_bytes", &cfg->batch_max_bytes);
  opt_number(L, 4, "flush_interval", &cfg->flush_interval);
  lua_pop(L, 1);
  lua_getfield(L, 1, "engine");
  opt_number(L, 4, "cycle", &cfg->cycle);
  opt_number(L, 4, "stop_timeout", &cfg->stop_timeout);
  opt_number(L, 4, "filter_timeout", &cfg->filter_timeout);
  opt_number(L, 4, "reconcile_interval", &cfg->reconcile_interval);
  opt_number(L, 4, "backoff_initial", &cfg->backoff_initial);
  opt_number(L, 4, "backoff_max", &cfg->backoff_max);
  opt_number(L, 4, "resume_margin", &cfg->resume_margin);
  opt_number(L, 4, "stats_interval", &cfg->stats_interval);
  opt_size(L, 4, "line_max", &cfg->line_max);
  opt_size(L, 4, "frame_max", &cfg->frame_max);
  opt_size(L, 4, "lua_memory", &lua_memory);
  opt_number(L, 4, "checkpoint_interval", &cfg->checkpoint_interval);
  opt_size(L, 4, "max_buffered", &cfg->max_buffered);
  opt_size(L, 4, "max_readers", &cfg->max_readers);
  opt_size(L, 4, "max_events_per_second", &cfg->max_events_per_second);
  lua_getfield(L, 4, "fsync");
  if (lua_isboolean(L, -1)) cfg->fsync = lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, 4, "state_dir");
  if (lua_isboolean(L, -1) || lua_isstring(L, -1)) {
    free(cfg->state_dir);
    cfg->state_dir = lua_isstring(L, -1) ? strdup(lua_tostring(L, -1)) : NULL;
  }
  lua_pop(L, 1);
  lua_getfield(L, 4, "log_level");
  s = lua_tostring(L, -1);
  if (s != NULL) cfg->log_level = log_parse_level(s);
  lua_pop(L, 1);
  lua_getfield(L, 4, "filter_isolation");
  s = lua_tostring(L, -1);
  if (s != NULL) cfg->filter_isolation = strcmp(s, "process") == 0;
  lua_pop(L, 1);
  lua_getfield(L, 4, "metrics"); /* validated: { listen = "host:port", max_containers } */
  if (lua_istable(L, -1)) {
    lua_getfield(L, 5, "listen");
    if (lua_isstring(L, -1)) {
      free(cfg->metrics_listen);
      cfg->metrics_listen = NULL;
      cfg->metrics_listen = dup_or_raise(L, lua_tostring(L, -1));
    }
    lua_pop(L, 1);
    opt_size(L, 5, "max_containers", &cfg->metrics_max_containers);
  }
  lua_pop(L, 2);
  copy_filters(L, 1, g);
  copy_outputs(L, 1, g);
  g->filter_timeout = cfg->filter_timeout;
  g->isolate = cfg->filter_isolation;
  g->mem.limit = lua_memory;
  return 0;
}
