/* output.h - where filtered records go.
 *
 * Outputs are created by pipeline_load from the pipeline's `outputs` list and
 * are called on the pipeline thread with the Lua array of records a batch
 * became after the filters. This version has `stdout`, as JSON lines or
 * plain lines.
 *
 * JSON lines have the keys time, stream, container, name, image, line, then
 * labels and every other field filters set (strings, numbers, booleans,
 * nested tables). The text is valid JSON for any bytes: control characters
 * are escaped and invalid UTF-8 sequences become U+FFFD. */
#ifndef ENGINE_OUTPUT_H
#define ENGINE_OUTPUT_H

#include <stddef.h>

struct lua_State;

typedef struct output output_t;

struct output {
  const char *type;   /* "stdout" */
  char *name;         /* the user's name for it (default: the type) */
  /* Writes the records in the array at stack index idx. Returns 0, or -1
   * with a message in err. Must not raise Lua errors. */
  int (*write)(output_t *o, struct lua_State *L, int idx, char *err, size_t n);
  /* Makes everything written durable/visible. Returns 0 or -1. */
  int (*flush)(output_t *o, char *err, size_t n);
  void (*free)(output_t *o);
};

/* Creates the stdout output. format: "json" or "plain" (the line alone).
 * fd is normally 1. Returns NULL when out of memory. */
output_t *output_stdout_new(const char *name, const char *format, int fd);

/* A growable byte buffer, shared by the encoders. */
typedef struct strbuf {
  char *data;
  size_t len, cap;
} strbuf_t;

/* Each returns 0, or -1 when out of memory (the buffer keeps what it had). */
int strbuf_reserve(strbuf_t *b, size_t more);
int strbuf_add(strbuf_t *b, const char *s, size_t n);
void strbuf_free(strbuf_t *b);

/* Appends s as a JSON string literal (with the quotes): escapes control
 * characters, '"' and '\\', and replaces invalid UTF-8 with U+FFFD. */
int json_add_string(strbuf_t *b, const char *s, size_t n);

/* Appends the record at stack index idx (a Lua table) as one JSON object
 * with the key order documented above, without a newline. Values that JSON
 * cannot hold (functions, userdata) are skipped; nesting deeper than 32 is
 * cut. Never raises a Lua error. */
int json_add_record(strbuf_t *b, struct lua_State *L, int idx);

#endif
