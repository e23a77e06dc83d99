#!/bin/sh
# Two `splitcast serve` replicas on 50061 and 50062 behind nginx on 50051, in the foreground;
# Ctrl-C stops all three. Edges connect to nginx: splitcast edge --server 127.0.0.1:50051
# Needs nginx (Debian: apt-get install nginx-light). Run from anywhere.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
PREFIX=${PREFIX:-/tmp/splitcast-scale-out}
mkdir -p "$PREFIX/temp"
cp "$HERE/nginx.conf" "$PREFIX/nginx.conf"
splitcast serve --port 50061 --metrics-port 9161 &
FIRST=$!
splitcast serve --port 50062 --metrics-port 9162 &
SECOND=$!
trap 'kill $FIRST $SECOND 2>/dev/null' EXIT INT TERM
nginx -p "$PREFIX" -c "$PREFIX/nginx.conf"
