#!/usr/bin/env bash
# The cost of rate limiting, and its memory under a flood of distinct clients:
#   1. req/s and CPU time per request through one route with `rate_limit` off and on (a
#      quota no request reaches, so every request is checked and passes), one worker,
#      wrk with keep-alive, an nginx backend;
#   2. RSS before and after KEYS requests each from a different client address (sent as
#      X-Forwarded-For from a trusted proxy), with `per_ip: 10/min`: every address stays a
#      live key, which is the worst case for the table.
#
#   bench/ratelimit.sh            DURATION=8 KEYS=1000000
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${GATEHOUSE_BIN:-$PWD/target/release/gatehouse}
DURATION=${DURATION:-8}
KEYS=${KEYS:-1000000}
[ -x "$BIN" ] || cargo build --release -p gatehouse
for tool in wrk nginx; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install wrk nginx-light)"; exit 1; }
done
TMP=$(mktemp -d /tmp/gatehouse-ratelimit.XXXXXX)
GH= NGX=
cleanup() {
  [ -n "$GH" ] && kill "$GH" 2>/dev/null
  [ -n "$NGX" ] && kill "$NGX" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BACKEND=$(port)
mkdir -p "$TMP/nginx"
cat >"$TMP/nginx/nginx.conf" <<CONF
worker_processes 1;
master_process off;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $TMP/nginx; proxy_temp_path $TMP/nginx; fastcgi_temp_path $TMP/nginx;
  uwsgi_temp_path $TMP/nginx; scgi_temp_path $TMP/nginx;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$BACKEND; location / { return 200 "hello from backend\n"; } }
}
CONF
nginx -c "$TMP/nginx/nginx.conf" & NGX=$!

start() { # $1: the route's options line (or empty)
  local dir=$TMP/run$RANDOM
  mkdir -p "$dir/sites"
  local p a; p=$(port); a=$(port)
  cat >"$dir/gatehouse.yaml" <<CONF
workers: 1
listen: {http: 127.0.0.1:$p}
admin: {listen: 127.0.0.1:$a}
sites_dir: sites
storage: {path: data/gh.db}
log: {level: error}
logging: {requests: false}
trusted_proxies: [127.0.0.1]
CONF
  printf 'host: "*"\nroutes:\n  - path: /\n    backend: http://127.0.0.1:%s\n%s' "$BACKEND" "$1" >"$dir/sites/b.yaml"
  "$BIN" run --config "$dir/gatehouse.yaml" >"$dir/out" 2>"$dir/err" &
  GH=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$p/" >/dev/null && break; sleep 0.1; done
  PORT=$p
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$GH/stat"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$GH/status"; }
stop() { kill "$GH"; wait "$GH" 2>/dev/null || true; GH=; }

measure() { # prints "req/s CPU-us/req"
  wrk -t1 -c32 -d2s "http://127.0.0.1:$PORT/" >/dev/null
  local t0 out n t1; t0=$(cpu_ticks)
  out=$(wrk -t1 -c32 -d"${DURATION}s" "http://127.0.0.1:$PORT/")
  t1=$(cpu_ticks)
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  awk -v n="$n" -v d="$DURATION" -v c=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" \
    'BEGIN {printf "%.0f %.2f", n / d, c / hz * 1e6 / n}'
}

[ "${SKIP_COST:-0}" = 1 ] || {
echo "== cost: the same route with rate_limit off and on (quota never reached), ${ROUNDS:-3} rounds alternating"
offs=() ons=()
for _ in $(seq "${ROUNDS:-3}"); do
  start ""
  offs+=("$(measure)"); stop
  start "    options: {rate_limit: {per_ip: 1000000000/s, global: 1000000000/s}}
"
  ons+=("$(measure)"); stop
done
median() { sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
col() { local i=$1; shift; for r in "$@"; do echo "$r" | awk -v i="$i" '{print $i}'; done; }
off_rps=$(col 1 "${offs[@]}" | median); on_rps=$(col 1 "${ons[@]}" | median)
printf '%-10s %10s %12s   (medians; rounds: %s | %s)\n' "" "req/s" "CPU us/req" "${offs[*]}" "${ons[*]}"
printf '%-10s %10.0f %12.2f\n' off "$off_rps" "$(col 2 "${offs[@]}" | median)"
printf '%-10s %10.0f %12.2f\n' on "$on_rps" "$(col 2 "${ons[@]}" | median)"
awk -v a="$off_rps" -v b="$on_rps" 'BEGIN {printf "on/off: %.2fx req/s\n", b / a}'
}

echo "== memory: $KEYS distinct client addresses, per_ip: 10/min"
start "    options: {rate_limit: {per_ip: 10/min}}
"
cat >"$TMP/keys.lua" <<LUA
local n = 0
request = function()
  n = n + 1
  if n > $KEYS then n = 1 end
  local ip = string.format("10.%d.%d.%d", math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
  return wrk.format("GET", "/", {["X-Forwarded-For"] = ip})
end
LUA
# Warm up with one address, so "before" includes what serving itself holds.
cat >"$TMP/one.lua" <<'LUA'
request = function() return wrk.format("GET", "/", {["X-Forwarded-For"] = "192.0.2.1"}) end
LUA
wrk -t1 -c32 -d3s -s "$TMP/one.lua" "http://127.0.0.1:$PORT/" >/dev/null
sleep 3
before=$(rss_kb)
# Enough time for KEYS requests at a conservative 20k/s, at most 5 minutes.
secs=$(( KEYS / 20000 + 5 )); [ "$secs" -gt 300 ] && secs=300
out=$(wrk -t1 -c32 -d"${secs}s" -s "$TMP/keys.lua" "http://127.0.0.1:$PORT/")
sent=$(awk '/requests in/ {print $1}' <<<"$out")
sleep 3   # a quiet worker hands freed memory back after a second
after=$(rss_kb)
distinct=$(( sent < KEYS ? sent : KEYS ))
printf 'requests %s, distinct addresses %s; RSS %d MB before, %d MB after (%.0f bytes per key)\n' \
  "$sent" "$distinct" $((before / 1024)) $((after / 1024)) \
  "$(awk -v a="$before" -v b="$after" -v k="$distinct" 'BEGIN {print (b - a) * 1024 / k}')"
stop
