#!/bin/sh
# How many lines of short `docker run --rm` jobs the engine catches.
#
#   scripts/test/rmjobs.sh DOCKER_HOST [ENGINE_BIN] [JOBS] [AT_ONCE] [LINES] [MODE]
#
# Follows a daemon (a unix:// URL, such as the one scripts/test/dockerd.sh start
# prints; the image engine-test:latest) with ENGINE_BIN (default
# build/engine), runs JOBS (60) containers with `docker run --rm`, AT_ONCE
# (10) at a time, each printing LINES (20) numbered lines and exiting, then
# prints how many of those lines the engine delivered, how many jobs lost
# lines (with the engine's log of each), how many the docker CLI itself got
# (it attaches to the container before it starts it), and the engine's
# histogram of the latency from a container's
# `start` event to its logs request being written (when the engine has it).
# MODE: stdout (default), stderr (every line to stdout and to stderr) or
# tty (docker run -t). RMJOBS_LOG_LEVEL=debug shows each lossy job's
# reader states; RMJOBS_KEEP_LOG=FILE keeps the engine's log there. Bounded: at most 200 jobs, 200 lines each, and 60 s
# of waiting for the last lines; the engine and every job are stopped.
set -eu
cd "$(dirname "$0")/../.."
HOST=${1:?usage: scripts/test/rmjobs.sh DOCKER_HOST [ENGINE_BIN] [JOBS] [AT_ONCE] [LINES] [MODE]}
BIN=${2:-build/engine}
JOBS=${3:-60}
AT_ONCE=${4:-10}
LINES=${5:-20}
MODE=${6:-stdout}
DOCKER=/usr/bin/docker
[ "$JOBS" -ge 1 ] && [ "$JOBS" -le 200 ] || { echo "JOBS: 1 to 200" >&2; exit 2; }
[ "$LINES" -ge 1 ] && [ "$LINES" -le 200 ] || { echo "LINES: 1 to 200" >&2; exit 2; }
[ "$AT_ONCE" -ge 1 ] || { echo "AT_ONCE: 1 or more" >&2; exit 2; }
case "$MODE" in stdout | stderr | tty) ;; *) echo "MODE: stdout, stderr or tty" >&2; exit 2 ;; esac

dir=$(mktemp -d /tmp/rmjobs-XXXXXX)
prefix="rmjob$$"
port=$((20000 + $$ % 20000))
engine_pid=
cleanup() {
  [ -n "$engine_pid" ] && kill "$engine_pid" 2>/dev/null || true
  [ -n "${RMJOBS_KEEP_LOG:-}" ] && cp "$dir/err" "$RMJOBS_KEEP_LOG" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

cat >"$dir/pipeline.lua" <<EOF
return {
  docker = { host = "$HOST" },
  select = { include = { name = { "$prefix-*" } } },
  batch = { flush_interval = 0.1 },
  engine = { metrics = { listen = "127.0.0.1:$port" }, log_level = "${RMJOBS_LOG_LEVEL:-info}" },
  outputs = { { type = "stdout", format = "json" } },
}
EOF
"$BIN" run --state-dir "$dir" "$dir/pipeline.lua" >"$dir/out" 2>"$dir/err" &
engine_pid=$!
i=0
until grep -q "connected to the Docker daemon" "$dir/err"; do
  i=$((i + 1))
  [ $i -le 300 ] || { echo "the engine did not connect:" >&2; cat "$dir/err" >&2; exit 1; }
  sleep 0.1
done

case "$MODE" in
  stderr) body='echo "$N $i"; echo "$N $i" >&2' ;;
  *) body='echo "$N $i"' ;;
esac
tty=
[ "$MODE" = tty ] && tty=-t
want=$LINES
[ "$MODE" = stderr ] && want=$((LINES * 2))
t0=$(date +%s.%N)
n=1
while [ $n -le "$JOBS" ]; do
  k=0 pids=
  while [ $k -lt "$AT_ONCE" ] && [ $n -le "$JOBS" ]; do
    # shellcheck disable=SC2086 # $tty is empty or -t
    timeout 60 "$DOCKER" -H "$HOST" run --rm $tty --network none --name "$prefix-$n" \
      -e N="$prefix-$n" engine-test:latest \
      sh -c "i=1; while [ \$i -le $LINES ]; do $body; i=\$((i+1)); done" \
      >"$dir/job-$n" 2>&1 </dev/null &
    pids="$pids $!"
    n=$((n + 1))
    k=$((k + 1))
  done
  # shellcheck disable=SC2086 # a list of pids
  wait $pids || true
done
t1=$(date +%s.%N)

total=$((JOBS * want))
# every line (quoted in the JSON records), counted until they are all in,
# or nothing new came for 5 s, or 60 s passed
count() { grep -o "\"line\":\"$prefix-[0-9]* [0-9]*\"" "$dir/out" | wc -l; }
last=-1 still=0 waited=0
while :; do
  got=$(count)
  [ "$got" -ge "$total" ] && break
  if [ "$got" -eq "$last" ]; then still=$((still + 1)); else still=0; fi
  last=$got
  [ $still -lt 10 ] && [ $waited -lt 120 ] || break
  sleep 0.5
  waited=$((waited + 1))
done

hist=$(curl -s --max-time 5 "http://127.0.0.1:$port/metrics" |
       grep '^engine_start_to_request_seconds\|^engine_docker_attach_total' || true)
kill -INT "$engine_pid"
rc=0
wait "$engine_pid" || rc=$?
engine_pid=
[ $rc -eq 0 ] || { echo "the engine exited with status $rc:" >&2; tail -40 "$dir/err" >&2; }

got=$(count)
distinct=$(grep -o "\"line\":\"$prefix-[0-9]* [0-9]*\"" "$dir/out" | sort | uniq -c | wc -l)
# per job: lines in (distinct), to find the jobs that lost some
lossy=0 attached=0
n=1
while [ $n -le "$JOBS" ]; do
  c=$(grep -o "\"line\":\"$prefix-$n [0-9]*\"" "$dir/out" | wc -l)
  if [ "$c" -lt "$want" ]; then
    lossy=$((lossy + 1))
    grep -F "[$prefix-$n]" "$dir/err" | sed "s/^/lost $c of $want: /"
  fi
  # the docker CLI attaches to the container before it starts it
  a=$(grep -c "^$prefix-$n [0-9]*" "$dir/job-$n" || true)
  attached=$((attached + a))
  n=$((n + 1))
done
printf 'mode %s: %d jobs (%d at a time, %.1f s), %d lines each\n' "$MODE" "$JOBS" "$AT_ONCE" \
  "$(echo "$t1 - $t0" | bc)" "$want"
printf 'lines delivered %d of %d (%d distinct texts); jobs that lost lines: %d of %d\n' \
  "$got" "$total" "$distinct" "$lossy" "$JOBS"
printf 'lines the docker CLI got through its attach before start: %d of %d\n' "$attached" "$total"
grep -c "stopped following: container removed" "$dir/err" |
  sed 's/^/engine log "container removed": /'
[ -n "$hist" ] && printf '%s\n' "$hist"
exit 0
