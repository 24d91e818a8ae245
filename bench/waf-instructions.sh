#!/usr/bin/env bash
# Instructions per request inside the gateway's request handler with stock CRS PL1
# (bench/waf.yaml), counted by callgrind: deterministic, so it compares two builds without the
# VM's drift. waf-bench.sh's browser-like GET and blocked SQLi GET (same path and headers).
# Loopback only; bounded by DUR seconds of wrk at concurrency 4 per kind.
#   bench/waf-instructions.sh [BINARY]        # default target/release/portcullis
#   KINDS='get' DUR=8 PORTCULLIS_CRS=../shared/crs bench/waf-instructions.sh
# Prints per kind: instructions/request (Collected / (requests + 1 warm-up)). Needs valgrind, nginx, wrk, curl.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$(realpath "${1:-$HERE/../target/release/portcullis}")
CRS=$(realpath "${PORTCULLIS_CRS:-$HERE/../../shared/crs}")
DUR=${DUR:-8}
source "$HERE/upstream.sh" waf-insn 9200
sed "s#path: ../../shared/crs#path: $CRS#" "$HERE/waf.yaml" >"$RUN/waf.yaml"
for kind in ${KINDS:-get sqli}; do
  path='/api/orders/42?expand=items&page=2'; [[ $kind == sqli ]] && path="/api/orders/42?id=1'%20OR%20'1'='1"
  { echo "wrk.method = 'GET'; wrk.path = [[$path]]"
    echo "wrk.headers['User-Agent'] = 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0'"
    echo "wrk.headers['Accept'] = 'application/json, text/plain, */*'"
    echo "wrk.headers['Accept-Language'] = 'en-US,en;q=0.9'"
    echo "wrk.headers['Cookie'] = 'sid=3f9a1c7e5b2d40aa; theme=dark'"
    echo 'done = function(s) io.write(string.format("REQUESTS %d\n", s.requests)) end'; } >"$RUN/$kind.lua"
  valgrind --tool=callgrind --callgrind-out-file="$RUN/cg.$kind" --toggle-collect='*pipeline::handle*' \
    "$BIN" run --no-watch -c "$RUN/waf.yaml" >"$RUN/vg.$kind.log" 2>&1 & GW=$!; PIDS+=($GW)
  for _ in $(seq 600); do (exec 3<>/dev/tcp/127.0.0.1/9200) 2>/dev/null && break; sleep 0.5; done
  curl -s -o /dev/null -m 30 http://127.0.0.1:9200/api/orders/42
  n=$(timeout $((DUR + 60)) wrk -t1 -c4 -d"${DUR}s" -s "$RUN/$kind.lua" http://127.0.0.1:9200 | awk '/^REQUESTS/ {print $2}')
  kill -TERM "$GW"; wait "$GW" 2>/dev/null || true
  total=$(awk '/Collected :/ {print $NF}' "$RUN/vg.$kind.log")
  echo "$kind: instructions/request $((total / (n + 1)))  requests $n  ($BIN)"
done
