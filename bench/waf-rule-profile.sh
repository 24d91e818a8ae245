#!/usr/bin/env bash
# Where a WAF request's time goes, rule by rule: the crs_profile example built with the
# `rule-profile` feature (crates/portcullis-waf/src/profile.rs) runs one of the bench requests
# N times through stock CRS PL1 in-process, then prints per rule the time of its full
# evaluations, how often it was evaluated and matched, and its operator calls, per request.
# Wall-clock and in-process (warm caches): compare rules within one run, not runs across days.
# Built in its own target directory, so the normal example binary stays unprofiled.
#   bench/waf-rule-profile.sh [get|post|sqli] [N]     # default: get 20000 (post: 2000)
# CRS from PORTCULLIS_CRS or ../shared/crs; pinned to CPU 1 when taskset exists. No sockets.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
KIND=${1:-get}
N=${2:-$([[ $KIND == post ]] && echo 2000 || echo 20000)}
export PORTCULLIS_CRS=$(realpath "${PORTCULLIS_CRS:-$HERE/../../shared/crs}")
TARGET="$HERE/../target/rule-profile"
cargo build --release -q -p portcullis-waf --example crs_profile --features rule-profile --target-dir "$TARGET"
PIN=(); command -v taskset >/dev/null && PIN=(taskset -c 1)
"${PIN[@]}" "$TARGET/release/examples/crs_profile" "$KIND" "$N"
