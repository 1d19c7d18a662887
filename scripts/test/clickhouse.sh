#!/bin/sh
# A private ClickHouse server for the specs, on loopback, everything under DIR.
#   scripts/test/clickhouse.sh start DIR HTTP_PORT   prints the HTTP address once it
#                                               listens there itself and answers
#   scripts/test/clickhouse.sh stop DIR              stops it and removes DIR
#   scripts/test/clickhouse.sh pause DIR             kills it (SIGKILL: an outage, at once),
#                                               keeping its data; start it again later
set -eu
cmd=$1 dir=$2
case "$cmd" in
start)
  port=$3
  mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files"
  cat > "$dir/config.xml" <<XML
<yandex>
  <logger><level>warning</level><log>$dir/server.log</log><errorlog>$dir/error.log</errorlog></logger>
  <http_port>$port</http_port>
  <tcp_port>$((port + 1))</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>$dir/data/</path>
  <tmp_path>$dir/tmp/</tmp_path>
  <user_files_path>$dir/user_files/</user_files_path>
  <users_config>$dir/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
</yandex>
XML
  cat > "$dir/users.xml" <<XML
<yandex>
  <profiles><default></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks>
    <profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
XML
  clickhouse-server --config-file="$dir/config.xml" > "$dir/stdout.log" 2>&1 &
  echo $! > "$dir/server.pid"
  i=0
  # ready: this server (not another one on the port) listens and answers
  until sh "$(dirname "$0")/listening.sh" "$(cat "$dir/server.pid")" "$port" &&
        [ "$(curl -s --max-time 2 "http://127.0.0.1:$port/ping" 2>/dev/null)" = "Ok." ]; do
    i=$((i + 1))
    if [ $i -gt 120 ] || ! kill -0 "$(cat "$dir/server.pid")" 2>/dev/null; then
      echo "clickhouse did not start; its log:" >&2
      tail -n 20 "$dir/error.log" "$dir/stdout.log" >&2 2>/dev/null || true
      kill -9 "$(cat "$dir/server.pid")" 2>/dev/null || true
      exit 1
    fi
    sleep 0.25
  done
  echo "http://127.0.0.1:$port"
  ;;
stop|pause)
  if [ -f "$dir/server.pid" ]; then
    pid=$(cat "$dir/server.pid")
    if [ "$cmd" = pause ]; then kill -9 "$pid" 2>/dev/null || true; else kill "$pid" 2>/dev/null || true; fi
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/server.pid"
  if [ "$cmd" = stop ]; then case "$dir" in /tmp/?*) rm -rf "$dir" ;; esac; fi
  ;;
*) echo "usage: scripts/test/clickhouse.sh start DIR PORT | pause DIR | stop DIR" >&2; exit 2 ;;
esac
