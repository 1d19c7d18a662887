#!/bin/sh
# Installs what the cross builds and the emulated runs need, for each
# Debian architecture named (default: arm64 armhf):
#
#   scripts/test/cross-deps.sh [arm64] [armhf]
#
#  - the architecture itself (dpkg --add-architecture) and the cross C
#    compiler for its GNU triplet;
#  - the target's -dev packages of libuv, libcurl, cJSON and LuaJIT and its
#    libc6-dev, and the Lua C modules the specs load (luaposix, lua-cjson,
#    LuaFileSystem, lua-system): all Multi-Arch: same in Debian 12, so they
#    are installed beside the amd64 ones under /usr/lib/<triplet>. When apt
#    cannot do that (the target's version of a library differs from the
#    host's, e.g. a mirror's index for the target lags or fails), they and
#    everything they depend on are unpacked with dpkg-deb -x into
#    build/cross/<arch>/sysroot instead, which mk/cross.mk then builds
#    against (--sysroot) and scripts/test/test-cross.sh runs with;
#  - qemu-user-static;
#  - the target's `luajit` interpreter and `lua-term`, which cannot be
#    installed beside the amd64 ones, unpacked under build/cross/<arch>/root
#    (the spec runner points LUA_CPATH there).
#
# Idempotent: apt is touched only when a package is missing, and a .deb is
# unpacked only when its files are not there yet. Needs root for apt.
set -eu
cd "$(dirname "$0")/../.."

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

apt_ready=""
# apt_install PKG...: installs with apt-get (one `apt-get update` per run).
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "cross-deps: missing: $* (run as root)" >&2
    return 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "$apt_ready" ]; then
    # A mirror caught mid-sync fails one index; what follows then says
    # whether anything needed is really absent.
    apt-get update -qq || { sleep 10; apt-get update -qq; } ||
      echo "cross-deps: apt-get update reported errors, going on" >&2
    apt_ready=1
  fi
  echo "cross-deps: installing $*" >&2
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# missing PKG...: those of PKG... not installed.
missing() {
  for p in "$@"; do installed "$p" || echo "$p"; done
}

# sysroot ARCH PKG...: the packages and everything they depend on for ARCH,
# unpacked under build/cross/ARCH/sysroot. The fallback for when the
# target's packages cannot be installed beside the host's: Multi-Arch: same
# packages must have the very version of the host's, and a mirror whose
# index for the target lags (or fails) makes that impossible.
sysroot() {
  a=$1; shift
  dir=build/cross/$a/sysroot
  list=$(echo "$*" | tr ' ' '\n' | sort)
  if [ -e "$dir/.complete" ] && [ "$(cat "$dir/.complete")" = "$list" ]; then
    return 0
  fi
  echo "cross-deps: unpacking the $a packages into $dir" >&2
  rm -rf "$dir" "build/cross/$a/sysroot-debs"
  mkdir -p "$dir" "build/cross/$a/sysroot-debs"
  debs=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
           --no-breaks --no-replaces --no-enhances $(for p in "$@"; do echo "$p:$a"; done) |
         grep -E "^[a-z0-9].*:$a\$" | sort -u)
  # shellcheck disable=SC2086
  ( cd "build/cross/$a/sysroot-debs" &&
    apt-get download -qq -o APT::Sandbox::User=root $debs )
  for d in build/cross/$a/sysroot-debs/*.deb; do dpkg-deb -x "$d" "$dir"; done
  echo "$list" > "$dir/.complete"
}

# The host's tools: cross compilers and binutils, qemu.
tools="qemu-user-static pkg-config"
for a in $arches; do
  t=$(triplet "$a")
  tools="$tools gcc-$t binutils-$t"
done
need_arch=""
for a in $arches; do
  dpkg --print-foreign-architectures | grep -qx "$a" || need_arch="$need_arch $a"
done
for a in $need_arch; do dpkg --add-architecture "$a"; apt_ready=""; done
# shellcheck disable=SC2046
set -- $(missing $tools)
[ $# -eq 0 ] || apt_install "$@"

# The target's libraries: installed beside the host's (multiarch), else
# unpacked into a sysroot.
build_pkgs="libc6-dev libuv1-dev libcurl4-openssl-dev libcjson-dev libluajit-5.1-dev zlib1g-dev libzstd-dev libmosquitto-dev"
test_pkgs="lua-posix lua-cjson lua-filesystem lua-system"
for a in $arches; do
  [ -e "build/cross/$a/sysroot/.complete" ] && { sysroot "$a" $build_pkgs $test_pkgs; continue; }
  # shellcheck disable=SC2046
  set -- $(missing $(for p in $build_pkgs $test_pkgs; do echo "$p:$a"; done))
  [ $# -eq 0 ] && continue
  if ! apt_install "$@"; then
    echo "cross-deps: the $a packages cannot sit beside the host's; using a sysroot" >&2
    sysroot "$a" $build_pkgs $test_pkgs
  fi
done

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
