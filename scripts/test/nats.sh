#!/bin/sh
# A private nats-server with JetStream for the specs, on loopback,
# everything under DIR: clients on PORT, the monitoring endpoint on MPORT
# (/jsz?streams=1 counts a stream's messages), the store in DIR/js.
# EXTRA, when given, is a file of configuration lines appended to the
# generated file (authorization, leafnodes, a cluster); with CONF instead
# (--conf FILE) the server runs that file as it is, DIR holding its log and
# pid (the file names its own ports and store).
#   scripts/test/nats.sh start DIR PORT MPORT [EXTRA]
#   scripts/test/nats.sh start DIR --conf FILE PORT
#   scripts/test/nats.sh stop DIR        (stops it and removes DIR)
#   scripts/test/nats.sh kill DIR        (SIGKILL, keeps DIR)
set -eu
cmd=$1 dir=$2
wait_ready() { # pid port
  i=0
  until sh "$(dirname "$0")/listening.sh" "$1" "$2"; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 "$1" 2>/dev/null; then
      echo "nats-server did not start:" >&2; cat "$dir/nats.log" >&2
      kill "$1" 2>/dev/null || true
      exit 1
    fi
    sleep 0.1
  done
}
case "$cmd" in
start)
  mkdir -p "$dir"
  if [ "$3" = "--conf" ]; then
    conf=$4 port=$5
  else
    port=$3 mport=$4
    conf="$dir/nats.conf"
    cat > "$conf" <<CONF
listen: 127.0.0.1:$port
http: 127.0.0.1:$mport
jetstream { store_dir: "$dir/js", max_memory_store: 64MB, max_file_store: 1GB }
CONF
    if [ $# -ge 5 ]; then cat "$5" >> "$conf"; fi
  fi
  nats-server -c "$conf" -P "$dir/nats.pid" > "$dir/nats.log" 2>&1 &
  pid=$!
  echo "$pid" > "$dir/nats.pid"
  wait_ready "$pid" "$port"
  echo "nats://127.0.0.1:$port"
  ;;
stop | kill)
  if [ -s "$dir/nats.pid" ]; then
    pid=$(cat "$dir/nats.pid")
    if [ "$cmd" = kill ]; then
      kill -9 "$pid" 2>/dev/null || true
    else
      kill "$pid" 2>/dev/null || true
    fi
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -9 "$pid" 2>/dev/null || true
  fi
  if [ "$cmd" = stop ]; then
    case "$dir" in /tmp/?*) rm -rf "$dir" ;; esac
  fi
  ;;
*) echo "usage: scripts/test/nats.sh start DIR PORT MPORT [EXTRA] | start DIR --conf FILE PORT | stop DIR | kill DIR" >&2; exit 2 ;;
esac
