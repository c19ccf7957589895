#!/usr/bin/env bash
# Scaling across workers: the same HTTP/1.1 proxy load (bench/run.sh, MODE=http) with one
# worker per proxy, then two, and the ratio of the two req/s figures per proxy, Gatehouse
# beside nginx and HAProxy in one run.
#
#   bench/scaling.sh                 ROUNDS=3 DURATION=8 PEERS="nginx haproxy gatehouse"
#
# On a 2-core machine the load generator (wrk) and the backend share the cores with the
# proxy, so no proxy reaches 2x here; what counts is how close each comes next to the others.
set -euo pipefail
cd "$(dirname "$0")/.."
export ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-8} PEERS=${PEERS:-"nginx haproxy gatehouse"} MODE=http PIN=0

declare -A FILE
for w in 1 2; do
  echo "== WORKERS=$w"
  out=$(WORKERS=$w bench/run.sh 2>&1 | tee /dev/stderr | awk '/^results written to / {print $4}')
  [[ -f $out ]] || { echo "bench/run.sh wrote no results for WORKERS=$w" >&2; exit 1; }
  FILE[$w]=$out
done

# The raw section of a results file: "name round req/s p99_ms rss_kB cpu_us_per_req ...".
median() { # $1 file, $2 peer, $3 column (3 = req/s, 6 = CPU us/req)
  awk -v p="$2" -v c="$3" 'f && $1 == p {print $c} /^raw / {f=1}' "$1" | sort -g |
    awk '{v[NR]=$1} END {if (NR == 0) print "nan"; else if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'
}

echo
echo "scaling (median of $ROUNDS rounds each; ${FILE[1]} and ${FILE[2]}):"
printf '%-10s %12s %12s %8s %14s %14s\n' proxy "1w req/s" "2w req/s" "2w/1w" "1w CPU us/req" "2w CPU us/req"
for p in $PEERS; do
  a=$(median "${FILE[1]}" "$p" 3); b=$(median "${FILE[2]}" "$p" 3)
  ca=$(median "${FILE[1]}" "$p" 6); cb=$(median "${FILE[2]}" "$p" 6)
  printf '%-10s %12.0f %12.0f %7.2fx %14.2f %14.2f\n' "$p" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN {print b / a}')" "$ca" "$cb"
done
echo "command: bench/scaling.sh (ROUNDS=$ROUNDS DURATION=$DURATION, $(git rev-parse --short HEAD 2>/dev/null || echo unknown))"
