#!/usr/bin/env bash
# Speed of slm on the synthetic benchmark models, optionally side by side with llama.cpp.
#
#   bench/run.sh                                   # slm only
#   LLAMA_BENCH=/path/to/llama-bench bench/run.sh  # both, with slm/llama.cpp ratios
#
# Environment: SLM_BIN (default build/slm), BENCH_MODELS (where models are generated, default
# build/bench-models), THREADS (2), P (512), N (128), R (5), ROUNDS (1), MODELS (space-separated
# subset of the names below, or "families" for the Phi-3 / Gemma-2 shapes), BANDWIDTH (GB/s for slm's %-of-limit column; measured when unset).
# Each model is run by slm and then by llama-bench before moving on, so both see the same machine
# load. This machine's memory bandwidth drifts by 1.5x within seconds, so ROUNDS > 1 repeats each
# pair and the table gives medians, with the ratio as the median of the per-round ratios and its
# range. The raw JSON of every run is kept in $BENCH_MODELS/results/.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
shared="${SLM_TEST_DATA:-$root/../shared}"
synth="$shared/tools/synth_gguf.py"
slm="${SLM_BIN:-$root/build/slm}"
models_dir="${BENCH_MODELS:-$root/build/bench-models}"
threads="${THREADS:-2}"
p="${P:-512}"
n="${N:-128}"
reps="${R:-5}"
rounds="${ROUNDS:-1}"
# llama3.2-1b:q4_k is all Q4_K (embeddings too), for the Q4_K bandwidth target; q4_k_m mixes in Q6_K.
all_models="smollm2-135m:q8_0 smollm2-135m:q4_0 smollm2-135m:q4_k_m llama3.2-1b:q4_0 llama3.2-1b:q8_0 llama3.2-1b:q4_k_m llama3.2-1b:q4_k stories260K"
# Issue 12's families: Phi-3.5-mini's shape with 4 of its 32 layers, and Gemma-2-2B at full depth.
family_models="phi3-mini-4l:q4_0 phi3-mini-4l:q4_k_m phi3-mini-4l:q8_0 gemma2-2b:q4_0 gemma2-2b:q4_k_m gemma2-2b:q8_0"
models="${MODELS:-$all_models}"
[ "$models" = families ] && models="$family_models"

for var in threads p n reps rounds; do
    case "${!var}" in
    '' | *[!0-9]* | 0) echo "bench/run.sh: $var must be a positive integer, got '${!var}'" >&2; exit 1 ;;
    esac
done
[ -x "$slm" ] || { echo "bench/run.sh: no slm binary at $slm (build it, or set SLM_BIN)" >&2; exit 1; }
[ -f "$synth" ] || { echo "bench/run.sh: $synth not found (set SLM_TEST_DATA to the shared folder)" >&2; exit 1; }
if [ -n "${LLAMA_BENCH:-}" ] && [ ! -x "$LLAMA_BENCH" ]; then
    echo "bench/run.sh: LLAMA_BENCH=$LLAMA_BENCH is not executable" >&2
    exit 1
fi
mkdir -p "$models_dir/results"

model_path() { # name -> gguf path, generating synthetic models on first use
    local spec="$1"
    if [ "$spec" = stories260K ]; then
        echo "$shared/models/stories260K.gguf"
        return
    fi
    local preset="${spec%%:*}" type="${spec##*:}"
    local out="$models_dir/$preset-$type.gguf"
    if [ ! -s "$out" ]; then
        echo "generating $out" >&2
        local extra=()
        [ "$type" = q4_k ] && extra=(--embd-type q4_k)
        python3 "$synth" --preset "$preset" --type "$type" "${extra[@]}" -o "$out.tmp" >&2
        mv "$out.tmp" "$out"
    fi
    echo "$out"
}

bw_args=()
[ -n "${BANDWIDTH:-}" ] && bw_args=(--bandwidth "$BANDWIDTH")

for spec in $models; do
    path="$(model_path "$spec")"
    tag="${spec//:/-}"
    t="$threads" pp="$p" tg="$n"
    # stories260K measures per-token overhead: one thread, 64 generated tokens (issue target).
    if [ "$spec" = stories260K ]; then t=1; pp="${P_TINY:-$p}"; tg=64; fi
    for round in $(seq 1 "$rounds"); do
        echo "== $spec (threads $t, pp$pp, tg$tg, $reps runs, round $round of $rounds)" >&2
        "$slm" bench "$path" -p "$pp" -n "$tg" -t "$t" -r "$reps" --json "${bw_args[@]}" \
            > "$models_dir/results/$tag.slm.$round.json"
        if [ -n "${LLAMA_BENCH:-}" ]; then
            "$LLAMA_BENCH" -m "$path" -p "$pp" -n "$tg" -t "$t" -r "$reps" -o json \
                > "$models_dir/results/$tag.llama.$round.json" 2>/dev/null
        else
            echo '[]' > "$models_dir/results/$tag.llama.$round.json"
        fi
    done
done

python3 - "$models_dir/results" "$rounds" $models <<'PY'
import json, os, statistics, sys
folder, rounds, specs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def key(r):
    return ("pp%d" % r["n_prompt"]) if r["n_prompt"] > 0 else ("tg%d" % r["n_gen"])
print("| model | test | threads | slm t/s | llama.cpp t/s | slm / llama.cpp | slm % of DRAM BW | slm peak RSS MiB |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for spec in specs:
    tag = spec.replace(":", "-")
    runs = []
    for i in range(1, rounds + 1):
        slm = json.load(open(os.path.join(folder, "%s.slm.%d.json" % (tag, i))))
        llama = json.load(open(os.path.join(folder, "%s.llama.%d.json" % (tag, i))))
        runs.append(({key(r): r for r in slm}, {key(r): r for r in llama}))
    for test in runs[0][0]:
        s = [run[0][test] for run in runs]
        l = [run[1][test] for run in runs if test in run[1]]
        st = statistics.median(r["avg_ts"] for r in s)
        slm_ts = "%.2f ± %.2f" % (st, s[0]["stddev_ts"]) if rounds == 1 else "%.2f" % st
        lt = ratio = "-"
        if len(l) == len(s):
            lm = statistics.median(r["avg_ts"] for r in l)
            lt = "%.2f ± %.2f" % (lm, l[0]["stddev_ts"]) if rounds == 1 else "%.2f" % lm
            ratios = [a["avg_ts"] / b["avg_ts"] for a, b in zip(s, l)]
            ratio = "%.2f×" % statistics.median(ratios)
            if rounds > 1:
                ratio += " (%.2f–%.2f)" % (min(ratios), max(ratios))
        fr = [r["bandwidth_fraction"] for r in s if "bandwidth_fraction" in r]
        bw = "%.1f%%" % (100 * statistics.median(fr)) if fr else "-"
        rss = max(r["peak_rss_bytes"] for r in s) / 1048576.0
        print("| %s | %s | %d | %s | %s | %s | %s | %.1f |" % (spec, test, s[0]["n_threads"], slm_ts, lt, ratio, bw, rss))
PY
