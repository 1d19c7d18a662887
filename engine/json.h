/* json.h - the JSON writer for Lua values and records.
 *
 * Writes straight into a strbuf, without a tree in between. Only raw table
 * access is used, so no metamethod runs and nothing raises a Lua error short
 * of running out of memory. Runs on the thread that owns the Lua state.
 *
 * Records are written with the keys time, stream, container, name, image, host,
 * line, then labels and every other field filters set (strings, numbers,
 * booleans, nested tables), except `output` (the routing field, see
 * pipeline.h). The text is valid JSON for any bytes: control characters are
 * escaped and invalid UTF-8 sequences become U+FFFD. */
#ifndef ENGINE_JSON_H
#define ENGINE_JSON_H

#include <stddef.h>
#include "strbuf.h"

struct lua_State;

/* Appends s as a JSON string literal (with the quotes): escapes control
 * characters, '"' and '\\', and replaces invalid UTF-8 with U+FFFD. */
int json_add_string(strbuf_t *b, const char *s, size_t n);

/* The bytes s[0..n) as UTF-8, for writers of other formats (protobuf.h):
 * json_utf8_len is their length once every invalid sequence is replaced by
 * U+FFFD, as json_add_string does; json_add_utf8 appends them so (no
 * quotes, no escapes). json_add_utf8 returns 0, or -1 when out of memory. */
size_t json_utf8_len(const char *s, size_t n);
int json_add_utf8(strbuf_t *b, const char *s, size_t n);

/* Tables that are more than their raw fields (record.h's lazy records) say
 * so through their metatable: under the light userdata key &json_kind_key
 * it holds a light userdata pointing to a json_kind_t, which the writers
 * here use instead of reading the table raw. */
extern const char json_kind_key;
typedef struct json_kind {
  /* Makes every field of the table at idx (absolute) a raw one. */
  void (*materialize)(struct lua_State *L, int idx);
  /* Appends the table at idx (absolute) as json_add_record would write it
   * raw. Returns 0, or -1 when out of memory. */
  int (*add_record)(strbuf_t *b, struct lua_State *L, int idx);
} json_kind_t;

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
 * stream, container, name, image, host, line, labels and output, sorted), with
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

#endif
