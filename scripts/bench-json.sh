#!/bin/sh
# The JSON string encoder's speed on typical log lines (scripts/bench_json.c):
# scripts/bench-json.sh prints a table of nanoseconds per call. Builds first.
set -eu
cd "$(dirname "$0")/.."
make -s build >/dev/null
pkgs="luajit libcurl libcjson libuv zlib"
cc -O2 -Iengine $(pkg-config --cflags $pkgs) -o build/bench_json scripts/bench_json.c \
  build/libengine.a $(pkg-config --libs $pkgs) -lpthread -lm
echo "| line | json_add_string |"
echo "|---|---|"
exec build/bench_json
