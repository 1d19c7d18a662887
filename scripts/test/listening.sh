#!/bin/sh
# scripts/test/listening.sh PID PORT: exits 0 when process PID itself holds a
# TCP socket listening on PORT (IPv4), so that a readiness check knows the
# server answering on the port is the one it started and not another one.
set -eu
pid=$1 port=$2
hex=$(printf '%04X' "$port")
# inodes of the sockets listening (state 0A) on the port
inodes=$(awk -v p=":$hex" '$2 ~ p"$" && $4 == "0A" { print $10 }' /proc/net/tcp)
[ -n "$inodes" ] || exit 1
for inode in $inodes; do
  for fd in /proc/"$pid"/fd/*; do
    [ "$(readlink "$fd" 2>/dev/null)" = "socket:[$inode]" ] && exit 0
  done
done
exit 1
