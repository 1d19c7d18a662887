#!/bin/sh
# The otlp output's encoders alone: CPU seconds per million records for the
# protobuf form (encoding = "protobuf") and the JSON form, through
# build/encode_tool --repeat on the same 1000 lazy records (one container
# with 3 labels, lines like the benchmark's, a level field, as filters hand
# them on), encoded 1000 times each.
#
#   sh scripts/bench/bench-otlp.sh [repeats]   (default 1000)
set -eu
cd "$(dirname "$0")/../.."
make -s build >/dev/null
n=${1:-1000}
in=$(mktemp)
trap 'rm -f "$in"' EXIT
luajit -e '
for i = 1, 1000 do
  io.write(string.format([[{"container":"c0ffee0123456789abcdef","name":"web","image":"nginx:1.25",]] ..
    [["labels":{"app":"web","tier":"front","com.example.team":"core"},"stream":"%s",]] ..
    [["time":"2026-11-27T22:55:%02d.%09dZ","level":"%s",]] ..
    [["line":"level=%s msg=\"request served\" status=200 path=/api/v1/items/%d dur_ms=%d"}]] .. "\n",
    i % 5 == 0 and "stderr" or "stdout", i % 60, i * 997, i % 10 == 0 and "warn" or "info",
    i % 10 == 0 and "warn" or "info", 10000 + i, i % 50))
end' > "$in"
for f in otlp-proto otlp; do
  s=$( { /usr/bin/time -f "%U %S" build/encode_tool "$f" --lazy --repeat "$n" < "$in" > /dev/null; } 2>&1 )
  bytes=$(build/encode_tool "$f" --lazy < "$in" | wc -c)
  echo "$s" | awk -v f="$f" -v n="$n" -v b="$bytes" \
    '{ printf "%s: %.2f s CPU per million records, %.0f bytes per record\n", f, ($1 + $2) * 1e6 / (n * 1000), b / 1000 }'
done
