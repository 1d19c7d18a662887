#!/bin/sh
# The benchmark suite: scripts/bench/bench.sh [--quick] [--runs N] [--lines N]
# [--seconds S] [--containers C] [--docker-lines N] [--out-lines N]
# [--ship-containers C] [--ship-lines N] [--ship-runs C:B,...] [--only 1,2,...]
# [--out FILE]. Builds first; prints a table
# and writes it to build/bench/results.md. See scripts/bench/bench.lua.
set -eu
cd "$(dirname "$0")/../.."
make -s build >/dev/null
exec luajit scripts/bench/bench.lua "$@"
