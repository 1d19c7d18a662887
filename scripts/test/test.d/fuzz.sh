#!/bin/sh
# Short, bounded fuzz runs for `make test` (`make fuzz-test`, mk/fuzz.mk):
# builds the libFuzzer targets, replays every seed and regression input of
# spec/fuzz/corpus/, then fuzzes each target FUZZ_TEST_SECONDS (default 10)
# seconds each target, about a minute and a half in all. Fails on any crash, leak,
# sanitizer report or timeout; the input is kept in build/fuzz/artifacts/.
cd "$(dirname "$0")/../../.."
exec make --no-print-directory -s -j"${TEST_JOBS:-2}" fuzz-test FUZZ_TEST_SECONDS="${FUZZ_TEST_SECONDS:-10}"
