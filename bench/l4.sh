#!/usr/bin/env bash
# L4 (TCP stream) proxying: Gatehouse `streams` next to HAProxy (`mode tcp`) and nginx
# (`stream` module), one worker each, all three up at once, measured in alternating rounds:
#
#   connect     new connections per second: wrk -H "Connection: close" (one request per
#               TCP connection) to an nginx HTTP backend THROUGH each TCP proxy; conn/s and
#               the proxy's CPU time per connection
#   throughput  one bulk TCP stream: iperf3 -c through each proxy to an iperf3 server;
#               Gbit/s (received) and the proxy's CPU time per GB
#   pgbench     pgbench -S (select-only) with sslmode=require: Gatehouse terminating TLS
#               (`protocol: postgres`, plain to PostgreSQL) against PostgreSQL's own TLS
#               (direct); plus each TCP proxy passing PostgreSQL's TLS through
#
# Before measuring, every proxy must return the backend's HTTP answer, echo 32 MiB of
# random bytes unchanged (with half-close), and carry a psql session.
#
#   bench/l4.sh                           ROUNDS=3 DURATION=5 (about 4 minutes)
#   BIN=target/debug/gatehouse ROUNDS=1 DURATION=2 bench/l4.sh    # does it work end to end
#   TESTS="connect throughput" bench/l4.sh
#
# Knobs: BIN (or GATEHOUSE_BIN; default target/release/gatehouse), ROUNDS, DURATION (s per
# measured run), TESTS, CONNS (wrk -c, 32), PG_CLIENTS (8), PG_THREADS (2), PG_PASSTHROUGH
# (1: also pgbench through each TCP proxy), PG_DB (gh_bench, created and dropped),
# KEEP_TMP (1 keeps configs and logs).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"   # nginx and haproxy live in /usr/sbin

BIN=${BIN:-${GATEHOUSE_BIN:-$PWD/target/release/gatehouse}}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
TESTS=${TESTS:-"connect throughput pgbench"}
CONNS=${CONNS:-32}
PG_CLIENTS=${PG_CLIENTS:-8}
PG_THREADS=${PG_THREADS:-2}
PG_PASSTHROUGH=${PG_PASSTHROUGH:-1}
PG_DB=${PG_DB:-gh_bench}
KEEP_TMP=${KEEP_TMP:-0}
PG_ADDR=127.0.0.1 PG_PORT=5432 PG_USER=postgres   # the local PostgreSQL (trust auth, ssl=on)
STREAM_MODULE=/usr/lib/nginx/modules/ngx_stream_module.so
PROXIES="haproxy nginx gatehouse"
WARMUP=2

[[ $ROUNDS =~ ^[1-9][0-9]*$ && $DURATION =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS and DURATION are positive integers"; exit 1; }
for t in $TESTS; do
  case $t in connect | throughput | pgbench) ;; *) echo "unknown test $t (known: connect throughput pgbench)"; exit 1 ;; esac
done
# No cargo here: another build may be running, and the binary to measure is a choice.
[ -x "$BIN" ] || { echo "no Gatehouse binary at $BIN: build it (cargo build --release -p gatehouse) or set BIN"; exit 1; }

TMP=$(mktemp -d /tmp/gatehouse-l4.XXXXXX)
chmod 755 "$TMP"
. bench/lib.sh
need wrk nginx haproxy iperf3 pgbench psql openssl curl python3 ss
[ -f "$STREAM_MODULE" ] || { echo "missing nginx's stream module $STREAM_MODULE (apt-get install libnginx-mod-stream)"; exit 1; }

# lib.sh's cleanup knows one Gatehouse and one backend; here there are six servers and a
# database. Replaces it (its EXIT trap calls `cleanup` by name).
SERVERS=()       # pids of every server started here
DB_CREATED=0
cleanup() {
  local rc=$? pid i
  set +e
  trap - EXIT
  for pid in "${SERVERS[@]}"; do kill "$pid" 2>/dev/null; done
  for i in $(seq 50); do   # up to 5 s to exit on SIGTERM, then SIGKILL
    local alive=0
    for pid in "${SERVERS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for pid in "${SERVERS[@]}"; do kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  [ $DB_CREATED = 1 ] && psql_admin -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null
  if [ "$KEEP_TMP" = 1 ]; then echo "temp dir kept: $TMP" >&2; else rm -rf "$TMP"; fi
  exit $rc
}
trap 'exit 130' INT
trap 'exit 143' TERM

