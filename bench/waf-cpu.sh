#!/usr/bin/env bash
# CPU per request of the gateway process itself with the WAF on (bench/waf.yaml: stock CRS PL1,
# blocking) and off (the same config with `defaults: { waf: { mode: off } }`), for waf-bench's
# browser-like GET: the difference is what the WAF costs inside the gateway, to compare with
# the engine alone (crates/portcullis-waf/examples/crs_profile.rs). utime+stime of the gateway's
# PID (/proc/PID/stat), so kernel work charged elsewhere and other processes do not count;
# gateway pinned to CPU 1, wrk and the nginx upstream to CPU 0. Loopback only; each row runs a
# 2 s warm-up and DUR s measured, rows alternate ROUNDS times.
#   bench/waf-cpu.sh [BINARY]        # default target/release/portcullis; DUR=8 ROUNDS=2 CONNS=16
# Needs nginx, wrk, taskset; CRS from PORTCULLIS_CRS or ../shared/crs.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$(realpath "${1:-$HERE/../target/release/portcullis}")
CRS=$(realpath "${PORTCULLIS_CRS:-$HERE/../../shared/crs}")
DUR=${DUR:-8}; ROUNDS=${ROUNDS:-2}; CONNS=${CONNS:-16}
source "$HERE/upstream.sh" waf-cpu 9200
taskset -cp 0 "${PIDS[0]}" >/dev/null
sed "s#path: ../../shared/crs#path: $CRS#" "$HERE/waf.yaml" >"$RUN/on.yaml"
sed 's/^routes:/defaults: { waf: { mode: off } }\nroutes:/' "$RUN/on.yaml" >"$RUN/off.yaml"
{ echo "wrk.method = 'GET'; wrk.path = [[/api/orders/42?expand=items&page=2]]"
  echo "wrk.headers['User-Agent'] = 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0'"
  echo "wrk.headers['Accept'] = 'application/json, text/plain, */*'"
  echo "wrk.headers['Accept-Language'] = 'en-US,en;q=0.9'"
  echo "wrk.headers['Cookie'] = 'sid=3f9a1c7e5b2d40aa; theme=dark'"
  echo 'done = function(s) io.write(string.format("REQUESTS %d\n", s.requests)) end'; } >"$RUN/get.lua"
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
for _ in $(seq "$ROUNDS"); do
  for waf in off on; do
    taskset -c 1 "$BIN" run --no-watch -c "$RUN/$waf.yaml" >"$RUN/gw.log" 2>&1 & GW=$!; PIDS+=($GW)
    for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/9200) 2>/dev/null && break; sleep 0.2; done
    taskset -c 0 timeout 20 wrk -t1 -c"$CONNS" -d2s -s "$RUN/get.lua" http://127.0.0.1:9200 >/dev/null
    a=$(cpu "$GW")
    n=$(taskset -c 0 timeout $((DUR + 20)) wrk -t1 -c"$CONNS" -d"${DUR}s" -s "$RUN/get.lua" http://127.0.0.1:9200 |
      awk '/^REQUESTS/ {print $2}')
    b=$(cpu "$GW")
    kill -TERM "$GW"; wait "$GW" 2>/dev/null || true
    awk -v w="$waf" -v n="$n" -v t=$((b - a)) -v hz="$HZ" \
      'BEGIN { printf "waf %-3s %8d requests %6.1f us CPU/request\n", w, n, (n > 0 ? t * 1e6 / hz / n : 0) }'
  done
done
