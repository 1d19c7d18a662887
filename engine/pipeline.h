/* pipeline.h - the user's pipeline.lua: loading, and the thread that runs
 * its filters and outputs.
 *
 * One Lua state per pipeline, used by one thread at a time: the caller's
 * thread while loading, then the pipeline thread only. The loop thread hands
 * batches over with pipeline_submit and never waits on Lua, so a slow filter
 * delays no reading, stopping or metrics.
 *
 * Every call into Lua goes through one protected call with a traceback
 * handler (pipeline.c: lua_call_protected). A filter that raises an error, faults,
 * or runs longer than filter_timeout is logged with the filter's and the
 * container's name, the message and the traceback; its batch then follows
 * the filter's on_error policy ("pass": the batch goes on unchanged, "drop":
 * it is dropped). The engine keeps running. "Unchanged" means the array of
 * records as it was before the filter (a filter works on a copy of the
 * array); the records are shared tables, so fields a failing filter already
 * changed in place stay changed. Returning something other than a table or
 * nil, or a record that is not a table with a string `line`, is an error too.
 * Filters get (batch, ctx); ctx = {name, container, filter} is one table per
 * batch, shared by its filters. print() writes to the engine's log; os.exit
 * and jit.on raise errors.
 *
 * The runaway guard: filters run with LuaJIT's JIT compiler off and a count
 * hook that checks the call's deadline (and the abort flag) every few
 * thousand VM instructions. A call stuck inside one C function (a huge
 * string.rep, a pathological pattern) is interrupted when that function
 * returns. */
#ifndef ENGINE_PIPELINE_H
#define ENGINE_PIPELINE_H

#include <stddef.h>
#include <uv.h>
#include "batch.h"
#include "config.h"

typedef struct pipeline pipeline_t;

/* Loads and checks path: runs it in a new Lua state, validates the table it
 * returns, opens its outputs and fills cfg (which must hold the defaults).
 * lua_dir is the engine's Lua library folder (lua/), for require.
 * Returns NULL with a message "file:line: message" (or "file: message" for
 * a validation error) in err. */
pipeline_t *pipeline_load(const char *path, const char *lua_dir,
                          config_t *cfg, char *err, size_t errlen);

/* Starts the pipeline thread. on_exit is called on the loop thread (through
 * a uv_async_t the pipeline owns) once the thread has exited after
 * pipeline_finish or pipeline_abort. Returns 0, or -1 (nothing started, and
 * on_exit will never be called; the loop must still run once to close the
 * async handle before pipeline_free). */
int pipeline_start(pipeline_t *p, uv_loop_t *loop, void (*on_exit)(void *ud),
                   void *ud);

/* Hands a batch to the pipeline thread, which owns it from now on. Thread-safe,
 * never blocks on Lua. Batches are processed in the order submitted. */
void pipeline_submit(pipeline_t *p, batch_t *b);

/* Ends the input: the thread processes what is queued, flushes the outputs
 * and exits, then on_exit runs on the loop. Returns at once. Idempotent. */
void pipeline_finish(pipeline_t *p);

/* Asks the running filter call to stop as soon as it can (as if its
 * filter_timeout had passed); batches not yet started are still passed to
 * the outputs unfiltered, so nothing is lost. Ends the input as
 * pipeline_finish does. For a stop that ran out of time. Thread-safe,
 * idempotent. */
void pipeline_abort(pipeline_t *p);

/* Loop thread, after on_exit: joins the thread and closes the async handle
 * (its close callback counts it, see uvh.h). */
void pipeline_close(pipeline_t *p);

/* Counts since start, readable from any thread. filter_timeouts counts the
 * filter calls the runaway guard stopped (timeout or abort), filter_errors
 * every other failed filter call; records_out counts the records handed to
 * the outputs. */
typedef struct pipeline_stats {
  unsigned long long batches, records_in, records_out, filter_errors,
      filter_timeouts, output_errors;
} pipeline_stats_t;
void pipeline_stats(pipeline_t *p, pipeline_stats_t *out);

/* Closes the Lua state and outputs. pipeline_close must have run (or the
 * pipeline never started) and the loop must have run the close callback.
 * NULL is ignored. */
void pipeline_free(pipeline_t *p);

#endif
