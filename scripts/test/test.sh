#!/bin/sh
# Runs the specs: `scripts/test/test.sh [unit|integration|podman|extra|all]` (default all).
#
#  unit         spec/unit against build/ and again against the AddressSanitizer
#               + UBSan build (build/asan/)
#  integration  starts a private Docker daemon (scripts/test/dockerd.sh), runs
#               spec/integration with build/engine, then again with the
#               ASan+UBSan engine (leak checks on) and the reader-lifecycle
#               specs with the ThreadSanitizer engine; stops the daemon at
#               the end, also when a spec fails. Then starts a private
#               Podman service (scripts/test/podman.sh) and runs spec/podman with
#               build/engine against it (also alone: podman).
#
#  extra        every scripts/test/test.d/*.sh in turn (lint, short fuzz runs,
#               cross-architecture runs, ...): each counts as one passed or
#               failed check by its exit status
#
# Ends with the failing runs and specs, if any, then one line
# "N passed, N failed" over every run.
set -u
cd "$(dirname "$0")/../.."
. scripts/test/busted-counts.sh
what=${1:-all}
BUSTED="luajit /usr/bin/busted"
ASAN_LIBS="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
SUPP="$PWD/spec/support/sanitizers"
log=$(mktemp -d /tmp/engine-test.XXXXXX)
passed=0
failed=0
status=0
failures="$log/failures"
: >"$failures"

# run NAME ENV... -- ARGS: one busted run, its counts added to the totals.
run() {
  name=$1; shift
  echo "== $name"
  ( while [ "$1" != "--" ]; do export "$1"; shift; done; shift
    exec $BUSTED -o plainTerminal "$@" ) 2>&1 | tee "$log/$name.out"
  if ! busted_counts "$log/$name.out"; then
    echo "!! $name: busted printed no summary"
    echo "$name: busted printed no summary" >>"$failures"
    failed=$((failed + 1)); status=1; return
  fi
  passed=$((passed + s))
  failed=$((failed + f + e + p))
  if [ "$((f + e + p))" -ne 0 ]; then
    status=1
    { echo "$name:"; grep -A1 -E '^(Failure|Error|Pending) ' "$log/$name.out" | grep -v '^--$' | sed 's/^/  /'; } >>"$failures"
  fi
}

unit() {
  run unit ENGINE_LIB=build/libengine-test.so ENGINE_BIN=build/engine ENGINE_TOOLS=build \
    -- spec/unit
  run unit-asan LD_PRELOAD="$ASAN_LIBS" ASAN_OPTIONS="detect_leaks=0:abort_on_error=1" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    ENGINE_LIB=build/asan/libengine-test.so ENGINE_BIN=build/asan/engine ENGINE_TOOLS=build/asan \
    FAKEDOCKER=build/asan/fakedocker \
    -- spec/unit
}

integration() {
  dir=$(mktemp -d /tmp/edk.XXXXXX)
  trap 'sh scripts/test/dockerd.sh stop "$dir" >/dev/null 2>&1' EXIT INT TERM
  if ! host=$(sh scripts/test/dockerd.sh start "$dir"); then
    echo "!! cannot start the private Docker daemon"
    failed=$((failed + 1)); status=1; return
  fi
  run integration ENGINE_TEST_DOCKER_HOST="$host" ENGINE_TEST_DOCKER_DIR="$dir" \
    ENGINE_BIN=build/engine ENGINE_TOOLS=build -- spec/integration
  run integration-asan ENGINE_TEST_DOCKER_HOST="$host" ENGINE_TEST_DOCKER_DIR="$dir" \
    ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=66" \
    LSAN_OPTIONS="suppressions=$SUPP/lsan.supp:print_suppressions=0" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    ENGINE_SANITIZER=asan ENGINE_BIN=build/asan/engine ENGINE_TOOLS=build/asan \
    -- --tags=sanitize spec/integration
  run integration-tsan ENGINE_TEST_DOCKER_HOST="$host" ENGINE_TEST_DOCKER_DIR="$dir" \
    TSAN_OPTIONS="halt_on_error=0:exitcode=66:suppressions=$SUPP/tsan.supp" \
    ENGINE_SANITIZER=tsan ENGINE_BIN=build/tsan/engine ENGINE_TOOLS=build/tsan \
    -- --tags=tsan spec/integration
  sh scripts/test/dockerd.sh stop "$dir"
  trap - EXIT INT TERM
  podman_specs
}

podman_specs() {
  pdir=$(mktemp -d /tmp/epm.XXXXXX)
  trap 'sh scripts/test/podman.sh stop "$pdir" >/dev/null 2>&1' EXIT INT TERM
  if ! phost=$(sh scripts/test/podman.sh start "$pdir"); then
    echo "!! cannot start the private Podman service"
    echo "podman: cannot start the private Podman service" >>"$failures"
    failed=$((failed + 1)); status=1; return
  fi
  run podman ENGINE_TEST_PODMAN_HOST="$phost" \
    ENGINE_TEST_PODMAN_CLIENT="$(sh scripts/test/podman.sh env "$pdir")" \
    ENGINE_BIN=build/engine ENGINE_TOOLS=build -- spec/podman
  sh scripts/test/podman.sh stop "$pdir"
  trap - EXIT INT TERM
}

extra() {
  for t in scripts/test/test.d/*.sh; do
    [ -e "$t" ] || continue
    echo "== $t"
    if sh "$t"; then passed=$((passed + 1)); else
      echo "!! $t failed"; echo "$t failed" >>"$failures"
      failed=$((failed + 1)); status=1
    fi
  done
}

case "$what" in
  unit) unit ;;
  integration) integration ;;
  podman) podman_specs ;;
  extra) extra ;;
  all) unit; integration; extra ;;
  *) echo "usage: scripts/test/test.sh [unit|integration|podman|extra|all]" >&2; exit 2 ;;
esac
if [ -s "$failures" ]; then echo "== what failed"; cat "$failures"; fi
rm -rf "$log"
echo "$passed passed, $failed failed"
exit $status
