#!/usr/bin/env bash
# Gatehouse benchmark harness.
#
# MODE=http (default): compares Gatehouse with nginx, haproxy and caddy as
# HTTP/1.1 reverse proxies in front of ONE shared backend (an nginx returning a
# fixed 19-byte body). Every proxy gets one worker/thread, is measured with the
# same wrk load, and is reported as req/s, p99 latency, RSS and CPU time per
# request, plus ratios to nginx.
#
# MODE=https: the proxies (nginx, haproxy, gatehouse; not caddy) terminate TLS
# with one certificate generated per run (test CA + ECDSA P-256 leaf for
# bench.test and 127.0.0.1) in front of the same plain-HTTP backend. Three
# measurements per proxy per round: https-keepalive (wrk over HTTPS),
# handshakes (openssl s_time -new: full handshakes, no resumption) and h2
# (h2load, HTTP/2 over TLS).
#
# See bench/README.md for how to read the numbers.
#
# Knobs (environment): MODE (http|https, default http), DURATION (s, default
# 8), ROUNDS (default 3), PEERS (default "nginx haproxy caddy gatehouse"; in
# MODE=https "nginx haproxy gatehouse"), PIN (1 = taskset), WORKERS (worker
# processes/threads per proxy, default 1; bench/scaling.sh compares 1 and 2),
# GATEHOUSE_BIN (default <repo>/target/release/gatehouse), KEEP_TMP (1 = keep
# the temp dir with configs and logs, for debugging).

set -euo pipefail

# ---------------------------------------------------------------- settings --

SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
DEFAULT_GATEHOUSE_BIN="$REPO_ROOT/target/release/gatehouse"

MODE=${MODE:-http}
DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
if [[ $MODE == https ]]; then
    PEERS=${PEERS:-"nginx haproxy gatehouse"}
else
    PEERS=${PEERS:-"nginx haproxy caddy gatehouse"}
fi
PIN=${PIN:-0}
WORKERS=${WORKERS:-1}
# REQUEST_LOG=1: Gatehouse stores a row per request in its database (its default); 0 (the
# default here): off, like the peers' access logs. bench/request-log.sh compares the two.
REQUEST_LOG=${REQUEST_LOG:-0}
# SAME_HEADERS=1: nginx and haproxy also send what Gatehouse sends by default
# (X-Forwarded-For/-Proto/-Host, X-Real-IP, the client's Host, X-Request-ID up
# and back), so every proxy does the same work. Default 0: their minimal configs.
SAME_HEADERS=${SAME_HEADERS:-0}
GATEHOUSE_BIN=${GATEHOUSE_BIN:-$DEFAULT_GATEHOUSE_BIN}
KEEP_TMP=${KEEP_TMP:-0}

WARMUP=2              # seconds of discarded load before every measured run
CONNECTIONS=64        # wrk -c (and h2load -c); see UPSTREAM_IDLE for the upstream pools
READY_TIMEOUT=${READY_TIMEOUT:-20}     # seconds a server gets to answer its first request
BODY="hello from backend"   # backend body (19 bytes with the trailing \n)

# MODE=https only.
TLS_HOST=bench.test   # the certificate's DNS name (its other SAN is IP 127.0.0.1)
H2_STREAMS=10         # h2load -m: concurrent streams per HTTP/2 connection
HTTPS_TESTS="https-keepalive handshakes h2"

# Idle keep-alive connections a proxy may keep to the backend: at least the
# number of requests in flight, or it reconnects to the backend under load.
# wrk has $CONNECTIONS in flight; h2load (MODE=https) has CONNECTIONS x
# H2_STREAMS. (haproxy keeps idle server connections without a fixed cap.)
if [[ $MODE == https ]]; then
    UPSTREAM_IDLE=$((CONNECTIONS * H2_STREAMS))
else
    UPSTREAM_IDLE=$CONNECTIONS
fi

# Ports that belong to other services on dev machines; never use them even if
# the kernel happens to offer one.
BANNED_PORTS="5432 3306 6379 5672 1883 4222 8080"

# nginx lives in /usr/sbin, which is not on every user's PATH.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

# Exact invocation, printed at the top of the report (effective knobs included
# so a run can be reproduced even when they came from the environment).
CMDLINE="MODE=$MODE DURATION=$DURATION ROUNDS=$ROUNDS PEERS=\"$PEERS\" PIN=$PIN WORKERS=$WORKERS REQUEST_LOG=$REQUEST_LOG SAME_HEADERS=$SAME_HEADERS"
[[ " $PEERS " == *" gatehouse "* ]] && CMDLINE+=" GATEHOUSE_BIN=$(printf %q "$GATEHOUSE_BIN")"
CMDLINE+=" $(printf %q "$0")"
for arg in "$@"; do CMDLINE+=" $(printf %q "$arg")"; done

TMP=""                 # temp dir (configs, logs, wrk output); set in main
declare -A PIDS=()     # name -> pid of a started server (also its session id)
declare -A PORTS=()    # name -> listening port
CLIENT_PREFIX=()       # taskset prefix for the load generators when PIN=1
CLIENT_PID=""          # running load generator, killed by cleanup if we are interrupted

# ----------------------------------------------------------------- helpers --

die() {
    echo "bench/run.sh: error: $*" >&2
    exit 1
}

# Print to the console and to the report that ends up in bench/results/.
say() {
    echo "$*"
    [[ -n $TMP ]] && echo "$*" >>"$TMP/report.txt"
    return 0
}

# Kill every server we started (whole session: nginx workers included), then
# drop the temp dir. Runs on every exit path, including errors and Ctrl-C.
cleanup() {
    local rc=$? name pid i
    set +e   # best effort: never stop half-way through cleaning up
    trap - EXIT INT TERM
    [[ -n $CLIENT_PID ]] && kill -TERM "$CLIENT_PID" 2>/dev/null
    for name in "${!PIDS[@]}"; do
        kill -TERM -- "-${PIDS[$name]}" 2>/dev/null || true
    done
    # Give them a moment to exit gracefully (caddy drains), then force.
    for i in 1 2 3 4 5 6 7 8 9 10; do
        local alive=0
        for pid in "${PIDS[@]}"; do
            pgrep -s "$pid" >/dev/null 2>&1 && alive=1
        done
        ((alive)) || break
        sleep 0.3
    done
    for pid in "${PIDS[@]}"; do
        kill -KILL -- "-$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n $TMP && -d $TMP ]]; then
        if [[ $KEEP_TMP == 1 ]]; then
            echo "temp dir kept: $TMP" >&2
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}

