/* main.c - the `engine` command: a thin layer over engine.h.
 *
 *   engine run FILE [--log-level LEVEL]   follow containers through FILE
 *   engine check FILE                     load and validate FILE, no Docker
 *   engine test FILE [CASES...]           FILE's filters on test cases (filtertest.h)
 *   engine top [URL] [-n COUNT] [-d SECONDS]   a live view (top.h)
 *   engine tap [URL] [--filter N | --output N] [--select GLOB] [--limit N]
 *                                              a live sample of records (tap_cli.h)
 *   engine version | --help
 *
 * Exit codes: 0 clean stop, 2 bad pipeline or arguments, 1 runtime failure. */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "engine.h"
#include "filtertest.h"
#include "log.h"
#include "timestamp.h"
#include "tap_cli.h"
#include "top.h"

static const char usage[] =
    "usage: engine run PIPELINE.lua [--log-level error|warn|info|debug] [--state-dir DIR]\n"
    "                               [--since TIME [--until TIME]]\n"
    "       engine check PIPELINE.lua\n"
    "       engine test PIPELINE.lua [CASES.jsonl ...]\n"
    "       engine top [URL] [-n COUNT] [-d SECONDS]\n"
    "       engine tap [URL] [--filter NAME | --output NAME] [--select GLOB] [--limit N]\n"
    "       engine version\n"
    "       engine --help\n"
    "\n"
    "Follows Docker containers' logs through the Lua filters of PIPELINE.lua to\n"
    "its outputs. The Docker daemon is the pipeline's docker.host, else\n"
    "$DOCKER_HOST, else the first socket found of /var/run/docker.sock,\n"
    "/run/podman/podman.sock and $XDG_RUNTIME_DIR/podman/podman.sock (Podman);\n"
    "docker = { { name = ..., host = ... }, ... } follows several daemons.\n"
    "With --since, reads the selected containers' history (TIME: RFC 3339, or a\n"
    "duration before now such as 90s, 30m, 2h, 7d) through the pipeline and exits;\n"
    "its exit code is 0 only when everything was delivered.\n"
    "Exit codes: 0 clean stop, 2 bad pipeline or arguments, 1 runtime failure.\n";

/* Parses an RFC 3339 time or a duration before now ("90s", "30m", "2h",
 * "7d"). Returns 0, or -1. */
static int parse_time(const char *s, int64_t *ns) {
  size_t used;
  if (ts_parse(s, strlen(s), ns, &used) == 0 && used == strlen(s)) return 0;
  char *end;
  double n = strtod(s, &end);
  if (end == s || n < 0 || !end[0] || end[1]) return -1;
  double unit = *end == 's' ? 1 : *end == 'm' ? 60 : *end == 'h' ? 3600 : *end == 'd' ? 86400 : 0;
  if (!unit || n * unit > 100.0 * 365 * 86400) return -1;
  *ns = ts_now() - (int64_t)(n * unit * 1e9);
  return 0;
}

static int is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The engine's Lua library: $ENGINE_LUA_DIR, else ../lua next to the binary
 * (a build tree), else ../share/engine/lua (an installed tree). */
static const char *find_lua_dir(char *buf, size_t n) {
  const char *env = getenv("ENGINE_LUA_DIR");
  if (env && *env) return env;
  char exe[PATH_MAX];
  ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (len <= 0) return NULL;
  exe[len] = '\0';
  char *slash = strrchr(exe, '/');
  if (!slash) return NULL;
  *slash = '\0';
  snprintf(buf, n, "%s/../lua/engine", exe);
  if (is_dir(buf)) {
    snprintf(buf, n, "%s/../lua", exe);
    return buf;
  }
  snprintf(buf, n, "%s/../share/engine/lua", exe);
  return is_dir(buf) ? buf : NULL;
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
      !strcmp(argv[1], "help")) {
    fputs(usage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
    printf("engine %s\n", engine_version());
    return 0;
  }
  if (!strcmp(argv[1], "top")) return top_main(argc - 1, argv + 1);
  if (!strcmp(argv[1], "tap")) return tap_main(argc - 1, argv + 1);
  if (!strcmp(argv[1], "test")) {
    char dirbuf[PATH_MAX + 32];
    return filtertest_main(argc - 1, argv + 1, find_lua_dir(dirbuf, sizeof dirbuf));
  }
  int run = !strcmp(argv[1], "run");
  if (!run && strcmp(argv[1], "check") != 0) {
    fprintf(stderr, "engine: unknown command '%s'\n\n%s", argv[1], usage);
    return 2;
  }
  const char *file = NULL, *state_dir = NULL, *since = NULL, *until = NULL;
  for (int i = 2; i < argc; i++) {
    if (!strcmp(argv[i], "--log-level") && i + 1 < argc) {
      int level = log_parse_level(argv[++i]);
      if (level < 0) {
        fprintf(stderr, "engine: unknown log level '%s'\n", argv[i]);
        return 2;
      }
      log_set_level(level);
    } else if (!strcmp(argv[i], "--state-dir") && i + 1 < argc) {
      state_dir = argv[++i];
    } else if (!strcmp(argv[i], "--since") && i + 1 < argc) {
      since = argv[++i];
    } else if (!strcmp(argv[i], "--until") && i + 1 < argc) {
      until = argv[++i];
    } else if (argv[i][0] == '-' || file) {
      fprintf(stderr, "engine: unexpected argument '%s'\n\n%s", argv[i], usage);
      return 2;
    } else {
      file = argv[i];
    }
  }
  if (!file) {
    fprintf(stderr, "engine: %s needs a pipeline file\n\n%s", argv[1], usage);
    return 2;
  }
  int64_t since_ns = 0, until_ns = 0;
  if (until && !since) {
    fprintf(stderr, "engine: --until needs --since\n");
    return 2;
  }
  if ((since && parse_time(since, &since_ns) != 0) ||
      (until && parse_time(until, &until_ns) != 0)) {
    fprintf(stderr, "engine: '%s' is not a time (RFC 3339, or a duration like 90s, 30m, 2h, 7d)\n",
            since && parse_time(since, &since_ns) != 0 ? since : until);
    return 2;
  }
  if (until && until_ns < since_ns) {
    fprintf(stderr, "engine: --until is before --since\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN); /* a closed stdout is an output error, not a death */
  char dirbuf[PATH_MAX + 32], err[8192];
  if (!run) { /* opens nothing for writing; lists every mistake */
    if (engine_check(file, find_lua_dir(dirbuf, sizeof dirbuf), err, sizeof err) != 0) {
      for (char *line = strtok(err, "\n"); line; line = strtok(NULL, "\n"))
        fprintf(stderr, "engine: %s\n", line);
      return 2;
    }
    printf("%s: ok\n", file);
    return 0;
  }
  engine_t *e = engine_new();
  if (!e) {
    fprintf(stderr, "engine: out of memory\n");
    return 1;
  }
  if (engine_load(e, file, find_lua_dir(dirbuf, sizeof dirbuf), err, sizeof err) != 0) {
    fprintf(stderr, "engine: %s\n", err);
    engine_free(e);
    return 2;
  }
  if (state_dir && engine_set_state_dir(e, state_dir) != 0) {
    fprintf(stderr, "engine: out of memory\n");
    engine_free(e);
    return 1;
  }
  if (since) engine_set_backfill(e, since_ns, until_ns);
  int rc = engine_run(e, 1);
  if (rc != 0) fprintf(stderr, "engine: %s\n", engine_error(e));
  engine_free(e); /* frees nothing when the pipeline thread is stuck */
  return rc != 0 ? 1 : 0;
}
