/* pipeline_internal.h - what the pipeline's files share (private to
 * engine/pipeline*.c; the public API is pipeline.h).
 *
 *   pipeline.c         program load and free, the thread, the queue, timers,
 *                      reload and the functions of pipeline.h
 *   pipeline_lua.c     the Lua state plumbing: capped allocator, runaway
 *                      guard, traceback handler, the protected call, the
 *                      sandbox, ctx.emit
 *   pipeline_config.c  the validated pipeline.lua table into the program
 *                      (filters, outputs) and the config
 *   pipeline_run.c     one batch or hook through the filters and outputs
 *
 * Ownership: the pipeline owns the current program (p->prog), the queued
 * batches and the thread. A program owns its Lua state, its filters and its
 * outputs; a filter owns its name, timers, selection and dead-letter file.
 * program_free (pipeline.c) releases all of a program.
 *
 * Threads: a program is built (pipeline_load, or a reload) on one thread
 * and afterwards used by the pipeline thread only; everything declared here
 * runs on the thread that owns the program's Lua state. The exceptions are
 * marked at the fields: the counters (atomics, read by pipeline_stats and
 * pipeline_filter_stats from any thread), the queue (under mu) and p->prog
 * (swapped under prog_mu). */
#ifndef ENGINE_PIPELINE_INTERNAL_H
#define ENGINE_PIPELINE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <lua.h>

#include "delivery.h"
#include "ticket.h"
#include "output.h"
#include "pipeline.h"
#include "select.h"

#define PIPELINE_ERR_MAX 8192 /* several validation mistakes, one a line */
#define PIPELINE_TB_MAX 4096
#define LUA_MEMORY_DEFAULT ((size_t)64 << 20)
/* What an output a reload dropped gets to deliver what it holds. */
#define PIPELINE_RELOAD_GRACE_MS 30000

enum { ON_ERROR_PASS, ON_ERROR_DROP, ON_ERROR_DEAD_LETTER };
enum { CALL_OK, CALL_ERROR, CALL_TIMEOUT };
enum { HOOK_INIT, HOOK_TIMER, HOOK_SHUTDOWN };

/* The names of the on_error policies, indexed by ON_ERROR_* (pipeline_config.c). */
extern const char *const pl_on_error_names[3];

typedef struct ltimer {
  double every; /* seconds */
  int64_t due;  /* CLOCK_MONOTONIC ns */
  int ref;      /* the handler, in the registry */
} ltimer_t;

/* A filter's counts, in memory shared with the filter processes
 * (pl_shared_calloc; for a reload's program, a memfd the zygote maps too):
 * what a filter process counts is the engine's. */
typedef struct filter_counts {
  atomic_int disabled; /* its init failed */
  atomic_ullong calls, errors, timeouts, dead_letters;
  atomic_ullong buckets[PIPELINE_DURATION_BUCKETS + 1], duration_ns;
} filter_counts_t;

typedef struct filter {
  char *name;
  int on_error;
  int process_ref, init_ref, shutdown_ref; /* LUA_NOREF when absent */
  int state_ref;                           /* ctx.state: a table private to the filter */
  ltimer_t *timers;
  size_t n_timers;
  selection_t *sel; /* NULL: every batch */
  char *dl_path;    /* dead-letter file, with on_error = "dead_letter" */
  int dl_fd;
  filter_counts_t *n; /* its entry in the program's counts */
} filter_t;

/* The capped allocator's account. Written by the thread that runs the
 * state only; read by pipeline_stats. */
typedef struct lmem {
  atomic_size_t used;
  size_t limit;
  lua_Alloc base; /* LuaJIT's own allocator, which does the work */
  void *base_ud;
} lmem_t;

