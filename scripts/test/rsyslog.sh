#!/bin/sh
# A private rsyslog for the specs, on loopback, everything under DIR: TCP
# (octet-counted framing) and UDP input on PORT, every message written to
# DIR/out.log as "APP-NAME MSGID MSG".
#   scripts/test/rsyslog.sh start DIR PORT
#   scripts/test/rsyslog.sh stop DIR        (stops it and removes DIR)
set -eu
cmd=$1 dir=$2
case "$cmd" in
start)
  port=$3
  mkdir -p "$dir"
  cat > "$dir/rsyslog.conf" <<CONF
global(workDirectory="$dir" maxMessageSize="128k")
module(load="imtcp")
module(load="imudp")
input(type="imtcp" address="127.0.0.1" port="$port")
input(type="imudp" address="127.0.0.1" port="$port")
template(name="raw" type="string" string="%app-name% %msgid% %msg%\n")
*.* action(type="omfile" file="$dir/out.log" template="raw")
CONF
  rsyslogd -n -f "$dir/rsyslog.conf" -i "$dir/rsyslog.pid" > "$dir/rsyslog.log" 2>&1 &
  pid=$!
  i=0
  # ready: this rsyslogd (not another server on the port) listens there
  until sh "$(dirname "$0")/listening.sh" "$pid" "$port"; do
    i=$((i + 1))
    if [ $i -gt 80 ] || ! kill -0 "$pid" 2>/dev/null; then
      echo "rsyslog did not start:" >&2; cat "$dir/rsyslog.log" >&2
      kill "$pid" 2>/dev/null || true
      exit 1
    fi
    sleep 0.1
  done
  echo "127.0.0.1:$port"
  ;;
stop)
  if [ -s "$dir/rsyslog.pid" ]; then
    pid=$(cat "$dir/rsyslog.pid")
    kill "$pid" 2>/dev/null || true
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -9 "$pid" 2>/dev/null || true
  fi
  case "$dir" in /tmp/?*) rm -rf "$dir" ;; esac
  ;;
*) echo "usage: scripts/test/rsyslog.sh start DIR PORT | stop DIR" >&2; exit 2 ;;
esac
