#!/bin/sh
# Deliberate breakages: scripts/test/mutants.sh [--fast] [NAME...]
#
# Each spec/mutants/NAME.patch breaks one guarantee on purpose. Its header
# (the lines before the diff) says which:
#
#   Guarantee: what the README promises
#   Breakage:  what the patch does
#   Kill: SPEC [FILTER]   a spec run that must fail with the patch applied
#                         (busted --filter FILTER, a Lua pattern); one line
#                         per run, every one must fail
#   Fast: yes             part of `make test` (scripts/test/test.d/mutants.sh)
#   Timeout: S            seconds a spec run may take (default 600); a run
#                         that takes longer counts as failed
#   Regenerate: / Needs:  notes for people
#
# For each mutant (all, only the fast ones with --fast, or the NAMEs
# given): copies the checkout (without .git and the sanitizer builds) to a
# scratch folder, applies the patch, builds (only what the patch touches is
# compiled again), runs the named specs against that build, and removes
# the copy. A mutant is killed when every named spec run fails; it
# survives when one passes. Specs that need a Docker daemon get a private
# one (scripts/test/dockerd.sh), unless ENGINE_TEST_DOCKER_HOST names one.
#
# Prints one line per mutant, then "N killed, N survived, N broken"; exits
# 0 only when every mutant was killed (a patch that no longer applies or
# builds is broken, and fails the run too).
set -u
cd "$(dirname "$0")/../.."
top=$PWD
fast=0
if [ "${1:-}" = "--fast" ]; then fast=1; shift; fi

make --no-print-directory -s build >/dev/null || { echo "mutants: the build failed" >&2; exit 1; }

work=$(mktemp -d /tmp/mut.XXXXXX)
dockerdir=""
cleanup() {
  if [ -n "$dockerdir" ]; then sh "$top/scripts/test/dockerd.sh" stop "$dockerdir" >/dev/null 2>&1; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

header() { sed -n '/^--- a\//q;p' "$1"; }
field() { header "$1" | sed -n "s/^$2: *//p"; }

# the mutants to run
list=""
if [ $# -gt 0 ]; then
  for n in "$@"; do
    [ -f "spec/mutants/$n.patch" ] || { echo "mutants: no spec/mutants/$n.patch" >&2; exit 2; }
    list="$list spec/mutants/$n.patch"
  done
else
  for p in spec/mutants/*.patch; do
    if [ $fast -eq 1 ] && [ "$(field "$p" Fast)" != yes ]; then continue; fi
    list="$list $p"
  done
fi
[ -n "$list" ] || { echo "mutants: none selected" >&2; exit 2; }

# a private Docker daemon when a selected spec needs one
if [ -z "${ENGINE_TEST_DOCKER_HOST:-}" ]; then
  for p in $list; do
    for spec in $(field "$p" Kill | awk '{print $1}'); do
      if grep -q "dockerenv" "$spec"; then need_docker=1; fi
    done
  done
  if [ "${need_docker:-0}" = 1 ]; then
    dockerdir="$work/d"
    ENGINE_TEST_DOCKER_HOST=$(sh scripts/test/dockerd.sh start "$dockerdir") ||
      { echo "mutants: cannot start a private Docker daemon" >&2; exit 1; }
    ENGINE_TEST_DOCKER_DIR=$dockerdir
    export ENGINE_TEST_DOCKER_HOST ENGINE_TEST_DOCKER_DIR
  fi
fi

killed=0 survived=0 broken=0
report="$work/report"
: >"$report"
for p in $list; do
  name=$(basename "$p" .patch)
  src="$work/src"
  rm -rf "$src"
  mkdir "$src"
  # modification times are kept: make compiles only what the patch changes
  tar -C "$top" --exclude=./.git --exclude=./build/asan --exclude=./build/tsan --exclude=./build/fuzz \
      --exclude=./build/bench --exclude=./build/arm64 -cf - . | tar -C "$src" -xf -
  if ! (cd "$src" && patch -p1 --quiet --no-backup-if-mismatch <"$top/$p") >"$work/log" 2>&1; then
    echo "BROKEN   $name: the patch does not apply ($(field "$p" Regenerate))" | tee -a "$report"
    broken=$((broken + 1)); continue
  fi
  if ! make -C "$src" --no-print-directory -s build >"$work/log" 2>&1; then
    echo "BROKEN   $name: does not build" | tee -a "$report"
    tail -n 5 "$work/log"
    broken=$((broken + 1)); continue
  fi
  if [ -z "$(field "$p" Kill)" ]; then
    echo "BROKEN   $name: names no spec (Kill:)" | tee -a "$report"
    broken=$((broken + 1)); continue
  fi
  limit=$(field "$p" Timeout)
  all_failed=1 killers=""
  field "$p" Kill >"$work/kills"
  while read -r spec filter; do
    set -- "$spec"
    [ -n "$filter" ] && set -- --filter="$filter" "$spec"
    if (cd "$src" && ENGINE_LIB=build/libengine.so ENGINE_BIN=build/engine ENGINE_TOOLS=build \
          timeout -k 10 "${limit:-600}" luajit /usr/bin/busted -o plainTerminal "$@") \
          >"$work/spec.out" 2>&1 </dev/null; then
      all_failed=0
      killers="$killers; passed: $spec${filter:+ [$filter]}"
    else
      killers="$killers; killed by $spec${filter:+ [$filter]}"
    fi
  done <"$work/kills"
  killers=${killers#; }
  if [ $all_failed -eq 1 ]; then
    echo "killed   $name: $killers" | tee -a "$report"
    killed=$((killed + 1))
  else
    echo "SURVIVED $name: $killers" | tee -a "$report"
    survived=$((survived + 1))
  fi
  rm -rf "$src"
done

echo "mutants: $killed killed, $survived survived, $broken broken"
[ $survived -eq 0 ] && [ $broken -eq 0 ]
