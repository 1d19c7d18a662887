/* filtertest.h - `engine test PIPELINE.lua [CASES...]`: runs a pipeline's
 * filters on test cases and compares what reaches its outputs with what
 * the cases expect, on a simulated clock (pipeline_internal.h: pl_sim_*).
 *
 * CASES (default: PIPELINE with .lua replaced by .test.jsonl) are files of
 * JSON lines; blank lines and lines starting with '#' are skipped. Each
 * other line is one object:
 *
 *   {"case": "NAME"}          starts a case (lines before the first one
 *                             form a case named after the file)
 *   {"in": RECORD}            one batch of one record, or
 *   {"in": [RECORD, ...]}     one batch of records of one container
 *   {"advance": SECONDS}      moves the simulated clock on; every timer runs
 *                             at each time it falls due on the way
 *   {"out": RECORD}           a record expected at an output, in order
 *   {"out": [RECORD, ...], "to": "OUTPUT"}   (default: the first output)
 *
 * An input RECORD has the line (a string, required) and its container's
 * fields: name (default "app"), id (default "id-" name), image (default
 * "img"), labels (an object of strings), stream ("stdout" or "stderr",
 * default "stdout") and time (RFC 3339; default the simulated wall clock,
 * which starts at 2024-01-01T00:00:00Z and moves with "advance").
 * An expected RECORD lists the fields to compare (as the output's JSON form
 * has them: time, stream, container, name, image, line, labels and the
 * filters' fields); fields it does not name are not compared, and a field
 * given as null must be absent.
 *
 * Each case runs on a fresh load of the pipeline that opens nothing (as
 * `engine check`): its outputs only record what they are given. The init
 * hooks run first, the steps in order, then the shutdown hooks (a case's
 * end is the pipeline's stop). For each case one line "ok NAME" or "FAIL
 * NAME (FILE:LINE)" goes to stdout, with the differences after a FAIL
 * ("-" expected, "+" got); then "N passed, N failed".
 *
 * Exit codes: 0 every case passed, 1 a case failed, 2 the pipeline or a
 * case file is bad (the message says where). */
#ifndef ENGINE_FILTERTEST_H
#define ENGINE_FILTERTEST_H

/* argv[0] is "test". lua_dir: the engine's Lua library (NULL: the default
 * of pipeline_load). Returns the exit code. */
int filtertest_main(int argc, char **argv, const char *lua_dir);

#endif
