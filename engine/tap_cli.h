/* tap_cli.h - `engine tap [URL] [--filter NAME | --output NAME] [--select
 * GLOB] [--limit N]`: prints a live sample of a running engine's records
 * as JSON lines, from its metrics endpoint's /tap (metrics.h, tap.h).
 *
 * Without --filter or --output, the records as the filters get them; with
 * --filter NAME, as that filter left them; with --output NAME, as that
 * output took them. --select keeps the records of containers whose name
 * matches GLOB. --limit ends after N records (default: until Ctrl-C or the
 * engine goes). URL defaults to http://127.0.0.1:9180, like `engine top`.
 * The engine drops records for a tap that does not keep up (it never waits
 * for one). libcurl easy, blocking: a command may block. */
#ifndef ENGINE_TAP_CLI_H
#define ENGINE_TAP_CLI_H

/* argv[0] is "tap". Returns the exit code: 0 once the limit was printed or
 * the engine ended the stream; 1 when the engine could not be reached or
 * refused; 2 for bad arguments. */
int tap_main(int argc, char **argv);

#endif
