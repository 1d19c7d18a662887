/* encode_record.h - record access, and the grouped body layout of Loki and
 * OTLP, shared by the wire-format encoders (encode_*.c, see encode.h).
 *
 * Raw table access only: nothing here runs Lua code or raises a Lua error
 * short of running out of memory, and every function leaves the Lua stack as
 * it found it. idx arguments must be absolute stack indices. String pointers
 * returned point into Lua strings held by the record (or into its batch),
 * valid while the record stays on the stack unchanged.
 *
 * A lazy record (record.h) is read as the plain table it would become: its
 * original fields come from its batch, read where it is stored, without
 * making the record a table. Encoders read fields through these functions
 * (and json_add_record), never with lua_rawget on a record. */
#ifndef ENGINE_ENCODE_RECORD_H
#define ENGINE_ENCODE_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "json.h"

struct lua_State;

/* Room for the text of a number field. */
#define ENCODE_NUM_LEN 40

/* Appends the NUL-terminated s. Returns 0, or -1 when out of memory. */
int encode_lit(strbuf_t *b, const char *s);

/* The absolute form of stack index idx. Can't fail. */
int encode_abs(struct lua_State *L, int idx);

/* The record's time: its `time` string parsed as RFC3339 (the whole string),
 * or fallback when `time` is missing, not a string or malformed. */
int64_t encode_record_time(struct lua_State *L, int rec, int64_t fallback);

/* The text of value at idx: a string as it is, a number formatted into num
 * (integers without a fraction, like the JSON encoder), a boolean "true" or
 * "false". Returns NULL (and *len 0) for any other type. */
const char *encode_value_text(struct lua_State *L, int idx, char num[ENCODE_NUM_LEN], size_t *len);

/* Pushes the value of field name[0..len) of the table at t: its raw value,
 * or a lazy record's original field, or nil. */
void encode_push_field(struct lua_State *L, int t, const char *name, size_t len);

/* The text of field `name` of the record at rec (see encode_value_text), or
 * NULL when it is missing or has no text form. */
const char *encode_field_text(struct lua_State *L, int rec, const char *name,
                              char num[ENCODE_NUM_LEN], size_t *len);

/* Appends field `name` of the record as a JSON string literal; "" when the
 * field has no text form. Returns 0, or -1 when out of memory. */
int encode_add_field_string(strbuf_t *b, struct lua_State *L, int rec, const char *name);

/* The string keys of a table, sorted by their bytes. */
typedef struct encode_keys {
  const char **s;
  size_t *len;
  size_t n, cap;
} encode_keys_t;

/* Collects into k the string keys of the table at t whose value is not nil
 * (with a lazy record's original fields), except the n_skip names in skip.
 * Returns 0, or -1 when out of memory. */
int encode_keys_collect(struct lua_State *L, int t, const char *const *skip, size_t n_skip,
                        encode_keys_t *k);

/* Frees the arrays of k; k is empty afterwards. */
void encode_keys_free(encode_keys_t *k);

/* A severity a record states in its `severity` field, else its `level`
 * field. */
typedef struct encode_severity {
  const char *text; /* the field's text, or NULL when neither field has one */
  size_t len;
  const char *field; /* "severity" or "level" */
  int syslog;        /* RFC 5424 severity 0..7, or -1 when not known */
  int otlp;          /* OTLP SeverityNumber 1..24, or 0 when not known */
  char num[ENCODE_NUM_LEN];
} encode_severity_t;

/* Reads the record's severity into sev. Names are matched without regard
 * to case ("error", "warn", "info", ...); an integer 0..7 is taken as the
 * syslog severity. Can't fail. */
void encode_record_severity(struct lua_State *L, int rec, encode_severity_t *sev);

/* Records grouped by a key (Loki streams, OTLP resources), in the order of
 * each group's first record. */
typedef struct encode_groups {
  strbuf_t keys;   /* every group's key, back to back */
  size_t *key_off; /* per group */
  size_t *key_len;
  uint64_t *hash;
  size_t *first; /* per group: its first record, in add order */
  size_t *last;
  size_t n, cap;
  size_t *next; /* per record: the next record of its group, or SIZE_MAX */
  size_t n_rec, cap_rec;
} encode_groups_t;

/* Adds record number rec (0-based; calls in increasing rec order, gaps
 * allowed) to the group of key[0..len), created when new. Returns 0, or -1
 * when out of memory. */
int encode_groups_add(encode_groups_t *g, size_t rec, const char *key, size_t len);

/* Frees everything g holds; g is empty afterwards. */
void encode_groups_free(encode_groups_t *g);

/* Appends to a group key the text of field `name` of the record at rec
 * (see encode_field_text) as "<length>:<bytes>", or "-" when it has none,
 * so that keys built field by field never run together. Returns 0, or -1
 * when out of memory. */
int encode_key_add_field(strbuf_t *key, struct lua_State *L, int rec, const char *name);

/* A body made of groups of records (Loki streams, OTLP resourceLogs):
 *
 *   open, then per group (separated by sep):
 *     head(first record of the group), item(each record of the group,
 *     separated by sep), tail(first record of the group) when set,
 *     group_close
 *   then close.
 *
 * sep is "," when NULL.
 *
 * Groups come in the order of their first record, records in array order;
 * array entries that are not tables are left out. The callbacks get the
 * record's absolute stack index and ud, may use 10 stack slots and must
 * leave the stack as they found it; each returns 0, or -1 when out of
 * memory. */
typedef struct encode_grouping {
  const char *open, *group_close, *close, *sep;
  /* Appends the group key of the record at rec to key (empty on entry). */
  int (*key)(strbuf_t *key, struct lua_State *L, int rec, void *ud);
  int (*head)(strbuf_t *b, struct lua_State *L, int rec, void *ud);
  int (*item)(strbuf_t *b, struct lua_State *L, int rec, void *ud);
  int (*tail)(strbuf_t *b, struct lua_State *L, int rec, void *ud);
  void *ud;
} encode_grouping_t;

/* Appends the records of the array at idx as the grouped body how
 * describes. Returns 0, or -1 when out of memory (b then holds a partial
 * body). */
int encode_grouped(strbuf_t *b, struct lua_State *L, int idx, const encode_grouping_t *how);

#endif
