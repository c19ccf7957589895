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
TMP=$(mktemp -d /tmp/gatehouse-ratelimit.XXXXXX)
. bench/lib.sh
need wrk nginx
BACKEND=$(port)
nginx_backend "$BACKEND"

[ "${SKIP_COST:-0}" = 1 ] || {
echo "== cost: the same route with rate_limit off and on (quota never reached), ${ROUNDS:-3} rounds alternating"
offs=() ons=()
for _ in $(seq "${ROUNDS:-3}"); do
  start "$BACKEND" ""
  offs+=("$(measure)"); stop
  start "$BACKEND" "    options: {rate_limit: {per_ip: 1000000000/s, global: 1000000000/s}}
"
  ons+=("$(measure)"); stop
done
compare rate_limit "${offs[@]}" -- "${ons[@]}"
}

echo "== memory: $KEYS distinct client addresses, per_ip: 10/min"
start "$BACKEND" "    options: {rate_limit: {per_ip: 10/min}}
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
