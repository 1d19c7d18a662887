#!/bin/sh
# Runs the libFuzzer targets built by `make fuzz-build`.
#   scripts/test/fuzz.sh DIR SECONDS TARGET...
# DIR holds the binaries (build/fuzz). Each target first replays its seed
# corpus (spec/fuzz/corpus/<target>/, the regression cases); with SECONDS > 0
# it then fuzzes that long, adding new inputs to DIR/corpus/<target>/ (never
# to the seed corpus). Prints one summary line per target with libFuzzer's
# coverage (cov: edges, ft: features). Exit status 1 when any target
# crashed, leaked or timed out; the input is kept in DIR/artifacts/.
set -u
cd "$(dirname "$0")/../.."
dir=$1; secs=$2; shift 2
status=0
mkdir -p "$dir/artifacts" "$dir/logs"
for t in "$@"; do
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
    status=1
  fi
done
exit $status
