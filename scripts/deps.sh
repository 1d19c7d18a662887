#!/bin/sh
# Installs the Debian 12 packages the engine needs, one group at a time.
# Idempotent: packages already installed are skipped, and apt is not
# touched at all when nothing is missing.
#
#   scripts/deps.sh build        what `make` needs (compiler, headers)
#   scripts/deps.sh run          build + what `make run` needs: curl (to ask
#                                whether a Docker daemon answers), and
#                                docker.io + busybox-static (a private daemon
#                                and its demo image) only when no daemon
#                                answers at $DOCKER_HOST (else
#                                /var/run/docker.sock). No test tool, no server.
#   scripts/deps.sh [test]       build + everything `make test` needs: busted,
#                                docker.io, and every scripts/deps.d/*.list
#   scripts/deps.sh --list GROUP prints the packages GROUP wants, one a line,
#                                installed or not; installs nothing
#
# Further groups of test packages live in scripts/deps.d/*.list (one
# package name per line, # comments), one file per concern.
set -eu
cd "$(dirname "$0")/.."

build="build-essential pkg-config libluajit-5.1-dev luajit libcurl4-openssl-dev libcjson-dev libuv1-dev zlib1g-dev libzstd-dev libmosquitto-dev libnats-dev"
probe="curl"
daemon="docker.io busybox-static"
test="lua-busted lua-posix lua-cjson docker.io busybox-static curl"
for f in scripts/deps.d/*.list; do
  [ -e "$f" ] || continue
  test="$test $(sed 's/#.*//' "$f" | tr '\n' ' ')"
done

list=""
if [ "${1:-}" = "--list" ]; then
  list=1
  shift
fi
group=${1:-test}

# Prints the packages of the group, in two steps for `run`: the packages of
# step 1, then those of step 2 (which depend on what step 1 installed).
want() {
  case "$group:$1" in
    build:1) echo "$build" ;;
    run:1) echo "$build $probe" ;;
    run:2) sh scripts/docker-answers.sh || echo "$daemon" ;;
    test:1 | all:1) echo "$build $test" ;;
  esac
}

missing() {
  for p in $1; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      echo "$p"
    fi
  done
}

install() {
  m=$(missing "$1" | tr '\n' ' ')
  [ -z "${m% }" ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "deps: missing packages: $m(run as root, or install them yourself)" >&2
    exit 1
  fi
  echo "deps: installing $m" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $m >/dev/null
}

case "$group" in
  build | run | test | all) ;;
  *) echo "usage: scripts/deps.sh [--list] [build|run|test]" >&2; exit 2 ;;
esac

if [ -n "$list" ]; then
  # Step 2 asks the daemon with curl: say what step 1 would install first.
  for p in $(want 1) $(want 2); do echo "$p"; done | awk '!seen[$0]++'
  exit 0
fi
install "$(want 1)"
install "$(want 2)"
