#!/bin/sh
# shellcheck disable=SC2086 # lists of pids and ids are split on purpose
# A private Docker daemon for the integration specs and the demo, with every
# file it makes (data, state, socket, log) under one folder DIR.
#
#   scripts/test/dockerd.sh start DIR         start it (if it is not up), import the
#                                        test image, print unix://DIR/docker.sock
#   scripts/test/dockerd.sh stop DIR          remove its containers, stop it, kill
#                                        what it left, unmount, remove DIR
#   scripts/test/dockerd.sh restart-kill DIR  SIGKILL dockerd, its containerd and
#                                        its containers, then start again on
#                                        the same folders
#   scripts/test/dockerd.sh kill DIR          the same SIGKILLs, without the start:
#                                        the daemon is down (start brings it
#                                        back on the same folders)
#
# start and stop are idempotent. Only processes named dockerd, containerd,
# containerd-shim* or runc whose command line names DIR are ever signalled,
# so daemons under other folders are left alone. DIR must be short: the
# daemon's unix sockets live under it, and a socket path is at most 107 bytes.
#
# The test image engine-test:latest is busybox-static with a few applets
# linked in /bin; containers must run with --network none (no bridge exists).
#
# Always the Debian client /usr/bin/docker: another `docker` may come first
# on PATH. Limits (seconds) can be set in the environment:
# DOCKERD_START_TIMEOUT (60), DOCKERD_STOP_TIMEOUT (20).
#
# With DOCKERD_TLS_ADDR (such as 127.0.0.1:23760) and DOCKERD_TLS_CERTS (a
# folder holding ca.pem, server-cert.pem and server-key.pem) set at start,
# the daemon also listens on tcp://DOCKERD_TLS_ADDR with --tlsverify: only
# clients with a certificate signed by that CA get in.
set -u

