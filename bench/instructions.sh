#!/usr/bin/env bash
# User-space instructions per proxied request, counted by callgrind: deterministic, so it
# compares two builds without the VM's ±15% drift (which only ratios measured in one run
# survive). Loopback only; bounded by DUR seconds of wrk at low concurrency.
#   bench/instructions.sh [BINARY]     # default target/release/portcullis
#   CONFIG=file HEADER='x-api-key: …' bench/instructions.sh   # another config / request header
# Prints: instructions/request, requests. Needs valgrind, nginx, wrk.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${1:-$HERE/../target/release/portcullis}
DUR=${DUR:-10}
source "$HERE/upstream.sh" insn-bench 9200
valgrind --tool=callgrind --callgrind-out-file="$RUN/cg.out" "$BIN" run --no-watch -c "${CONFIG:-$HERE/gateway.yaml}" >"$RUN/vg.log" 2>&1 & PIDS+=($!)
H=(); [[ -n ${HEADER:-} ]] && H=(-H "$HEADER")
for _ in $(seq 100); do curl -sf -m 1 "${H[@]}" http://127.0.0.1:9200/ >/dev/null 2>&1 && break; sleep 0.2; done
n=$(wrk -t1 -c8 -d"${DUR}s" "${H[@]}" http://127.0.0.1:9200/ | awk '/requests in/ {print $1}')
kill -INT "${PIDS[1]}"; wait "${PIDS[1]}" 2>/dev/null || true
total=$(callgrind_annotate "$RUN/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "instructions/request: $((total / n))  requests: $n  ($BIN)"
