/* inspect.c - libFuzzer target for the JSON the daemon sends: inspect
 * documents (container_from_inspect, engine/container.c), container lists
 * and event objects, parsed with cJSON as the engine parses them.
 *
 * The input is parsed with cJSON_ParseWithLength (the engine's call for
 * buffered answers and events lines). A document becomes a container or a
 * clear error; a container's fields must be well formed (an id of at most
 * 64 chars, no leading '/' removed twice, labels sorted, each pair equal to
 * key=value) and the selection rules built from it must behave (its own id
 * as a prefix rule selects it, an exclude rule on it deselects it). Event
 * fields are read the way the events stream reads them. */
#include <cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "container.h"
#include "select.h"

static void check_container(const container_t *c)
{
  if (strlen(c->id) > 64 || !c->name || !c->image)
    abort();
  for (size_t i = 0; i < c->n_labels; i++) {
    const char *k = c->label_keys[i], *v = c->label_values[i], *p = c->label_pairs[i];
    size_t kl = strlen(k);
    if (strncmp(p, k, kl) != 0 || (p[kl] != '=' && p[kl] != '\0'))
      abort();
    if (p[kl] == '=' && strcmp(p + kl + 1, v) != 0)
      abort();
    if (i > 0 && strcmp(c->label_pairs[i - 1], p) > 0)
      abort(); /* sorted */
  }
  selection_t sel = {0};
  if (selection_add(&sel, 0, SELECT_ID, c->id) != 0)
    abort();
  const char *const *labels = (const char *const *)c->label_pairs;
  if (!selection_match(&sel, c->id, c->name, c->image, labels, c->n_labels))
    abort();
  if (selection_add(&sel, 1, SELECT_ID, c->id) != 0)
    abort();
  if (selection_match(&sel, c->id, c->name, c->image, labels, c->n_labels))
    abort();
  selection_free(&sel);
  /* Globs and label rules from the document's own strings: any outcome,
   * but no fault. */
  selection_add(&sel, 0, SELECT_NAME, c->name);
  selection_add(&sel, 0, SELECT_IMAGE, c->image);
  for (size_t i = 0; i < c->n_labels && i < 4; i++)
    selection_add(&sel, 0, SELECT_LABEL, c->label_pairs[i]);
  (void)selection_match(&sel, c->id, c->name, c->image, labels, c->n_labels);
  selection_free(&sel);
}

/* The fields an event carries, read as the events stream reads them. */
static void read_event(const cJSON *ev)
{
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(ev, "Type");
  const cJSON *action = cJSON_GetObjectItemCaseSensitive(ev, "Action");
  const cJSON *actor = cJSON_GetObjectItemCaseSensitive(ev, "Actor");
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(actor, "ID");
  const cJSON *tn = cJSON_GetObjectItemCaseSensitive(ev, "timeNano");
  volatile size_t sink = 0;
  if (cJSON_IsString(type) && cJSON_IsString(action) && cJSON_IsString(id))
    sink += strlen(type->valuestring) + strlen(action->valuestring) + strlen(id->valuestring);
  if (cJSON_IsNumber(tn))
    sink += tn->valuedouble > 0;
  (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  cJSON *doc = cJSON_ParseWithLength((const char *)data, size);
  if (!doc)
    return 0;
  char err[128] = "";
  container_t *c = container_from_inspect(doc, err, sizeof err);
  if (c) {
    check_container(c);
    container_t *r = container_ref(c);
    container_unref(r);
    container_unref(c);
  } else if (err[0] == '\0') {
    abort(); /* a refusal always says why */
  }
  /* A list answer: an array of objects with an Id each. */
  const cJSON *item;
  cJSON_ArrayForEach(item, doc) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(item, "Id");
    if (cJSON_IsString(id) && strlen(id->valuestring) > size)
      abort();
  }
  read_event(doc);
  cJSON_Delete(doc);
  return 0;
}