DOCKER=/usr/bin/docker
DOCKERD=/usr/sbin/dockerd
IMAGE=engine-test:latest
MARK=.engine-dockerd
START_TIMEOUT=${DOCKERD_START_TIMEOUT:-60}
STOP_TIMEOUT=${DOCKERD_STOP_TIMEOUT:-20}
APPLETS="sh echo sleep seq cat printf yes head dd tr true false kill env date
wc ls sed awk grep tail mkdir rm touch test [ usleep"

die() {
  echo "dockerd.sh: $*" >&2
  exit 1
}

# Prints DIR as an absolute path without a trailing slash; refuses paths that
# are unsafe to remove or too long for the daemon's sockets.
resolve_dir() {
  d=$1
  case "$d" in
    "" | *[[:space:]]*) die "DIR must be a non-empty path without spaces" ;;
  esac
  if [ -d "$d" ]; then
    d=$(cd "$d" && pwd -P) || die "cannot enter $1"
  else
    case "$d" in /*) ;; *) d="$PWD/$d" ;; esac
    d=$(printf '%s' "$d" | sed 's:/*$::')
  fi
  case "$d" in
    "" | / | /tmp | /var | /home | /root | /usr | "$HOME") die "refusing DIR=$d" ;;
  esac
  # the longest socket: DIR/exec/containerd/containerd-debug.sock
  [ $((${#d} + 38)) -le 107 ] || die "DIR too long for unix sockets (${#d} bytes, max 69): $d"
  printf '%s\n' "$d"
}

sock() { printf 'unix://%s/docker.sock\n' "$DIR"; }

dk() { "$DOCKER" -H "$(sock)" "$@"; }

now() { date +%s; }

is_up() { timeout 5 "$DOCKER" -H "$(sock)" version >/dev/null 2>&1; }

# Does process $1 run one of the daemon's programs with DIR on its command line?
owned() {
  [ -r "/proc/$1/comm" ] || return 1
  comm=$(cat "/proc/$1/comm" 2>/dev/null) || return 1
  case "$comm" in
    dockerd | containerd | containerd-shim* | runc) ;;
    *) return 1 ;;
  esac
  cmd=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
  case " $cmd " in
    *"$DIR/"* | *"$DIR "*) return 0 ;;
  esac
  return 1
}

# Prints the pids of the daemon's processes (dockerd, containerd, shims, runc).
owned_pids() {
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    owned "$p" && echo "$p"
  done
}

# Prints the pids among owned_pids whose program name matches the pattern $1.
owned_named() {
  for p in $(owned_pids); do
    # shellcheck disable=SC2254 # $1 is a glob on purpose
    case "$(cat "/proc/$p/comm" 2>/dev/null)" in
      $1) echo "$p" ;;
    esac
  done
}

# Waits until none of the pids $2... is alive, for at most $1 seconds.
# Returns 1 on timeout.
wait_gone() {
  limit=$(($(now) + $1))
  shift
  while :; do
    alive=""
    for p in "$@"; do
      kill -0 "$p" 2>/dev/null && alive="$alive $p"
    done
    [ -z "$alive" ] && return 0
    [ "$(now)" -ge "$limit" ] && return 1
    sleep 0.1
  done
}

log_tail() {
  echo "--- last lines of $DIR/dockerd.log ---" >&2
  tail -n 30 "$DIR/dockerd.log" >&2 2>/dev/null
}

# Makes the busybox root file system and imports it, unless the image exists.
ensure_image() {
  dk image inspect "$IMAGE" >/dev/null 2>&1 && return 0
  bb=/bin/busybox
  [ -x "$bb" ] || die "$bb not found (install busybox-static)"
  root="$DIR/rootfs"
  rm -rf "$root"
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/proc" "$root/dev" "$root/sys"
  cp "$bb" "$root/bin/busybox"
  for a in $APPLETS; do
    ln -s busybox "$root/bin/$a"
  done
  tar -C "$root" -c . | timeout 120 "$DOCKER" -H "$(sock)" import \
    --change 'ENV PATH=/bin' --change 'CMD ["/bin/sh"]' - "$IMAGE" >/dev/null ||
    die "importing $IMAGE failed"
  rm -rf "$root"
}

launch() {
  mkdir -p "$DIR/data" "$DIR/exec" || die "cannot create $DIR"
  set --
  if [ -n "${DOCKERD_TLS_ADDR:-}" ]; then
    c=${DOCKERD_TLS_CERTS:?DOCKERD_TLS_CERTS must name the certificates folder}
    set -- -H "tcp://$DOCKERD_TLS_ADDR" --tlsverify --tlscacert "$c/ca.pem" \
      --tlscert "$c/server-cert.pem" --tlskey "$c/server-key.pem"
  fi
  # Its own session and no terminal: a Ctrl-C meant for the caller does not
  # reach it, and a caller reading our stdout is not kept waiting by it.
  setsid "$DOCKERD" \
    --data-root "$DIR/data" --exec-root "$DIR/exec" \
    --pidfile "$DIR/dockerd.pid" -H "$(sock)" \
    --storage-driver=vfs --bridge=none --iptables=false --ip6tables=false "$@" \
    </dev/null >>"$DIR/dockerd.log" 2>&1 &
  launched=$!
  limit=$(($(now) + START_TIMEOUT))
  until is_up; do
    if ! kill -0 "$launched" 2>/dev/null; then
      log_tail
      die "dockerd exited during start-up (DIR=$DIR)"
    fi
    if [ "$(now)" -ge "$limit" ]; then
      log_tail
      kill -KILL "$launched" 2>/dev/null
      die "dockerd did not answer within ${START_TIMEOUT}s (DIR=$DIR)"
    fi
    sleep 0.2
  done
}

do_start() {
  if [ -d "$DIR" ] && [ ! -e "$DIR/$MARK" ] && [ -n "$(ls -A "$DIR")" ]; then
    die "$DIR exists, is not empty and was not made by this script"
  fi
  mkdir -p "$DIR" || die "cannot create $DIR"
  DIR=$(resolve_dir "$DIR") || exit 1
  : >"$DIR/$MARK"
  if ! is_up; then
    if [ -n "$(owned_named dockerd)" ]; then
      # started but not answering yet (or wedged): give it the same bound
      limit=$(($(now) + START_TIMEOUT))
      until is_up; do
        [ "$(now)" -ge "$limit" ] && { log_tail; die "dockerd under $DIR does not answer"; }
        [ -z "$(owned_named dockerd)" ] && break
        sleep 0.2
      done
    fi
    is_up || launch
  fi
  ensure_image
  sock
}

# SIGKILLs the container init processes that runc recorded under DIR (after a
# crash the shims may be gone while containers still run).
kill_containers() {
  for st in "$DIR"/exec/runtime-runc/*/*/state.json; do
    [ -f "$st" ] || continue
    id=$(basename "$(dirname "$st")")
    pid=$(sed -n 's/.*"init_process_pid":\([0-9]*\).*/\1/p' "$st")
    [ -n "$pid" ] || continue
    grep -q "$id" "/proc/$pid/cgroup" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  done
}

