#!/usr/bin/env bash
# Memory per client connection, Gatehouse beside nginx and HAProxy (one worker each, plain
# HTTP/1.1, an nginx backend). For each proxy: RSS at rest, then N keep-alive client
# connections are opened (loopback only) and every other one is served one request; RSS
# with all N open (idle), and RSS again after they are closed. Prints KB per connection.
#
#   bench/connections.sh            N=10000 by default; PEERS="nginx haproxy gatehouse"
#   MODE=tls bench/connections.sh   the same over TLS 1.3 (one ECDSA P-256 certificate)
#   MODE=h2c bench/connections.sh   HTTP/2 with prior knowledge (plain), idle after SETTINGS
#   LOAD=1 bench/connections.sh     then wrk with N concurrent connections through each,
#                                   and a fixed rate (RATE req/s in all, default N/2) over N
#                                   connections, below saturation: p50/p99
#
# The kernel's socket buffers are not in any process's RSS, so this is what each proxy
# itself keeps per connection: buffers, connection state, task and future sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
MODE=${MODE:-plain}
LOAD=${LOAD:-0}         # 1: also wrk with N concurrent connections through each proxy
DURATION=${DURATION:-8}
LOADS=()
PACED=()
RATE=${RATE:-$(( N / 2 ))}   # LOAD=1: the fixed-rate run's total requests per second
PEERS=${PEERS:-"nginx haproxy gatehouse"}
BIN=${GATEHOUSE_BIN:-target/release/gatehouse}
[ -x "$BIN" ] || cargo build --release -p gatehouse
(( N >= 2 && N <= 60000 )) || { echo "N must be between 2 and 60000"; exit 1; }
missing=()
for tool in nginx haproxy python3 wrk; do
  [[ " $PEERS nginx python3 $([[ $LOAD == 1 ]] && echo wrk) " == *" $tool "* ]] && ! command -v "$tool" >/dev/null && missing+=("$tool")
