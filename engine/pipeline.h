/* pipeline.h - the user's pipeline.lua: loading, and the thread that runs
 * its filters and outputs.
 *
 * One Lua state per pipeline, used by one thread at a time: the caller's
 * thread while loading, then the pipeline thread only. The loop thread hands
 * batches over with pipeline_submit and never waits on Lua, so a slow filter
 * delays no reading, stopping or metrics.
 *
 * Every call into Lua goes through one protected call with a traceback
 * handler (pipeline_lua.c: pl_call_protected): filters' process, init,
 * shutdown and timer hooks alike. A filter that raises an error, faults,
 * runs out of Lua memory or runs longer than filter_timeout is logged with
 * the filter's and the container's name, the message and the traceback; its
 * batch then follows the filter's on_error policy ("pass": the batch goes on
 * unchanged, "drop": it is dropped, "dead_letter": it is dropped and written
 * as one JSON line to the dead-letter file). The engine keeps running.
 * "Unchanged" means the array of records as it was before the filter (a
 * filter works on a copy of the array); the records are shared tables, so
 * fields a failing filter already changed in place stay changed. Returning
 * something other than a table or nil, or a record that is not a table with
 * a string `line`, is an error too.
 *
 * Hooks run on the pipeline thread: every filter's init(ctx) when the thread
 * starts (in order; a failing init disables its filter, whose batches then
 * follow its on_error policy), timers between batches when due (the thread
 * wakes for them), shutdown(ctx) once the input has ended (in order). ctx.emit(record) adds a record: from process it
 * follows the filter's result, from a timer or shutdown it starts a batch of
 * its own that goes through the filters after this one. docs/lua-api.md is
 * the user's reference.
 *
 * Outputs (output.h): the pipeline thread encodes each batch's records for
 * every output it is routed to and hands the bodies over; the pipeline's
 * delivery (delivery.h) sends them on the loop. The batch goes to the
 * done callback once every output took it, or gave up on it.
 *
 * Routing: with more than one output (or a routed_only one), a record whose
 * `output` field is a name or a list of names goes only to those outputs;
 * records without one go to every output not marked routed_only.
 *
 * The Lua state has a memory limit (engine.lua_memory, default 64 MiB): an
 * allocation beyond it fails as a Lua error ("not enough memory") in the
 * call that made it.
 *
 * The runaway guard: a count hook checks the call's deadline (and the abort
 * flag) every few thousand VM instructions of interpreted code.
 *
 * Isolation (engine.filter_isolation = "process", the default): the
 * pipeline thread runs the filters in a process of their own
 * (pipeline_worker.c), forked from the loaded program by the zygote
 * (pipeline_zygote.c, pipeline_prefork), with the JIT compiler on; the
 * thread hands it each batch
 * and takes the records it encoded for each output. A call there that the
 * hook cannot reach (compiled code, one C call) is ended past filter_timeout
 * by killing the process, and a process that dies (FFI) is reported; either
 * way the batch follows the filter's on_error and a new process starts
 * (init hooks again; Lua state lost). With "thread" the filters run on the
 * pipeline thread with the JIT compiler off: a call stuck in one C function
 * is interrupted only when it returns, and a crash ends the engine. */
#ifndef ENGINE_PIPELINE_H
#define ENGINE_PIPELINE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "batch.h"
#include "config.h"

typedef struct pipeline pipeline_t;

/* Loads and checks path: runs it in a new Lua state, validates the table it
 * returns, creates its outputs (nothing is opened or written: that is
 * pipeline_start_outputs's work) and fills cfg (which must hold the
 * defaults).
 * lua_dir is the engine's Lua library folder (lua/), for require.
 * Returns NULL with a message "file:line: message" (or "file: message" for
 * a validation error) in err. */
pipeline_t *pipeline_load(const char *path, const char *lua_dir, config_t *cfg, char *err,
                          size_t errlen);

/* Loop thread, before pipeline_start: starts the outputs on loop (opens
 * files, creates handles). Returns 0, or -1 with a message in err (an output
 * that cannot start); the outputs are closed by pipeline_close_outputs
 * either way. pipeline_start calls it when it has not run. */