contains() { [[ " $1 " == *" $2 "* ]]; }

# ---------------------------------------------------------- prerequisites --

validate_knobs() {
    [[ $MODE == http || $MODE == https ]] || die "MODE must be http or https, got '$MODE'"
    [[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a positive integer (seconds), got '$DURATION'"
    [[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, got '$ROUNDS'"
    [[ $PIN == 0 || $PIN == 1 ]] || die "PIN must be 0 or 1, got '$PIN'"
    [[ $WORKERS =~ ^[1-9][0-9]?$ ]] || die "WORKERS must be 1-99, got '$WORKERS'"
    [[ $PIN == 0 || $WORKERS == 1 ]] || die "PIN=1 puts the proxy on one CPU; use it with WORKERS=1 only"
    [[ -n ${PEERS// /} ]] || die "PEERS is empty"
    local p uniq=""
    for p in $PEERS; do
        contains "nginx haproxy caddy gatehouse" "$p" || die "unknown peer '$p' in PEERS (known: nginx haproxy caddy gatehouse)"
        [[ $MODE == https && $p == caddy ]] && die "caddy is not measured in MODE=https (known there: nginx haproxy gatehouse)"
        contains "$uniq" "$p" || uniq+="${uniq:+ }$p"
    done
    PEERS=$uniq   # each peer is one server; measuring it twice per round makes no sense
    if [[ $PIN == 1 ]]; then
        (($(nproc) >= 2)) || die "PIN=1 needs at least 2 CPUs (proxy on CPU 1, load generator+backend on CPU 0)"
        command -v taskset >/dev/null || die "PIN=1 needs taskset (util-linux)"
    fi
    command -v python3 >/dev/null || die "python3 is required"
    command -v curl >/dev/null || die "curl is required"
    command -v pgrep >/dev/null || die "pgrep (procps) is required"
}

# Install the Debian packages we need but lack. nginx and wrk are always
# needed (backend + load generator); haproxy/caddy only if benchmarked;
# openssl (certificates, s_time) and h2load (package nghttp2-client) only in
# MODE=https. Entries are "command:package".
install_missing() {
    local -a want=(nginx:nginx wrk:wrk) missing=() tools=()
    contains "$PEERS" haproxy && want+=(haproxy:haproxy)
    contains "$PEERS" caddy && want+=(caddy:caddy)
    [[ $MODE == https ]] && want+=(openssl:openssl h2load:nghttp2-client)
    local entry tool
    for entry in "${want[@]}"; do
        tool=${entry%%:*}
        command -v "$tool" >/dev/null || { tools+=("$tool"); missing+=("${entry#*:}"); }
    done
    ((${#missing[@]})) || return 0

    [[ $(id -u) == 0 ]] || die "missing ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root"
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"

    echo "installing ${missing[*]} with apt-get ..."
    # The packages ship system services (nginx and caddy both on port 80).
    # Keep dpkg from starting them: they would only add noise or fail to bind.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added_policy=1
    fi
    local ok=1
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || ok=0
    ((ok)) && { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null 2>&1 || ok=0; }
    ((added_policy)) && rm -f "$policy"
    ((ok)) || die "apt-get install ${missing[*]} failed"
    for tool in "${tools[@]}"; do
        command -v "$tool" >/dev/null || die "$tool still missing after apt-get install"
    done
    echo "installed: ${missing[*]}"
}

# Use $GATEHOUSE_BIN; build the default one with cargo if it does not exist.
# An explicitly given but missing binary is an error (don't guess).
resolve_gatehouse() {
    contains "$PEERS" gatehouse || return 0
    [[ -x $GATEHOUSE_BIN ]] && return 0
    if [[ $GATEHOUSE_BIN != "$DEFAULT_GATEHOUSE_BIN" ]]; then
        die "GATEHOUSE_BIN=$GATEHOUSE_BIN is not an executable file"
    fi
    command -v cargo >/dev/null || die "gatehouse binary $GATEHOUSE_BIN is missing and cargo is not installed to build it"
    echo "gatehouse binary missing; building: cargo build --release -p gatehouse"
    (cd "$REPO_ROOT" && cargo build --release -p gatehouse) || die "cargo build --release -p gatehouse failed"
    [[ -x $GATEHOUSE_BIN ]] || die "build succeeded but $GATEHOUSE_BIN does not exist"
}

# Print N free TCP ports on 127.0.0.1. All sockets stay open until every port
# is picked, so the N ports are distinct; banned ports are skipped.
free_ports() {
    python3 - "$1" "$BANNED_PORTS" <<'EOF'
import socket, sys
n, banned = int(sys.argv[1]), {int(p) for p in sys.argv[2].split()}
held, ports = [], []
while len(ports) < n:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    held.append(s)
    port = s.getsockname()[1]
    if port not in banned:
        ports.append(port)
print(" ".join(map(str, ports)))
EOF
}

# ------------------------------------------------------------ certificates --

# MODE=https: a throw-away test CA and one ECDSA P-256 server certificate for
# $TLS_HOST and 127.0.0.1 (wrk and h2load connect to the IP), shared by every
# proxy. $TMP/tls/server.crt holds the leaf only (the CA is a root, which is
# not sent); server.pem is crt+key in one file for haproxy.
make_certs() {
    local dir=$TMP/tls
    mkdir -p "$dir"
    cat >"$dir/openssl.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[leaf_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:$TLS_HOST, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
    local log=$dir/openssl.log
    {
        openssl req -x509 -new -config "$dir/openssl.cnf" -extensions ca_ext \
            -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 365 \
            -subj "/CN=Gatehouse bench test CA" -keyout "$dir/ca.key" -out "$dir/ca.crt" &&
            openssl req -new -config "$dir/openssl.cnf" \
                -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
                -subj "/CN=$TLS_HOST" -keyout "$dir/server.key" -out "$dir/server.csr" &&
            openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
                -set_serial "0x$(openssl rand -hex 16)" -days 90 -sha256 \
                -extfile "$dir/openssl.cnf" -extensions leaf_ext -out "$dir/server.crt" &&
            openssl verify -CAfile "$dir/ca.crt" -purpose sslserver "$dir/server.crt" &&
            openssl x509 -in "$dir/server.crt" -noout -checkhost "$TLS_HOST" -checkip 127.0.0.1
    } >"$log" 2>&1 || { cat "$log" >&2; die "could not create the test certificates (openssl output above)"; }
    grep -q "does NOT match" "$log" && { cat "$log" >&2; die "the test certificate does not cover $TLS_HOST and 127.0.0.1"; }
    cat "$dir/server.crt" "$dir/server.key" >"$dir/server.pem"
}

# ------------------------------------------------------------ config files --

# Common nginx preamble. Everything (pid, logs, temp paths) lives in the
# instance dir so no system path is touched and instances don't collide.
nginx_preamble() {
    local dir=$1 workers=${2:-1}
    cat <<EOF
worker_processes $workers;
daemon off;                 # we supervise it; keeps the master pid = \$!
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
EOF
}

nginx_temp_paths() {
    local dir=$1
    cat <<EOF
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path       $dir/tmp/proxy;
    fastcgi_temp_path     $dir/tmp/fastcgi;
    uwsgi_temp_path       $dir/tmp/uwsgi;
    scgi_temp_path        $dir/tmp/scgi;
EOF
}

write_backend_conf() {
    local dir=$TMP/backend
    mkdir -p "$dir/tmp"
    {
        nginx_preamble "$dir"
        cat <<EOF
http {
    access_log off;
$(nginx_temp_paths "$dir")
    default_type text/plain;
    keepalive_timeout 75s;
    # nginx closes a keep-alive connection after 1000 requests by default;
    # that would add reconnect churn to every proxy's upstream pool.
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:${PORTS[backend]};
        location / { return 200 "$BODY\n"; }
    }
}
EOF
    } >"$dir/nginx.conf"
}

# nginx >= 1.25.1 enables HTTP/2 with "http2 on;" and deprecates the
# "http2" listen parameter; older ones (Debian 12 ships 1.22) only know the
# listen parameter.
nginx_http2_style() {
    local v major minor patch
    v=$(nginx -v 2>&1 | sed -n 's|.*nginx/\([0-9][0-9.]*\).*|\1|p')
    IFS=. read -r major minor patch <<<"$v"
    if ((major > 1 || (major == 1 && (minor > 25 || (minor == 25 && ${patch:-0} >= 1))))); then
        echo directive
    else
        echo listen
    fi
}

write_nginx_conf() {
    local dir=$TMP/nginx listen="listen 127.0.0.1:${PORTS[nginx]};" tls=""
    if [[ $MODE == https ]]; then
        if [[ $(nginx_http2_style) == directive ]]; then
            listen="listen 127.0.0.1:${PORTS[nginx]} ssl;
        http2 on;"
        else
            listen="listen 127.0.0.1:${PORTS[nginx]} ssl http2;"
        fi
        tls="
        ssl_certificate     $TMP/tls/server.crt;
        ssl_certificate_key $TMP/tls/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;
        ssl_session_tickets on;"
    fi
    mkdir -p "$dir/tmp"
    {
        nginx_preamble "$dir" "$WORKERS"
        cat <<EOF
http {
    access_log off;
$(nginx_temp_paths "$dir")
    keepalive_requests 1000000;   # see backend: no client reconnect churn
    upstream backend {
        server 127.0.0.1:${PORTS[backend]};
        keepalive $UPSTREAM_IDLE;
        keepalive_requests 1000000;
    }
    server {
        $listen$tls
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";$(nginx_same_headers)
        }
    }
}
EOF
    } >"$dir/nginx.conf"
}

write_haproxy_conf() {
    local bind="bind 127.0.0.1:${PORTS[haproxy]}"
    # TLS: session cache and tickets are on by default in haproxy.
    [[ $MODE == https ]] && bind+=" ssl crt $TMP/tls/server.pem alpn h2,http/1.1 ssl-min-ver TLSv1.2"
    mkdir -p "$TMP/haproxy"
    # No "log" lines anywhere => haproxy logs nothing.
    cat >"$TMP/haproxy/haproxy.cfg" <<EOF
global
    nbthread $WORKERS
    maxconn 4096

defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    http-reuse always

frontend fe
    $bind
    default_backend be

backend be
    server backend 127.0.0.1:${PORTS[backend]}$(haproxy_same_headers)
EOF
}

# SAME_HEADERS=1 additions (see the knob at the top).
nginx_same_headers() {
    [[ $SAME_HEADERS == 1 ]] || return 0
    cat <<'EOF'

            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Request-ID $request_id;
            add_header X-Request-ID $request_id;
EOF
}

haproxy_same_headers() {
    [[ $SAME_HEADERS == 1 ]] || return 0
    local proto=http
    [[ $MODE == https ]] && proto=https
    cat <<EOF

    option forwardfor
    unique-id-format %{+X}o%ci%cp%fi%fp%Ts%rt%pid
    http-request set-header X-Real-IP %[src]
    http-request set-header X-Forwarded-Proto $proto
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header X-Request-ID %[unique-id]
    http-response set-header X-Request-ID %[unique-id]
EOF
}

write_caddy_conf() {
    mkdir -p "$TMP/caddy/data" "$TMP/caddy/config"
    # Access logs are off unless a "log" directive is present; the global
    # "log" block discards caddy's own runtime log too.
    cat >"$TMP/caddy/Caddyfile" <<EOF
{
    admin off
    auto_https off
    log {
        output discard
    }
}

http://127.0.0.1:${PORTS[caddy]} {
    bind 127.0.0.1
    reverse_proxy 127.0.0.1:${PORTS[backend]} {
        transport http {
            # Caddy keeps 32 idle upstream connections by default; match
            # nginx's "keepalive $CONNECTIONS" so nobody reconnects under -c$CONNECTIONS.
            keepalive_idle_conns_per_host $CONNECTIONS
        }
    }
}
EOF
}

write_gatehouse_conf() {
    mkdir -p "$TMP/gatehouse/sites" "$TMP/gatehouse/data"
    if [[ $MODE == https ]]; then
        # The measured port is the HTTPS one; the plain listener is unused.
        # Certificate paths are relative to the main file. default_host: clients
        # that send no SNI (h2load, s_time, curl to an IP) get this certificate.
        cat >"$TMP/gatehouse/gatehouse.yaml" <<EOF
workers: $WORKERS
listen: {http: 127.0.0.1:${PORTS[gatehouse_http]}, https: 127.0.0.1:${PORTS[gatehouse]}}
tls: {cert: ../tls/server.crt, key: ../tls/server.key, default_host: $TLS_HOST}
admin: {listen: 127.0.0.1:${PORTS[gatehouse_admin]}}
sites_dir: sites
storage: {path: $TMP/gatehouse/data/gatehouse.db}
log: {level: warn}
logging: {requests: $([[ $REQUEST_LOG == 1 ]] && echo true || echo false)}
EOF
        cat >"$TMP/gatehouse/sites/bench.yaml" <<EOF
host: "*"
backend: http://127.0.0.1:${PORTS[backend]}
https_redirect: false
# Default is 10000 idle backend connections per worker; h2load has $UPSTREAM_IDLE requests in flight.
options: {pool: {max_idle_per_host: $UPSTREAM_IDLE}}
EOF
        return
    fi
    cat >"$TMP/gatehouse/gatehouse.yaml" <<EOF
workers: $WORKERS
listen: {http: 127.0.0.1:${PORTS[gatehouse]}}
admin: {listen: 127.0.0.1:${PORTS[gatehouse_admin]}}
sites_dir: sites
storage: {path: $TMP/gatehouse/data/gatehouse.db}
log: {level: warn}
logging: {requests: $([[ $REQUEST_LOG == 1 ]] && echo true || echo false)}
EOF
    cat >"$TMP/gatehouse/sites/bench.yaml" <<EOF
host: "*"
backend: http://127.0.0.1:${PORTS[backend]}
EOF
}

# ---------------------------------------------------------------- servers --

# start_server NAME CPU CMD...: run CMD in its own session (so the whole
# process tree can be found with pgrep -s and killed as a group), from the
# temp dir, optionally pinned to CPU, with output in $TMP/NAME.log.
start_server() {
    local name=$1 cpu=$2
    shift 2
    local -a prefix=(setsid)
    [[ $PIN == 1 ]] && prefix+=(taskset -c "$cpu")
    # setsid does not fork here (a background job is not a group leader), so
    # $! is the server's pid and also its session id.
    (cd "$TMP" && exec "${prefix[@]}" "$@") >"$TMP/$name.log" 2>&1 </dev/null &
    PIDS[$name]=$!
}

alive() {
    local state
    state=$(awk '{sub(/.*\) /, ""); print $1}' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $state && $state != Z ]]
}

# Wait until http://127.0.0.1:PORT/ returns 200 with the backend's body,
# which proves the server is up AND really proxies to the backend. With a
# third argument "https": https://$TLS_HOST:PORT/ (resolved to 127.0.0.1,
# SNI $TLS_HOST), verified against the test CA, so a server that answers with
# some other certificate (e.g. a self-signed fallback) does not pass.
wait_ready() {
    local name=$1 port=$2 scheme=${3:-http} deadline=$((SECONDS + READY_TIMEOUT)) body="" last="no answer"
    local url="http://127.0.0.1:$port/"
    local -a tls_args=()
    if [[ $scheme == https ]]; then
        url="https://$TLS_HOST:$port/"
        tls_args=(--cacert "$TMP/tls/ca.crt" --resolve "$TLS_HOST:$port:127.0.0.1")
    fi
    while ((SECONDS < deadline)); do
        if ! alive "${PIDS[$name]}"; then
            local rc=0
            wait "${PIDS[$name]}" 2>/dev/null || rc=$?
            startup_failed "$name" "it exited (status $rc) before answering on $url"
        fi
        body=$(curl -s "${tls_args[@]}" --max-time 1 -w '\n%{http_code}' "$url" 2>/dev/null) || true
        # curl prints the body ("...\n"), then our "\n<status>".
        if [[ $body == "$BODY"$'\n\n200' ]]; then
            return 0
        fi
        # Remember what we got, for the error message.
        case ${body##*$'\n'} in
        000 | "") last="no answer (connection refused, timed out or TLS failure)" ;;
        *) last="HTTP ${body##*$'\n'}, body \"$(head -c 80 <<<"${body%$'\n'*}" | tr '\n' ' ' | sed 's/ *$//')\"" ;;
        esac
        sleep 0.2
    done
    startup_failed "$name" "no '200 $BODY' from $url within ${READY_TIMEOUT}s; last reply: $last"
}

startup_failed() {
    local name=$1 why=$2
    {
        echo "bench/run.sh: error: $name failed to start: $why"
        if [[ -s $TMP/$name.log ]]; then
            echo "--- last lines of $name output ---"
            tail -n 20 "$TMP/$name.log"
            echo "---"
        fi
        [[ $name == gatehouse ]] && echo "(binary: $GATEHOUSE_BIN, config: $TMP/gatehouse/gatehouse.yaml; set KEEP_TMP=1 to keep it)"
    } >&2
    exit 1
}

start_backend() {
    write_backend_conf
    # The backend shares CPU 0 with wrk when pinned, leaving CPU 1 to the proxy.
    start_server backend 0 nginx -e "$TMP/backend/error.log" -p "$TMP/backend" -c "$TMP/backend/nginx.conf"
    wait_ready backend "${PORTS[backend]}"
}

start_peer() {
    local name=$1
    case $name in
    nginx)
        write_nginx_conf
        start_server nginx 1 nginx -e "$TMP/nginx/error.log" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf"
        ;;
    haproxy)
        write_haproxy_conf
        haproxy -c -q -f "$TMP/haproxy/haproxy.cfg" || die "haproxy rejected its config"
        start_server haproxy 1 haproxy -db -f "$TMP/haproxy/haproxy.cfg"
        ;;
    caddy)
        write_caddy_conf
        start_server caddy 1 env GOMAXPROCS=$WORKERS HOME="$TMP/caddy" \
            XDG_DATA_HOME="$TMP/caddy/data" XDG_CONFIG_HOME="$TMP/caddy/config" \
            caddy run --adapter caddyfile --config "$TMP/caddy/Caddyfile"
        ;;
    gatehouse)
        write_gatehouse_conf
        start_server gatehouse 1 "$GATEHOUSE_BIN" run --config "$TMP/gatehouse/gatehouse.yaml"
        ;;
    esac
    wait_ready "$name" "${PORTS[$name]}" "$MODE"
    [[ $MODE == https ]] && check_tls "$name" "${PORTS[$name]}"
    return 0
}

# MODE=https: beyond wait_ready (SNI $TLS_HOST), check the two other ways the
# load generators connect, so a misconfiguration fails here and not as a pile
# of errors in the middle of a run:
#  - to the IP with no SNI (h2load, s_time; curl sends no SNI for an IP),
#    verified against the test CA, over HTTP/2;
#  - handshake details (protocol, cipher, key exchange group) of a default
#    OpenSSL client, recorded in the report so peers can be compared fairly.
check_tls() {
    local name=$1 port=$2 out
    out=$(curl -s --cacert "$TMP/tls/ca.crt" --http2 --max-time 5 -w '\n%{http_code} %{http_version}' \
        "https://127.0.0.1:$port/" 2>&1) || true
    [[ $out == "$BODY"$'\n\n200 2' ]] ||
        startup_failed "$name" "https://127.0.0.1:$port/ (no SNI, HTTP/2, verified against the test CA) did not return '200 $BODY' over HTTP/2; got: $(tr '\n' ' ' <<<"$out" | head -c 200)"
    out=$(openssl s_client -connect "127.0.0.1:$port" -CAfile "$TMP/tls/ca.crt" -verify_return_error \
        -alpn h2,http/1.1 </dev/null 2>&1) || true
    local proto cipher group alpn verify
    proto=$(sed -n 's/^New, \([^,]*\), Cipher is \(.*\)$/\1/p' <<<"$out" | head -n1)
    cipher=$(sed -n 's/^New, \([^,]*\), Cipher is \(.*\)$/\2/p' <<<"$out" | head -n1)
    group=$(sed -n 's/^\(Server \)\{0,1\}Temp Key: \([^,]*\).*/\2/p' <<<"$out" | head -n1)
    alpn=$(sed -n 's/^ALPN protocol: //p' <<<"$out" | head -n1)
    verify=$(sed -n 's/^ *Verify return code: //p' <<<"$out" | head -n1)
    [[ $verify == "0 (ok)" ]] || startup_failed "$name" "openssl s_client could not verify the certificate (no SNI): ${verify:-no handshake}"
    say "  $name: $proto $cipher, key exchange ${group:-?}, ALPN ${alpn:-none}, certificate verified without SNI"
}

# ------------------------------------------------------------ measurement --

# Sum of utime+stime (clock ticks, all threads) over every process in the
# server's session: nginx master+worker, caddy/gatehouse with all threads.
cpu_ticks() {
    local pid total=0 rest
    for pid in $(pgrep -s "$1"); do
        # Fields 14/15 of /proc/PID/stat; strip "pid (comm) " first because
        # comm may contain spaces. After that, utime/stime are fields 12/13.
        rest=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null) || continue
        read -r -a f <<<"$rest"
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}

