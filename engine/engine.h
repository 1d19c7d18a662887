/* engine.h - the engine as a library: the one public header.
 *
 * An engine follows Docker containers' logs through the Lua filters of one
 * pipeline to its outputs. An appliance embeds it like this:
 *
 *   engine_t *e = engine_new();
 *   if (engine_load(e, "pipeline.lua", NULL, err, sizeof err) != 0) ...
 *   (or engine_load_string(e, "name", lua_text, NULL, err, sizeof err))
 *   engine_run(e, 1);          // blocks until stopped (SIGINT/SIGTERM or engine_stop)
 *   engine_free(e);
 *
 * Threads: engine_run runs one libuv loop on the calling thread (all network
 * I/O, timers, signals) and one pipeline thread for the Lua filters and the
 * outputs. engine_stop may be called from any thread or a signal handler.
 *
 * Stop: bounded by the pipeline's stop_timeout (default 10 s), idempotent,
 * safe at any moment. Readers stop, what they read is filtered and written,
 * and when engine_run returns 0 every reader, libcurl handle, libuv handle,
 * timer and thread is gone. */
#ifndef ENGINE_ENGINE_H
#define ENGINE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

/* The library is built with hidden visibility: only what is marked
 * ENGINE_API (the engine_* functions below) is exported from libengine.so,
 * so its internal names never collide with a host program's. */
#if defined(__GNUC__)
#define ENGINE_API __attribute__((visibility("default")))
#else
#define ENGINE_API
#endif

typedef struct engine engine_t;

typedef struct engine_stats {
  uint64_t readers_live, readers_started, readers_stopped, readers_cycled;
  uint64_t batches, records_in, records_out, filter_errors, filter_timeouts;
  unsigned long events_reconnects;
  uint64_t reader_pauses; /* times a reader paused for backpressure */
  uint64_t docker_reads;  /* reads of Docker API answers that brought data */
  uint64_t docker_rests;  /* times a slow follow stream rested (read_delay) */
  uint64_t bytes_in_flight;
  long handles_open; /* libuv handles not yet closed, whole process */
} engine_stats_t;

/* Returns a new engine, or NULL when out of memory. */
ENGINE_API engine_t *engine_new(void);

/* Loads and checks a pipeline (runs pipeline.lua, validates it). lua_dir is
 * the folder of the engine's Lua library (NULL: $ENGINE_LUA_DIR or the
 * folder compiled in). Returns 0, or -1 with "file:line: message" or a
 * validation message in err. Call once, before engine_run. */
ENGINE_API int engine_load(engine_t *e, const char *path, const char *lua_dir, char *err,
                           size_t errlen);

/* As engine_load, with the pipeline's Lua text in source (copied) instead
 * of a file. name (NULL: "pipeline") stands for the file in messages
 * ("name:line: message"), and its folder is searched first by require.
 * SIGHUP does not reload such a pipeline (there is no file to read again). */
ENGINE_API int engine_load_string(engine_t *e, const char *name, const char *source,
                                  const char *lua_dir, char *err, size_t errlen);

/* Checks a pipeline as engine_load would, without an engine and with no
 * side effect: no output, dead-letter or state file or folder is created or
 * opened for writing (their folders are checked instead). Returns 0, or -1
 * with every mistake found (up to a bound), one a line, each
 * "file:line: message" where the setting is written out in the file. */
ENGINE_API int engine_check(const char *path, const char *lua_dir, char *err, size_t errlen);

/* Overrides the pipeline's state directory (where cursors are saved) after
 * engine_load; NULL or "" keeps cursors in memory only. Returns 0, or -1
 * when out of memory. */
ENGINE_API int engine_set_state_dir(engine_t *e, const char *dir);

/* Makes engine_run a backfill: read each selected container's history
 * (running or stopped) from since_ns to until_ns (0: up to now) without
 * following, through the same filters and outputs, then stop. Both ends are
 * inclusive and exact to the nanosecond, also when a stream is resumed from
 * its cursor in the middle of the window. Cursors are
 * neither used nor saved. engine_run returns 0 only when everything read
 * was delivered. On a terminal, progress per container goes to stderr. */
ENGINE_API void engine_set_backfill(engine_t *e, int64_t since_ns, int64_t until_ns);

/* Runs until stopped. handle_signals: stop on SIGINT and SIGTERM, reload the
 * pipeline on SIGHUP, reopen output files on SIGUSR1; once the engine has
 * stopped these four signals are left ignored. Returns 0
 * after a clean stop, -1 on a runtime failure (engine_error says which: the
 * daemon unreachable at start, a stop that ran out of time, ...). */
ENGINE_API int engine_run(engine_t *e, int handle_signals);

/* Asks a running engine to stop; before engine_run, makes it return at once.
 * Thread-safe and async-signal-safe; a second call does nothing. */
ENGINE_API void engine_stop(engine_t *e);

/* The last runtime failure, or "". */
ENGINE_API const char *engine_error(const engine_t *e);

/* Counts: after engine_run returned, the totals of the run; before
 * engine_run, zeros. Not while engine_run runs on another thread (the
 * counts live in structures of the loop's thread, read without a lock): a
 * running engine's counts are on its metrics endpoint (metrics.listen). */
ENGINE_API void engine_stats(engine_t *e, engine_stats_t *out);

/* Frees the engine. engine_run must have returned (or never run). */
ENGINE_API void engine_free(engine_t *e);

/* The version string. */
ENGINE_API const char *engine_version(void);

#endif
