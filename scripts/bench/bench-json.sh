#!/bin/sh
# The JSON string encoder's speed on typical log lines (scripts/bench/bench_json.c):
# scripts/bench/bench-json.sh prints a table of nanoseconds per call. Builds first.
set -eu
cd "$(dirname "$0")/../.."
make -s build build/bench_json >/dev/null
echo "| line | json_add_string |"
echo "|---|---|"
exec build/bench_json
