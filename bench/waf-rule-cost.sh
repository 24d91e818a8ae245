#!/usr/bin/env bash
# What given CRS rules cost a request, in marginal engine instructions: the crs_profile
# example's count (as bench/waf-engine-instructions.sh takes it) with all rules, minus the
# count with the given rules removed (CRS_REMOVE, ids or ranges as SecRuleRemoveById takes
# them). A rule's cost includes what it leaves to later rules (a removed rule's prefilter
# union is computed by the next rule reading the same variable, so that part moves, it does
# not vanish). Needs valgrind; CRS from PORTCULLIS_CRS or ../shared/crs. In-process only.
#   cargo build --release -p portcullis-waf --example crs_profile
#   bench/waf-rule-cost.sh get|sqli|post 'IDS' ['IDS' ...]     # e.g. get 920450 '930000-930999'
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$(realpath "${BIN:-$HERE/../target/release/examples/crs_profile}")
export PORTCULLIS_CRS=$(realpath "${PORTCULLIS_CRS:-$HERE/../../shared/crs}")
kind=$1
shift
if [[ $kind == post ]]; then lo=20 hi=60; else lo=100 hi=300; fi
marginal() {
  local a b
  a=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null --toggle-collect='*common::run*' "$BIN" "$kind" "$lo" 2>&1 | awk '/Collected :/ {print $NF}')
  b=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null --toggle-collect='*common::run*' "$BIN" "$kind" "$hi" 2>&1 | awk '/Collected :/ {print $NF}')
  echo $(( (b - a) / (hi - lo) ))
}
all=$(unset CRS_REMOVE; marginal)
echo "$kind with every rule: $all instructions/request"
for ids in "$@"; do
  without=$(CRS_REMOVE=$ids marginal)
  echo "$kind without $ids: $without, so $ids cost $(( all - without ))"
done
