#!/bin/sh
# Runs the specs against a cross build under qemu-user emulation:
#
#   scripts/test/test-cross.sh ARCH       (arm64 or armhf; `make test-cross` first
#                                     installs and builds what this needs)
#
#  unit  spec/unit run by the target's own LuaJIT under qemu (a process per
#        file), so that the
#        FFI loads build/ARCH/libengine-test.so; the test tools they start
#        (pipeline_feed, fakedocker) are the ARCH builds, under qemu too
#  e2e   spec/cross run by the host's busted: build/ARCH/engine under qemu
#        against the native fake Docker API server, through a Lua filter,
#        its stdout kept in a file, checking every line arrives once
#
# Ends with one line "N passed, N failed". Exit status 0 when all passed.
set -u
cd "$(dirname "$0")/../.."
. scripts/test/busted-counts.sh
arch=${1:-arm64}
case "$arch" in
  arm64) t=aarch64-linux-gnu; qemu=qemu-aarch64-static; machine="ARM aarch64"; jit=arm64 ;;
  armhf) t=arm-linux-gnueabihf; qemu=qemu-arm-static; machine="ARM, EABI5"; jit=arm ;;
  *) echo "usage: scripts/test/test-cross.sh arm64|armhf" >&2; exit 2 ;;
esac
top=$PWD
root=$top/build/cross/$arch/root
sysroot=$top/build/cross/$arch/sysroot
for f in "build/$arch/engine" "build/$arch/libengine-test.so" "$root/usr/bin/luajit" build/fakedocker; do
  if [ ! -e "$f" ]; then
    echo "test-cross: $f is missing: run make test-cross ARCH=$arch" >&2
    exit 2
  fi
done

# Foreign binaries find their libraries in the sysroot when there is one
# (scripts/test/cross-deps.sh), else in the multiarch directories of /.
if [ -e "$sysroot/.complete" ]; then
  export QEMU_LD_PREFIX="$sysroot"
fi
# The target's Lua C modules, for the target's LuaJIT only.
cpath="$root/usr/lib/$t/lua/5.1/?.so;$sysroot/usr/lib/$t/lua/5.1/?.so;;"

# One wrapper per foreign program: the specs start them as usual.
run=$top/build/cross/$arch/run
mkdir -p "$run"
for c in engine spec/support/*.c; do
  p=$(basename "$c" .c)
  [ -x "build/$arch/$p" ] || continue
  printf '#!/bin/sh\nexec %s %s "$@"\n' "$qemu" "$top/build/$arch/$p" > "$run/$p"
  chmod 755 "$run/$p"
done

log=$(mktemp -d /tmp/engine-cross.XXXXXX)
passed=0
failed=0

# tally NAME: adds the counts of busted's summary in $log/NAME.out.
tally() {
  if ! busted_counts "$log/$1.out"; then
    echo "!! $1: busted printed no summary"
    failed=$((failed + 1)); return
  fi
  passed=$((passed + s))
  failed=$((failed + f + e + p))
}

# One LuaJIT per spec file: the emulated armhf LuaJIT has faulted late in a
# long run of every file in one process, never in a file on its own. The
# files run in CROSS_JOBS lanes at once (default 2: qemu-user runs a
# LuaJIT on one core), each lane its share of the files in turn; each
# file's output is printed whole once every lane has finished.
jobs=${CROSS_JOBS:-2}
files=""
for f in spec/unit/*_spec.lua; do
  # the installed library and its pkg-config file are the host's: the
  # emulated LuaJIT cannot load them (make test checks them natively)
  case "$f" in */embed_spec.lua) continue ;; esac
  files="$files $f"
done
unit_file() {
  f=$1
  n=unit-$(basename "$f" .lua)
  { echo "== $n ($arch, emulated LuaJIT)"
    ENGINE_LIB=build/$arch/libengine-test.so ENGINE_BIN=$run/engine ENGINE_TOOLS=$run \
      FAKEDOCKER=$run/fakedocker LUA_CPATH="$cpath" \
      "$qemu" "$root/usr/bin/luajit" /usr/bin/busted -o plainTerminal "$f" 2>&1
  } >"$log/$n.out" </dev/null
}
lane=0
while [ "$lane" -lt "$jobs" ]; do
  ( i=0
    for f in $files; do
      [ $((i % jobs)) -eq "$lane" ] && unit_file "$f"
      i=$((i + 1))
    done ) &
  lane=$((lane + 1))
done
wait
for f in $files; do
  n=unit-$(basename "$f" .lua)
  cat "$log/$n.out"
  tally "$n"
done

echo "== e2e ($arch engine, native fake server)"
ENGINE_BIN=$run/engine ENGINE_TOOLS=build ENGINE_CROSS_ARCH=$arch \
  ENGINE_CROSS_BIN=build/$arch/engine ENGINE_CROSS_MACHINE="$machine" \
  ENGINE_CROSS_JIT_ARCH=$jit \
  luajit /usr/bin/busted -o plainTerminal spec/cross 2>&1 | tee "$log/e2e.out"
tally e2e

rm -rf "$log"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
