/* output_nats.h - the `nats` output's subject template (nats_subject.c),
 * pure functions for the specs.
 *
 * A template like "logs.{name}" is literal text and {field} parts; a
 * field's value in a record becomes one subject token through nats_token. */
#ifndef ENGINE_OUTPUT_NATS_H
#define ENGINE_OUTPUT_NATS_H

#include <stddef.h>

#define NATS_TEMPLATE_MAX 16

typedef struct nats_part {
  int field; /* 1: text is a record field's name; 0: literal text */
  char text[128];
} nats_part_t;

typedef struct nats_template {
  int n;
  nats_part_t parts[NATS_TEMPLATE_MAX];
} nats_template_t;

/* Parses text into t. Returns 0, or -1 with why in err (what follows "the
 * subject template"): empty, an unclosed or empty {field}, a field name
 * other than letters, digits and _, spaces, * or > outside a field, an
 * empty token. */
int nats_template_parse(nats_template_t *t, const char *text, char *err, size_t n);

/* Writes in[0..len) to out as one subject token: spaces and control
 * characters, '.', '*' and '>' become '_'; an empty value is "_". out
 * holds len bytes, 1 at least. Returns the bytes written. Can't fail. */
size_t nats_token(const char *in, size_t len, char *out);

#endif
