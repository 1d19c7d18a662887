/* log.c - the engine's own log (see log.h). */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include "log.h"

static atomic_int current = LOG_INFO;
static const char *const names[] = {"error", "warn", "info", "debug"};

void log_set_level(int level) { atomic_store(&current, level); }

int log_get_level(void) { return atomic_load(&current); }

int log_parse_level(const char *name) {
  for (int i = 0; i < 4; i++)
    if (strcasecmp(name, names[i]) == 0) return i;
  if (strcasecmp(name, "warning") == 0) return LOG_WARN;
  return -1;
}

void log_msg(int level, const char *container, const char *fmt, ...) {
  if (level > atomic_load(&current)) return;
  char line[4096];
  struct timespec now;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &now);
  gmtime_r(&now.tv_sec, &tm);
  size_t n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
  int w = snprintf(line + n, sizeof line - n, ".%03ldZ %-5s ", now.tv_nsec / 1000000,
                   names[level < 0   ? 0
                         : level > 3 ? 3
                                     : level]);
  n += (size_t)w;
  if (container) {
    w = snprintf(line + n, sizeof line - n, "[%s] ", container);
    n = n + (size_t)w >= sizeof line ? sizeof line - 1 : n + (size_t)w;
  }
  va_list ap;
  va_start(ap, fmt);
  w = vsnprintf(line + n, sizeof line - n, fmt, ap);
  va_end(ap);
  n = w < 0 ? n : n + (size_t)w >= sizeof line - 1 ? sizeof line - 2 : n + (size_t)w;
  line[n++] = '\n';
  ssize_t r = write(STDERR_FILENO, line, n);
  (void)r;
}