do_stop() {
  if is_up; then
    ids=$(timeout 20 "$DOCKER" -H "$(sock)" ps -aq 2>/dev/null)
    [ -n "$ids" ] && timeout 60 "$DOCKER" -H "$(sock)" rm -f $ids >/dev/null 2>&1
  fi
  pids=$(owned_named dockerd)
  if [ -n "$pids" ]; then
    kill -TERM $pids 2>/dev/null
    if ! wait_gone "$STOP_TIMEOUT" $pids; then
      echo "dockerd.sh: dockerd did not exit within ${STOP_TIMEOUT}s, killing it" >&2
      kill -KILL $pids 2>/dev/null
      wait_gone 10 $pids
    fi
  fi
  kill_containers
  left=$(owned_pids)
  if [ -n "$left" ]; then
    kill -KILL $left 2>/dev/null
    wait_gone 10 $left || echo "dockerd.sh: still alive after SIGKILL:$left" >&2
  fi
  # deepest first
  awk -v d="$DIR" '$2 == d || index($2, d "/") == 1 { print length($2), $2 }' /proc/mounts |
    sort -rn | cut -d' ' -f2- | while read -r m; do
      umount -l "$m" 2>/dev/null || echo "dockerd.sh: cannot unmount $m" >&2
    done
  if [ -d "$DIR" ]; then
    if [ -e "$DIR/$MARK" ]; then
      rm -rf "$DIR" 2>/dev/null || { sleep 1; rm -rf "$DIR"; } ||
        die "cannot remove $DIR"
    else
      echo "dockerd.sh: $DIR was not made by this script; not removed" >&2
    fi
  fi
  return 0
}

do_kill() {
  [ -e "$DIR/$MARK" ] || die "no daemon folder at $DIR (run start first)"
  pids=$(owned_named dockerd; owned_named containerd)
  if [ -n "$pids" ]; then
    kill -KILL $pids 2>/dev/null
    wait_gone 10 $pids || die "dockerd or containerd survived SIGKILL:$pids"
  fi
  # The containers die too: left running, the new daemon would spend its
  # 10 s stop timeout on each of them while it restores its state.
  kill_containers
  left=$(owned_pids)
  [ -n "$left" ] && { kill -KILL $left 2>/dev/null; wait_gone 10 $left; }
  return 0
}

do_restart_kill() {
  do_kill
  do_start
}

[ $# -eq 2 ] || die "usage: $0 start|stop|restart-kill|kill DIR"
[ -x "$DOCKERD" ] || die "$DOCKERD not found (install docker.io)"
DIR=$(resolve_dir "$2") || exit 1
case "$1" in
  start) do_start ;;
  stop) do_stop ;;
  restart-kill) do_restart_kill ;;
  kill) do_kill ;;
  *) die "usage: $0 start|stop|restart-kill|kill DIR" ;;
esac
