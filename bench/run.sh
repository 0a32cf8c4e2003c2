#!/usr/bin/env bash
# Speed of slm on the synthetic benchmark models, optionally side by side with llama.cpp.
#
#   bench/run.sh                                   # slm only
#   LLAMA_BENCH=/path/to/llama-bench bench/run.sh  # both, with slm/llama.cpp ratios
#
# Environment: SLM_BIN (default build/slm), BENCH_MODELS (where models are generated, default
# build/bench-models), THREADS (2), P (512), N (128), R (5), MODELS (space-separated subset of the
# names below), BANDWIDTH (GB/s for slm's %-of-limit column; measured when unset).
# Each model is run by slm and then by llama-bench before moving on, so both see the same machine
# load; the raw JSON of every run is kept in $BENCH_MODELS/results/.
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
all_models="smollm2-135m:q8_0 smollm2-135m:q4_0 smollm2-135m:q4_k_m llama3.2-1b:q4_0 llama3.2-1b:q8_0 llama3.2-1b:q4_k_m stories260K"
models="${MODELS:-$all_models}"

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
        python3 "$synth" --preset "$preset" --type "$type" -o "$out.tmp" >&2
        mv "$out.tmp" "$out"
    fi
    echo "$out"
}

bw_args=()
[ -n "${BANDWIDTH:-}" ] && bw_args=(--bandwidth "$BANDWIDTH")

results=()
for spec in $models; do
    path="$(model_path "$spec")"
    tag="${spec//:/-}"
    t="$threads" pp="$p" tg="$n"
    # stories260K measures per-token overhead: one thread, 64 generated tokens (issue target).
    if [ "$spec" = stories260K ]; then t=1; pp="${P_TINY:-$p}"; tg=64; fi
    echo "== $spec (threads $t, pp$pp, tg$tg, $reps runs)" >&2
    "$slm" bench "$path" -p "$pp" -n "$tg" -t "$t" -r "$reps" --json "${bw_args[@]}" > "$models_dir/results/$tag.slm.json"
    results+=("$models_dir/results/$tag.slm.json")
    if [ -n "${LLAMA_BENCH:-}" ]; then
        "$LLAMA_BENCH" -m "$path" -p "$pp" -n "$tg" -t "$t" -r "$reps" -o json > "$models_dir/results/$tag.llama.json" 2>/dev/null
        results+=("$models_dir/results/$tag.llama.json")
    else
        echo '[]' > "$models_dir/results/$tag.llama.json"
    fi
done

python3 - "$models_dir/results" $models <<'PY'
import json, os, sys
folder, specs = sys.argv[1], sys.argv[2:]
print("| model | test | threads | slm t/s | llama.cpp t/s | slm / llama.cpp | slm % of DRAM BW | slm peak RSS MiB |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for spec in specs:
    tag = spec.replace(":", "-")
    slm = json.load(open(os.path.join(folder, tag + ".slm.json")))
    llama = json.load(open(os.path.join(folder, tag + ".llama.json")))
    def key(r):
        return ("pp%d" % r["n_prompt"]) if r["n_prompt"] > 0 else ("tg%d" % r["n_gen"])
    peer = {key(r): r for r in llama}
    for r in slm:
        k = key(r)
        l = peer.get(k)
        lt = "%.2f ± %.2f" % (l["avg_ts"], l["stddev_ts"]) if l else "-"
        ratio = "%.2f×" % (r["avg_ts"] / l["avg_ts"]) if l else "-"
        bw = "%.1f%%" % (100 * r["bandwidth_fraction"]) if "bandwidth_fraction" in r else "-"
        print("| %s | %s | %d | %.2f ± %.2f | %s | %s | %s | %.1f |" % (spec, k, r["n_threads"], r["avg_ts"],
              r["stddev_ts"], lt, ratio, bw, r["peak_rss_bytes"] / 1048576.0))
PY
