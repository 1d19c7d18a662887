#!/bin/sh
# Installs the Debian 12 packages the engine and its tests need.
# Idempotent: packages already installed are skipped, and apt is not
# touched at all when nothing is missing.
#   scripts/deps.sh          build + test dependencies
#   scripts/deps.sh build    only what `make` needs
# Further groups of test packages live in scripts/deps.d/*.list (one
# package name per line, # comments), one file per concern.
set -eu
cd "$(dirname "$0")/.."

build="build-essential pkg-config libluajit-5.1-dev luajit libcurl4-openssl-dev libcjson-dev libuv1-dev zlib1g-dev"
test="lua-busted lua-posix lua-cjson docker.io busybox-static curl"
for f in scripts/deps.d/*.list; do
  [ -e "$f" ] || continue
  test="$test $(sed 's/#.*//' "$f" | tr '\n' ' ')"
done

case "${1:-all}" in
  build) want="$build" ;;
  *) want="$build $test" ;;
esac

missing=""
for p in $want; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "deps: missing packages:$missing (run as root, or install them yourself)" >&2
  exit 1
fi
echo "deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
