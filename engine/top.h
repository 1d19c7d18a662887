/* top.h - `engine top [URL] [-n COUNT] [-d SECONDS]`: a live view of a
 * running engine through its metrics endpoint (metrics.h).
 *
 * Every refresh (default 1 s) it reads URL/readers and URL/metrics (libcurl
 * easy, blocking: a command may block) and shows, per container, its
 * state, lines and bytes per second (from the previous sample), lines and
 * errors; per filter its calls per second, errors and timeouts; per network
 * output its batches sent per second, failures, retries, dead letters and
 * pending batches.
 *
 * On a terminal it draws in place on the alternate screen with the
 * keyboard in raw mode (no echo, no line buffering); `q` or Ctrl-C ends it,
 * and the terminal is restored on every way out (q, -n, SIGINT, SIGTERM,
 * SIGHUP). When stdout is not a terminal it prints plain lines instead, one
 * per container, filter and network output per refresh:
 *
 *   TIME container NAME state=S lines=N lines_per_s=R bytes_per_s=R errors=N
 *   TIME filter NAME calls=N calls_per_s=R errors=N timeouts=N
 *   TIME output NAME sent=N sent_per_s=R failed=N retried=N dead_letters=N pending=N
 *
 * (rates are "-" on the first refresh). URL defaults to
 * http://127.0.0.1:9180; "host:port" means http://host:port. */
#ifndef ENGINE_TOP_H
#define ENGINE_TOP_H

/* argv[0] is "top". Returns the exit code: 0 after q, Ctrl-C, a signal or
 * COUNT refreshes; 1 when no refresh reached the engine; 2 for bad
 * arguments. */
int top_main(int argc, char **argv);

#endif
