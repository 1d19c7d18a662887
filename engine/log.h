/* log.h - the engine's own log: leveled, one line per event, on stderr.
 *
 * Thread-safe: the loop thread and the pipeline thread both log. Each call
 * writes one whole line with a single write(2), so lines never interleave.
 * Format: "2026-11-27T22:55:45.123Z LEVEL [container] message". */
#ifndef ENGINE_LOG_H
#define ENGINE_LOG_H

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* Sets the most verbose level written (default LOG_INFO). */
void log_set_level(int level);
int log_get_level(void);

/* Parses "error", "warn", "info" or "debug". Returns the level, or -1. */
int log_parse_level(const char *name);

/* Writes one line. `container` may be NULL (no container name shown).
 * Never fails visibly: a failed write to stderr is ignored. */
void log_msg(int level, const char *container, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_error(c, ...) log_msg(LOG_ERROR, (c), __VA_ARGS__)
#define log_warn(c, ...) log_msg(LOG_WARN, (c), __VA_ARGS__)
#define log_info(c, ...) log_msg(LOG_INFO, (c), __VA_ARGS__)
#define log_debug(c, ...) log_msg(LOG_DEBUG, (c), __VA_ARGS__)

#endif