done
if (( ${#missing[@]} )); then
  [[ $(id -u) == 0 ]] || { echo "missing ${missing[*]}: apt-get install ${missing[*]}"; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Every proxy and the client need N descriptors and more; HAProxy reserves two per
# connection (client and server side) and refuses to start without them.
HARD=$(ulimit -Hn); [[ $HARD == unlimited ]] && HARD=1048576
if [[ " $PEERS " == *" haproxy "* ]] && (( N * 2 + 512 > HARD )); then
  N=$(( (HARD - 512) / 2 ))
  echo "note: the descriptor limit ($HARD) lets HAProxy hold $N connections; measuring every proxy with N=$N"
fi
ulimit -n $(( N * 2 + 512 < HARD ? N * 2 + 512 : HARD ))

TMP=$(mktemp -d /tmp/gatehouse-connections.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BACKEND=$(port)
if [[ $MODE == tls ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench.test \
    -addext subjectAltName=DNS:bench.test -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
  cat "$TMP/cert.pem" "$TMP/key.pem" >"$TMP/both.pem"
fi

nginx_conf() { # $1 dir, $2 server block
  mkdir -p "$1"
  cat >"$1/nginx.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile $(( N + 512 ));
master_process off;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log;
events { worker_connections $(( N * 2 + 256 )); }
http {
  access_log off;
  client_body_temp_path $1; proxy_temp_path $1; fastcgi_temp_path $1; uwsgi_temp_path $1; scgi_temp_path $1;
  keepalive_timeout 300s;
  keepalive_requests 1000000;
  $2
}
CONF
}
nginx_conf "$TMP/backend" "server { listen 127.0.0.1:$BACKEND backlog=4096; location / { return 200 \"hello from backend\n\"; } }"
nginx -c "$TMP/backend/nginx.conf" & PIDS+=($!)

start() { # $1 peer, $2 port; prints the pid whose RSS counts
  local p=$1 at=$2
  case $p in
    nginx)
      local ssl=""
      [[ $MODE == tls ]] && ssl=" ssl; ssl_certificate $TMP/cert.pem; ssl_certificate_key $TMP/key.pem; ssl_protocols TLSv1.3"
      [[ $MODE == h2c ]] && ssl=" http2"
      nginx_conf "$TMP/nginx" "upstream b { server 127.0.0.1:$BACKEND; keepalive 64; } server { listen 127.0.0.1:$at backlog=4096$ssl; location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
      nginx -c "$TMP/nginx/nginx.conf" >/dev/null 2>&1 & echo $! ;;
    haproxy)
      mkdir -p "$TMP/haproxy"
      cat >"$TMP/haproxy/haproxy.cfg" <<CONF
global
    nbthread 1
    maxconn $(( N + 64 ))
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 30s
    timeout http-keep-alive 300s
    http-reuse always
frontend fe
    bind 127.0.0.1:$at$([[ $MODE == tls ]] && echo " ssl crt $TMP/both.pem ssl-min-ver TLSv1.3")$([[ $MODE == h2c ]] && echo " proto h2")
    default_backend be
backend be
    server backend 127.0.0.1:$BACKEND
CONF
      haproxy -f "$TMP/haproxy/haproxy.cfg" >/dev/null 2>&1 & echo $! ;;
    gatehouse)
      mkdir -p "$TMP/gh/sites"
      local listen="{http: 127.0.0.1:$(port)}"
      [[ $MODE == tls ]] || listen="{http: 127.0.0.1:$at}"
      [[ $MODE == tls ]] && listen="{http: 127.0.0.1:$(port), https: 127.0.0.1:$at}"
      cat >"$TMP/gh/gatehouse.yaml" <<CONF
workers: 1
listen: $listen
admin: {listen: 127.0.0.1:0}
sites_dir: sites
storage: {path: data/gh.db}
log: {level: warn}
# The peers log nothing (nginx access_log off): neither does Gatehouse here.
logging: {requests: false}
server: {keepalive_timeout: 300s, header_read_timeout: 300s}
CONF
      printf 'host: bench.test\nbackend: http://127.0.0.1:%s\n' "$BACKEND" >"$TMP/gh/sites/bench.yaml"
      [[ $MODE == tls ]] && printf 'tls: {cert: %s, key: %s}\n' "$TMP/cert.pem" "$TMP/key.pem" >>"$TMP/gh/sites/bench.yaml"
      "$BIN" run --config "$TMP/gh/gatehouse.yaml" >/dev/null 2>"$TMP/gh/err.log" & echo $! ;;
  esac
}

# The client: opens N connections, serves every other one a request, reports the proxy's
# RSS at rest, with all open, and after closing them.
cat >"$TMP/client.py" <<'PY'
import socket, ssl, sys, time
pid, port, n, mode = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
def connect():
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    if mode == "h2c":
        s.sendall(H2_START)
    return ctx.wrap_socket(s, server_hostname="bench.test") if mode == "tls" else s
def rss():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
def settle(quiet=1.0):
    # RSS settles once the proxy has dealt with what was sent: unchanged for `quiet` s.
    last, same = rss(), 0
    while same < quiet / 0.2:
        time.sleep(0.2)
        now = rss()
        same = same + 1 if now == last else 0
        last = now
    return last
REQ = b"GET / HTTP/1.1\r\nHost: bench.test\r\n\r\n"
# HTTP/2 with prior knowledge: the preface and an empty SETTINGS frame, then (to be served)
# one GET on stream 1: :method GET, :scheme http, :path / (static table), :authority.
H2_START = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
H2_BLOCK = b"\x82\x86\x84\x41\x0abench.test"
H2_GET = len(H2_BLOCK).to_bytes(3, "big") + b"\x01\x05\x00\x00\x00\x01" + H2_BLOCK
def h2_answer(s, stream_get):
    s.sendall(stream_get)
    data = b""
    # Read frames until a DATA or HEADERS frame with END_STREAM on stream 1.
    while True:
        while len(data) < 9:
            chunk = s.recv(65536)
            if not chunk: raise SystemExit("connection closed by the proxy")
            data += chunk
        length = int.from_bytes(data[:3], "big"); kind, flags = data[3], data[4]
        stream = int.from_bytes(data[5:9], "big") & 0x7fffffff
        while len(data) < 9 + length:
            chunk = s.recv(65536)
            if not chunk: raise SystemExit("connection closed by the proxy")
            data += chunk
        data = data[9 + length:]
        if stream == 1 and kind in (0, 1) and flags & 1:
            return
def answer(s):
    if mode == "h2c":
        return h2_answer(s, H2_GET)
    s.sendall(REQ)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk: raise SystemExit("connection closed by the proxy")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0])
    while len(body) < length:
        body += s.recv(65536)
# Warm up: the proxy's own backend connection and first allocations.
w = connect(); answer(w); w.close()
base = settle()
conns = []
for i in range(n):
    s = connect()
    if i % 2 == 0:
        answer(s)
    conns.append(s)
held = settle()
for s in conns[1::2]:
    if mode == "h2c":
        h2_answer(s, H2_GET)   # stream 1 is still unused on these
    else:
        answer(s)   # the other half, still alive after the wait
for s in conns:
    s.close()
# Gatehouse hands freed memory back after a second without work; 3 s covers it.
after = settle(3.0)
print(f"{base} {held} {after}")
PY

printf '%-10s %12s %14s %12s %16s\n' proxy "rest KB" "N open KB" "per conn" "after close KB"
scheme=http; [[ $MODE == tls ]] && scheme=https
ready() { # $1 port: waits until the proxy answers
  local h2=(); [[ $MODE == h2c ]] && h2=(--http2-prior-knowledge)
  for _ in $(seq 100); do curl -skf "${h2[@]}" -o /dev/null --resolve "bench.test:$1:127.0.0.1" "$scheme://bench.test:$1/" && break; sleep 0.1; done
}

for p in $PEERS; do
  at=$(port)
  pid=$(start "$p" "$at"); PIDS+=("$pid")
  ready "$at"
  read -r base held after < <(python3 "$TMP/client.py" "$pid" "$at" "$N" "$MODE")
  per=$(python3 -c "print(f'{($held - $base) / $N:.2f} KB')")
  printf '%-10s %12d %14d %12s %16d\n' "$p" "$base" "$held" "$per" "$after"
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
done
if [[ $LOAD == 1 ]]; then
  # Each proxy freshly started, twice, in the order given and then reversed (the machine's
  # state after one heavy run, such as sockets in TIME_WAIT, weighs on the next).
  cat >"$TMP/paced.lua" <<LUA
math.randomseed(os.time())
function delay() return math.random(0, math.floor(2000 * $N / $RATE)) end
LUA
  for p in $PEERS $(printf '%s\n' $PEERS | tac); do
    # Each saturating run opens tens of thousands of backend connections (every proxy keeps
    # 64 idle ones and closes the rest), and their TIME_WAIT sockets make the next run's
    # connects search for a free port (half the CPU in the kernel): wait until they are
    # gone (Linux keeps them 60 s).
    for _ in $(seq 75); do (( $(ss -Htan state time-wait | wc -l) < 1000 )) && break; sleep 1; done
    at=$(port)
    pid=$(start "$p" "$at"); PIDS+=("$pid")
    ready "$at"
    # All N connections busy at once: wrk keeps N requests in flight.
    wrk -t2 -c"$N" -d"${DURATION}s" --latency "$scheme://127.0.0.1:$at/" -H "Host: bench.test" >"$TMP/wrk-$p.txt" 2>&1 || true
    LOADS+=("$(printf '%-10s %10s req/s   p99 %s' "$p" "$(awk '/Requests\/sec/ {print $2}' "$TMP/wrk-$p.txt")" "$(awk '$1 == "99%" {print $2}' "$TMP/wrk-$p.txt")")")
    # The same N connections, paced: RATE requests per second in all. Each connection
    # waits a random 0..2x(N/RATE) s before each request (wrk's `delay` hook), so the
    # requests spread evenly instead of arriving in bursts; wrk measures each from send.
    wrk -t2 -c"$N" -d"${DURATION}s" --latency -s "$TMP/paced.lua" "$scheme://127.0.0.1:$at/" -H "Host: bench.test" >"$TMP/paced-$p.txt" 2>&1 || true
    PACED+=("$(printf '%-10s %10s req/s   p50 %s   p99 %s' "$p" "$(awk '/Requests\/sec/ {print $2}' "$TMP/paced-$p.txt")" "$(awk '$1 == "50%" {print $2}' "$TMP/paced-$p.txt")" "$(awk '$1 == "99%" {print $2}' "$TMP/paced-$p.txt")")")
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  done
  echo "wrk -t2 -c$N -d${DURATION}s through each proxy (in run order):"
  printf '%s\n' "${LOADS[@]}"
  echo "wrk paced to about $RATE req/s in all over $N connections (${DURATION}s, in run order):"
  printf '%s\n' "${PACED[@]}"
fi
echo "command: MODE=$MODE N=$N bench/connections.sh ($(git rev-parse --short HEAD)); one worker each, $(case $MODE in tls) echo "HTTP/1.1 over TLS 1.3";; h2c) echo "HTTP/2 with prior knowledge";; *) echo "plain HTTP/1.1";; esac), half of the connections served one request"
