#!/usr/bin/env bash
# Embedding throughput of `slm embed` side by side with llama.cpp's llama-embedding.
#
#   LLAMA_EMBEDDING=/path/to/llama-embedding bench/embed_vs_llama.sh
#
# Both programs get the same N_INPUTS lines (default 64, ~100 WordPiece tokens each with CLS/SEP,
# deterministic English-like text) and write every embedding to /dev/null. Each measured run is the
# whole process (load included), wall clock. The two commands alternate (slm, llama, slm, llama, ...)
# and the ratio is taken pair by pair, so a change of machine speed during the call moves both
# sides of a pair alike; the table gives medians and the range of the per-pair ratios.
#
# Steady state (load excluded): the same pairs are also run with ONE input, and
#   steady inputs/s = (N_INPUTS - 1) / (median time with N_INPUTS - median time with 1)
# for each side, which removes process start, model load and the set-up both programs do once.
#
# llama-embedding is given its best settings for this workload: all cores (-t THREADS), no GPU
# layers, the model's own pooling, and a batch (= ubatch for these non-causal models) of LLAMA_BATCH
# tokens (default 2048: 20 inputs per ubatch; larger batches make ggml's masked attention quadratic
# in the batch, smaller ones leave the matmuls thin).
#
# Environment: SLM_BIN (default build/slm), LLAMA_EMBEDDING (unset: slm only), BENCH_MODELS (where
# the models are generated, default build/bench-models), MODELS (space-separated preset:type, default
# "bge-small:f16 bge-small:q8_0 nomic-embed:f16 nomic-embed:q8_0"), N_INPUTS (64), WORDS (90 words a
# line), RUNS (3 pairs), WARMUP (1 pair, not counted), THREADS (2), LLAMA_BATCH (2048),
# LLAMA_ARGS (extra llama-embedding arguments), STEADY (1: also the one-input runs; 0: skip).
# This script never builds llama.cpp.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
shared="${SLM_TEST_DATA:-$root/../shared}"
synth="$shared/tools/synth_gguf.py"
slm="${SLM_BIN:-$root/build/slm}"
llama="${LLAMA_EMBEDDING:-}"
models_dir="${BENCH_MODELS:-$root/build/bench-models}"
models="${MODELS:-bge-small:f16 bge-small:q8_0 nomic-embed:f16 nomic-embed:q8_0}"
n_inputs="${N_INPUTS:-64}"
words="${WORDS:-90}"
runs="${RUNS:-3}"
warmup="${WARMUP:-1}"
threads="${THREADS:-2}"
lbatch="${LLAMA_BATCH:-2048}"
steady="${STEADY:-1}"
read -r -a llama_extra <<< "${LLAMA_ARGS:-}"

for var in n_inputs words runs threads lbatch; do
    case "${!var}" in
    '' | *[!0-9]* | 0) echo "embed_vs_llama.sh: $var must be a positive integer, got '${!var}'" >&2; exit 1 ;;
    esac
done
case "$warmup" in '' | *[!0-9]*) echo "embed_vs_llama.sh: WARMUP must be a number" >&2; exit 1 ;; esac
[ -x "$slm" ] || { echo "embed_vs_llama.sh: no slm binary at $slm (build it, or set SLM_BIN)" >&2; exit 1; }
if [ -n "$llama" ] && [ ! -x "$llama" ]; then
    echo "embed_vs_llama.sh: LLAMA_EMBEDDING=$llama is not executable" >&2
    exit 1
fi
mkdir -p "$models_dir/results"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Deterministic inputs: WORDS common English words per line, capitalised sentences, some commas.
python3 - "$n_inputs" "$words" > "$work/lines.txt" <<'PY'
import random, sys
words = """the a of and to in is was for on that with as by at from it this be are or an have not
which but had they were his her their one all we there been has more when will would who can
its if no out so said what up about into than them some could these other time only two may then
do first any like now my over such our man me even most made after also did many before must
through back years where much your way well down should because each just those people how too
little state good very make world still own see men work long get here between both life being
under never day same another know while last might us great old year off come since against go
came right used take three states himself few house use during without again place around however
home small found thought went say part once general high upon school every don does got united left
number course war until always away something fact though water less public put think almost hand
enough far took head yet government system better set told nothing night end why called didn eyes
find going look asked later knew point next city business give group toward young let room president
side social given present several order national possible rather second face per among form often
early white case john become large big need four within felt along children saw best church ever
least power development light thing seemed family interest want members others mind country area
river mountain garden window music market science history story letter morning evening winter summer""".split()
r = random.Random(1)
n, w = int(sys.argv[1]), int(sys.argv[2])
for i in range(n):
    s = []
    for j in range(w):
        x = r.choice(words)
        if j == 0 or s[-1].endswith('.'):
            x = x.capitalize()
        if r.random() < 0.08:
            x += '.' if r.random() < 0.6 else ','
        s.append(x)
    print(' '.join(s).rstrip('.,') + '.')
PY
head -1 "$work/lines.txt" > "$work/one.txt"