# Busy clock ticks of the whole machine (all CPUs): user+nice+system+irq+softirq
# from the first line of /proc/stat. Idle, iowait and steal (time the hypervisor
# gave to someone else) are not work done here.
machine_ticks() {
    local _cpu user nice system idle iowait irq softirq _rest
    read -r _cpu user nice system idle iowait irq softirq _rest </proc/stat
    echo $((user + nice + system + irq + softirq))
}

# Sum of VmRSS (kB) over the session (nginx: master + worker).
rss_kb() {
    local pid total=0 kb
    for pid in $(pgrep -s "$1"); do
        kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || continue
        total=$((total + ${kb:-0}))
    done
    echo "$total"
}

# Load generators run in the background and we "wait" for them: bash delays
# traps until a foreground command ends, so this keeps Ctrl-C/TERM immediate
# (cleanup then kills the client too). run_client OUT WHAT CMD...
run_client() {
    local out=$1 what=$2 rc=0
    shift 2
    "${CLIENT_PREFIX[@]}" "$@" >"$out" 2>&1 &
    CLIENT_PID=$!
    wait "$CLIENT_PID" || rc=$?
    CLIENT_PID=""
    ((rc == 0)) || { cat "$out" >&2; die "$what failed (status $rc): $*"; }
}

run_wrk() {
    local url=$1 secs=$2 out=$3
    run_client "$out" "wrk against $url" wrk -t1 -c"$CONNECTIONS" -d"${secs}s" --latency "$url"
}

