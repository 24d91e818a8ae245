#!/usr/bin/env bash
# Marginal engine instructions per request (steady state: one-time costs such as the first
# request's regex caches cancel out), counted by callgrind on the crs_profile example:
# (C(300) - C(100)) / 200 for the GETs, (C(60) - C(20)) / 40 for the 4 KB JSON POST, where C is
# callgrind's "Collected" with --toggle-collect on the request function. Deterministic, so it
# compares two builds without the VM's drift. Needs valgrind; CRS from PORTCULLIS_CRS or
# ../shared/crs. In-process only: no sockets, nothing to stop.
#   cargo build --release -p portcullis-waf --example crs_profile
#   bench/waf-engine-instructions.sh [EXAMPLE_BINARY]   # default target/release/examples/crs_profile
# KINDS="get post" limits the requests counted; CRS_REMOVE (ids) counts without those rules
# (see bench/waf-rule-cost.sh).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$(realpath "${1:-$HERE/../target/release/examples/crs_profile}")
export PORTCULLIS_CRS=$(realpath "${PORTCULLIS_CRS:-$HERE/../../shared/crs}")
collected() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null --toggle-collect='*common::run*' "$BIN" "$1" "$2" 2>&1 |
    awk '/Collected :/ {print $NF}'
}
for kind in ${KINDS:-get sqli post}; do
  if [[ $kind == post ]]; then lo=20 hi=60; else lo=100 hi=300; fi
  a=$(collected "$kind" "$lo"); b=$(collected "$kind" "$hi")
  echo "$kind: marginal instructions/request $(( (b - a) / (hi - lo) ))  ($kind $lo: $a, $kind $hi: $b; $BIN)"
done
