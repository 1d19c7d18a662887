#!/bin/sh
# Measures the engine's footprint and prints a Markdown table:
#
#   scripts/bench/footprint.sh [ARCH...]      (default: the host's, plus arm64 and
#                                        armhf when build/<arch>/engine exists)
#
#  - stripped binary size, per architecture (build/engine, build/<arch>/engine)
#  - the shared libraries it links (readelf -d: NEEDED)
#  - RSS at start: examples/pipeline.lua against the fake Docker API server
#    with no container, once the engine is connected
#  - RSS following 100 containers (fakedocker --containers 100, 10 lines/s
#    each), after 10 s, with examples/pipeline.lua and with the low-memory
#    profile examples/lowmem.lua
#  - CPU at idle: utime+stime from /proc/PID/stat over 10 s, no container
#
# RSS and CPU are measured for the host's build only (emulation would
# measure qemu). Needs `make build` first.
set -eu
cd "$(dirname "$0")/../.."
host=$(dpkg --print-architecture)
arches=${*:-$host arm64 armhf}
tmp=$(mktemp -d /tmp/footprint.XXXXXX)
srv=""
eng=""
cleanup() {
  [ -n "$eng" ] && kill "$eng" 2>/dev/null || true
  [ -n "$srv" ] && kill "$srv" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

bin_of() { if [ "$1" = "$host" ]; then echo build/engine; else echo "build/$1/engine"; fi; }
readelf_of() {
  case "$1" in
    arm64) echo aarch64-linux-gnu-readelf ;;
    armhf) echo arm-linux-gnueabihf-readelf ;;
    *) echo readelf ;;
  esac
}

# rss_kib PID: the resident set size in KiB.
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# cpu_ticks PID: utime + stime in clock ticks.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

# start_fake N: starts fakedocker with N containers; sets srv and sock.
start_fake() {
  sock=$tmp/docker-$1.sock
  build/fakedocker --socket "$sock" --containers "$1" --rate 10 > "$tmp/fake.out" 2>&1 &
  srv=$!
  i=0
  until grep -q ready "$tmp/fake.out" 2>/dev/null; do
    i=$((i + 1)); [ $i -lt 100 ] || { echo "footprint: fakedocker did not start" >&2; exit 1; }
    sleep 0.1
  done
}
stop_both() {
  kill -TERM "$eng" 2>/dev/null || true; wait "$eng" 2>/dev/null || true; eng=""
  kill -TERM "$srv" 2>/dev/null || true; wait "$srv" 2>/dev/null || true; srv=""
}
# start_engine [PIPELINE]: runs PIPELINE (default examples/pipeline.lua)
# against $sock, output discarded.
start_engine() {
  DOCKER_HOST=unix://$sock build/engine run "${1:-examples/pipeline.lua}" \
    --state-dir "$tmp/state" > /dev/null 2> "$tmp/engine.err" &
  eng=$!
  i=0
  until grep -q "connected to the Docker daemon" "$tmp/engine.err" 2>/dev/null; do
    i=$((i + 1)); [ $i -lt 100 ] || { echo "footprint: engine did not connect" >&2; cat "$tmp/engine.err" >&2; exit 1; }
    sleep 0.1
  done
}

echo "| architecture | stripped binary | shared libraries |"
echo "|---|---|---|"
for a in $arches; do
  b=$(bin_of "$a")
  [ -x "$b" ] || continue
  s=$(readelf_of "$a" | sed 's/readelf$/strip/')
  "$s" -o "$tmp/engine-$a" "$b"
  size=$(stat -c %s "$tmp/engine-$a")
  libs=$("$(readelf_of "$a")" -d "$b" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ' | sed 's/ $//; s/ /, /g')
  echo "| $a | $((size / 1024)) KiB | $libs |"
done

start_fake 0
start_engine
sleep 1
rss_start=$(rss_kib "$eng")
t0=$(cpu_ticks "$eng")
sleep 10
t1=$(cpu_ticks "$eng")
hz=$(getconf CLK_TCK)
stop_both

start_fake 100
start_engine
sleep 10
rss_100=$(rss_kib "$eng")
followed=$(grep -c "following container" "$tmp/engine.err" || true)
stop_both

start_fake 100
start_engine examples/lowmem.lua
sleep 10
rss_low=$(rss_kib "$eng")
stop_both

echo
echo "| $host, examples/pipeline.lua | value |"
echo "|---|---|"
echo "| RSS at start (connected, no container) | $((rss_start / 1024)) MiB ($rss_start KiB) |"
echo "| RSS following 100 containers (10 lines/s each, after 10 s; $followed followed) | $((rss_100 / 1024)) MiB ($rss_100 KiB) |"
echo "| RSS following 100 containers with examples/lowmem.lua (the low-memory profile) | $((rss_low / 1024)) MiB ($rss_low KiB) |"
echo "| CPU at idle (10 s) | $(awk -v d=$((t1 - t0)) -v hz="$hz" 'BEGIN { printf "%.2f%% (%d ticks of 1/%d s)", d * 100 / hz / 10, d, hz }') |"
