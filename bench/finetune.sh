#!/usr/bin/env bash
# LoRA fine-tuning on the CPU (slm finetune), two parts:
#  1. stories260K on the style corpus (tests/data/finetune): validation perplexity before/after (the
#     trainer's own, and slm perplexity without / with --lora), training tokens/s, CPU time and peak
#     memory (/usr/bin/time -v) at THREADS threads.
#  2. a synthetic smollm2-135m Q8_0 base (synth_gguf.py --preset smollm2-135m --type q8_0; random
#     weights, so only speed and memory mean anything): a few steps, tokens/s and peak memory.
# usage: bench/finetune.sh [SLM_BIN]
#   env: THREADS (2), STEPS (stories260K steps, 60), BIG_STEPS (smollm2 steps, 3), CTX (128),
#        SLM_TEST_DATA (/work/shared or ../shared), SYNTH (the synth_gguf.py path)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
SLM=${1:-${SLM_BIN:-$here/build/slm}}
THREADS=${THREADS:-2}
STEPS=${STEPS:-60}
BIG_STEPS=${BIG_STEPS:-3}
CTX=${CTX:-128}
shared=${SLM_TEST_DATA:-$here/../shared}
SYNTH=${SYNTH:-$shared/tools/synth_gguf.py}
stories=$shared/models/stories260K.gguf
data=$here/tests/data/finetune
[ -x "$SLM" ] || { echo "finetune bench: no slm binary at $SLM" >&2; exit 1; }
[ -f "$stories" ] || { echo "finetune bench: $stories absent (set SLM_TEST_DATA)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# runs slm finetune under /usr/bin/time -v; prints its stdout, then "peak_kb cpu_s wall_s"
timed_finetune() {
    /usr/bin/time -v "$SLM" finetune "$@" -q >"$tmp/out" 2>"$tmp/time" || { cat "$tmp/time" >&2; exit 1; }
    cat "$tmp/out"
    awk -F': ' '/Maximum resident set size/ {kb=$2} /User time/ {u=$2} /System time/ {s=$2}
        /Elapsed \(wall clock\)/ {n=split($2, p, ":"); w=0; for (i=1;i<=n;i++) w=w*60+p[i]}
        END {printf "peak %.1f MiB, CPU %.1f s, wall %.1f s\n", kb/1024, u+s, w}' "$tmp/time"
}

ppl() {
    "$SLM" perplexity "$stories" "$@" -f "$data/style_val.txt" -c "$CTX" -t "$THREADS" 2>/dev/null |
        sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p'
}

echo "== stories260K style fine-tune: rank 8, alpha 16, all 7 targets, ctx $CTX, batch 4, $STEPS steps, $THREADS threads"
timed_finetune "$stories" --data "$data/style_train.txt" --val "$data/style_val.txt" --ctx "$CTX" --batch 4 \
    --lr 3e-3 --epochs 100 --max-steps "$STEPS" -t "$THREADS" -o "$tmp/stories.gguf"
echo "slm perplexity of style_val.txt (c $CTX): base $(ppl), with --lora $(ppl --lora "$tmp/stories.gguf")"

echo
echo "== synthetic smollm2-135m Q8_0: rank 8, all 7 targets, ctx $CTX, batch 2, $BIG_STEPS steps, $THREADS threads"
big=${SLM_TEST_MODELS:-$here/build/testdata}/smollm2-135m-q8_0.gguf
if [ ! -f "$big" ]; then
    big=$tmp/smollm2-135m-q8_0.gguf
    python3 "$SYNTH" --preset smollm2-135m --type q8_0 -o "$big" >/dev/null
fi
echo "base file $(du -m "$big" | cut -f1) MiB"
timed_finetune "$big" --data "$data/style_train.txt" --val-fraction 0 --ctx "$CTX" --batch 2 \
    --max-steps "$BIG_STEPS" -t "$THREADS" -o "$tmp/big.gguf"