int pipeline_start_outputs(pipeline_t *p, uv_loop_t *loop, char *err, size_t errlen);

/* Loop thread: bodies the outputs hold (waiting or being sent). */
size_t pipeline_outputs_pending(pipeline_t *p);

/* Loop thread, once the pipeline thread has exited: lets the outputs
 * deliver what they hold for up to grace_ms, then closes them; what is left
 * is not acknowledged (the next run reads it again). closed(ud) runs on the
 * loop once every output is closed. */
void pipeline_close_outputs(pipeline_t *p, uint64_t grace_ms, void (*closed)(void *ud), void *ud);

/* As pipeline_load, with the pipeline's text in source (copied) instead of
 * a file; name stands for the file in messages ("name:line: message") and
 * its folder is searched first by require. A reload runs source again. */
pipeline_t *pipeline_load_source(const char *name, const char *source, const char *lua_dir,
                                 config_t *cfg, char *err, size_t errlen);

/* Checks path as pipeline_load would, with no side effect: no output or
 * dead-letter file is created or opened for writing (the folders they would
 * be in are checked instead). Returns 0, or -1 with every mistake found, one
 * a line, in err. */
int pipeline_check(const char *path, const char *lua_dir, char *err, size_t errlen);

/* Before the process has a thread but the caller's (engine_run calls it
 * first; pipeline_start too): when the pipeline's filters run in processes
 * (engine.filter_isolation = "process"), forks the zygote, a
 * single-threaded process that holds the loaded program and forks the
 * filter processes (pipeline_zygote.c). Returns 0 (also when there is
 * nothing to do, or done already), or -1 (logged: filter processes then
 * fork from the pipeline thread). */
int pipeline_prefork(pipeline_t *p);

/* Starts the pipeline thread. on_exit is called on the loop thread (through
 * a uv_async_t the pipeline owns) once the thread has exited after
 * pipeline_finish or pipeline_abort. Returns 0, or -1 (nothing started, and
 * on_exit will never be called; the loop must still run once to close the
 * async handle before pipeline_free). */
int pipeline_start(pipeline_t *p, uv_loop_t *loop, void (*on_exit)(void *ud), void *ud);

/* Before pipeline_start: cb(ud, sel) runs on the pipeline thread after each
 * successful reload with the new file's container selection, which cb must
 * take over (copy the struct; the pipeline forgets it). */
void pipeline_set_reloaded(pipeline_t *p, void (*cb)(void *ud, selection_t *sel), void *ud);

/* Before pipeline_start: the records are offered to tap's clients (tap.h)
 * at the input, after each filter and at each output. tap (owned by the
 * caller) must outlive the pipeline thread. NULL: no tap. */
struct tap;
void pipeline_set_tap(pipeline_t *p, struct tap *tap);

/* Loop thread: the outputs now taking records (at most max into out);
 * returns how many there are. */
struct output;
size_t pipeline_outputs(pipeline_t *p, struct output **out, size_t max);

/* Before pipeline_start: who takes each batch once the filters and outputs
 * are done with it (on the pipeline thread; it then owns the batch). By
 * default the pipeline frees it. */
void pipeline_set_done(pipeline_t *p, void (*done)(void *ud, batch_t *b), void *ud);

/* Hands a batch to the pipeline thread, which owns it from now on. Thread-safe,
 * never blocks on Lua. Batches are processed in the order submitted. */
void pipeline_submit(pipeline_t *p, batch_t *b);

/* Ends the input: the thread processes what is queued, hands it to the
 * outputs and exits, then on_exit runs on the loop. Returns at once. Idempotent. */
void pipeline_finish(pipeline_t *p);

/* Asks the running filter call to stop as soon as it can (as if its
 * filter_timeout had passed); batches not yet started are still passed to
 * the outputs unfiltered, so nothing is lost. Ends the input as
 * pipeline_finish does. For a stop that ran out of time. Thread-safe,
 * idempotent. */
void pipeline_abort(pipeline_t *p);

