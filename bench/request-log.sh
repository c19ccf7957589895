#!/usr/bin/env bash
# The cost of the request log: Gatehouse alone (bench/run.sh, MODE=http, one worker) with
# its database request log off and then on (REQUEST_LOG=0/1), req/s and CPU time per
# request side by side, and how many of the requests served the writer thread stored
# (the rest were dropped, and counted, when it could not keep up).
#
#   bench/request-log.sh            ROUNDS=3 DURATION=8
set -euo pipefail
cd "$(dirname "$0")/.."
export ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-8} PEERS=gatehouse MODE=http PIN=0 WORKERS=1

declare -A FILE KEPT
for log in 0 1; do
  echo "== REQUEST_LOG=$log"
  out=$(REQUEST_LOG=$log KEEP_TMP=1 bench/run.sh 2>&1 | tee /dev/stderr)
  FILE[$log]=$(awk '/^results written to / {print $4}' <<<"$out")
  KEPT[$log]=$(awk '/^temp dir kept: / {print $4}' <<<"$out")
  [[ -f ${FILE[$log]} ]] || { echo "bench/run.sh wrote no results for REQUEST_LOG=$log" >&2; exit 1; }
done

median() { # $1 file, $2 column (3 = req/s, 6 = CPU us/req, 7 = requests)
  awk -v c="$2" 'f && $1 == "gatehouse" {print $c} /^raw / {f=1}' "$1" | sort -g |
    awk '{v[NR]=$1} END {if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'
}
sum() { awk -v c="$2" 'f && $1 == "gatehouse" {s += $c} /^raw / {f=1} END {print s + 0}' "$1"; }

db="${KEPT[1]}/gatehouse/data/gatehouse.db"
stored=$(python3 -c "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT count(*) FROM requests').fetchone()[0])" "$db")
served=$(sum "${FILE[1]}" 7)
off=$(median "${FILE[0]}" 3); on=$(median "${FILE[1]}" 3)
echo
echo "request log (median of $ROUNDS rounds each; ${FILE[0]} and ${FILE[1]}):"
printf '%-14s %10s %12s\n' "" "req/s" "CPU us/req"
printf '%-14s %10.0f %12.2f\n' "log off" "$off" "$(median "${FILE[0]}" 6)"
printf '%-14s %10.0f %12.2f\n' "log on" "$on" "$(median "${FILE[1]}" 6)"
printf 'on/off: %.2fx req/s\n' "$(awk -v a="$off" -v b="$on" 'BEGIN {print b / a}')"
echo "rows stored: $stored of $served measured requests (plus warm-up requests; the rest dropped)"
rm -rf "${KEPT[0]}" "${KEPT[1]}"
