/* record.h - a batch's lines as Lua records whose fields are built when
 * they are touched.
 *
 * Filters see each line as a table. Its `line` is set when the record is
 * made; its other original fields (stream, time, container, name, image,
 * labels, truncated when the line was cut, and host, the daemon's name,
 * when the engine follows a list of daemons: container.h, host_field) are
 * read from the batch
 * itself through a metatable shared by the records of one batch, so a filter
 * that does not read them costs nothing for them. Such a record is "lazy".
 * To a filter it is an ordinary table: reading, setting and deleting any
 * field, original or new, behaves as on a plain table. pairs, next, rawget,
 * getmetatable and setmetatable (replaced in the state by record_setup)
 * first turn a lazy record into a plain table with every field set
 * (record_materialize), so they see all its fields and no metatable.
 * A lazy record also answers `id` (record_id), which is no field: it is
 * never stored in the table nor written, setting it raises an error, and
 * a plain table has none.
 *
 * Ownership: a lazy record holds a reference to its batch (batch_ref)
 * through its metatable; the Lua GC drops it once no record of the batch is
 * left. The batch must not change while referenced (see batch.h).
 *
 * Every function runs on the thread that runs the state and may raise a Lua
 * memory error, so it runs inside a protected call, except those said to
 * be unable to fail. idx arguments are absolute stack indices. */
#ifndef ENGINE_RECORD_H
#define ENGINE_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "json.h"

struct lua_State;

/* Sets up lazy records in the state and wraps pairs, next, rawget,
 * getmetatable and setmetatable. Call once, after the standard libraries are
 * open. */
void record_setup(struct lua_State *L);

/* Pushes an array of lazy records, one per line of b, in order. */
void record_push_batch(struct lua_State *L, batch_t *b);

/* 1 when the value at idx is a lazy record, else 0. Can't fail. */
int record_is_lazy(struct lua_State *L, int idx);

/* Makes the lazy record at idx a plain table: every original field it has
 * not deleted or replaced is set, and its metatable is removed. Nothing
 * happens to any other value. */
void record_materialize(struct lua_State *L, int idx);

/* Where a lazy record comes from, for writers that can use the original. */
typedef struct record_origin {
  const batch_t *batch;
  size_t i;         /* its line is batch->recs[i] */
  unsigned changed; /* RECORD_F_* bits of original fields set or deleted */
} record_origin_t;

#define RECORD_F_STREAM (1u << 0)
#define RECORD_F_TIME (1u << 1)
#define RECORD_F_CONTAINER (1u << 2)
#define RECORD_F_NAME (1u << 3)
#define RECORD_F_IMAGE (1u << 4)
#define RECORD_F_LABELS (1u << 5)
#define RECORD_F_TRUNCATED (1u << 6)
#define RECORD_F_HOST (1u << 7)
#define RECORD_N_FIELDS 8

/* Room for the text of an original field (a formatted time and its NUL). */
#define RECORD_TEXT_LEN 31

/* Appends the lazy record at idx as json_add_record would write it once
 * materialized (output.h: same keys, same order, same bytes), straight from
 * the batch, without changing the record. Returns 0, or -1 when out of
 * memory or when idx is not a lazy record. */
int record_add_json(strbuf_t *b, struct lua_State *L, int idx);

/* Bytes of the batches that lazy records still hold (their boxes not yet
 * collected). A filter that keeps a record keeps its whole batch: see
 * record_detach. Can't fail. */
size_t record_held(struct lua_State *L);

/* A lua_CFunction (call it protected, no arguments): makes every lazy
 * record still alive a plain table, so that no record holds a batch any
 * more; the batches go with the next full collection. For when records
 * kept by filters hold too much (record_held). */
int record_detach(struct lua_State *L);

/* Fills o for the lazy record at idx and returns 1; returns 0 for any other
 * value. A lazy record may also have new fields, and a new `line`: read
 * them from the table. Can't fail. */
int record_origin(struct lua_State *L, int idx, record_origin_t *o);

/* The record id (batch.h, batch_rec_id) of the lazy record at idx: writes
 * it and a NUL into out and returns 1; returns 0 for any other value (a
 * record a filter made, or made plain: it has no id). Filters read it as
 * `r.id` (never set on the table, never written by json_add_record; setting
 * it raises an error). Can't fail. */
int record_id(struct lua_State *L, int idx, char out[BATCH_ID_LEN + 1]);

/* For writers reading fields one by one (the wire-format encoders): the
 * original fields a lazy record still takes from its batch, that is those
 * the filters neither set nor deleted and the table holds no raw value for.
 * On any other value, field or name they find nothing. The first three are
 * for a field the caller found no raw value for (lua_rawget gave nil).
 *
 * record_original_text: the text of original field `name` (len bytes):
 * stream, time (formatted into buf), container, name, image, host, or
 * "true" for truncated; NULL for labels (a table) and when there is none. Valid while
 * the record lives. Can't fail. */
const char *record_original_text(struct lua_State *L, int idx, const char *name, size_t len,
                                 char buf[RECORD_TEXT_LEN], size_t *out_len);

/* The line's time (ns) when `time` is original: returns 1, else 0. Can't
 * fail. */
int record_original_time(struct lua_State *L, int idx, int64_t *ns);

/* Pushes the value original field `name` has, as a filter reading it would
 * get it, and returns 1; returns 0 (nothing pushed) when there is none. */
int record_push_original(struct lua_State *L, int idx, const char *name, size_t len);

/* Stores in names the original fields the record has (at most
 * RECORD_N_FIELDS static strings) and returns how many. Can't fail. */
size_t record_original_names(struct lua_State *L, int idx, const char **names);

#endif