/* Like pipeline_abort, and the batches not yet started are dropped without
 * being written or acknowledged (their lines stay behind the cursors, so a
 * next run reads them again). For a stop about to run out of time.
 * Thread-safe, idempotent. */
void pipeline_discard(pipeline_t *p);

/* Loop thread, after on_exit: joins the thread and closes the async handle
 * (its close callback counts it, see handles.h). */
void pipeline_close(pipeline_t *p);

/* Counts since start, readable from any thread. batches counts the batches
 * processed (filters run and outputs written). filter_timeouts counts the
 * filter calls the runaway guard stopped (timeout or abort), filter_errors
 * every other failed filter call (hooks included); records_out counts the
 * records handed to the outputs, records_unrouted those whose `output`
 * named no existing output; dead_letters the batches written to dead-letter
 * files; reloads and reload_failures the hot reloads; lua_bytes the memory
 * the Lua state holds now. batches_pending counts the batches submitted and
 * not yet processed (or dropped at stop); stalled_for is 0 when there is
 * none, else the seconds since the thread last finished a batch or, if it
 * had none to do until then, since the oldest pending one arrived. */
typedef struct pipeline_stats {
  unsigned long long batches, records_in, records_out, filter_errors, filter_timeouts,
      output_errors;
  unsigned long long records_unrouted, dead_letters, reloads, reload_failures, lua_bytes;
  unsigned long long batches_pending;
  double stalled_for;
} pipeline_stats_t;
void pipeline_stats(pipeline_t *p, pipeline_stats_t *out);

/* Asks for a hot reload of path: the pipeline thread loads and validates it
 * in a new Lua state between two batches. On failure the running pipeline
 * stays and the log says why; on success the old filters' shutdown hooks
 * run, outputs whose name and settings are unchanged are kept as they are
 * (with what they hold), new outputs start, dropped outputs deliver what
 * they hold (delivery.h) and close, the new filters' init hooks run, and
 * the next batch goes through the new filters. No batch is lost or
 * processed twice. Settings outside filters,
 * outputs, dead_letter, engine.filter_timeout and engine.lua_memory keep
 * their values until a restart. Thread-safe (not async-signal-safe), returns
 * at once; a second request before the first is handled replaces it.
 * Returns 0, or -1 when out of memory. */
int pipeline_reload(pipeline_t *p, const char *path);

/* Asks the outputs and every dead-letter file to reopen their files before
 * the next write, for an external logrotate. Thread-safe (sets flags and
 * wakes the loop). */
void pipeline_reopen(pipeline_t *p);

/* Upper bounds (seconds) of the filter duration histogram's buckets; a
 * last, unbounded bucket follows. */
#define PIPELINE_DURATION_BUCKETS 10
extern const double pipeline_duration_bounds[PIPELINE_DURATION_BUCKETS];

/* One filter's counts since it was loaded (a reload starts them again). */
typedef struct pipeline_filter_stats {
  char name[64];
  unsigned long long calls, errors, timeouts, dead_letters;
  /* process calls by duration: buckets[i] counts calls <= bounds[i] (not
   * cumulative); buckets[PIPELINE_DURATION_BUCKETS] the slower ones */
  unsigned long long buckets[PIPELINE_DURATION_BUCKETS + 1];
  unsigned long long duration_ns; /* the sum */
  int disabled;                   /* its init failed */
  char on_error[16];              /* "pass", "drop" or "dead_letter" */
} pipeline_filter_stats_t;

/* Copies the counts of up to max filters into out; returns the number of
 * filters (may exceed max). Thread-safe. */
size_t pipeline_filter_stats(pipeline_t *p, pipeline_filter_stats_t *out, size_t max);

/* An output's name and type (status.h). */
typedef struct pipeline_output_info {
  char name[64];
  char type[24];
  int routed_only;
} pipeline_output_info_t;

/* Closes the Lua state and outputs. pipeline_close must have run (or the
 * pipeline never started) and the loop must have run the close callback.
 * NULL is ignored. */
void pipeline_free(pipeline_t *p);

#endif