/* What one pipeline.lua became. */
typedef struct program {
  lua_State *L;
  lmem_t mem;
  int handler_ref; /* traceback_handler closure */
  int run_ref;     /* pl_run_batch */
  int hook_ref;    /* pl_run_hook */
  int emit_ref;    /* the ctx.emit closure */
  int emitbuf_ref; /* the table ctx.emit appends to (its upvalue) */
  filter_t *filters;
  size_t n_filters;
  filter_counts_t *counts; /* one per filter, shared (pl_shared_calloc) */
  output_t **outputs;
  size_t n_outputs;
  int outputs_taken;           /* a delivery owns the outputs: program_free leaves them */
  const struct program *reuse; /* while loading for a reload: the running
                                  program, whose unchanged outputs are kept */
  int routing;                 /* look at records' `output`: several outputs or a routed_only one */
  double filter_timeout;
  int isolate;    /* engine.filter_isolation = "process" */
  int report;     /* log errors of protected calls (not while loading) */
  int detached;   /* kept records were made plain tables (logged once) */
  int check_only; /* pipeline_check: open no file (outputs are null outputs) */
} program_t;

/* The runaway guard's view of the current call (pipeline thread only). */
typedef struct guard {
  int on;           /* a filter call: the deadline applies */
  int loading;      /* running a file's top level */
  double timeout;   /* the call's bound, for the message */
  int64_t deadline; /* CLOCK_MONOTONIC_COARSE ns; 0: none */
  int tripped;      /* the guard raised the error of this call */
} guard_t;

typedef struct pipeline_counters {
  atomic_ullong batches, records_in, records_out, filter_errors, filter_timeouts, output_errors,
      records_unrouted, dead_letters, reloads, reload_failures;
  atomic_ullong submitted, settled; /* batches queued; processed or dropped */
  atomic_llong progress_ns; /* CLOCK_MONOTONIC: last batch settled, or work arrived when idle */
  /* The filter process's current call (pipeline_worker.c): the filter's
   * index (-1: none), and when it began (CLOCK_MONOTONIC ns). */
  atomic_int call_filter;
  atomic_llong call_started_ns;
  atomic_size_t child_lua_bytes; /* the filter process's Lua state */
} pipeline_counters_t;

typedef struct pl_worker pl_worker_t;

struct pipeline {
  void (*on_batch_done)(void *ud, batch_t *b);   /* takes processed batches (pipeline_set_done) */
  ticket_t *ticket;                              /* the batch being processed (pipeline thread) */
  void (*on_reload)(void *ud, selection_t *sel); /* pipeline_set_reloaded */
  void *reload_ud;
  void *batch_done_ud;
  struct tap *tap; /* pipeline_set_tap; NULL: none */
  program_t *prog; /* swapped under prog_mu by the thread only */
  pthread_mutex_t prog_mu;
  char *lua_dir;
  char *source;   /* the pipeline's text when loaded from a string
                             * (pipeline_load_source); NULL: read the file */
  int check_only; /* pipeline_check: see program_t */
  int simulated;  /* a test run (pl_sim_*): no thread, the clock is sim_now */
  int64_t sim_now;

  guard_t guard;
  int escalated; /* the hook runs on every instruction */
  atomic_int aborted;
  atomic_int discard;         /* pipeline_discard: queued batches are dropped */
  atomic_ullong discarded;    /* records dropped so */
  char err[PIPELINE_ERR_MAX]; /* message of the last failed call */
  char tb[PIPELINE_TB_MAX];   /* its traceback */

  /* ctx.emit's view of the running hook (pipeline thread only) */
  int emit_on;
  const container_t *emit_c; /* the batch's container; NULL in hooks */
  const filter_t *emit_f;
  size_t n_emitted;
  strbuf_t dlbuf; /* dead-letter lines */

  pthread_mutex_t mu;
  pthread_cond_t cv;     /* on CLOCK_MONOTONIC, for timers */
  batch_t *head, *tail;  /* under mu */
  int finishing, exited; /* under mu */
  char *reload_path;     /* under mu: a reload asked for */
  atomic_int reopen;     /* filters' dead-letter files (pipeline thread) */
  atomic_int done;       /* the thread has finished its work */
  pthread_t thread;
  int thread_started, joined;
  uv_async_t async;
  int async_open, exit_called;
  delivery_t *delivery; /* the outputs' loop side, from pipeline_start_outputs */
  void (*on_exit)(void *ud);
  void *ud;

