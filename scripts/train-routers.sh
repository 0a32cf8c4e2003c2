#!/usr/bin/env bash
# Trains the default routers shipped in routers/ from ../shared/router-data (no make needed):
#   routers/prompt.router   prompt router, every MMLU subject file (29 subjects, 7,658 prompts)
#   routers/cascade.router  cascade router, gsm8k_dev.csv (667 problems with the local model's answers)
# usage: scripts/train-routers.sh [SLM_BIN]   env: SLM_TEST_DATA (default ../shared)
# Deterministic: the same binary and data give the same bytes (seed 1, single thread).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
SLM=${1:-${SLM_BIN:-$here/build/slm}}
data=${SLM_TEST_DATA:-$here/../shared}/router-data
[ -x "$SLM" ] || { echo "train-routers: no slm binary at $SLM" >&2; exit 1; }
[ -d "$data/mmlu" ] && [ -f "$data/gsm8k/gsm8k_dev.csv" ] || { echo "train-routers: no $data (set SLM_TEST_DATA)" >&2; exit 1; }
mkdir -p "$here/routers"
"$SLM" router train --kind prompt --data "$data"/mmlu/*.csv --seed 1 -o "$here/routers/prompt.router"
"$SLM" router train --kind cascade --data "$data/gsm8k/gsm8k_dev.csv" --seed 1 -o "$here/routers/cascade.router"
ls -l "$here/routers/prompt.router" "$here/routers/cascade.router"
sha256sum "$here/routers/prompt.router" "$here/routers/cascade.router"