# Extract "requests rps p99_ms errors" from wrk --latency output.
parse_wrk() {
    awk '
        / requests in / { req = $1 }
        /^Requests\/sec:/ { rps = $2 }
        /^ +99% / {
            v = $2; unit = v; sub(/^[0-9.]+/, "", unit); sub(/[a-z]+$/, "", v)
            mult = (unit == "us") ? 0.001 : (unit == "ms") ? 1 : (unit == "s") ? 1000 : (unit == "m") ? 60000 : -1
            p99 = (mult < 0) ? -1 : v * mult
        }
        /Socket errors:/ { gsub(",", ""); err += $4 + $6 + $8 + $10 }
        /Non-2xx or 3xx responses:/ { err += $NF }
        END {
            if (req == "" || rps == "" || p99 == "") exit 1
            printf "%d %.2f %.3f %d\n", req, rps, p99, err
        }' "$1"
}

# Extract "requests rps mean_ms errors" from h2load output. h2load has no
# percentiles; "time for request" gives min/max/mean/sd. Errors = failed
# requests (network errors, timeouts and non-2xx/3xx statuses). Requests
# still in flight when the duration ends ("started" - "done") are not errors.
parse_h2load() {
    awk '
        function ms(v,   unit, mult) {
            unit = v; sub(/^[0-9.]+/, "", unit); sub(/[a-z]+$/, "", v)
            mult = (unit == "us") ? 0.001 : (unit == "ms") ? 1 : (unit == "s") ? 1000 : -1
            return (mult < 0) ? -1 : v * mult
        }
        /^finished in / { rps = $4 }
        /^requests: / {
            gsub(",", "")
            done = $6; failed = $10
        }
        /^time for request:/ { mean = ms($6) }
        END {
            if (rps == "" || done == "" || mean == "") exit 1
            printf "%d %.2f %.3f %d\n", done, rps, mean, failed
        }' "$1"
}

