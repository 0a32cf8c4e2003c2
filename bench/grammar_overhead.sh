#!/usr/bin/env bash
# Generation speed with a JSON-schema constraint vs. without, same model/prompt/seeds/threads.
# usage: bench/grammar_overhead.sh [SLM_BIN] [MODEL]
#   env: N (tokens per run, 128), RUNS (per mode, 3), THREADS (2), SCHEMA (tests/schemas/02_invoice.json)
# Prints the median tok/s of each mode and the ratio (target: constrained >= 90% of unconstrained).
# Both modes sample at temperature 1; with random weights the model's first choice is almost never
# allowed, so the constrained runs take the full mask path at nearly every step (the worst case).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
SLM=${1:-${SLM_BIN:-$here/build/slm}}
MODEL=${2:-${SLM_TEST_MODELS:-$here/build/testdata}/smollm2-135m-q8_0.gguf}
N=${N:-256}
RUNS=${RUNS:-3}
THREADS=${THREADS:-2}
SCHEMA=${SCHEMA:-$here/tests/schemas/02_invoice.json}
PROMPT="Write the invoice as JSON:"
[ -x "$SLM" ] || { echo "grammar_overhead: no slm binary at $SLM" >&2; exit 1; }
[ -f "$MODEL" ] || { echo "grammar_overhead: no model at $MODEL (scripts/gen-test-models.sh)" >&2; exit 1; }

rate() { # seed, extra args... -> generated tok/s
    local seed=$1; shift
    "$SLM" run "$MODEL" -p "$PROMPT" -n "${N}" --temp 1 --seed "$seed" -t "$THREADS" "$@" 2>&1 >/dev/null |
        sed -n 's/.*generated \([0-9]*\) tokens [0-9.]* ms (\([0-9.]*\) tok\/s).*/\1 \2/p' | tail -1
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

free_rates=() ; json_rates=()
# A constrained run cut by -n before the JSON is complete is reported as incomplete (no timing
# line); such seeds are skipped, so the comparison uses runs that produced valid JSON.
seed=0
while [ "${#json_rates[@]}" -lt "$RUNS" ] && [ "$seed" -lt $((RUNS * 5)) ]; do
    seed=$((seed + 1))
    out=$(rate "$seed" --json-schema "$SCHEMA" || true)
    [ -n "$out" ] || { echo "seed $seed: constrained run incomplete at $N tokens, skipped" >&2; continue; }
    read -r nj rj <<<"$out"
    # same number of tokens (attention cost grows with length), same seed
    read -r nf rf < <(N=$nj rate "$seed" --ignore-eos)
    echo "seed $seed: unconstrained $nf tokens at $rf tok/s; schema $nj tokens at $rj tok/s" >&2
    free_rates+=("$rf"); json_rates+=("$rj")
done
[ "${#json_rates[@]}" -gt 0 ] || { echo "grammar_overhead: no constrained run completed; raise N" >&2; exit 1; }
mf=$(printf '%s\n' "${free_rates[@]}" | median)
mj=$(printf '%s\n' "${json_rates[@]}" | median)
ratio=$(awk -v a="$mj" -v b="$mf" 'BEGIN { printf "%.1f", 100 * a / b }')
echo "model $(basename "$MODEL"), $THREADS threads, $N tokens, median of ${#json_rates[@]} runs:"
echo "  unconstrained   $mf tok/s"
echo "  json schema     $mj tok/s  ($(basename "$SCHEMA"))"
echo "  ratio           $ratio %  (target >= 90 %)"
awk -v r="$ratio" 'BEGIN { exit !(r >= 90) }'