  /* In memory shared with the filter process (pl_shared_calloc), so that
   * the counts it makes are the engine's. */
  pipeline_counters_t *stats;

  /* The filter process (pipeline_worker.c); isolate: engine.filter_isolation
   * is "process" (pipeline thread only) */
  int isolate;
  pl_worker_t *worker;
  int64_t worker_tried; /* CLOCK_MONOTONIC ns: the last start of one */
  /* The zygote (pipeline_zygote.c): pid (0: none) and its channel (the
   * pipeline thread's, or the loop thread's before it starts); current:
   * the zygote holds p->prog, so workers fork from it. */
  pid_t zygote_pid;
  int zygote_fd;
  int zygote_current;
  /* in the filter process only */
  int in_worker;  /* this is the filter process */
  int worker_fd;  /* its end of the channel */
  int in_batch;   /* the bodies it sends belong to the batch */
  char *tap_want; /* the tap points wanted for the batch */
  size_t n_tap_want;
  /* pl_fallback_batch's view (the thread, after the process failed) */
  const unsigned char *fb_sent; /* outputs that got the batch already */
};

static inline int64_t pl_clock_ns(clockid_t id) {
  struct timespec ts;

  clock_gettime(id, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Adds n to counter c (relaxed: the counters order nothing). */
static inline void pl_count(atomic_ullong *c, unsigned long long n) {
  atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* Zeroed memory for n items of size bytes shared with the filter process
 * (MAP_SHARED): the counters and the filters. NULL when out of memory.
 * pl_shared_free(NULL) does nothing. */
void *pl_shared_calloc(size_t n, size_t size);
void pl_shared_free(void *ptr);
/* As pl_shared_calloc, in a memfd (close-on-exec) returned in *fd, which
 * another process maps with pl_shared_map(fd, n, size) (NULL when the file
 * is not of that size, or out of memory). pl_shared_free frees either. */
void *pl_shared_fd_calloc(size_t n, size_t size, int *fd);
void *pl_shared_map(int fd, size_t n, size_t size);

/* ---- pipeline_worker.c: the filter process ---- */

/* The thread: starts a filter process for g (init hooks run in it).
 * Returns 0, or -1 when it could not start or died starting (reported). */
int pl_worker_start(pipeline_t *p, program_t *g);

/* The filter process's and the zygote's channels (socket pairs): writes or
 * reads all n bytes, going on after EINTR. -1 when the other end is gone
 * or failed. */
int pl_send_all(int fd, const void *data, size_t n);
int pl_recv_all(int fd, void *data, size_t n);
/* The thread: runs b through the process; its bodies go to g's outputs
 * under t; sent (g->n_outputs flags) marks the outputs that got one.
 * Returns 0; or -1 when the process failed (reported and gone: the caller
 * applies on_error, pl_fallback_batch) with the message in msg and the
 * failed filter's index in *filter (-1: none). */
int pl_worker_batch(pipeline_t *p, program_t *g, batch_t *b, ticket_t *t, unsigned char *sent,
                    char *msg, size_t n, int *filter);
/* The thread: runs the process's due timers. Returns 0, or -1 (it failed:
 * reported and gone). */
int pl_worker_tick(pipeline_t *p, program_t *g);
/* The thread: the process's next timer (CLOCK_MONOTONIC ns), 0: none. */
int64_t pl_worker_due(const pipeline_t *p);
/* The thread: ends the process; with shutdown its shutdown hooks run
 * first (what they emit goes to g's outputs). */
void pl_worker_stop(pipeline_t *p, program_t *g, int shutdown);
/* The process: encodes the records at idx for output o of g and sends
 * them. Returns 0, or -1 when out of memory. */
int pl_worker_write(pipeline_t *p, program_t *g, output_t *o, lua_State *L, int idx);
/* The process: whether a tap client wants the batch's records at point. */
int pl_worker_tap_wanted(const pipeline_t *p, int point, const char *name);
/* The process: sends records encoded for a tap client. */
void pl_worker_tap(pipeline_t *p, int point, const char *name, const char *cname, const char *data,
                   size_t len);

/* The process forked for a filter process: runs it, never returns. g is
 * the program, fd its end of the channel, parent the process that forked
 * it (the engine, or the zygote). */
void pl_worker_main(pipeline_t *p, program_t *g, int fd, pid_t parent);
/* Closes every descriptor but stdio, keep and g's dead-letter files; with
 * hold each one's number stays taken (by /dev/null). */
void pl_close_fds(const program_t *g, int keep, int hold);

/* Opens each filter's dead-letter file again by its path (after SIGUSR1,
 * and in a filter process as it starts: the file may have been rotated
 * since the program was loaded), closing the descriptor it had; one that
 * cannot be opened is logged and keeps the old one. */
void pl_reopen_dead_letters(program_t *g);

/* Closes each filter's dead-letter file (the zygote holds none: a rotated
 * file is not kept open, and each filter process opens its own). */
void pl_close_dead_letters(program_t *g);

/* ---- pipeline_zygote.c: the single-threaded process workers fork from ---- */

/* Forks a worker from the zygote: its pid and the engine's end of its
 * channel. Returns 0, or -1 (the zygote is gone: stopped, and
 * p->zygote_pid is 0). */
int pl_zygote_fork(pipeline_t *p, pid_t *pid, int *fd);
/* Reaps the zygote's worker pid (killed or exited): its wait status in
 * *status. Returns 0, or -1 (the zygote is gone). */
int pl_zygote_wait(pipeline_t *p, pid_t pid, int *status);
/* A reload loaded g from source (path in messages): the zygote loads the
 * same, and g's counts move to memory the zygote maps too. When it fails
 * (logged), p->zygote_current is 0: workers fork from the pipeline thread. */
void pl_zygote_load(pipeline_t *p, program_t *g, const char *path, const char *source);
/* Ends the zygote (it kills and reaps the workers it still has) and reaps
 * it. Nothing when there is none. */
void pl_zygote_stop(pipeline_t *p);

/* ---- pipeline_lua.c ---- */

/* The lua_Alloc of every program's state; ud is the program's lmem_t.
 * Growing past the limit returns NULL; shrinking and freeing cannot fail. */
void *pl_capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

/* Registers the traceback handler, pl_run_batch, pl_run_hook and ctx.emit
 * of a new state in g's refs and installs the runaway guard. Call once,
 * before any Lua code runs; cannot fail. */
void pl_program_register(pipeline_t *p, program_t *g);

/* lua_CFunction, run through pl_call_protected: opens the libraries and
 * sandboxes the state. Arguments: the pipeline's path, the engine's Lua
 * folder. Raises on out of memory. */
int pl_setup_state(lua_State *L);

/* lua_CFunction: writable(path, is_dir) returns nil when the engine could
 * write the file path (it exists and is writable, or its folder does and
 * is) or, with is_dir, create or use the folder path; else a message why
 * not. Opens and creates nothing (access(2) only). For `engine check`. */
int pl_writable(lua_State *L);

/* Calls the function under its nargs arguments on top of g->L (like
 * lua_pcall) with the traceback handler, under the runaway guard when
 * guarded. Returns CALL_OK; or CALL_ERROR / CALL_TIMEOUT with the message in
 * p->err, the traceback in p->tb, the error logged when g->report, and the
 * function and arguments gone from the stack. Never raises. */
int pl_call_protected(pipeline_t *p, program_t *g, int nargs, int nres, const char *what,
                      const char *container, int guarded);

/* Logs a failed call (what, the container's name or NULL, the message, the
 * traceback or ""). Cannot fail. */
void pl_report_error(const char *what, const char *container, const char *msg, const char *tb);

/* Moves what ctx.emit collected to the end of the array at stack index dest
 * (0: discards it) and empties the emit buffer. */
void pl_take_emitted(pipeline_t *p, program_t *g, int dest);

/* ---- pipeline_config.c ---- */

/* lua_CFunction, run through pl_call_protected: copies the validated table
 * (argument 1) into the program (argument 2, a light userdata) and the
 * config (argument 3). Outputs whose settings g->reuse has unchanged are
 * that program's, kept; others are created (not started: nothing is opened
 * yet). Raises on out of memory; what it had copied stays in g and cfg for
 * their usual free. With g->check_only dead-letter files stay closed. */
int pl_copy_config(lua_State *L);

/* ---- pipeline_run.c ---- */

/* lua_CFunction for g->run_ref: runs the batch (argument 3) through the
 * filters and outputs. Arguments 1, 2: pipeline, program. */
int pl_run_batch(lua_State *L);

/* lua_CFunction for g->hook_ref: runs one hook of filter i (argument 3),
 * kind HOOK_* (argument 4), timer index (argument 5). Arguments 1, 2:
 * pipeline, program. */
int pl_run_hook(lua_State *L);

/* Runs batch b through program g in a protected call, then collects
 * garbage in proportion to it. Counts it; b stays the caller's. Cannot
 * fail (errors are logged and counted). */
void pl_process_batch(pipeline_t *p, program_t *g, batch_t *b);

/* Runs hook kind (HOOK_*) of filter i, timer t, in a protected call. What
 * it emits goes through the filters after i. Cannot fail (errors are logged
 * and counted; a failed init disables the filter). */
void pl_call_hook(pipeline_t *p, program_t *g, size_t i, int kind, size_t t);

/* The thread, after the filter process failed on b (pl_worker_batch):
 * applies the on_error of filter f (-1: "pass") to the batch as it came
 * in: "pass" writes it unfiltered to the outputs sent does not mark,
 * "dead_letter" writes it to f's dead-letter file with msg, "drop" drops
 * it. Cannot fail (errors are logged and counted). */
void pl_fallback_batch(pipeline_t *p, program_t *g, batch_t *b, int f, const char *msg,
                       const unsigned char *sent);

/* The first filter that takes batches of c (-1: none). */
int pl_first_filter(const program_t *g, const container_t *c);

/* Runs a full garbage collection when g's state holds more than 3/4 of its
 * memory limit. */
void pl_collect_if_full(program_t *g);

/* ---- pipeline.c ---- */

/* Run in the filter process too: the init hooks and timers' first due
 * times; the shutdown hooks; the due timers; the next due time (0: none). */
void pl_program_start(pipeline_t *p, program_t *g);
void pl_program_stop(pipeline_t *p, program_t *g);
void pl_run_timers(pipeline_t *p, program_t *g);
int64_t pl_next_due(const program_t *g);

/* Loads path (source NULL) or source, under the name path, into a new
 * program (see pipeline_load; a reload's replaces p->prog, whose unchanged
 * outputs it keeps). Returns NULL with the message in err. */
program_t *pl_program_load(pipeline_t *p, const char *path, const char *source, config_t *cfg,
                           char *err, size_t errlen);
/* Frees g: its filters, its outputs (unless a delivery took them, and but
 * those keep shares) and its Lua state. NULL is ignored. */
void pl_program_free(program_t *g, const program_t *keep);

/* Loads path, or source (not NULL) under the name path (pipeline.h's
 * pipeline_load, pipeline_load_source), with check_only (program_t). On
 * failure cfg may hold some of the pipeline's settings; config_free
 * releases them as usual. */
pipeline_t *pl_load(const char *path, const char *source, const char *lua_dir, int check_only,
                    config_t *cfg, char *err, size_t errlen);

/* A simulated run, for `engine test`: the caller's thread is the pipeline
 * thread (pipeline_start is never called) and the pipeline's monotonic
 * clock is simulated, in nanoseconds. pl_sim_start sets the clock to now,
 * runs the init hooks and arms the timers; batches go through
 * pl_process_batch(p, p->prog, b); pl_sim_advance moves the clock to `to`,
 * running each timer at each time it falls due on the way (in order; at
 * most PL_SIM_MAX_ROUNDS rounds, else it returns -1, else 0); pl_sim_stop
 * runs the shutdown hooks and flushes the outputs. Then pipeline_free. */
#define PL_SIM_MAX_ROUNDS 1000000L
void pl_sim_start(pipeline_t *p, int64_t now);
int pl_sim_advance(pipeline_t *p, int64_t to);
void pl_sim_stop(pipeline_t *p);

#endif
