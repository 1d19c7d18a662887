#!/bin/sh
# The arm64 cross build under emulation: installs the cross toolchain and
# the arm64 libraries when missing (scripts/test/cross-deps.sh, about 40 s on a
# fresh machine), builds build/arm64, runs the unit specs with the arm64
# LuaJIT and an end-to-end run of the arm64 engine under qemu-user
# (about 30 s). Bounded: 10 minutes at most.
cd "$(dirname "$0")/../../.."
exec timeout -k 10 600 make --no-print-directory -j"${TEST_JOBS:-2}" test-cross ARCH=arm64