# One result line: raw.tsv gets "test name round rate latency_ms rss_kB
# cpu_us count errors"; the console and report get a readable line.
record() {
    local test=$1 name=$2 round=$3 rate=$4 lat=$5 rss=$6 cpu=$7 count=$8 err=$9
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$test" "$name" "$round" "$rate" "$lat" "$rss" "$cpu" "$count" "$err" >>"$TMP/raw.tsv"
    local mb errs=""
    mb=$(awk -v k="$rss" 'BEGIN{print k/1024}')
    ((err)) && errs="  ERRORS: $err"
    case $test in
    http)
        say "$(printf '  %-10s round %-2s %10.0f req/s  p99 %7.2f ms  %7.2f CPU us/req  RSS %6.1f MB  %s requests%s' \
            "$name" "$round" "$rate" "$lat" "$cpu" "$mb" "$count" "$errs")"
        ;;
    https-keepalive)
        say "$(printf '  %-10s round %-2s %-16s %10.0f req/s   p99  %7.2f ms  %8.2f CPU us/req   RSS %6.1f MB  %s requests%s' \
            "$name" "$round" "$test" "$rate" "$lat" "$cpu" "$mb" "$count" "$errs")"
        ;;
    handshakes)
        say "$(printf '  %-10s round %-2s %-16s %10.0f conn/s  %-18s %8.2f CPU us/conn  RSS %6.1f MB  %s connections%s' \
            "$name" "$round" "$test" "$rate" "" "$cpu" "$mb" "$count" "$errs")"
        ;;
    h2)
        say "$(printf '  %-10s round %-2s %-16s %10.0f req/s   mean %7.2f ms  %8.2f CPU us/req   RSS %6.1f MB  %s requests%s' \
            "$name" "$round" "$test" "$rate" "$lat" "$cpu" "$mb" "$count" "$errs")"
        ;;
    esac
}

