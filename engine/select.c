/* select.c - container selection rules (see select.h). Globs are fnmatch(3)
 * patterns without flags, so '*' also matches '/' (as in image names). */
#include "select.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

int selection_add(selection_t *s, int exclude, int kind, const char *pattern) {
  select_rule_t **rules = exclude ? &s->exclude : &s->include;
  size_t *n = exclude ? &s->n_exclude : &s->n_include;
  char *copy = strdup(pattern);
  if (!copy) return -1;
  select_rule_t *grown = realloc(*rules, (*n + 1) * sizeof **rules);
  if (!grown) {
    free(copy);
    return -1;
  }
  grown[*n].kind = kind;
  grown[*n].pattern = copy;
  *rules = grown;
  (*n)++;
  return 0;
}

static int glob_match(const char *pattern, const char *text) {
  return text != NULL && fnmatch(pattern, text, 0) == 0;
}

/* "key" matches a label with that key; "key=glob" one whose value matches
 * the glob. A label without '=' has an empty value. */
static int label_match(const char *pattern, const char *const *labels, size_t n) {
  const char *eq = strchr(pattern, '=');
  size_t klen = eq ? (size_t)(eq - pattern) : strlen(pattern);
  for (size_t i = 0; i < n; i++) {
    const char *l = labels[i];
    if (l == NULL || strncmp(l, pattern, klen) != 0 || (l[klen] != '=' && l[klen] != '\0'))
      continue;
    if (!eq) return 1;
    const char *value = l[klen] == '=' ? l + klen + 1 : "";
    if (fnmatch(eq + 1, value, 0) == 0) return 1;
  }
  return 0;
}

static int rule_match(const select_rule_t *r, const char *id, const char *name, const char *image,
                      const char *const *labels, size_t n) {
  switch (r->kind) {
  case SELECT_NAME: {
    const char *p = r->pattern[0] == '/' ? r->pattern + 1 : r->pattern;
    if (name && name[0] == '/') name++;
    return glob_match(p, name);
  }
  case SELECT_ID: return id != NULL && strncmp(id, r->pattern, strlen(r->pattern)) == 0;
  case SELECT_LABEL: return label_match(r->pattern, labels, n);
  case SELECT_IMAGE: return glob_match(r->pattern, image);
  default: return 0;
  }
}

static int any_match(const select_rule_t *rules, size_t count, const char *id, const char *name,
                     const char *image, const char *const *labels, size_t n) {
  for (size_t i = 0; i < count; i++)
    if (rule_match(&rules[i], id, name, image, labels, n)) return 1;
  return 0;
}

int selection_match(const selection_t *s, const char *id, const char *name, const char *image,
                    const char *const *labels, size_t n) {
  if (s->n_include > 0 && !any_match(s->include, s->n_include, id, name, image, labels, n))
    return 0;
  return !any_match(s->exclude, s->n_exclude, id, name, image, labels, n);
}

void selection_free(selection_t *s) {
  for (size_t i = 0; i < s->n_include; i++) free(s->include[i].pattern);
  for (size_t i = 0; i < s->n_exclude; i++) free(s->exclude[i].pattern);
  free(s->include);
  free(s->exclude);
  memset(s, 0, sizeof *s);
}
