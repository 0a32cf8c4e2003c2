#!/usr/bin/env bash
# The cost of each quantization type on stories260K (the real model): file size, perplexity on
# shared/reference/texts/stories260K-samples.txt (-c 128, llama-perplexity's method) and the KL
# divergence / top-token agreement against the F32 model, from slm and, where the peer is built,
# from llama-quantize + llama-perplexity side by side; the last columns quantize with an importance
# matrix from `slm imatrix` (-c 128) over text the model wrote itself (30 samples of `slm run`, seeds
# 1-30: not the evaluation text): its KLD, and whether llama-quantize --imatrix with the same file
# writes the same bytes. Then quantize speed on smollm2-135m f16 against llama-quantize, and
# slm imatrix against llama-imatrix on it (same thread count, runs alternated, median of 3).
#   bench/quantize_table.sh [SLM_BIN]   env: LLAMA_BIN (default /work/llamacpp/build/bin), THREADS (2),
#   SPEED_ONLY=1 (only the speed table), BIG_MODEL (default build/testdata/smollm2-135m-f16.gguf)
# Prints a markdown table (paste into bench/RESULTS.md).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
slm=${1:-$here/build/slm}
llama=${LLAMA_BIN:-/work/llamacpp/build/bin}
shared=${SLM_TEST_DATA:-$here/../shared}
threads=${THREADS:-2}
model="$shared/models/stories260K.gguf"
text="$shared/reference/texts/stories260K-samples.txt"
big=${BIG_MODEL:-$here/build/testdata/smollm2-135m-f16.gguf}
ctx=128
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
have_llama=0
[ -x "$llama/llama-quantize" ] && [ -x "$llama/llama-perplexity" ] && have_llama=1

# slm: PPL, KLD, same-top from one perplexity run against the F32 base
slm_stats() { # FILE -> "ppl ± err|kld ± err|same ± err"
  "$slm" perplexity "$1" -f "$text" -c $ctx -t 1 --kl-divergence-base "$model" 2>/dev/null |
    awk '/^Mean PPL\(Q\) +:/ {p=$4" ± "$6} /^Mean    KLD/ {k=$3" ± "$5} /^Same top p/ {s=$4" ± "$6" %"} END {print p"|"k"|"s}'
}
llama_stats() { # FILE -> same; llama-perplexity sometimes ends before its summary on a loaded machine: one retry
  local r
  r=$(llama_stats_once "$1")
  case "$r" in "||") r=$(llama_stats_once "$1") ;; esac
  echo "$r"
}
llama_stats_once() { # FILE -> same, llama-perplexity with the base's saved log-probabilities
  OMP_WAIT_POLICY=passive "$llama/llama-perplexity" -m "$1" -f "$text" -c $ctx -b $ctx -t 1 --kl-divergence-base "$tmp/base.kld" \
    --kl-divergence 2>&1 |
    awk '/^Mean PPL\(Q\) +:/ {p=$4" ± "$6} /^Mean    KLD/ {k=$3" ± "$5} /^Same top p/ {s=$4" ± "$6" %"} END {print p"|"k"|"s}'
}
if [ $have_llama = 1 ]; then
  OMP_WAIT_POLICY=passive "$llama/llama-perplexity" -m "$model" -f "$text" -c $ctx -b $ctx -t 1 --kl-divergence-base "$tmp/base.kld" \
    > /dev/null 2>&1 || have_llama=0
fi

if [ -z "${SPEED_ONLY:-}" ]; then
# the importance matrix: slm imatrix over the model's own stories (not the evaluation text)
for seed in $(seq 30); do
  "$slm" run "$model" -p "Once upon a time" -n 400 --seed "$seed" --temp 0.8 2>/dev/null; echo
