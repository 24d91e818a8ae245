#!/usr/bin/env bash
# What given CRS rules cost a request, in marginal engine instructions: the count of
# bench/waf-engine-instructions.sh with all rules, minus the count with the given rules
# removed (CRS_REMOVE, ids or ranges as SecRuleRemoveById takes them). A rule's cost includes
# what it leaves to later rules (a removed rule's prefilter union is computed by the next rule
# reading the same variable, so that part moves, it does not vanish). Needs valgrind; CRS from
# PORTCULLIS_CRS or ../shared/crs. In-process only.
#   cargo build --release -p portcullis-waf --example crs_profile
#   bench/waf-rule-cost.sh get|sqli|post 'IDS' ['IDS' ...]     # e.g. get 920450 '930000-930999'
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
kind=$1
shift
marginal() { KINDS=$kind bash "$HERE/waf-engine-instructions.sh" ${BIN:+"$BIN"} | awk '{print $4}'; }
all=$(unset CRS_REMOVE; marginal)
echo "$kind with every rule: $all instructions/request"
for ids in "$@"; do
  without=$(CRS_REMOVE=$ids marginal)
  echo "$kind without $ids: $without, so $ids cost $(( all - without ))"
done
