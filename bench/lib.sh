# Shared by bench/ratelimit.sh and bench/waf.sh (bench/l4.sh uses nginx_backend and need, and
# replaces cleanup): one Gatehouse on one route in front of a
# backend, measured with wrk. Source it after setting BIN and TMP (a directory the caller
# removes); it sets GH (Gatehouse's pid), BE (the backend's pid) and PORT.
#
#   port                      a free loopback port
#   nginx_backend PORT        nginx answering 200 "hello" on PORT (pid in BE)
#   start BACKEND_PORT OPTS   Gatehouse, workers: 1, one route to the backend with OPTS
#                             (a YAML `options:` line, or empty); PORT is its HTTP port
#   stop                      stops it
#   measure [WRK ARGS...]     "req/s CPU-us/req" over DURATION seconds, after 2 s of warm-up
#   median, col N ROWS...     for the rounds' medians
#   need TOOL...              exits naming the apt-get install step when a tool is missing

GH= BE=
cleanup() {
  [ -n "$GH" ] && kill "$GH" 2>/dev/null
  [ -n "$BE" ] && kill "$BE" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

# The Debian package that installs TOOL (for need's message).
pkg_of() {
  case $1 in
    pgbench | psql) echo postgresql-client ;;
    ss) echo iproute2 ;;
    *) echo "$1" ;;   # wrk, nginx, haproxy, iperf3, openssl, curl: named like the tool
  esac
}

need() {
  local tool missing=() pkgs=()
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { missing+=("$tool"); pkgs+=("$(pkg_of "$tool")"); }
  done
  [ ${#missing[@]} = 0 ] || { echo "missing ${missing[*]} (apt-get install ${pkgs[*]})"; exit 1; }
}

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

nginx_backend() {
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
  server { listen 127.0.0.1:$1; location / { return 200 "hello from backend\n"; } }
}
CONF
  nginx -c "$TMP/nginx/nginx.conf" & BE=$!
}

start() {
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
trusted_proxies: [127.0.0.1]
CONF
  printf 'host: "*"\nroutes:\n  - path: /\n    backend: http://127.0.0.1:%s\n%s' "$1" "$2" >"$dir/sites/b.yaml"
  "$BIN" run --config "$dir/gatehouse.yaml" >"$dir/out" 2>"$dir/err" &
  GH=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$p/" && break; sleep 0.1; done
  PORT=$p
}

stop() { kill "$GH"; wait "$GH" 2>/dev/null || true; GH=; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$GH/stat"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$GH/status"; }

measure() {
  wrk -t1 -c32 -d2s "$@" "http://127.0.0.1:$PORT/" >/dev/null
  local t0 out n t1; t0=$(cpu_ticks)
  out=$(wrk -t1 -c32 -d"${DURATION}s" "$@" "http://127.0.0.1:$PORT/")
  t1=$(cpu_ticks)
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  awk -v n="$n" -v d="$DURATION" -v c=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" \
    'BEGIN {printf "%.0f %.2f", n / d, c / hz * 1e6 / n}'
}

median() { sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
col() { local i=$1; shift; for r in "$@"; do echo "$r" | awk -v i="$i" '{print $i}'; done; }

# Prints the off/on table of two sets of rounds: `compare "LABEL" OFFS... -- ONS...`.
compare() {
  local offs=() ons=() side=off r
  shift
  for r in "$@"; do
    if [ "$r" = -- ]; then side=on; continue; fi
    if [ $side = off ]; then offs+=("$r"); else ons+=("$r"); fi
  done
  local off_rps on_rps
  off_rps=$(col 1 "${offs[@]}" | median); on_rps=$(col 1 "${ons[@]}" | median)
  printf '%-10s %10s %12s   (medians; rounds: %s | %s)\n' "" "req/s" "CPU us/req" "${offs[*]}" "${ons[*]}"
  printf '%-10s %10.0f %12.2f\n' off "$off_rps" "$(col 2 "${offs[@]}" | median)"
  printf '%-10s %10.0f %12.2f\n' on "$on_rps" "$(col 2 "${ons[@]}" | median)"
  awk -v a="$off_rps" -v b="$on_rps" 'BEGIN {printf "on/off: %.2fx req/s\n", b / a}'
}