say() { echo "$*"; echo "$*" >>"$TMP/report.txt"; }
die() { echo "bench/l4.sh: $*" >&2; exit 1; }
psql_admin() { psql -X -q -h $PG_ADDR -p $PG_PORT -U $PG_USER -d postgres -v ON_ERROR_STOP=1 "$@"; }
# Every client gets a hard time limit, so a proxy that hangs cannot stall the script.
bounded() { timeout -k 5 $((DURATION + 30)) "$@"; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # utime+stime, all threads
HZ=$(getconf CLK_TCK)

# N distinct free loopback ports (all held open until every one is picked).
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
held = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); held.append(s)
print(" ".join(str(s.getsockname()[1]) for s in held))
EOF
}

# wait_listen PID PORT NAME: until something listens on PORT (ss, so that no test
# connection reaches a backend such as iperf3), or fail.
wait_listen() {
  for _ in $(seq 100); do
    kill -0 "$1" 2>/dev/null || die "$3 exited (KEEP_TMP=1 keeps its log in the temp dir)"
    [ -n "$(ss -Hltn "sport = :$2")" ] && return 0
    sleep 0.1
  done
  die "$3 does not listen on $2 after 10 s"
}

# Balanced order of the peers for round R (Williams design, as bench/run.sh): every peer
# runs first equally often and right after each other peer equally often over 2n rounds.
order() {
  local r=$1; shift
  local -a p=("$@") seq=(0)
  local n=${#p[@]} k row=$(((r - 1) % (2 * $#)))
  for ((k = 1; ${#seq[@]} < n; k++)); do
    seq+=("$k"); ((${#seq[@]} < n)) && seq+=("$((n - k))")
  done
  for ((k = 0; k < n; k++)); do
    local at=$k; ((row >= n)) && at=$((n - 1 - k))
    printf '%s ' "${p[$(((seq[at] + row) % n))]}"
  done
}

# ------------------------------------------------------------------ servers --

read -r BE_PORT IPERF_PORT ECHO_PORT GH_HTTP GH_ADMIN GH_PGTLS \
  HA_HTTP HA_BULK HA_ECHO HA_PG NG_HTTP NG_BULK NG_ECHO NG_PG GS_HTTP GS_BULK GS_ECHO GS_PG \
  <<<"$(free_ports 18)"
declare -A PID HTTP BULK ECHO PGP
HTTP=([haproxy]=$HA_HTTP [nginx]=$NG_HTTP [gatehouse]=$GS_HTTP)
BULK=([haproxy]=$HA_BULK [nginx]=$NG_BULK [gatehouse]=$GS_BULK)
ECHO=([haproxy]=$HA_ECHO [nginx]=$NG_ECHO [gatehouse]=$GS_ECHO)
PGP=([haproxy]=$HA_PG [nginx]=$NG_PG [gatehouse]=$GS_PG [direct]=$PG_PORT [gatehouse-tls]=$GH_PGTLS)

# Backends, shared by the three proxies: nginx answering 19 bytes over HTTP (connect),
# an iperf3 server (throughput), a byte echo (integrity check), PostgreSQL (pgbench).
nginx_backend "$BE_PORT"; SERVERS+=("$BE"); wait_listen "$BE" "$BE_PORT" "nginx backend"
iperf3 -s -B 127.0.0.1 -p "$IPERF_PORT" >"$TMP/iperf3.log" 2>&1 &
SERVERS+=($!); wait_listen $! "$IPERF_PORT" "iperf3 server"
cat >"$TMP/echo.py" <<'EOF'
# Sends back every byte it reads; at the client's EOF, half-closes after the last byte.
import socket, socketserver, sys
class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while b := self.request.recv(1 << 16):
            self.request.sendall(b)
        self.request.shutdown(socket.SHUT_WR)
class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = daemon_threads = True
Server(("127.0.0.1", int(sys.argv[1])), Echo).serve_forever()
EOF
python3 "$TMP/echo.py" "$ECHO_PORT" 2>"$TMP/echo.log" &
SERVERS+=($!); wait_listen $! "$ECHO_PORT" "echo server"

# The certificate Gatehouse's postgres stream terminates TLS with (self-signed P-256;
# pgbench with sslmode=require does not verify it).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$TMP/db.key" -out "$TMP/db.crt" 2>"$TMP/openssl.log" ||
  { cat "$TMP/openssl.log"; die "openssl could not make the certificate"; }

# HAProxy: one thread, plain TCP forwarding, no logs; timeouts only so it doesn't warn.
cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread 1
    # 2 descriptors per connection: haproxy refuses to start if maxconn needs more than
    # the hard descriptor limit (20000 on the dev machine)
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
listen http
    bind 127.0.0.1:$HA_HTTP
    server s 127.0.0.1:$BE_PORT
listen bulk
    bind 127.0.0.1:$HA_BULK
    server s 127.0.0.1:$IPERF_PORT
listen echo
    bind 127.0.0.1:$HA_ECHO
    server s 127.0.0.1:$ECHO_PORT
listen pg
    bind 127.0.0.1:$HA_PG
    server s $PG_ADDR:$PG_PORT
EOF
haproxy -db -f "$TMP/haproxy.cfg" >"$TMP/haproxy.log" 2>&1 &
PID[haproxy]=$!; SERVERS+=($!)

# nginx: one process (no master), the stream module (Debian builds it as a dynamic module
# that /etc/nginx/nginx.conf would load; this config loads it itself), no logs.
mkdir -p "$TMP/ngx"
cat >"$TMP/ngx/nginx.conf" <<EOF
load_module $STREAM_MODULE;
worker_processes 1;
master_process off;
daemon off;
pid $TMP/ngx/nginx.pid;
error_log $TMP/ngx/error.log;
events { worker_connections 4096; }
stream {
    # Pass a client's FIN on and keep reading the backend (HAProxy and Gatehouse do by
    # default); without it nginx ends the session at the first EOF and the echo check
    # gets a truncated answer.
    proxy_half_close on;
    server { listen 127.0.0.1:$NG_HTTP; proxy_pass 127.0.0.1:$BE_PORT; }
    server { listen 127.0.0.1:$NG_BULK; proxy_pass 127.0.0.1:$IPERF_PORT; }
    server { listen 127.0.0.1:$NG_ECHO; proxy_pass 127.0.0.1:$ECHO_PORT; }
    server { listen 127.0.0.1:$NG_PG; proxy_pass $PG_ADDR:$PG_PORT; }
}
EOF
nginx -c "$TMP/ngx/nginx.conf" >"$TMP/ngx/out.log" 2>&1 &
PID[nginx]=$!; SERVERS+=($!)

# Gatehouse: one worker, no sites, the same four plain TCP streams plus the postgres
# stream that terminates TLS (the backend leg is plain).
mkdir -p "$TMP/gh/sites"
cat >"$TMP/gh/gatehouse.yaml" <<EOF
workers: 1
listen: {http: 127.0.0.1:$GH_HTTP}
admin: {listen: 127.0.0.1:$GH_ADMIN}
sites_dir: sites
storage: {path: data/gh.db}
log: {level: error}
logging: {requests: false}
streams:
  - {name: http, listen: 127.0.0.1:$GS_HTTP, backends: [127.0.0.1:$BE_PORT]}
  - {name: bulk, listen: 127.0.0.1:$GS_BULK, backends: [127.0.0.1:$IPERF_PORT]}
  - {name: echo, listen: 127.0.0.1:$GS_ECHO, backends: [127.0.0.1:$ECHO_PORT]}
  - {name: pg, listen: 127.0.0.1:$GS_PG, backends: [$PG_ADDR:$PG_PORT]}
  - name: pgtls
    listen: 127.0.0.1:$GH_PGTLS
    protocol: postgres
    tls: {cert: ../db.crt, key: ../db.key}
    backends: [$PG_ADDR:$PG_PORT]
EOF
"$BIN" run --config "$TMP/gh/gatehouse.yaml" >"$TMP/gh/out.log" 2>"$TMP/gh/err.log" &
PID[gatehouse]=$!; SERVERS+=($!)

wait_listen "${PID[haproxy]}" "$HA_PG" haproxy
wait_listen "${PID[nginx]}" "$NG_PG" nginx
for _ in $(seq 100); do
  grep -q '^gatehouse listening' "$TMP/gh/out.log" && break
  kill -0 "${PID[gatehouse]}" 2>/dev/null || { tail -n 20 "$TMP/gh/err.log"; die "gatehouse exited"; }
  sleep 0.1
done
grep -q "stream.pgtls=127.0.0.1:$GH_PGTLS" "$TMP/gh/out.log" ||
  { cat "$TMP/gh/out.log"; tail -n 20 "$TMP/gh/err.log"; die "gatehouse did not report its streams"; }

mkdir -p bench/results
RESULT=bench/results/l4-$(date +%Y%m%d-%H%M%S).txt
say "command: BIN=$BIN ROUNDS=$ROUNDS DURATION=$DURATION TESTS=\"$TESTS\" CONNS=$CONNS PG_CLIENTS=$PG_CLIENTS PG_THREADS=$PG_THREADS PG_PASSTHROUGH=$PG_PASSTHROUGH bench/l4.sh"
say "date:    $(date -Is)   host: $(uname -srm), $(nproc) CPUs, load avg $(cut -d' ' -f1-3 /proc/loadavg)"
say "versions: $(haproxy -v | head -n1 | awk '{print $1, $2, $3}'), $(nginx -v 2>&1 | sed 's/.*: //'), $(iperf3 --version | head -n1 | awk '{print $1, $2}'), $(pgbench --version), $(psql_admin -tAc 'show server_version' | awk '{print "PostgreSQL " $1}')"
say "gatehouse: $(cat "$TMP/gh/out.log")"
say ""

# ------------------------------------------------------------------- checks --

# Every proxy must carry the bytes unchanged before its numbers mean anything.
cat >"$TMP/echo_check.py" <<'EOF'
# Sends N random bytes, half-closes, reads until EOF: the echo must be the same bytes.
import os, socket, sys, threading
port, n = int(sys.argv[1]), int(sys.argv[2])
data = os.urandom(n)
s = socket.create_connection(("127.0.0.1", port), timeout=20)
def send():
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
t = threading.Thread(target=send); t.start()
got = bytearray()
try:
    while b := s.recv(1 << 20):
        got += b
except socket.timeout:
    sys.exit(f"timed out after {len(got)} of {n} bytes (half-close not passed on?)")
t.join()
if got != data:
    at = next((i for i, (a, b) in enumerate(zip(got, data)) if a != b), min(len(got), n))
    sys.exit(f"got {len(got)} bytes back for {n} sent, first difference at byte {at}")
EOF
echo "checks:"
for p in $PROXIES; do
  body=$(curl -sS -m 5 "http://127.0.0.1:${HTTP[$p]}/") || die "$p: no HTTP answer through the TCP proxy"
  [ "$body" = "hello from backend" ] || die "$p: unexpected HTTP body through the TCP proxy: $body"
  python3 "$TMP/echo_check.py" "${ECHO[$p]}" $((32 << 20)) || die "$p: the echo of 32 MiB came back wrong"
  echo "  $p: HTTP through the stream ok, 32 MiB echoed unchanged with half-close"
done

if [[ " $TESTS " == *" pgbench "* ]]; then
  [ -z "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" ] ||
    die "database $PG_DB exists (left by an interrupted run?); drop it: psql -h $PG_ADDR -U $PG_USER -c 'DROP DATABASE $PG_DB'"
  psql_admin -c "CREATE DATABASE $PG_DB"; DB_CREATED=1
  pgbench -i -q -h $PG_ADDR -p $PG_PORT -U $PG_USER "$PG_DB" >"$TMP/pgbench-init.log" 2>&1 ||
    { cat "$TMP/pgbench-init.log"; die "pgbench -i failed"; }
  PG_PATHS="direct gatehouse-tls"
  [ "$PG_PASSTHROUGH" = 1 ] && PG_PATHS+=" $PROXIES"
  # What TLS the client negotiated (\conninfo) and whether PostgreSQL itself sees TLS: it
  # should not behind gatehouse-tls (Gatehouse terminates), and should everywhere else.
  for p in $PG_PATHS; do
    out=$(PGSSLMODE=require bounded psql -X -tA -h 127.0.0.1 -p "${PGP[$p]}" -U $PG_USER -d "$PG_DB" \
      -c '\conninfo' -c "SELECT count(*) FROM pgbench_accounts" \
      -c "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()" 2>&1) || { echo "$out"; die "$p: psql with sslmode=require failed"; }
    tls=$(sed -n 's/^SSL connection (protocol: \([^,]*\), cipher: \([^,]*\),.*/\1 \2/p' <<<"$out")
    [ -n "$tls" ] || { echo "$out"; die "$p: psql reports no TLS"; }
    rows=$(tail -n 2 <<<"$out" | head -n 1); pg_ssl=$(tail -n 1 <<<"$out")
    [ "$rows" = 100000 ] || { echo "$out"; die "$p: pgbench_accounts has $rows rows"; }
    echo "  pg $p: client $tls, PostgreSQL sees ssl=$pg_ssl"
  done
fi
echo ""
# Descriptors each proxy holds at rest, compared after the last round: a proxy that leaks
# connections (or closes one side and forgets the other) ends with more.
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 | wc -l; }
declare -A FDS
for p in $PROXIES; do FDS[$p]=$(fds "${PID[$p]}"); done

# --------------------------------------------------------------- measuring --

: >"$TMP/raw.tsv"   # test, name, round, rate, cpu per unit, errors

# measure_connect NAME ROUND: wrk with one request per TCP connection through NAME's stream to the
# nginx backend (which closes after answering). conn/s = req/s.
measure_connect() {
  local name=$1 pid=${PID[$1]} url="http://127.0.0.1:${HTTP[$1]}/" out t0 t1
  bounded wrk -t1 -c"$CONNS" -d${WARMUP}s -H "Connection: close" "$url" >/dev/null
  t0=$(ticks "$pid")
  out=$(bounded wrk -t1 -c"$CONNS" -d"${DURATION}s" -H "Connection: close" "$url")
  t1=$(ticks "$pid")
  awk -v name="$name" -v r="$2" -v c=$((t1 - t0)) -v hz="$HZ" '
    /requests in/ { n = $1; secs = $4 + 0 }
    /Socket errors/ { gsub(",", ""); e += $4 + $6 + $8 + $10 }
    /Non-2xx/ { e += $5 }
    END { if (n == 0) exit 1; printf "connect\t%s\t%s\t%.0f\t%.2f\t%d\n", name, r, n / secs, c / hz * 1e6 / n, e }
  ' <<<"$out" >>"$TMP/raw.tsv" || { echo "$out"; die "wrk through $name completed nothing"; }
}

# measure_throughput NAME ROUND: one iperf3 TCP stream (client -> server) through NAME for
# DURATION s; rate from the bytes the server received over the whole run, which is also
# what the proxy's CPU is divided by.
measure_throughput() {
  local name=$1 pid=${PID[$1]} t0 t1
  t0=$(ticks "$pid")
  bounded iperf3 -c 127.0.0.1 -p "${BULK[$1]}" -t "$DURATION" --connect-timeout 5000 -J >"$TMP/iperf3-$1-$2.json" ||
    { tail -n 20 "$TMP/iperf3-$1-$2.json"; die "iperf3 through $name failed"; }
  t1=$(ticks "$pid")
  python3 - "$TMP/iperf3-$1-$2.json" "$name" "$2" $((t1 - t0)) "$HZ" >>"$TMP/raw.tsv" <<'EOF'
import json, sys
path, name, rnd, ticks, hz = sys.argv[1:]
end = json.load(open(path))["end"]
recv = end["sum_received"]
if recv["bytes"] == 0:
    sys.exit(f"iperf3 through {name}: nothing received")
cpu_ms_per_gb = int(ticks) / int(hz) * 1e3 / (recv["bytes"] / 1e9)
# No error count: sent minus received is what was still in socket buffers when iperf3
# stopped counting (megabytes on loopback), not a loss; the echo check covers integrity.
print(f"throughput\t{name}\t{rnd}\t{recv['bits_per_second'] / 1e9:.3f}\t{cpu_ms_per_gb:.1f}\t-")
EOF
}

# measure_pgbench NAME ROUND [WARMUP_SECONDS]: pgbench select-only with sslmode=require
# over NAME (direct = PostgreSQL itself, gatehouse-tls = Gatehouse's postgres stream, else
# a TCP proxy). CPU is the proxy's per transaction (none for direct). With WARMUP_SECONDS,
# a warm-up run that records nothing.
measure_pgbench() {
  local name=$1 pid=${PID[${1%-tls}]:-} t0=0 t1=0 out
  [ -n "$pid" ] && t0=$(ticks "$pid")
  out=$(PGSSLMODE=require bounded pgbench -n -S -c "$PG_CLIENTS" -j "$PG_THREADS" -T "${3:-$DURATION}" \
    -h 127.0.0.1 -p "${PGP[$name]}" -U $PG_USER "$PG_DB" 2>&1) || { echo "$out"; die "pgbench over $name failed"; }
  [ -n "$pid" ] && t1=$(ticks "$pid")
  [ "${3:-}" ] && return 0   # warm-up
  awk -v name="$name" -v r="$2" -v c=$((t1 - t0)) -v hz="$HZ" -v proxied="${pid:+1}" '
    /^tps = / { tps = $3 }
    /actually processed:/ { n = $NF }
    /failed transactions:/ { e = $5 }
    END { if (n == 0) exit 1; printf "pgbench\t%s\t%s\t%.1f\t%s\t%d\n", name, r, tps, proxied ? sprintf("%.2f", c / hz * 1e6 / n) : "-", e }
  ' <<<"$out" >>"$TMP/raw.tsv" || { echo "$out"; die "pgbench over $name completed nothing"; }
}

[[ " $TESTS " == *" pgbench "* ]] && for p in $PG_PATHS; do measure_pgbench "$p" 0 $WARMUP; done

for r in $(seq "$ROUNDS"); do
  for t in $TESTS; do
    if [ "$t" = pgbench ]; then peers=$PG_PATHS; else peers=$PROXIES; fi
    # shellcheck disable=SC2086
    ord=$(order "$r" $peers)
    echo "round $r/$ROUNDS $t: $ord"
    for p in $ord; do "measure_$t" "$p" "$r"; done
  done
done

# ------------------------------------------------------------------ report --

# summary TEST RATE_LABEL RATE_DIGITS CPU_LABEL PAIRS: medians per peer and, for each pair
# "a/b" in PAIRS, a's median divided by b's (rate and CPU).
summary() {
  python3 - "$TMP/raw.tsv" "$@" <<'EOF'
import statistics, sys
path, test, rate_h, digits, cpu_h, pairs = sys.argv[1:]
rows = {}
for line in open(path):
    t, name, rnd, rate, cpu, err = line.rstrip("\n").split("\t")
    if t == test:
        r = rows.setdefault(name, {"rate": [], "cpu": [], "err": "-"})
        r["rate"].append(float(rate))
        if err != "-":
            r["err"] = int(err) + (0 if r["err"] == "-" else r["err"])
        if cpu != "-":
            r["cpu"].append(float(cpu))
med = {n: (statistics.median(r["rate"]), statistics.median(r["cpu"]) if r["cpu"] else None) for n, r in rows.items()}
d = int(digits)
print(f"  {'':<14} {rate_h:>12} {cpu_h:>14} {'errors':>7}   rounds ({rate_h})")
known = ["direct", "gatehouse-tls", "haproxy", "nginx", "gatehouse"]
for name in sorted(rows, key=lambda n: known.index(n) if n in known else len(known)):
    r = rows[name]
    rate, cpu = med[name]
    cpu_s = f"{cpu:.1f}" if cpu is not None else "-"
    print(f"  {name:<14} {rate:>12.{d}f} {cpu_s:>14} {r['err']:>7}   " + " ".join(f"{v:.{d}f}" for v in r["rate"]))
for pair in pairs.split():
    a, b = pair.split("/")
    if a not in med or b not in med:
        continue
    line = f"  {pair + ':':<24} {med[a][0] / med[b][0]:.2f}x {rate_h}"
    if med[a][1] is not None and med[b][1]:
        line += f", {med[a][1] / med[b][1]:.2f}x {cpu_h}"
    print(line)
EOF
}

say ""
say "summary: medians over $ROUNDS round(s) of ${DURATION}s; CPU = utime+stime of the proxy process (all threads) during the run"
for t in $TESTS; do
  say ""
  case $t in
  connect)
    say "connect: wrk -t1 -c$CONNS -H 'Connection: close' through each TCP proxy to nginx (1 request per connection)"
    say "$(summary connect conn/s 0 "CPU us/conn" "gatehouse/haproxy gatehouse/nginx")" ;;
  throughput)
    say "throughput: iperf3, 1 TCP stream client -> server through each proxy (received Gbit/s)"
    say "$(summary throughput Gbit/s 2 "CPU ms/GB" "gatehouse/haproxy gatehouse/nginx")" ;;
  pgbench)
    say "pgbench -S -c $PG_CLIENTS -j $PG_THREADS, sslmode=require: direct = PostgreSQL's TLS, gatehouse-tls = Gatehouse"
    say "terminating TLS (plain to PostgreSQL), haproxy/nginx/gatehouse = TCP passthrough of PostgreSQL's TLS; CPU per transaction"
    say "$(summary pgbench tps 0 "CPU us/txn" "gatehouse-tls/direct gatehouse/haproxy gatehouse/nginx")" ;;
  esac
done
sleep 1   # let the last sessions close
line="descriptors open at rest, before -> after the rounds:"
for p in $PROXIES; do line+=" $p ${FDS[$p]} -> $(fds "${PID[$p]}"),"; done
say ""
say "${line%,}"
{ echo ""; echo "raw (test name round rate cpu errors):"; cat "$TMP/raw.tsv"; } >>"$TMP/report.txt"
cp "$TMP/report.txt" "$RESULT"
echo ""
echo "results written to $RESULT"
