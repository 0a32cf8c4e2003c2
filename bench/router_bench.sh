#!/usr/bin/env bash
# Decision time of the learned router: slm_router_score timed call by call (one thread, the router
# already loaded) over every MMLU prompt of ../shared/router-data (7,658 prompts) with the shipped
# prompt router, and over the GSM8K prompts + local answers with the shipped cascade router.
# Also the load time of each router file (median of LOADS runs of `slm router info`, which is
# process start + load + a few threshold look-ups).
# usage: bench/router_bench.sh [SLM_BIN]   env: SLM_TEST_DATA (../shared), LOADS (5)
# Target (issue 14): < 1 ms per decision.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
SLM=${1:-${SLM_BIN:-$here/build/slm}}
data=${SLM_TEST_DATA:-$here/../shared}/router-data
LOADS=${LOADS:-5}
[ -x "$SLM" ] || { echo "router_bench: no slm binary at $SLM" >&2; exit 1; }
[ -d "$data/mmlu" ] || { echo "router_bench: no $data/mmlu (set SLM_TEST_DATA)" >&2; exit 1; }

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
load_ms() {
    for _ in $(seq "$LOADS"); do
        s=$(date +%s%N); "$SLM" router info "$1" >/dev/null; e=$(date +%s%N)
        echo $(( (e - s) / 1000 ))
    done | median | awk '{printf "%.2f", $1 / 1000}'
}

echo "prompt router  ($(stat -c %s "$here/routers/prompt.router") bytes, load+info $(load_ms "$here/routers/prompt.router") ms):"
echo "  MMLU prompts:   $("$SLM" router bench --router "$here/routers/prompt.router" --data "$data"/mmlu/*.csv)"
echo "cascade router ($(stat -c %s "$here/routers/cascade.router") bytes, load+info $(load_ms "$here/routers/cascade.router") ms):"
echo "  GSM8K answers:  $("$SLM" router bench --router "$here/routers/cascade.router" --data "$data/gsm8k/gsm8k_dev.csv")"
