#!/usr/bin/env bash
# Instructions per proxied request, Gatehouse vs nginx, under valgrind's callgrind.
# Instruction counts do not depend on machine load, so this is the steadiest way to compare
# the user-space work of two proxies (the kernel work per request is the same for both:
# 2 reads and 2 writes). Usage: bench/callgrind.sh   (DURATION=8 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${GATEHOUSE_BIN:-target/release/gatehouse}
DURATION=${DURATION:-8}
[ -x "$BIN" ] || cargo build --release -p gatehouse
for tool in valgrind callgrind_control nginx wrk; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install valgrind nginx wrk)"; exit 1; }
done
TMP=$(mktemp -d /tmp/gatehouse-callgrind.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BACKEND=$(port); GH=$(port); GH_ADMIN=$(port); NGX=$(port)
mkdir -p "$TMP/backend" "$TMP/nginx" "$TMP/gh/sites"
nginx_conf() { # $1 dir, $2 server block
  cat >"$1/nginx.conf" <<CONF
worker_processes 1;
master_process off;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $1; proxy_temp_path $1; fastcgi_temp_path $1; uwsgi_temp_path $1; scgi_temp_path $1;
  keepalive_requests 1000000;
  $2
}
CONF
}
nginx_conf "$TMP/backend" "server { listen 127.0.0.1:$BACKEND; location / { return 200 \"hello from backend\n\"; } }"
nginx_conf "$TMP/nginx" "upstream b { server 127.0.0.1:$BACKEND; keepalive 64; } server { listen 127.0.0.1:$NGX; location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
cat >"$TMP/gh/gatehouse.yaml" <<CONF
workers: 1
listen: {http: 127.0.0.1:$GH}
admin: {listen: 127.0.0.1:$GH_ADMIN}
sites_dir: sites
storage: {path: data/gh.db}
log: {level: warn}
logging: {requests: false}
CONF
printf 'host: "*"\nbackend: http://127.0.0.1:%s\n' "$BACKEND" >"$TMP/gh/sites/bench.yaml"
nginx -c "$TMP/backend/nginx.conf" & PIDS+=($!)

measure() { # $1 name, $2 port, rest: command
  local name=$1 p=$2; shift 2
  valgrind --tool=callgrind --callgrind-out-file="$TMP/$name.out" "$@" >"$TMP/$name.log" 2>&1 & PIDS+=($!)
  local vg=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$p/" >/dev/null && break; sleep 0.2; done
  wrk -t1 -c16 -d2s "http://127.0.0.1:$p/" >/dev/null
  callgrind_control -z "$vg" >/dev/null 2>&1
  local n; n=$(wrk -t1 -c16 -d"${DURATION}s" "http://127.0.0.1:$p/" | awk '/requests in/ {print $1}')
  callgrind_control -d "$vg" >/dev/null 2>&1; sleep 1
  local f; f=$(ls -t "$TMP/$name.out".* | head -1)
  local total; total=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
  [ -n "${KEEP_PROFILE:-}" ] && cp "$f" "$KEEP_PROFILE.$name"; kill "$vg" 2>/dev/null || true
  printf '%-10s %10d requests %14d instructions %8d per request\n' "$name" "$n" "$total" $((total / n))
}
echo "command: DURATION=$DURATION bench/callgrind.sh ($(git rev-parse --short HEAD))"
measure nginx "$NGX" nginx -c "$TMP/nginx/nginx.conf"
measure gatehouse "$GH" "$BIN" run --config "$TMP/gh/gatehouse.yaml"
