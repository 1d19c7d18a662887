#!/bin/sh
# Keeps the benchmark suite working: every scenario once, at a tiny size,
# and the JSON encoder timing (scripts/bench/bench-json.sh).
# (Benchmarks are never timed assertions; this only checks they run.)
set -eu
cd "$(dirname "$0")/../../.."
timeout 300 luajit scripts/bench/bench.lua --quick --out build/bench/quick.md
timeout 120 sh scripts/bench/bench-json.sh > build/bench/json.md
