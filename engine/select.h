/* select.h - which containers a pipeline follows.
 *
 * A container is selected when it matches at least one include rule (or
 * there are none) and no exclude rule. A rule matches by name (shell glob,
 * without the leading '/'), id prefix, label ("key" or "key=value", value a
 * glob) or image (glob). Pure; the rule set owns copies of its strings. */
#ifndef ENGINE_SELECT_H
#define ENGINE_SELECT_H

#include <stddef.h>

enum select_kind { SELECT_NAME, SELECT_ID, SELECT_LABEL, SELECT_IMAGE };

typedef struct select_rule {
  int kind;
  char *pattern;
} select_rule_t;

typedef struct selection {
  select_rule_t *include, *exclude;
  size_t n_include, n_exclude;
} selection_t;

/* Appends a rule. Returns 0, or -1 when out of memory. */
int selection_add(selection_t *s, int exclude, int kind, const char *pattern);

/* labels: an array of n "key=value" strings. Returns 1 when selected. */
int selection_match(const selection_t *s, const char *id, const char *name, const char *image,
                    const char *const *labels, size_t n);

void selection_free(selection_t *s);

#endif
