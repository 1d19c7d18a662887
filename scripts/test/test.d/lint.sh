#!/bin/sh
# `make lint` (two files at a time; the style, the include structure, cppcheck and clang-tidy over engine/,
# see mk/lint.mk) must find
# nothing. On failure the findings are printed, one line each, with the
# file and line, and the check fails.
cd "$(dirname "$0")/../../.."
out=$(make --no-print-directory -k -j"${TEST_JOBS:-2}" lint 2>&1)
status=$?
if [ "$status" -ne 0 ]; then
  echo "lint: findings (fix them, or suppress a proven false positive inline with a comment):"
  echo "$out" | grep -E '(error|warning|style|performance|portability):|: (modules depend|.* is included but)' | grep -v '^make' | sort -u
  exit 1
fi
echo "lint: style, includes, cppcheck and clang-tidy clean"
