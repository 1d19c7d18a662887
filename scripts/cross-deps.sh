#!/bin/sh
# Installs what the cross builds and the emulated runs need, for each
# Debian architecture named (default: arm64 armhf):
#
#   scripts/cross-deps.sh [arm64] [armhf]
#
#  - the architecture itself (dpkg --add-architecture) and the cross C
#    compiler for its GNU triplet;
#  - the target's -dev packages of libuv, libcurl, cJSON and LuaJIT (all
#    Multi-Arch: same in Debian 12, so they sit beside the amd64 ones under
#    /usr/lib/<triplet>) and the target's libc6-dev;
#  - qemu-user-static, and the target's Lua C modules the specs load
#    (luaposix, lua-cjson, LuaFileSystem, lua-system: Multi-Arch: same);
#  - the target's `luajit` interpreter and `lua-term`, which cannot be
#    installed beside the amd64 ones, unpacked with dpkg-deb -x under
#    build/cross/<arch>/root (the spec runner points LUA_CPATH there).
#
# Idempotent: apt is touched only when a package is missing, and a .deb is
# unpacked only when its files are not there yet. Needs root for apt.
set -eu
cd "$(dirname "$0")/.."

arches=${*:-arm64 armhf}

triplet() {
  case "$1" in
    arm64) echo aarch64-linux-gnu ;;
    armhf) echo arm-linux-gnueabihf ;;
    *) echo "cross-deps: unknown architecture $1 (arm64, armhf)" >&2; exit 2 ;;
  esac
}

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

want="qemu-user-static pkg-config"
for a in $arches; do
  t=$(triplet "$a")
  want="$want gcc-$t binutils-$t"
  for p in libc6-dev libuv1-dev libcurl4-openssl-dev libcjson-dev \
           libluajit-5.1-dev lua-posix lua-cjson lua-filesystem lua-system; do
    want="$want $p:$a"
  done
done

missing=""
for p in $want; do
  installed "$p" || missing="$missing $p"
done

need_arch=""
for a in $arches; do
  dpkg --print-foreign-architectures | grep -qx "$a" || need_arch="$need_arch $a"
done

if [ -n "$missing$need_arch" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "cross-deps: missing:$need_arch$missing (run as root)" >&2
    exit 1
  fi
  for a in $need_arch; do dpkg --add-architecture "$a"; done
  export DEBIAN_FRONTEND=noninteractive
  echo "cross-deps: installing$missing" >&2
  # A mirror caught mid-sync fails one index; the install below then says
  # whether anything needed is really absent.
  apt-get update -qq || { sleep 10; apt-get update -qq; } ||
    echo "cross-deps: apt-get update reported errors, going on" >&2
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# Packages that cannot be co-installed: unpacked into a private root.
for a in $arches; do
  t=$(triplet "$a")
  root=build/cross/$a/root
  if [ -x "$root/usr/bin/luajit" ] &&
     [ -e "$root/usr/lib/$t/lua/5.1/term/core.so" ]; then
    continue
  fi
  mkdir -p "$root" build/cross/$a/debs
  ( cd build/cross/$a/debs && rm -f ./*.deb &&
    apt-get download -qq -o APT::Sandbox::User=root "luajit:$a" "lua-term:$a" )
  for d in build/cross/$a/debs/*.deb; do dpkg-deb -x "$d" "$root"; done
  # Debian ships luajit as luajit-<version> plus an alternatives link.
  if [ ! -x "$root/usr/bin/luajit" ]; then
    ln -sf "$(basename "$(ls "$root"/usr/bin/luajit-* | head -n 1)")" "$root/usr/bin/luajit"
  fi
done
