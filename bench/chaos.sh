#!/usr/bin/env bash
# Chaos on loopback: constant load of GET requests through an upstream of three backends
# while one backend is killed (SIGKILL) and started again, and the configuration is
# edited 20 times (file writes picked up by the watcher, SIGHUP, POST /api/reload). The
# client must see 0 failed requests. Bounded: about DURATION seconds, then everything stops.
#
# Reports requests, failures (by kind), each backend's share, the reloads and their times
# (the server's own `took_us`). Exits 1 on any failed request.
#
#   bench/chaos.sh                  DURATION=30 CLIENTS=8 EDITS=20
#   GATEHOUSE_BIN=target/debug/gatehouse bench/chaos.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${GATEHOUSE_BIN:-target/release/gatehouse}
DURATION=${DURATION:-30}
CLIENTS=${CLIENTS:-8}
EDITS=${EDITS:-20}
[ -x "$BIN" ] || cargo build --release -p gatehouse
command -v python3 >/dev/null || { echo "missing python3"; exit 1; }
command -v curl >/dev/null || { echo "missing curl (apt-get install curl)"; exit 1; }
TMP=$(mktemp -d /tmp/gatehouse-chaos.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  [ -n "${GH:-}" ] && kill -9 "$GH" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# A small keep-alive HTTP/1.1 backend: answers every GET with its name.
cat >"$TMP/backend.py" <<'PY'
import http.server, sys
name, port = sys.argv[1], int(sys.argv[2])
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = name.encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.send_header("x-backend", name)
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
S(("127.0.0.1", port), H).serve_forever()
PY

# The client: CLIENTS threads, each on its own keep-alive connection (a new one after any
# error), GET as fast as answers come, for the duration. Every non-200 answer and every
# request without an answer is a failure.
cat >"$TMP/client.py" <<'PY'
import collections, http.client, sys, threading, time
addr, duration, clients = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
host, port = addr.rsplit(":", 1)
end = time.time() + duration
lock = threading.Lock()
ok = collections.Counter(); failed = collections.Counter()
def run():
    conn = None
    while time.time() < end:
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, int(port), timeout=10)
            conn.request("GET", "/item", headers={"Host": "chaos.test"})
            r = conn.getresponse()
            r.read()
            with lock:
                if r.status == 200:
                    ok[r.getheader("x-backend")] += 1
                else:
                    failed["status %d" % r.status] += 1
            if r.getheader("connection", "").lower() == "close":
                conn.close(); conn = None
        except Exception as e:
            with lock:
                failed[type(e).__name__] += 1
            if conn is not None:
                conn.close()
            conn = None
threads = [threading.Thread(target=run) for _ in range(clients)]
for t in threads: t.start()
for t in threads: t.join()
total = sum(ok.values()) + sum(failed.values())
print("requests %d" % total)
print("failed %d %s" % (sum(failed.values()), dict(failed)))
print("by backend %s" % dict(sorted(ok.items())))
PY

P1=$(free_port); P2=$(free_port); P3=$(free_port)
start_backend() { python3 "$TMP/backend.py" "$1" "$2" & PIDS+=($!); }
start_backend b1 "$P1"; start_backend b2 "$P2"; start_backend b3 "$P3"
B3_PID=${PIDS[2]}

mkdir -p "$TMP/sites"
cat >"$TMP/gatehouse.yaml" <<CONF
workers: 2
listen: {http: 127.0.0.1:0}
admin: {listen: 127.0.0.1:0}
sites_dir: sites
storage: {path: data/gh.db}
log: {level: info, format: json}
CONF
site() { # $1: a value that changes with each edit
  cat >"$TMP/sites/.chaos.yaml.tmp" <<SITE
host: chaos.test
upstreams:
  app:
    backends: [http://127.0.0.1:$P1, http://127.0.0.1:$P2, http://127.0.0.1:$P3]
    health_check: {path: /health, interval: 500ms, timeout: 300ms, unhealthy_after: 2, healthy_after: 2}
    passive_check: {failures: 3, ejection: 5s}
    retries: {attempts: 3, backoff: 5ms, budget: 50%}
routes:
  - path: /
    upstream: app
    options:
      timeouts: {connect: 1s, read: 5s}
      headers: {response: {set: {x-edit: "$1"}}}
SITE
  mv "$TMP/sites/.chaos.yaml.tmp" "$TMP/sites/chaos.yaml"
}
site 0
"$BIN" run --config "$TMP/gatehouse.yaml" >"$TMP/out" 2>"$TMP/err" &
GH=$!
for _ in $(seq 100); do grep -q admin= "$TMP/out" 2>/dev/null && break; sleep 0.1; done
http=$(grep -o "http=[^ ]*" "$TMP/out" | cut -d= -f2 || true)
admin=$(grep -o "admin=[^ ]*" "$TMP/out" | cut -d= -f2 || true)
[ -n "$http" ] || { echo "gatehouse did not start:"; cat "$TMP/err"; exit 1; }
# Every backend in rotation before the load starts.
for _ in $(seq 100); do
  up=$(curl -s "http://$admin/api/backends" | python3 -c 'import json, sys; print(sum(b["health"] == "up" for b in json.load(sys.stdin)["backends"]))')
  [ "$up" = 3 ] && break; sleep 0.1
done

python3 "$TMP/client.py" "$http" "$DURATION" "$CLIENTS" >"$TMP/client.out" &
CLIENT=$!

# The script of the run, spread over the duration: edits every DURATION/(EDITS+4) seconds,
# the kill at a quarter, the restart at half.
step=$(python3 -c "print($DURATION / ($EDITS + 4))")
kill_at=$((EDITS / 4)); restart_at=$((EDITS / 2))
for i in $(seq 1 "$EDITS"); do
  sleep "$step"
  site "$i"
  case $((i % 3)) in
    0) how=file ;;                                                     # the watcher
    1) how=sighup; kill -HUP "$GH" ;;
    2) how=api; curl -s -o /dev/null -X POST "http://$admin/api/reload" ;;
  esac
  echo "edit $i ($how)"
  if [ "$i" -eq "$kill_at" ]; then kill -9 "$B3_PID"; wait "$B3_PID" 2>/dev/null || true; echo "b3 killed (SIGKILL)"; fi
  if [ "$i" -eq "$restart_at" ]; then start_backend b3 "$P3"; echo "b3 started again"; fi
done
wait "$CLIENT"
sleep 1   # the last file edit's reload
echo
cat "$TMP/client.out"
took=$(grep '"configuration reloaded"' "$TMP/err" | grep -o '"took_us":[0-9]*' | cut -d: -f2 | sort -n)
n=$(printf '%s\n' "$took" | grep -c . || true)
printf 'reloads %d; server reload ms min/median/max: %s\n' "$n" \
  "$(printf '%s\n' "$took" | awk '{v[NR]=$1/1000} END {if (NR) printf "%.1f %.1f %.1f", v[1], v[int((NR+1)/2)], v[NR]}')"
grep -c 'backend down\|backend ejected' "$TMP/err" | xargs printf 'backend out-of-rotation events: %s\n'
failed=$(awk '/^failed / {print $2}' "$TMP/client.out")
[ "$failed" = 0 ] || { echo "FAILED REQUESTS: $failed"; exit 1; }
echo "0 failed requests"