# CPU µs per unit of work = tick delta * (1e6 / CLK_TCK) / count.
cpu_per() {
    awk -v d="$1" -v hz="$CLK_TCK" -v n="$2" 'BEGIN { printf "%.2f", d * 1e6 / hz / n }'
}

check_alive() {
    alive "${PIDS[$1]}" || die "$1 died during the run (see KEEP_TMP=1 $TMP/$1.log)"
}

# measure_wrk TEST NAME ROUND SCHEME: warm up, then one measured wrk run
# against NAME (http:// or https://127.0.0.1:PORT/) with CPU/RSS sampling.
measure_wrk() {
    local test=$1 name=$2 round=$3 scheme=$4 sid=${PIDS[$2]}
    local url="$scheme://127.0.0.1:${PORTS[$name]}/" out="$TMP/$test-$name-$round.txt"
    run_wrk "$url" "$WARMUP" "$TMP/warmup.txt"

    # The proxy, the backend and the machine as a whole (wrk, softirq), so the
    # report can show where the CPU of one proxied request goes.
    local t0 t1 b0 b1 m0 m1 bsid=${PIDS[backend]}
    t0=$(cpu_ticks "$sid") b0=$(cpu_ticks "$bsid") m0=$(machine_ticks)
    run_wrk "$url" "$DURATION" "$out"
    t1=$(cpu_ticks "$sid") b1=$(cpu_ticks "$bsid") m1=$(machine_ticks)
    check_alive "$name"

    local parsed req rps p99 err
    parsed=$(parse_wrk "$out") || { cat "$out" >&2; die "could not parse wrk output for $name"; }
    read -r req rps p99 err <<<"$parsed"
    ((req > 0)) || die "wrk completed no requests against $name"
    record "$test" "$name" "$round" "$rps" "$p99" "$(rss_kb "$sid")" "$(cpu_per $((t1 - t0)) "$req")" "$req" "$err"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$test" "$name" "$round" "$(cpu_per $((t1 - t0)) "$req")" \
        "$(cpu_per $((b1 - b0)) "$req")" "$(cpu_per $((m1 - m0)) "$req")" >>"$TMP/machine.tsv"
}

# The HTTP-mode measurement (kept as it was).
measure() {
    measure_wrk http "$1" "$2" http
}

# measure_handshakes NAME ROUND: full TLS handshakes, one after another, from
# one openssl s_time client (-new: no session resumption, no SNI, no request:
# connect, handshake, close). s_time's own rate is per *client user CPU*
# second and its wall time is whole seconds, so the rate here is connections /
# wall time measured around it.
measure_handshakes() {
    local name=$1 round=$2 sid=${PIDS[$1]} port=${PORTS[$1]}
    local out="$TMP/handshakes-$name-$round.txt"
    run_client "$TMP/warmup.txt" "openssl s_time against $name" \
        openssl s_time -connect "127.0.0.1:$port" -new -time "$WARMUP"

    local t0 t1 w0 w1
    t0=$(cpu_ticks "$sid")
    w0=$(date +%s%N)
    run_client "$out" "openssl s_time against $name" \
        openssl s_time -connect "127.0.0.1:$port" -new -time "$DURATION"
    w1=$(date +%s%N)
    t1=$(cpu_ticks "$sid")
    check_alive "$name"

    local conns rate
    conns=$(awk '/ connections in .* real seconds/ { n = $1 } END { print n + 0 }' "$out")
    ((conns > 0)) || { cat "$out" >&2; die "openssl s_time completed no handshakes against $name"; }
    rate=$(awk -v n="$conns" -v ns=$((w1 - w0)) 'BEGIN { printf "%.2f", n * 1e9 / ns }')
    record handshakes "$name" "$round" "$rate" 0 "$(rss_kb "$sid")" "$(cpu_per $((t1 - t0)) "$conns")" "$conns" 0
}

# measure_h2 NAME ROUND: HTTP/2 over TLS with h2load, $CONNECTIONS connections
# x $H2_STREAMS concurrent streams, time-based; warm-up run first.
measure_h2() {
    local name=$1 round=$2 sid=${PIDS[$1]}
    local url="https://127.0.0.1:${PORTS[$1]}/" out="$TMP/h2-$name-$round.txt"
    local -a cmd=(h2load -t1 -c"$CONNECTIONS" -m"$H2_STREAMS")
    run_client "$TMP/warmup.txt" "h2load against $name" "${cmd[@]}" -D "$WARMUP" "$url"

    local t0 t1
    t0=$(cpu_ticks "$sid")
    run_client "$out" "h2load against $name" "${cmd[@]}" -D "$DURATION" "$url"
    t1=$(cpu_ticks "$sid")
    check_alive "$name"

    local parsed req rps mean err
    parsed=$(parse_h2load "$out") || { cat "$out" >&2; die "could not parse h2load output for $name"; }
    read -r req rps mean err <<<"$parsed"
    ((req > 0)) || { cat "$out" >&2; die "h2load completed no requests against $name"; }
    record h2 "$name" "$round" "$rps" "$mean" "$(rss_kb "$sid")" "$(cpu_per $((t1 - t0)) "$req")" "$req" "$err"
}

# ----------------------------------------------------------------- report --

