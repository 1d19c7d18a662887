#!/bin/sh
# shellcheck disable=SC2317 # stop_engine and cleanup run from traps
# What `make run` runs after the build: the engine on examples/pipeline.lua.
#
# If a Docker daemon answers at $DOCKER_HOST (else /var/run/docker.sock), the
# engine follows that daemon's containers. Otherwise a private daemon is
# started with scripts/test/dockerd.sh in a folder under /tmp, with one demo
# container, engine-demo, that logs a numbered, levelled line every second
# (warnings and errors on stderr).
#
# Ctrl-C (or SIGTERM/SIGHUP) stops the engine (one SIGINT, then up to 15 s)
# and then the private daemon; no daemon is left running when this returns.
# Exits with the engine's exit code (0 on a clean stop).
#
#   scripts/dev/run-demo.sh [PIPELINE]     default examples/pipeline.lua
set -u

cd "$(dirname "$0")/../.." || exit 1
ENGINE=${ENGINE_BIN:-build/engine}
PIPELINE=${1:-examples/pipeline.lua}
DOCKER=/usr/bin/docker

say() { echo "run-demo: $*" >&2; }

[ -x "$ENGINE" ] || { say "$ENGINE not found: run make first"; exit 1; }
[ -f "$PIPELINE" ] || { say "$PIPELINE not found"; exit 1; }

# Is process $1 alive (and not a zombie waiting to be reaped)?
alive() {
  [ -r "/proc/$1/stat" ] && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null
}

epid=""
rc=0
private=""

# Sends the engine one SIGINT, waits up to 15 s (then SIGKILL) and reaps it.
stop_engine() {
  [ -n "$epid" ] || return 0
  if alive "$epid"; then
    kill -INT "$epid" 2>/dev/null
    n=0
    while alive "$epid" && [ "$n" -lt 150 ]; do
      sleep 0.1
      n=$((n + 1))
    done
    if alive "$epid"; then
      say "the engine did not stop within 15 s; killing it"
      kill -KILL "$epid" 2>/dev/null
    fi
  fi
  wait "$epid"
  rc=$?
  epid=""
}

cleanup() {
  trap '' INT TERM HUP
  stop_engine
  if [ -n "$private" ]; then
    say "stopping the private Docker daemon in $private"
    scripts/test/dockerd.sh stop "$private" || say "could not stop the daemon in $private"
    private=""
  fi
}

trap cleanup EXIT
trap 'stop_engine; exit "$rc"' INT TERM HUP

host=${DOCKER_HOST:-unix:///var/run/docker.sock}
if sh scripts/docker-answers.sh "$host"; then
  say "using the Docker daemon at $host"
else
  say "no Docker daemon answers at $host; starting a private one"
  private=$(mktemp -d /tmp/engine-demo.XXXXXX) || exit 1
  host=$(scripts/test/dockerd.sh start "$private") || exit 1
  # shellcheck disable=SC2016
  loop='i=0
while true; do
  i=$((i + 1))
  case $((i % 4)) in
    1) echo "n=$i level=info msg=\"request served\"" ;;
    2) echo "n=$i level=debug msg=\"cache lookup\"" ;;
    3) echo "n=$i level=warn msg=\"slow response\"" >&2 ;;
    0) echo "n=$i level=error msg=\"upstream failed\"" >&2 ;;
  esac
  sleep 1
done'
  "$DOCKER" -H "$host" run -d --network none --name engine-demo \
    --label demo=true engine-test:latest sh -c "$loop" >/dev/null || exit 1
  say "private daemon at $host with the container engine-demo; Ctrl-C stops it all"
fi
export DOCKER_HOST="$host"

# In its own session, so that a Ctrl-C reaches it once: forwarded from here.
# A background command of sh starts with SIGINT ignored; env restores it.
env --default-signal=INT setsid "$ENGINE" run "$PIPELINE" &
epid=$!
wait "$epid"
rc=$?
epid=""
exit "$rc"
