#!/usr/bin/env bash
# Whole-process cost of a request check: two gateways on 127.0.0.1 in front of the same nginx
# upstream, one with a plain route, one whose route runs the check (set so that it always
# passes). wrk alternates between them (REPS rounds of DUR seconds), pinned as in
# ../shared/bench/peers.sh: wrk and the upstream on CPU 0, the gateways on CPU 1. Prints
# medians and the ratio from the same run, then the instructions per request of each
# (callgrind), which do not drift with the VM.
#   bench/overhead.sh keys    # API key on a plan with a per-route limit, a plan limit and a
#                             # quota (issue 3, target >= 95%)
#   bench/overhead.sh jwt     # RS256 bearer token from a PEM-configured provider (issue 4,
#                             # target >= 90%); every request sends the same token, as clients do
#   bench/overhead.sh cluster # the same route limit (rate 50k/s: never refuses here) in one
#                             # node on a Redis store vs embedded (issue 5, target >= 90%); also
#                             # prints Redis commands per request (target <= 0.1). Starts its own
#                             # redis-server on 127.0.0.1:9379.
# DUR=3 REPS=10 CONNS=64 by default (~1.5 min).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared/bench}
VARIANT=${1:-keys}; DUR=${DUR:-3}; REPS=${REPS:-10}; CONNS=${CONNS:-64}
case $VARIANT in keys | jwt | cluster) ;; *) echo "usage: $0 keys|jwt|cluster" >&2; exit 2 ;; esac
for port in 9001 9200 9201 9379; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "port $port is already in use" >&2; exit 1; fi
done
command -v nginx >/dev/null && command -v wrk >/dev/null || { echo "needs nginx and wrk (apt-get install nginx wrk)" >&2; exit 1; }
cargo build --release -q -p portcullis --manifest-path "$ROOT/Cargo.toml"
BIN=$ROOT/target/release/portcullis
RUN=$(mktemp -d /tmp/overhead-bench.XXXXXX); PIDS=()
# The route's own limit; the cluster variant uses a realistic hot-route limit in both rows.
LIMIT="{ rate: 10000000, burst: 10000000 }"
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.5; rm -rf "$RUN"; }
trap cleanup EXIT INT TERM
cp "$SHARED/nginx-upstream.conf" "$RUN/"
common='limits: { max_conns_per_ip: 4096 }
global: { throttle: { rate: 10000000, burst: 10000000 } }
upstreams: { up: { targets: ["http://127.0.0.1:9001"], max_concurrency: 4096, pool: { max_idle: 1024 } } }
log: { access: off }'
cat >"$RUN/plain.yaml" <<YAML
listeners: [{ name: bench, bind: "127.0.0.1:9200" }]
$common
routes: [{ name: all, match: { path: "/*" }, upstream: up, throttle: LIMIT }]
YAML
if [[ $VARIANT == cluster ]]; then
  LABEL="cluster (Redis store)"; HEADER="x-bench: 1"; LIMIT="{ rate: 50000, burst: 50000 }"
  command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install redis-server)" >&2; exit 1; }
  redis-server --bind 127.0.0.1 --port 9379 --save "" --appendonly yes --appendfsync always --dir "$RUN" \
    --loglevel warning >/dev/null 2>&1 & PIDS+=($!)
  for _ in $(seq 50); do redis-cli -p 9379 ping >/dev/null 2>&1 && break; sleep 0.1; done
  cat >"$RUN/keyed.yaml" <<YAML
listeners: [{ name: bench, bind: "127.0.0.1:9201" }]
$common
state: { store: "redis://127.0.0.1:9379", prefix: bench }
routes: [{ name: all, match: { path: "/*" }, upstream: up, throttle: $LIMIT }]
YAML
elif [[ $VARIANT == keys ]]; then
  LABEL="key + route + plan + quota"
  cat >"$RUN/keyed.yaml" <<YAML
listeners: [{ name: bench, bind: "127.0.0.1:9201" }]
$common
state: { store: "sqlite:$RUN/state.db" }
routes: [{ name: all, match: { path: "/*" }, upstream: up, auth: { api_key: true }, throttle: { rate: 10000000, burst: 10000000 } }]
plans:
  bench:
    throttle: { rate: 10000000, burst: 10000000 }
    routes: { all: { rate: 10000000, burst: 10000000 } }
    quota: { limit: 4000000000, period: month }
YAML
  HEADER="x-api-key: $("$BIN" keys create -c "$RUN/keyed.yaml" --plan bench --name bench | awk '/^key:/ {print $2}')"
else
  LABEL="RS256 bearer token"
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$RUN/idp.key" 2>/dev/null
  openssl pkey -in "$RUN/idp.key" -pubout -out "$RUN/idp.pem"
  cat >"$RUN/keyed.yaml" <<YAML
