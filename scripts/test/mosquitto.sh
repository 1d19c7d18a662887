#!/bin/sh
# A private mosquitto (Debian's) for the specs and the benchmark, on
# 127.0.0.1:PORT, everything under DIR: its config, its persistence file
# (sessions and queued messages survive a restart), its log.
#   scripts/test/mosquitto.sh start DIR PORT [auth] [tls]
#       auth: only the user "engine" with the password in DIR/password
#             (written by the script) may connect
#       tls:  TLS on PORT with a certificate for 127.0.0.1 signed by a CA
#             made here (DIR/ca.crt)
#   scripts/test/mosquitto.sh restart DIR   (stops it, starts it again: same
#                                       config, same persistence)
#   scripts/test/mosquitto.sh stop DIR      (stops it and removes DIR)
#   scripts/test/mosquitto.sh halt DIR      (stops it, keeps DIR)
# Prints 127.0.0.1:PORT once it listens.
set -eu
cmd=$1 dir=$2
here=$(dirname "$0")

run() {
  port=$(cat "$dir/port")
  mosquitto -c "$dir/mosquitto.conf" > "$dir/mosquitto.out" 2>&1 &
  pid=$!
  echo "$pid" > "$dir/mosquitto.pid"
  i=0
  # ready: this mosquitto (not another server on the port) listens there
  until sh "$here/listening.sh" "$pid" "$port"; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 "$pid" 2>/dev/null; then
      echo "mosquitto did not start:" >&2; cat "$dir/mosquitto.out" "$dir/mosquitto.log" >&2 2>/dev/null
      kill "$pid" 2>/dev/null || true
      exit 1
    fi
    sleep 0.1
  done
  echo "127.0.0.1:$port"
}

halt() {
  if [ -s "$dir/mosquitto.pid" ]; then
    pid=$(cat "$dir/mosquitto.pid")
    kill "$pid" 2>/dev/null || true   # SIGTERM: it saves its persistence file
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/mosquitto.pid"
  fi
}

case "$cmd" in
start)
  port=$3 auth=${4:-} tls=${5:-}
  mkdir -p "$dir/data"
  echo "$port" > "$dir/port"
  {
    echo "user $(id -un)"
    echo "listener $port 127.0.0.1"
    echo "persistence true"
    echo "persistence_location $dir/data/"
    echo "autosave_interval 1"
    echo "max_queued_messages 0"
    echo "log_dest file $dir/mosquitto.log"
    echo "log_type error"
    echo "log_type warning"
    echo "log_type notice"
    echo "log_type information"
  } > "$dir/mosquitto.conf"
  if [ "$auth" = auth ]; then
    printf 'secret-%s\n' "$$" > "$dir/password"
    touch "$dir/passwd"
    chmod 600 "$dir/passwd"
    mosquitto_passwd -b "$dir/passwd" engine "$(cat "$dir/password")"
    echo "allow_anonymous false" >> "$dir/mosquitto.conf"
    echo "password_file $dir/passwd" >> "$dir/mosquitto.conf"
  else
    echo "allow_anonymous true" >> "$dir/mosquitto.conf"
  fi
  if [ "$tls" = tls ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=test CA" \
      -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
      -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\n' > "$dir/san.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
      -CAcreateserial -days 2 -extfile "$dir/san.ext" -out "$dir/server.crt" 2>/dev/null
    {
      echo "cafile $dir/ca.crt"
      echo "certfile $dir/server.crt"
      echo "keyfile $dir/server.key"
    } >> "$dir/mosquitto.conf"
  fi
  run
  ;;
restart)
  halt
  run
  ;;
halt)
  halt
  ;;
stop)
  halt
  case "$dir" in /tmp/?*) rm -rf "$dir" ;; esac
  ;;
*) echo "usage: scripts/test/mosquitto.sh start DIR PORT [auth] [tls] | restart DIR | halt DIR | stop DIR" >&2; exit 2 ;;
esac
