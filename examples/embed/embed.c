/* embed.c - a program that embeds the engine through its library.
 *
 * Build it against an installed engine (`make install`), with pkg-config
 * only:
 *
 *   cc -o embed examples/embed/embed.c $(pkg-config --cflags --libs engine)
 *
 * (with the static library instead: `pkg-config --static --cflags --libs
 * engine` and -l:libengine.a). Run it:
 *
 *   ./embed [PIPELINE.lua]
 *
 * With a file it runs that pipeline; without, the pipeline below, given as
 * a string: every line of every container of the Docker daemon at
 * $DOCKER_HOST (else /var/run/docker.sock) on stdout, one JSON object per
 * line. Ctrl-C (SIGINT) or SIGTERM stops it; it then prints the run's counts
 * on stderr. The engine's Lua library is found through $ENGINE_LUA_DIR, or
 * the folder the library was built with.
 *
 * Exit status: 0 after a clean stop, 1 when the pipeline does not load or
 * the run fails. */
#include <stdio.h>

#include <engine/engine.h>

static const char PIPELINE[] =
    "return {\n"
    "  batch = { flush_interval = 0.2 },\n"
    "  filters = {\n"
    "    { name = \"tag\", process = function(batch)\n"
    "        for _, rec in ipairs(batch) do rec.via = \"embed\" end\n"
    "        return batch\n"
    "      end },\n"
    "  },\n"
    "  outputs = { { type = \"stdout\", format = \"json\" } },\n"
    "}\n";

int main(int argc, char **argv)
{
  char err[1024];
  engine_stats_t st;
  engine_t *e = engine_new();
  int rc;

  if (e == NULL) {
    fprintf(stderr, "embed: out of memory\n");
    return 1;
  }
  rc = argc > 1 ? engine_load(e, argv[1], NULL, err, sizeof err)
                : engine_load_string(e, "embedded", PIPELINE, NULL, err, sizeof err);
  if (rc != 0) {
    fprintf(stderr, "embed: %s\n", err);
    engine_free(e);
    return 1;
  }
  fprintf(stderr, "embed: engine %s running\n", engine_version());
  /* Blocks until SIGINT/SIGTERM; SIGHUP reloads a pipeline file. */
  rc = engine_run(e, 1);
  if (rc != 0)
    fprintf(stderr, "embed: %s\n", engine_error(e));
  engine_stats(e, &st);
  fprintf(stderr, "embed: %llu records in, %llu out, %llu readers started\n",
          (unsigned long long)st.records_in, (unsigned long long)st.records_out,
          (unsigned long long)st.readers_started);
  engine_free(e);
  return rc == 0 ? 0 : 1;
}
