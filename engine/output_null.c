/* output_null.c - the `null` output: takes every record and keeps nothing.
 * For benchmarks and for pipelines whose filters only count or emit
 * elsewhere. */
#include <stdlib.h>
#include <string.h>
#include "output.h"

static int null_write(output_t *o, struct lua_State *L, int idx, char *err, size_t n) { return 0; }

static int null_flush(output_t *o, char *err, size_t n) { return 0; }

static void null_free(output_t *o) {
  free(o->name);
  free(o);
}

output_t *output_null_new(const char *name) {
  output_t *o = calloc(1, sizeof *o);
  if (!o || !(o->name = strdup(name ? name : "null"))) {
    free(o);
    return NULL;
  }
  o->type = "null";
  o->write = null_write;
  o->flush = null_flush;
  o->free = null_free;
  return o;
}
