#!/bin/sh
# Does a Docker daemon answer at URL (unix://PATH or tcp://HOST:PORT; default
# $DOCKER_HOST, else unix:///var/run/docker.sock)? Exits 0 when GET /_ping
# returns OK within 2 s, 1 otherwise (also when curl is not installed).
#   scripts/docker-answers.sh [URL]
url=${1:-${DOCKER_HOST:-unix:///var/run/docker.sock}}
command -v curl >/dev/null 2>&1 || exit 1
case "$url" in
  unix://*) curl -s --max-time 2 --unix-socket "${url#unix://}" http://localhost/_ping ;;
  tcp://*) curl -s --max-time 2 "http://${url#tcp://}/_ping" ;;
  *) exit 1 ;;
esac 2>/dev/null | grep -q OK