# summarize TEST BASE RATE LATENCY CPU: one table for TEST from raw.tsv, with
# column headings RATE (e.g. req/s), LATENCY (e.g. p99 ms; "" = no latency
# column) and CPU (e.g. CPU us/req). Median per server; RSS = max; ratios
# against BASE (nginx, or the first peer if nginx is not in PEERS).
summarize() {
    python3 - "$TMP/raw.tsv" "$PEERS" "$@" <<'EOF'
import sys, statistics
path, peers, test, base, rate_h, lat_h, cpu_h = sys.argv[1:8]
peers = peers.split()
rows = {}
for line in open(path):
    t, name, rnd, rate, lat, rss, cpu, count, err = line.rstrip("\n").split("\t")
    if t != test:
        continue
    r = rows.setdefault(name, {"rate": [], "lat": [], "rss": [], "cpu": [], "err": 0, "round": {}})
    r["rate"].append(float(rate)); r["lat"].append(float(lat))
    r["rss"].append(int(rss)); r["cpu"].append(float(cpu)); r["err"] += int(err)
    r["round"][rnd] = (float(rate), float(lat), float(cpu))

def stats(name):
    r = rows[name]
    return (statistics.median(r["rate"]), statistics.median(r["lat"]),
            max(r["rss"]) / 1024, statistics.median(r["cpu"]), r["err"])

b_rate, _, _, b_cpu, _ = stats(base)
cols = [("proxy", "{:<18}"), (rate_h, "{:>10}"), (f"x {base}", "{:>11}")]
if lat_h:
    cols.append((lat_h, "{:>8}"))
cols += [(cpu_h, "{:>11}"), (f"x {base}", "{:>11}"), ("RSS MB", "{:>8}"), ("errors", "{:>7}")]
fmt = " ".join(f for _, f in cols)
head = [h for h, _ in cols]
print(fmt.format(*head))
print(fmt.format(*["-" * len(h) for h in head]))
for name in peers + ["backend"]:
    if name not in rows:
        continue
    rate, lat, rss, cpu, err = stats(name)
    label = "backend (direct)" if name == "backend" else name
    ratio_rate = "-" if name == "backend" else f"{rate / b_rate:.2f}"
    ratio_cpu = "-" if name == "backend" else f"{cpu / b_cpu:.2f}"
    cells = [label, f"{rate:.0f}", ratio_rate]
    if lat_h:
        cells.append(f"{lat:.2f}")
    cells += [f"{cpu:.1f}", ratio_cpu, f"{rss:.1f}", err]
    print(fmt.format(*cells))

# Paired view: each round measures every peer back to back, so the ratio to the base
# within one round cancels most of the machine's slow drift (noisy neighbours, steal).
# Median of those per-round ratios, their range, and in how many rounds the peer did
# better than the base (more req/s, lower latency, less CPU).
others = [p for p in peers if p != base and p in rows]
if len(rows[base]["round"]) > 1 and others:
    print()
    print(f"per-round ratios to {base}: median [min-max] and rounds better than {base}")
    for name in others:
        pairs = [(rows[name]["round"][k], v) for k, v in rows[base]["round"].items() if k in rows[name]["round"]]
        def paired(i, higher_is_better):
            ratios = sorted(a[i] / b[i] for a, b in pairs if b[i] > 0)
            if not ratios:
                return "-"
            wins = sum(1 for x in ratios if x != 1 and (x > 1) == higher_is_better)
            return f"{statistics.median(ratios):.2f} [{ratios[0]:.2f}-{ratios[-1]:.2f}] {wins}/{len(ratios)}"
        cells = [f"{rate_h} {paired(0, True)}"]
        if lat_h:
            cells.append(f"{lat_h} {paired(1, False)}")
        cells.append(f"{cpu_h} {paired(2, False)}")
        print(f"  {name:<10} " + "   ".join(cells))
EOF
}

# say_table TEST BASE RATE LATENCY CPU
say_table() {
    local table
    table=$(summarize "$@")
    say "$table"
}

# machine_table TEST BASE: where the CPU of one request goes, from machine.tsv
# (measure_wrk tests only). Medians per proxy; "rest" is everything on the
# machine that is neither the proxy nor the backend: wrk, and kernel work
# accounted to no process (softirq, other tasks).
machine_table() {
    python3 - "$TMP/machine.tsv" "$PEERS" "$1" "$2" <<'EOF'
import statistics, sys
path, peers, test, base = sys.argv[1], sys.argv[2].split(), sys.argv[3], sys.argv[4]
rows = {}
for line in open(path):
    t, name, _rnd, proxy, backend, machine = line.rstrip("\n").split("\t")
    if t == test:
        r = rows.setdefault(name, ([], [], []))
        for col, v in zip(r, (proxy, backend, machine)):
            col.append(float(v))
if not rows:
    sys.exit(0)
print("CPU us per request across the machine (medians; rest = wrk and kernel work of no process):")
print(f"  {'':<10} {'proxy':>8} {'backend':>8} {'rest':>8} {'machine':>8} {'x ' + base:>10}")
med = {n: [statistics.median(c) for c in cols] for n, cols in rows.items()}
for name in [p for p in peers if p in med]:
    p, b, m = med[name]
    ratio = f"{m / med[base][2]:.2f}" if base in med and med[base][2] > 0 else "-"
    print(f"  {name:<10} {p:8.1f} {b:8.1f} {m - p - b:8.1f} {m:8.1f} {ratio:>10}")
EOF
}

# ------------------------------------------------------------------- main --

