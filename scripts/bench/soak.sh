#!/bin/sh
# The long soak: scripts/bench/soak.sh [SECONDS] [CONTAINERS] [CYCLE]
# (default 60 s, 100 containers, 0.05 s cycle) against the fake Docker API
# server. Prints the cycles done, the live readers each second, descriptors
# and RSS at start and end, and the line checks. Needs `make` first.
set -eu
cd "$(dirname "$0")/../.."
exec luajit -e '
package.path = "./?.lua;" .. package.path
local soak = require "spec.support.soak"
local r = soak.run { seconds = tonumber(arg[1]), containers = tonumber(arg[2]), cycle = tonumber(arg[3]), rate = 10 }
print(soak.format(r))
os.exit((r.exit_code == 0 and r.live_after_stop == 0 and r.duplicates == 0 and r.gaps == 0) and 0 or 1)
' "${1:-60}" "${2:-100}" "${3:-0.05}"
