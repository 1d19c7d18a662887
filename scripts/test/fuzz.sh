#!/bin/sh
# Runs the libFuzzer targets built by `make fuzz-build`.
#   scripts/test/fuzz.sh DIR SECONDS TARGET...
# DIR holds the binaries (build/fuzz). Each target first replays its seed
# corpus (spec/fuzz/corpus/<target>/, the regression cases); with SECONDS > 0
# it then fuzzes that long, adding new inputs to DIR/corpus/<target>/ (never
# to the seed corpus). FUZZ_JOBS targets (default 2) run at once, each a
# single process on one core, each fuzzing its full SECONDS. Prints one
# summary line per target, in the order given, with libFuzzer's coverage
# (cov: edges, ft: features). Exit status 1 when any target crashed, leaked
# or timed out; the input is kept in DIR/artifacts/.
set -u
cd "$(dirname "$0")/../.."
dir=$1; secs=$2; shift 2
jobs=${FUZZ_JOBS:-2}
status=0
mkdir -p "$dir/artifacts" "$dir/logs"

# one_target T: fuzzes T, writes its summary to DIR/logs/T.summary and its
# exit status to DIR/logs/T.rc
one_target() {
  t=$1
  seeds=spec/fuzz/corpus/$t
  work=$dir/corpus/$t
  log=$dir/logs/$t.log
  mkdir -p "$work"
  if [ "$secs" -gt 0 ]; then
    "$dir/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      -print_final_stats=1 -artifact_prefix="$dir/artifacts/$t-" "$work" "$seeds" >"$log" 2>&1
  else
    "$dir/$t" -runs=0 -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$dir/artifacts/$t-" "$seeds" >"$log" 2>&1
  fi
  rc=$?
  cov=$(grep -E '^#[0-9]+.*(DONE|INITED)' "$log" | tail -n 1 | grep -oE 'cov: [0-9]+ ft: [0-9]+')
  runs=$(grep -oE 'stat::number_of_executed_units: [0-9]+' "$log" | grep -oE '[0-9]+$')
  if [ "$rc" -eq 0 ]; then
    echo "fuzz $t: ok, ${secs}s, ${runs:-?} runs, ${cov:-no coverage line}"
  else
    echo "fuzz $t: FAILED (exit $rc), see $log:"
    grep -E 'ERROR|SUMMARY|Test unit written|runtime error|deadly signal' "$log" | head -n 10
  fi >"$dir/logs/$t.summary"
  echo "$rc" >"$dir/logs/$t.rc"
}

# the targets in rounds of `jobs`, every target of a round started at once
set -- "$@" ""
round=""
n=0
for t in "$@"; do
  if [ -n "$t" ]; then
    rm -f "$dir/logs/$t.rc"
    one_target "$t" &
    round="$round $t"
    n=$((n + 1))
  fi
  if [ "$n" -ge "$jobs" ] || { [ -z "$t" ] && [ "$n" -gt 0 ]; }; then
    wait
    for r in $round; do
      cat "$dir/logs/$r.summary"
      [ "$(cat "$dir/logs/$r.rc" 2>/dev/null)" = 0 ] || status=1
    done
    round=""
    n=0
  fi
done
exit $status
