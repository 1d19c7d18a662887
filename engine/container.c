/* container.c - container metadata from inspect (see container.h). */
#include <cJSON.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "container.h"

static void container_destroy(container_t *c) {
  for (size_t i = 0; i < c->n_labels; i++) {
    /* keys and values are NULL when set_labels ran out of memory */
    if (c->label_keys) free(c->label_keys[i]);
    if (c->label_values) free(c->label_values[i]);
    free(c->label_pairs[i]);
  }
  free(c->label_keys);
  free(c->label_values);
  free(c->label_pairs);
  free(c->name);
  free(c->image);
  free(c);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sets the labels from n "key=value" pairs, sorted by key. Returns 0 or -1. */
static int set_labels(container_t *c, char **pairs, size_t n) {
  qsort(pairs, n, sizeof *pairs, cmp_str);
  c->label_pairs = pairs;
  c->n_labels = n;
  c->label_keys = calloc(n ? n : 1, sizeof(char *));
  c->label_values = calloc(n ? n : 1, sizeof(char *));
  if (!c->label_keys || !c->label_values) return -1;
  for (size_t i = 0; i < n; i++) {
    const char *eq = strchr(pairs[i], '=');
    size_t klen = eq ? (size_t)(eq - pairs[i]) : strlen(pairs[i]);
    c->label_keys[i] = strndup(pairs[i], klen);
    c->label_values[i] = strdup(eq ? eq + 1 : "");
    if (!c->label_keys[i] || !c->label_values[i]) return -1;
  }
  return 0;
}

container_t *container_new(const char *id, const char *name, const char *image,
                           const char *const *labels, size_t n, int tty) {
  container_t *c = calloc(1, sizeof *c);
  char **pairs = calloc(n ? n : 1, sizeof(char *));
  if (!c || !pairs) goto err;
  atomic_init(&c->refs, 1);
  snprintf(c->id, sizeof c->id, "%s", id);
  snprintf(c->key, sizeof c->key, "%s", c->id);
  if (name && name[0] == '/') name++;
  c->name = strdup(name ? name : "");
  c->image = strdup(image ? image : "");
  c->tty = tty;
  c->running = 1;
  if (!c->name || !c->image) goto err;
  for (size_t i = 0; i < n; i++)
    if (!(pairs[i] = strdup(labels[i]))) goto err_pairs;
  if (set_labels(c, pairs, n) != 0) {
    pairs = NULL; /* owned by c now */
    goto err;
  }
  return c;
err_pairs:
  for (size_t i = 0; i < n; i++) free(pairs[i]);
err:
  free(pairs);
  if (c) container_destroy(c);
  return NULL;
}

static const char *json_str(const cJSON *obj, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

container_t *container_from_inspect(const void *doc, char *err, size_t errlen) {
  const cJSON *j = doc;
  const char *id = json_str(j, "Id");
  if (!id) {
    snprintf(err, errlen, "inspect answer has no Id");
    return NULL;
  }
  const cJSON *config = cJSON_GetObjectItemCaseSensitive(j, "Config");
  const cJSON *state = cJSON_GetObjectItemCaseSensitive(j, "State");
  const cJSON *labels = cJSON_GetObjectItemCaseSensitive(config, "Labels");
  size_t n = (size_t)cJSON_GetArraySize(labels);
  char **pairs = calloc(n ? n : 1, sizeof(char *));
  if (!pairs) goto oom;
  size_t i = 0;
  const cJSON *l;
  cJSON_ArrayForEach(l, labels) {
    if (!cJSON_IsString(l) || !l->string) continue;
    size_t len = strlen(l->string) + strlen(l->valuestring) + 2;
    if (!(pairs[i] = malloc(len))) goto oom_pairs;
    snprintf(pairs[i++], len, "%s=%s", l->string, l->valuestring);
  }
  container_t *c =
      container_new(id, json_str(j, "Name"), json_str(config, "Image"), (const char *const *)pairs,
                    i, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(config, "Tty")));
  for (size_t k = 0; k < i; k++) free(pairs[k]);
  free(pairs);
  if (!c) goto oom;
  c->running = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(state, "Running"));
  const cJSON *host = cJSON_GetObjectItemCaseSensitive(j, "HostConfig");
  c->auto_remove = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(host, "AutoRemove"));
  const cJSON *logcfg = cJSON_GetObjectItemCaseSensitive(host, "LogConfig");
  const cJSON *driver = cJSON_GetObjectItemCaseSensitive(logcfg, "Type");
  c->log_local = cJSON_IsString(driver) && strcmp(driver->valuestring, "local") == 0;
  return c;
oom_pairs:
  for (size_t k = 0; k < i; k++) free(pairs[k]);
  free(pairs);
oom:
  snprintf(err, errlen, "out of memory");
  return NULL;
}

container_t *container_renamed(const container_t *c, const char *name) {
  container_t *n = container_new(c->id, name, c->image, (const char *const *)c->label_pairs,
                                 c->n_labels, c->tty);
  if (n) {
    n->running = c->running;
    n->auto_remove = c->auto_remove;
    n->log_local = c->log_local;
    if (c->host[0]) container_set_host(n, c->host, c->host_field);
  }
  return n;
}

void container_key(char key[CONTAINER_KEY_MAX], const char *host, const char *id) {
  snprintf(key, CONTAINER_KEY_MAX, "%.63s/%.64s", host, id);
}

void container_set_host(container_t *c, const char *host, int field) {
  snprintf(c->host, sizeof c->host, "%s", host);
  container_key(c->key, c->host, c->id);
  c->host_field = field;
}

container_t *container_ref(container_t *c) {
  atomic_fetch_add(&c->refs, 1);
  return c;
}

void container_unref(container_t *c) {
  if (c && atomic_fetch_sub(&c->refs, 1) == 1) container_destroy(c);
}
