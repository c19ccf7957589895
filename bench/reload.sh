#!/usr/bin/env bash
# Reload time for 1 and 100 sites: writes the site files, starts Gatehouse, and times
# `POST /api/reload` round trips (curl's time_total) and the server's own measure of each
# reload (`took_us` in the "configuration reloaded" log line: read, validate, build, swap).
#
# Usage: bench/reload.sh            (SITES="1 100" RELOADS=20 by default)
#        GATEHOUSE_BIN=target/debug/gatehouse bench/reload.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${GATEHOUSE_BIN:-target/release/gatehouse}
SITES=${SITES:-"1 100"}
RELOADS=${RELOADS:-20}
[ -x "$BIN" ] || cargo build --release -p gatehouse
command -v curl >/dev/null || { echo "missing curl"; exit 1; }
TMP=$(mktemp -d /tmp/gatehouse-reload.XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

stats() { # stdin: one number per line -> "min median max"
  sort -n | awk '{v[NR]=$1} END {printf "%.1f %.1f %.1f", v[1], v[int((NR+1)/2)], v[NR]}'
}

printf '%-6s %-28s %-28s\n' sites "POST round trip ms (min/med/max)" "server reload ms (min/med/max)"
for n in $SITES; do
  dir="$TMP/$n"
  mkdir -p "$dir/sites" "$dir/static"
  cat >"$dir/gatehouse.yaml" <<CONF
workers: 1
listen: {http: 127.0.0.1:0}
admin: {listen: 127.0.0.1:0}
sites_dir: sites
storage: {path: data/gh.db}
log: {level: info, format: json}
CONF
  # A site as people write them: two hosts, an API route with its own timeout and a
  # named upstream of two backends, static files, header rules.
  for i in $(seq 1 "$n"); do
    cat >"$dir/sites/site$i.yaml" <<SITE
hosts: [site$i.example.test, www.site$i.example.test]
upstreams:
  api:
    backends: [http://127.0.0.1:9001, http://127.0.0.1:9002]
    load_balancing: {algorithm: least_conn}
routes:
  - path: /api
    upstream: api
    options: {timeouts: {read: 10s}}
  - path: /static
    static: static
  - path: /
    backend: http://127.0.0.1:9003
options:
  headers:
    preset: security-basic
    response: {set: {x-site: "site$i"}}
SITE
  done
  "$BIN" run --config "$dir/gatehouse.yaml" >"$dir/out" 2>"$dir/err" &
  PID=$!
  for _ in $(seq 100); do grep -q admin= "$dir/out" 2>/dev/null && break; sleep 0.1; done
  admin=$(grep -o "admin=[^ ]*" "$dir/out" | cut -d= -f2 || true)
  [ -n "$admin" ] || { echo "gatehouse did not start:"; cat "$dir/err"; exit 1; }
  for _ in $(seq "$RELOADS"); do
    curl -s -o /dev/null -w '%{time_total}\n' -X POST "http://$admin/api/reload" |
      awk '{print $1 * 1000}' >>"$dir/rtt"
  done
  grep '"configuration reloaded"' "$dir/err" | grep -o '"took_us":[0-9]*' | cut -d: -f2 |
    awk '{print $1 / 1000}' >"$dir/took"
  [ "$(wc -l <"$dir/took")" -eq "$RELOADS" ] || { echo "expected $RELOADS reloads:"; tail "$dir/err"; exit 1; }
  printf '%-6s %-28s %-28s\n' "$n" "$(stats <"$dir/rtt")" "$(stats <"$dir/took")"
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
done