main() {
    validate_knobs
    install_missing
    resolve_gatehouse

    TMP=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-bench.XXXXXX")
    chmod 755 "$TMP"   # nginx workers run as nobody when started by root
    : >"$TMP/raw.tsv"
    : >"$TMP/machine.tsv"
    CLK_TCK=$(getconf CLK_TCK)
    [[ $PIN == 1 ]] && CLIENT_PREFIX=(taskset -c 0)

    local -a names=(backend nginx haproxy caddy gatehouse gatehouse_admin)
    [[ $MODE == https ]] && names+=(gatehouse_http)
    local -a ports
    read -r -a ports <<<"$(free_ports ${#names[@]})"
    local i
    for i in "${!names[@]}"; do PORTS[${names[$i]}]=${ports[$i]}; done

    say "command: $CMDLINE"
    say "date:    $(date -Is)   host: $(uname -srm), $(nproc) CPUs, load avg $(cut -d' ' -f1-3 /proc/loadavg)"
    if [[ $MODE == https ]]; then
        say "method:  TLS at the proxy (ECDSA P-256 certificate for $TLS_HOST + IP 127.0.0.1 from a per-run test CA), plain HTTP/1.1 to the backend;"
        say "         ${WARMUP}s warm-up before each run, $ROUNDS round(s), order per round from a balanced Latin square, PIN=$PIN"
        say "         https-keepalive: wrk -t1 -c$CONNECTIONS -d${DURATION}s --latency https://127.0.0.1:PORT/ (HTTP/1.1 keep-alive)"
        say "         handshakes:      openssl s_time -connect 127.0.0.1:PORT -new -time $DURATION (1 client, full handshakes, no request)"
        say "         h2:              h2load -t1 -c$CONNECTIONS -m$H2_STREAMS -D $DURATION https://127.0.0.1:PORT/ (HTTP/2, ALPN h2)"
    else
        say "method:  wrk -t1 -c$CONNECTIONS -d${DURATION}s --latency, ${WARMUP}s warm-up before each run, $ROUNDS round(s), order per round from a balanced Latin square, PIN=$PIN"
    fi
    # "|| true": wrk -v exits 1, and pipefail would make that fatal here.
    local versions
    versions=$(nginx -v 2>&1 | sed 's/.*: //' || true)
    if contains "$PEERS" haproxy; then versions+=", $(haproxy -v | head -n1 | awk '{print $1, $2, $3}' || true)"; fi
    if contains "$PEERS" caddy; then versions+=", caddy $(caddy version | awk '{print $1}' || true)"; fi
    versions+=", $(wrk -v 2>&1 | head -n1 | awk '{print $1, $2}' || true)"
    if [[ $MODE == https ]]; then
        versions+=", $(h2load --version 2>&1 | head -n1 || true), $(openssl version | awk '{print $1, $2}' || true)"
    fi
    say "versions: $versions"
    say ""

    [[ $MODE == https ]] && make_certs
    start_backend
    [[ $MODE == https ]] && say "TLS as negotiated by a default openssl s_client (no SNI, like h2load and s_time):"
    local p
    for p in $PEERS; do start_peer "$p"; done
    say "servers up (ports: backend ${PORTS[backend]}$(for p in $PEERS; do printf ', %s %s' "$p" "${PORTS[$p]}"; done))"
    say ""

    # Reference: what the backend does with no proxy in front (once). In
    # https mode this is still plain HTTP/1.1 (the backend has no TLS): the
    # ceiling for proxied HTTPS requests, not a TLS number.
    if [[ $MODE == https ]]; then
        say "reference run (backend directly, plain HTTP):"
        measure_wrk https-keepalive backend 1 http
    else
        say "reference run (backend directly):"
        measure backend 1
    fi

    # The order changes every round so slow drifts (thermal, noisy neighbours)
    # don't always hit the same proxy, and it follows a balanced Latin square
    # (Williams design: 0, 1, n-1, 2, n-2, ... shifted by the round, mirrored in
    # every other block of n rounds) so that each proxy also runs right after
    # each other one equally often. A plain rotation would always put the same
    # proxy right after caddy, whose Go runtime keeps working (GC, returning
    # memory) for a while after its run. In https mode every test runs over all
    # peers (in that order) before the next test starts, so the peers of one
    # test are measured close together in time.
    local -a peers=($PEERS)
    local n=${#peers[@]} r k test
    local -a seq=(0)
    for ((k = 1; ${#seq[@]} < n; k++)); do
        seq+=("$k")
        ((${#seq[@]} < n)) && seq+=("$((n - k))")
    done
    for ((r = 1; r <= ROUNDS; r++)); do
        local -a order=()
        local row=$(((r - 1) % (2 * n)))
        for ((k = 0; k < n; k++)); do
            local at=$k
            ((row >= n)) && at=$((n - 1 - k))
            order+=("${peers[$(((seq[at] + row) % n))]}")
        done
        say "round $r/$ROUNDS: ${order[*]}"
        if [[ $MODE == https ]]; then
            for test in $HTTPS_TESTS; do
                for p in "${order[@]}"; do
                    case $test in
                    https-keepalive) measure_wrk https-keepalive "$p" "$r" https ;;
                    handshakes) measure_handshakes "$p" "$r" ;;
                    h2) measure_h2 "$p" "$r" ;;
                    esac
                done
            done
        else
            for p in "${order[@]}"; do measure "$p" "$r"; done
        fi
    done

    local base=nginx
    contains "$PEERS" nginx || base=${peers[0]}
    say ""
    say "summary (median over $ROUNDS round(s); RSS = max; x $base = ratio to $base):"
    if [[ $MODE == https ]]; then
        say ""
        say "https-keepalive: HTTP/1.1 over TLS, $CONNECTIONS keep-alive connections (wrk); backend row = plain HTTP, no proxy"
        say_table https-keepalive "$base" "req/s" "p99 ms" "CPU us/req"
        say ""
        say "$(machine_table https-keepalive "$base")"
        say ""
        say "handshakes: new TLS connections per second, full handshakes, 1 sequential client (openssl s_time -new)"
        say_table handshakes "$base" "conn/s" "" "CPU us/conn"
        say ""
        say "h2: HTTP/2 over TLS, $CONNECTIONS connections x $H2_STREAMS streams (h2load); latency = mean time per request"
        say_table h2 "$base" "req/s" "mean ms" "CPU us/req"
        say ""
        say "notes: CPU us/req (us/conn) = (utime+stime of all the proxy's processes and threads during the measured"
        say "       run) / requests (handshakes) completed. conn/s is bounded by the single client's own handshake"
        say "       cost and latency; CPU us/conn is the server-side cost of one full handshake. RSS = sum of VmRSS"
        say "       over the proxy's processes after the run (nginx: master + worker). Compare ratios within one run"
        say "       only; the machine is noisy."
    else
        say_table http "$base" "req/s" "p99 ms" "CPU us/req"
        say ""
        say "$(machine_table http "$base")"
        say ""
        say "notes: req/s and p99 from wrk. CPU us/req = (utime+stime of all the proxy's processes and threads"
        say "       during the measured run) / requests completed. RSS = sum of VmRSS over the proxy's processes"
        say "       after the run (nginx: master + worker). Compare ratios within one run only; the machine is noisy."
    fi

    {
        echo ""
        if [[ $MODE == https ]]; then
            echo "raw (test name round rate latency_ms rss_kB cpu_us_per_unit count errors; rate = req/s or conn/s,"
            echo "     latency = wrk p99 (https-keepalive), h2load mean (h2), 0 (handshakes)):"
            cat "$TMP/raw.tsv"
        else
            echo "raw (name round req/s p99_ms rss_kB cpu_us_per_req requests errors):"
            cut -f2- "$TMP/raw.tsv"
        fi
    } >>"$TMP/report.txt"
    mkdir -p "$SCRIPT_DIR/results"
    local result
    result="$SCRIPT_DIR/results/$(date +%Y%m%d-%H%M%S).txt"
    cp "$TMP/report.txt" "$result"
    echo ""
    echo "results written to ${result#"$REPO_ROOT"/}"
}

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
main "$@"
