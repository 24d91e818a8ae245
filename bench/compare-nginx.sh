#!/usr/bin/env bash
# Portcullis next to nginx (1 worker) as a reverse proxy in front of the same upstream, all on
# 127.0.0.1, measured with wrk in alternating rounds by ../shared/bench/peers.sh, which prints
# req/s, p50, p99, CPU µs per request and the ratio to nginx from the same run.
#
#   bench/compare-nginx.sh                 # access log off (as nginx in peers.sh)
#   LOGGED=1 bench/compare-nginx.sh        # with the JSON access log written (to /dev/null)
#   DUR=5 REPS=3 CONNS=64 bench/compare-nginx.sh   # peers.sh knobs pass through
#
# Bounded: DUR seconds per run x REPS rounds x 2 rows (~1 min with the defaults). Needs
# nginx and wrk (peers.sh installs them with apt-get when missing).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PEERS=${PEERS:-$ROOT/../shared/bench/peers.sh}
[[ -x $PEERS ]] || { echo "peers.sh not found at $PEERS (set PEERS=...)" >&2; exit 1; }
cargo build --release -q -p portcullis --manifest-path "$ROOT/Cargo.toml"
CONFIG=$HERE/gateway.yaml
[[ -n ${LOGGED:-} ]] && CONFIG=$HERE/gateway-logged.yaml
export GATEWAY_CMD="$ROOT/target/release/portcullis run --no-watch -c $CONFIG"
export GATEWAY_PORT=9200
export ONLY=${ONLY:-nginx-1w gateway}
exec "$PEERS"