listeners: [{ name: bench, bind: "127.0.0.1:9201" }]
$common
auth:
  jwt: { idp: { issuer: "https://id.bench/", audiences: [bench], algorithms: [RS256], public_key: $RUN/idp.pem } }
routes: [{ name: all, match: { path: "/*" }, upstream: up, auth: { jwt: idp, scopes: [read] }, throttle: { rate: 10000000, burst: 10000000 } }]
YAML
  b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
  head=$(printf '{"alg":"RS256","typ":"JWT"}' | b64url)
  body=$(printf '{"iss":"https://id.bench/","aud":"bench","sub":"user-1","scope":"read write","exp":%d}' $(($(date +%s) + 7200)) | b64url)
  sig=$(printf '%s.%s' "$head" "$body" | openssl dgst -sha256 -sign "$RUN/idp.key" -binary | b64url)
  HEADER="authorization: Bearer $head.$body.$sig"
fi
sed -i "s/LIMIT/$LIMIT/" "$RUN/plain.yaml"
nginx -p "$RUN/" -e stderr -c "$RUN/nginx-upstream.conf" -g 'daemon off;' >/dev/null 2>&1 & PIDS+=($!)
taskset -c 1 "$BIN" run --no-watch -c "$RUN/plain.yaml" 2>/dev/null & PIDS+=($!)
taskset -c 1 "$BIN" run --no-watch -c "$RUN/keyed.yaml" 2>/dev/null & PIDS+=($!)
for _ in $(seq 50); do
  curl -sf -m 1 http://127.0.0.1:9200/ >/dev/null 2>&1 && curl -sf -m 1 -H "$HEADER" http://127.0.0.1:9201/ >/dev/null 2>&1 && break
  sleep 0.2
done
run() { taskset -c 0 timeout $((DUR + 15)) wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "$@" | awk '/Requests\/sec/ {print $2}'; }
run -d1s http://127.0.0.1:9200/ >/dev/null; run -d1s -H "$HEADER" http://127.0.0.1:9201/ >/dev/null
# ABBA rounds (plain, keyed, keyed, plain): the VM's speed drifts over minutes, so each round's
# keyed/plain ratio is paired, and the median of the paired ratios is the result.
for r in $(seq "$REPS"); do
  if ((r % 2)); then
    pr=$(run http://127.0.0.1:9200/); kr=$(run -H "$HEADER" http://127.0.0.1:9201/)
  else
    kr=$(run -H "$HEADER" http://127.0.0.1:9201/); pr=$(run http://127.0.0.1:9200/)
  fi
  echo "$pr" >>"$RUN/plain.rps"; echo "$kr" >>"$RUN/keyed.rps"
  awk -v p="$pr" -v k="$kr" 'BEGIN { print k / p }' >>"$RUN/ratio"
  printf '.' >&2
done; echo >&2
med() { sort -n "$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
p=$(med "$RUN/plain.rps"); k=$(med "$RUN/keyed.rps")
echo "# $(date -u +%FT%TZ) wrk -t1 -c$CONNS -d${DUR}s x$REPS rounds (ABBA), medians"
printf '%-28s %10s\n' "plain route" "$p" "$LABEL" "$k"
echo "paired ratios $VARIANT/plain: $(sort -n "$RUN/ratio" | tr '\n' ' ')"
echo "median paired ratio: $(med "$RUN/ratio")"
if [[ $VARIANT == cluster ]]; then
  calls=$(redis-cli -p 9379 INFO commandstats | awk -F'calls=' '/^cmdstat_/ {split($2, a, ","); s += a[1]} END {print s}')
  served=$(awk -v d="$DUR" '{s += $1 * d} END {printf "%d", s}' "$RUN/keyed.rps")
  echo "Redis commands: $calls for ~$served requests to the cluster node = $(awk -v c="$calls" -v r="$served" 'BEGIN {printf "%.5f", c / r}') per request (heartbeats and the 1 s sync poll included)"
fi
for p in "${PIDS[@]:1}"; do kill "$p" 2>/dev/null || true; done; sleep 0.5; kill "${PIDS[0]}" 2>/dev/null || true; PIDS=(); sleep 0.5
if [[ $VARIANT != cluster ]] && command -v valgrind >/dev/null; then
  sed 's/9201/9200/' "$RUN/keyed.yaml" >"$RUN/keyed-9200.yaml"
  echo "plain: $(DUR=5 "$HERE/instructions.sh" "$BIN" | cut -d' ' -f1-2)"
  echo "$VARIANT: $(DUR=5 CONFIG="$RUN/keyed-9200.yaml" HEADER="$HEADER" "$HERE/instructions.sh" "$BIN" | cut -d' ' -f1-2)"
fi