model_path() { # preset:type -> gguf path, generating the synthetic model on first use
    local preset="${1%%:*}" type="${1##*:}"
    local out="$models_dir/$preset-$type.gguf"
    if [ ! -s "$out" ]; then
        echo "generating $out" >&2
        python3 "$synth" --preset "$preset" --type "$type" -o "$out.tmp" >&2
        mv "$out.tmp" "$out"
    fi
    echo "$out"
}

now() { echo "${EPOCHREALTIME/[,.]/}"; } # microseconds

run_slm() { # model input -> wall seconds
    local t0 t1
    t0=$(now)
    "$slm" embed "$1" -t "$threads" < "$2" > "$work/slm.out" 2> "$work/slm.err" ||
        { echo "embed_vs_llama.sh: slm embed failed:" >&2; cat "$work/slm.err" >&2; exit 1; }
    t1=$(now)
    [ "$(wc -l < "$work/slm.out")" -eq "$(wc -l < "$2")" ] ||
        { echo "embed_vs_llama.sh: slm wrote $(wc -l < "$work/slm.out") embeddings for $(wc -l < "$2") inputs" >&2; exit 1; }
    echo $(((t1 - t0)))
}

run_llama() { # model input -> wall seconds
    local t0 t1
    t0=$(now)
    "$llama" -m "$1" -f "$2" -t "$threads" -tb "$threads" -ngl 0 -b "$lbatch" -ub "$lbatch" \
        --embd-normalize 2 --no-warmup "${llama_extra[@]}" > "$work/llama.out" 2> "$work/llama.err" ||
        { echo "embed_vs_llama.sh: llama-embedding failed:" >&2; tail -20 "$work/llama.err" >&2; exit 1; }
    t1=$(now)
    echo $(((t1 - t0)))
}

# pairs MODEL INPUT -> lines "slm_us llama_us" (llama_us 0 when there is no llama-embedding)
pairs() {
    local i a b
    for ((i = 0; i < warmup + runs; i++)); do
        a=$(run_slm "$1" "$2")
        b=0
        [ -n "$llama" ] && b=$(run_llama "$1" "$2")
        [ "$i" -ge "$warmup" ] && echo "$a $b"
    done
    return 0
}

results="$models_dir/results/embed.$(date -u +%Y%m%dT%H%M%SZ).txt"
: > "$results"
for spec in $models; do
    path="$(model_path "$spec")"
    ntok=$("$slm" tokenize "$path" - --ids < "$work/lines.txt" | wc -w)
    echo "== $spec: $n_inputs inputs (~$((ntok / n_inputs)) tokens each by slm's tokenizer), $runs pairs + $warmup warm-up" >&2
    pairs "$path" "$work/lines.txt" | sed "s/^/$spec full /" >> "$results"
    if [ "$steady" = 1 ]; then
        echo "== $spec: 1 input, $runs pairs + $warmup warm-up" >&2
        pairs "$path" "$work/one.txt" | sed "s/^/$spec one /" >> "$results"
    fi
done

python3 - "$results" "$n_inputs" "$runs" "$steady" $models <<'PY'
import statistics, sys
path, n, runs, steady, specs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1", sys.argv[5:]
rows = {}
for line in open(path):
    spec, kind, a, b = line.split()
    rows.setdefault((spec, kind), []).append((int(a) / 1e6, int(b) / 1e6))
med = statistics.median
have_llama = any(b > 0 for v in rows.values() for _, b in v)
print("| model | slm s (whole process) | llama.cpp s | slm inputs/s | llama.cpp inputs/s | slm / llama.cpp | "
      "slm steady inputs/s | llama.cpp steady inputs/s | steady slm / llama.cpp |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for spec in specs:
    full = rows[(spec, "full")]
    sa, sb = med(a for a, _ in full), med(b for _, b in full)
    if have_llama:
        ratios = [b / a for a, b in full]
        ratio = "%.2f× (%.2f–%.2f)" % (med(ratios), min(ratios), max(ratios))
        lb, lr = "%.2f" % sb, "%.1f" % (n / sb)
    else:
        ratio = lb = lr = "-"
    st = ["-", "-", "-"]
    if steady and (spec, "one") in rows:
        one = rows[(spec, "one")]
        oa, ob = med(a for a, _ in one), med(b for _, b in one)
        ssa = (n - 1) / (sa - oa) if sa > oa else float("nan")
        st[0] = "%.1f (load+1 input %.2f s)" % (ssa, oa)
        if have_llama:
            ssb = (n - 1) / (sb - ob) if sb > ob else float("nan")
            st[1] = "%.1f (load+1 input %.2f s)" % (ssb, ob)
            st[2] = "%.2f×" % (ssa / ssb)
    print("| %s | %.2f | %s | %.1f | %s | %s | %s | %s | %s |" % (spec, sa, lb, n / sa, lr, ratio, st[0], st[1], st[2]))
print("\nraw pairs (seconds): %s" % path, file=sys.stderr)
PY
