#!/bin/sh
# Keeps the benchmark suite working: every scenario once, at a tiny size.
# (Benchmarks are never timed assertions; this only checks they run.)
set -eu
cd "$(dirname "$0")/../.."
timeout 300 luajit scripts/bench.lua --quick --out build/bench/quick.md