done > "$tmp/calibration.txt"
(cd "$tmp" && "$slm" imatrix "$model" -f calibration.txt -c $ctx -o imatrix.gguf -t "$threads" --no-ppl 2>/dev/null)
echo "| type | size (bytes) | bits/weight | slm PPL | slm KLD vs F32 | slm same top | llama.cpp PPL | llama.cpp KLD | llama.cpp same top | bytes = llama-quantize's | slm KLD with imatrix | same top with imatrix | bytes = llama-quantize --imatrix's |"
echo "| --- | ---: | ---: | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
n_weights=$(python3 - "$model" <<'EOF'
import struct, sys
b = open(sys.argv[1], "rb").read(); p = 8
def u32():
    global p; v = struct.unpack_from("<I", b, p)[0]; p += 4; return v
def u64():
    global p; v = struct.unpack_from("<Q", b, p)[0]; p += 8; return v
def s():
    global p; n = u64(); p += n
SZ = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
def val(t):
    global p
    if t == 8: s()
    elif t == 9:
        at = u32(); n = u64()
        for _ in range(n): val(at)
    else: p += SZ[t]
nt = u64(); nkv = u64()
for _ in range(nkv): s(); val(u32())
tot = 0
for _ in range(nt):
    s(); nd = u32(); n = 1
    for _ in range(nd): n *= u64()
    u32(); u64(); tot += n
print(tot)
EOF
)
for type in F32 BF16 F16 Q8_0 Q6_K Q5_K_M Q5_K_S Q5_1 Q5_0 Q4_K_M Q4_K_S Q4_1 Q4_0 IQ4_NL Q3_K_L Q3_K_M Q3_K_S Q2_K; do
  out="$tmp/slm-$type.gguf"
  if ! "$slm" quantize "$model" "$out" "$type" --threads "$threads" 2> "$tmp/err"; then
    why=$(sed 's/.*: tensor/tensor/' "$tmp/err" | cut -c1-90)
    lq="?"
    if [ $have_llama = 1 ]; then
      "$llama/llama-quantize" "$model" "$tmp/llama-$type.gguf" "$type" "$threads" > /dev/null 2>&1 && lq="llama-quantize succeeds" ||
        lq="llama-quantize refuses too"
    fi
    echo "| $type | — | — | refused: $why | | | | | | $lq | | | |"
    continue
  fi
  size=$(stat -c %s "$out")
  bpw=$(awk -v s="$size" -v n="$n_weights" 'BEGIN {printf "%.2f", s * 8 / n}')
  IFS='|' read -r ppl kld top <<< "$(slm_stats "$out")"
  lppl="" lkld="" ltop="" same=""
  if [ $have_llama = 1 ]; then
    "$llama/llama-quantize" "$model" "$tmp/llama-$type.gguf" "$type" "$threads" > /dev/null 2>&1
    cmp -s "$out" "$tmp/llama-$type.gguf" && same=yes || same=NO
    IFS='|' read -r lppl lkld ltop <<< "$(llama_stats "$tmp/llama-$type.gguf")"
    rm -f "$tmp/llama-$type.gguf"
  fi
  # with the importance matrix (run from $tmp: the file name is recorded in the output)
  ikld="" itop="" isame=""
  if (cd "$tmp" && "$slm" quantize "$model" "im-$type.gguf" "$type" --imatrix imatrix.gguf --threads "$threads" 2>/dev/null); then
    IFS='|' read -r _ ikld itop <<< "$(slm_stats "$tmp/im-$type.gguf")"
    if [ $have_llama = 1 ]; then
      (cd "$tmp" && "$llama/llama-quantize" --imatrix imatrix.gguf "$model" "llama-im-$type.gguf" "$type" "$threads" > /dev/null 2>&1)
      cmp -s "$tmp/im-$type.gguf" "$tmp/llama-im-$type.gguf" && isame=yes || isame=NO
      rm -f "$tmp/llama-im-$type.gguf"
    fi
    rm -f "$tmp/im-$type.gguf"
  fi
  echo "| $type | $size | $bpw | $ppl | $kld | $top | $lppl | $lkld | $ltop | $same | $ikld | $itop | $isame |"
  rm -f "$out"
done
fi

if [ -f "$big" ] && [ $have_llama = 1 ]; then
  echo
  echo "Quantize speed, $(basename "$big") ($threads threads, wall seconds, median of 3, runs alternated):"
  echo
  echo "| type | slm | llama-quantize | speed-up |"
  echo "| --- | ---: | ---: | ---: |"
  for type in Q4_K_M Q8_0 Q6_K Q4_0; do
    s=() l=()
    for i in 1 2 3; do
      t0=$(date +%s.%N); "$slm" quantize "$big" "$tmp/s.gguf" "$type" --threads "$threads" 2>/dev/null; t1=$(date +%s.%N)
      "$llama/llama-quantize" "$big" "$tmp/l.gguf" "$type" "$threads" > /dev/null 2>&1; t2=$(date +%s.%N)
      s+=("$(echo "$t1 - $t0" | bc)"); l+=("$(echo "$t2 - $t1" | bc)")
      rm -f "$tmp/s.gguf" "$tmp/l.gguf"
    done
    ms=$(printf '%s\n' "${s[@]}" | sort -g | sed -n 2p); ml=$(printf '%s\n' "${l[@]}" | sort -g | sed -n 2p)
    echo "| $type | $(printf %.2f "$ms") | $(printf %.2f "$ml") | $(awk -v a="$ms" -v b="$ml" 'BEGIN {printf "%.2fx", b / a}') |"
  done
fi

if [ -f "$big" ] && [ -x "$llama/llama-imatrix" ]; then
  echo
  echo "slm imatrix vs llama-imatrix, $(basename "$big"), -c 512 --chunks 4 of stories260K-samples.txt ($threads threads, wall seconds, median of 3, runs alternated):"
  echo
  echo "| slm imatrix | llama-imatrix | speed-up |"
  echo "| ---: | ---: | ---: |"
  s=() l=()
  for i in 1 2 3; do
    t0=$(date +%s.%N); "$slm" imatrix "$big" -f "$text" -c 512 --chunks 4 -o "$tmp/s.imatrix" -t "$threads" > /dev/null 2>&1; t1=$(date +%s.%N)
    OMP_WAIT_POLICY=passive "$llama/llama-imatrix" -m "$big" -f "$text" -c 512 --chunks 4 -o "$tmp/l.imatrix" -t "$threads" > /dev/null 2>&1
    t2=$(date +%s.%N)
    s+=("$(echo "$t1 - $t0" | bc)"); l+=("$(echo "$t2 - $t1" | bc)")
  done
  ms=$(printf '%s\n' "${s[@]}" | sort -g | sed -n 2p); ml=$(printf '%s\n' "${l[@]}" | sort -g | sed -n 2p)
  echo "| $(printf %.2f "$ms") | $(printf %.2f "$ml") | $(awk -v a="$ms" -v b="$ml" 'BEGIN {printf "%.2fx", b / a}') |"
fi
