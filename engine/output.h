/* output.h - where filtered records go.
 *
 * Outputs are created by pipeline_load from the pipeline's `outputs` list and
 * are called on the pipeline thread with the Lua array of records a batch
 * became after the filters (after routing: only the records meant for the
 * output). Types: `stdout` and `file` (output_file.c), each as JSON lines or
 * plain lines.
 *
 * JSON lines have the keys time, stream, container, name, image, line, then
 * labels and every other field filters set (strings, numbers, booleans,
 * nested tables), except `output` (the routing field, see pipeline.h). The text is valid JSON for any bytes: control characters
 * are escaped and invalid UTF-8 sequences become U+FFFD. */
#ifndef ENGINE_OUTPUT_H
#define ENGINE_OUTPUT_H

#include <stddef.h>

struct lua_State;

typedef struct output output_t;

struct output {
  const char *type;   /* "stdout" or "file" */
  char *name;         /* the user's name for it (default: the type) */
  int routed_only;    /* receives only records whose `output` names it */
  /* Writes the records in the array at stack index idx. Returns 0, or -1
   * with a message in err. Must not raise Lua errors. Records may be lazy
   * (record.h): read them through json_add_record and encode_record.h, which
   * take their original fields from the batch, never with raw table access. */
  int (*write)(output_t *o, struct lua_State *L, int idx, char *err, size_t n);
  /* Makes everything written durable/visible. Returns 0 or -1. */
  int (*flush)(output_t *o, char *err, size_t n);
  void (*free)(output_t *o);
  /* Reopens the destination (after an external rotation). NULL when the
   * output has nothing to reopen. Returns 0, or -1 with a message in err. */
  int (*reopen)(output_t *o, char *err, size_t n);
};

/* Creates the null output: every write succeeds and keeps nothing. Returns
 * NULL when out of memory. */
output_t *output_null_new(const char *name);

/* Creates the stdout output. format: "json" or "plain" (the line alone).
 * fd is normally 1. Returns NULL when out of memory. */
output_t *output_stdout_new(const char *name, const char *format, int fd);

/* Creates the file output: appends to path (created 0644 when missing).
 * With max_bytes > 0 the file is rotated before a write would take it past
 * max_bytes: path.1 .. path.<keep> hold the older files, the oldest beyond
 * keep is deleted (keep 0: the file is just truncated). reopen opens path
 * afresh, for an external logrotate. Returns NULL with a message in err when
 * the file cannot be opened or memory runs out. */
output_t *output_file_new(const char *name, const char *path, const char *format,
                          size_t max_bytes, int keep, char *err, size_t n);

/* Writes all n bytes to fd, retrying after EINTR and partial writes.
 * Returns 0, or -1 with errno set (EIO when write makes no progress). */
int output_write_all(int fd, const char *p, size_t n);

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

/* Appends any Lua value at stack index idx as JSON (tables as arrays when
 * their keys are exactly 1..n, else as objects with sorted keys; a NULL
 * light userdata is null). Returns 0, 1 when the value has no JSON form
 * (nothing was appended), or -1 when out of memory. Never raises. */
int json_add_lua(strbuf_t *b, struct lua_State *L, int idx);

/* Pieces of json_add_record, for writers of records kept elsewhere
 * (record.h). json_add_key appends ,"key": (no comma before the first
 * member: *first tracks that). json_add_member appends a member whose value
 * is at stack index vidx, nested as a record's field; a value JSON cannot
 * hold writes nothing, key included. json_add_record_rest appends the
 * members json_add_record writes after its fixed ones (every key but time,
 * stream, container, name, image, line, labels and output, sorted), with
 * "truncated":true among them when truncated is set. Each returns 0, or -1
 * when out of memory. */
int json_add_key(strbuf_t *b, const char *key, size_t len, int *first);
int json_add_member(strbuf_t *b, struct lua_State *L, const char *key, size_t len, int vidx,
                    int *first);
int json_add_record_rest(strbuf_t *b, struct lua_State *L, int idx, int truncated, int *first);

/* Returns n when the table at stack index idx (absolute) has exactly the
 * keys 1..n (n > 0), else 0: whether it is written as an array. Uses two
 * stack slots. Never raises. */
size_t json_array_len(struct lua_State *L, int idx);

/* Appends the records of the array at idx, one line each: JSON objects
 * (json_add_record), or with plain set their `line` field alone (records
 * without a string line are skipped). Returns 0, or -1 when out of
 * memory. */
int output_encode_batch(strbuf_t *b, struct lua_State *L, int idx, int plain);

#endif
