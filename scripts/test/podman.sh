#!/bin/sh
# shellcheck disable=SC2086,SC2046 # lists of pids and the global options are split on purpose
# A private Podman API service for the integration specs, with every file it
# makes (storage, state, socket, configuration, log) under one folder DIR.
#
#   scripts/test/podman.sh start DIR   start it (if it is not up), import the test
#                                 image, print unix://DIR/podman.sock
#   scripts/test/podman.sh stop DIR    remove its containers, stop it, kill what
#                                 it left, unmount, remove DIR
#   scripts/test/podman.sh env DIR     print the podman command line (global
#                                 options included) that talks to it
#
# The service is `podman system service --time=0` on DIR's own storage (vfs
# driver), with runc, cgroupfs, the file events backend and a containers.conf
# that sets no default rlimits and no pids limit: on machines where crun and
# raised rlimits are refused, this is what runs containers. Containers still
# need `--ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --network none`.
#
# The test image engine-test:latest is busybox-static with a few applets
# linked in /bin, as for scripts/test/dockerd.sh. Only processes named podman,
# conmon or runc whose command line names DIR are ever signalled. DIR must be
# short (unix socket paths). Limits (seconds): PODMAN_START_TIMEOUT (60),
# PODMAN_STOP_TIMEOUT (20).
set -u

PODMAN=/usr/bin/podman
IMAGE=engine-test:latest
MARK=.engine-podman
START_TIMEOUT=${PODMAN_START_TIMEOUT:-60}
STOP_TIMEOUT=${PODMAN_STOP_TIMEOUT:-20}
APPLETS="sh echo sleep seq cat printf yes head dd tr true false kill env date
wc ls sed awk grep tail mkdir rm touch test [ usleep"

die() {
  echo "podman.sh: $*" >&2
  exit 1
}

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
  [ $((${#d} + 40)) -le 107 ] || die "DIR too long for unix sockets (${#d} bytes, max 67): $d"
  printf '%s\n' "$d"
}

sock() { printf 'unix://%s/podman.sock\n' "$DIR"; }

# The global options every podman command of this service takes.
globals() {
  printf '%s ' --root "$DIR/root" --runroot "$DIR/run" --tmpdir "$DIR/tmp" \
    --storage-driver vfs --runtime runc --cgroup-manager cgroupfs --events-backend file
}

# podman with the service's configuration and storage (not through the API),
# bounded by $1 seconds.
pm() {
  limit=$1
  shift
  timeout "$limit" "$PODMAN" $(globals) "$@"
}

now() { date +%s; }

is_up() {
  timeout 5 curl -sf --unix-socket "$DIR/podman.sock" http://d/_ping >/dev/null 2>&1
}

owned() {
  [ -r "/proc/$1/comm" ] || return 1
  comm=$(cat "/proc/$1/comm" 2>/dev/null) || return 1
  case "$comm" in
    podman | conmon | runc) ;;
    *) return 1 ;;
  esac
  cmd=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
  case " $cmd " in
    *"$DIR/"* | *"$DIR "*) return 0 ;;
  esac
  return 1
}

owned_pids() {
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    owned "$p" && echo "$p"
  done
}

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
  echo "--- last lines of $DIR/podman.log ---" >&2
  tail -n 30 "$DIR/podman.log" >&2 2>/dev/null
}

write_conf() {
  mkdir -p "$DIR/root" "$DIR/run" "$DIR/tmp" || die "cannot create $DIR"
  cat >"$DIR/storage.conf" <<EOF
[storage]
driver = "vfs"
runroot = "$DIR/run"
graphroot = "$DIR/root"
EOF
  cat >"$DIR/containers.conf" <<EOF
[containers]
default_ulimits = []
pids_limit = 0
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$DIR/tmp"
EOF
}

ensure_image() {
  pm 30 image exists "$IMAGE" 2>/dev/null && return 0
  bb=/bin/busybox
  [ -x "$bb" ] || die "$bb not found (install busybox-static)"
  root="$DIR/rootfs"
  rm -rf "$root"
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/proc" "$root/dev" "$root/sys"
  cp "$bb" "$root/bin/busybox"
  for a in $APPLETS; do
    ln -s busybox "$root/bin/$a"
  done
  tar -C "$root" -cf "$DIR/rootfs.tar" . || die "cannot pack the image"
  pm 120 import --change 'ENV PATH=/bin' --change 'CMD ["/bin/sh"]' "$DIR/rootfs.tar" "$IMAGE" \
    >/dev/null 2>>"$DIR/podman.log" ||
    { log_tail; die "importing $IMAGE failed"; }
  rm -rf "$root" "$DIR/rootfs.tar"
}

launch() {
  write_conf
  setsid "$PODMAN" $(globals) system service --time=0 "$(sock)" \
    </dev/null >>"$DIR/podman.log" 2>&1 &
  launched=$!
  limit=$(($(now) + START_TIMEOUT))
  until is_up; do
    if ! kill -0 "$launched" 2>/dev/null; then
      log_tail
      die "podman system service exited during start-up (DIR=$DIR)"
    fi
    if [ "$(now)" -ge "$limit" ]; then
      log_tail
      kill -KILL "$launched" 2>/dev/null
      die "podman did not answer within ${START_TIMEOUT}s (DIR=$DIR)"
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
  is_up || launch
  ensure_image
  sock
}

do_stop() {
  [ -e "$DIR/containers.conf" ] && pm 60 rm -af -t 0 >/dev/null 2>&1
  pids=$(owned_pids)
  if [ -n "$pids" ]; then
    kill -TERM $pids 2>/dev/null
    if ! wait_gone "$STOP_TIMEOUT" $pids; then
      echo "podman.sh: the service did not exit within ${STOP_TIMEOUT}s, killing it" >&2
      kill -KILL $pids 2>/dev/null
      wait_gone 10 $pids
    fi
  fi
  left=$(owned_pids)
  if [ -n "$left" ]; then
    kill -KILL $left 2>/dev/null
    wait_gone 10 $left || echo "podman.sh: still alive after SIGKILL:$left" >&2
  fi
  awk -v d="$DIR" '$2 == d || index($2, d "/") == 1 { print length($2), $2 }' /proc/mounts |
    sort -rn | cut -d' ' -f2- | while read -r m; do
      umount -l "$m" 2>/dev/null || echo "podman.sh: cannot unmount $m" >&2
    done
  if [ -d "$DIR" ]; then
    if [ -e "$DIR/$MARK" ]; then
      rm -rf "$DIR" 2>/dev/null || { sleep 1; rm -rf "$DIR"; } ||
        die "cannot remove $DIR"
    else
      echo "podman.sh: $DIR was not made by this script; not removed" >&2
    fi
  fi
  return 0
}

[ $# -eq 2 ] || die "usage: $0 start|stop|env DIR"
[ -x "$PODMAN" ] || die "$PODMAN not found (install podman and runc)"
DIR=$(resolve_dir "$2") || exit 1
CONTAINERS_CONF="$DIR/containers.conf"
CONTAINERS_STORAGE_CONF="$DIR/storage.conf"
export CONTAINERS_CONF CONTAINERS_STORAGE_CONF
case "$1" in
  start) do_start ;;
  stop) do_stop ;;
  env)
    printf 'CONTAINERS_CONF=%s/containers.conf CONTAINERS_STORAGE_CONF=%s/storage.conf %s %s\n' \
      "$DIR" "$DIR" "$PODMAN" "$(globals)"
    ;;
  *) die "usage: $0 start|stop|env DIR" ;;
esac
