#!/usr/bin/env bash
# Writes the synthetic GGUF models the tests use (deterministic, byte-identical to the reference
# ones) into $SLM_TEST_MODELS (default build/testdata) and checks their sha256. Skips files that
# are already there and correct.   usage: gen-test-models.sh [small|all]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared=${SLM_TEST_DATA:-$here/../shared}
out=${SLM_TEST_MODELS:-$here/build/testdata}
which=${1:-all}
if [ ! -d "$shared/reference" ]; then
  echo "gen-test-models: shared data absent (set SLM_TEST_DATA; looked in $shared)" >&2
  exit 1
fi
mkdir -p "$out"
sums="$shared/reference/SHA256SUMS.synthetic"
gen() { # id preset type
  local id=$1 preset=$2 type=$3 want
  want=$(awk -v f="$id.gguf" '$2==f || $2=="*"f {print $1}' "$sums")
  if [ -f "$out/$id.gguf" ] && [ -f "$out/$id.ok" ]; then return 0; fi
  python3 "$shared/tools/synth_gguf.py" --preset "$preset" --type "$type" --seed 1 \
    --tokenizers "$shared/models/tokenizers" -o "$out/$id.gguf.tmp" >/dev/null
  local got; got=$(sha256sum "$out/$id.gguf.tmp" | cut -d' ' -f1)
  if [ -n "$want" ] && [ "$got" != "$want" ]; then
    echo "gen-test-models: $id.gguf sha256 $got differs from the reference $want" >&2
    exit 1
  fi
  mv "$out/$id.gguf.tmp" "$out/$id.gguf"; touch "$out/$id.ok"
  echo "gen-test-models: $id.gguf ok" >&2
}
if [ ! -f "$out/llama3-vocab.gguf" ]; then
  python3 "$shared/tools/synth_gguf.py" --preset llama3.2-1b --vocab-only \
    --tokenizers "$shared/models/tokenizers" -o "$out/llama3-vocab.gguf.tmp" >/dev/null
  mv "$out/llama3-vocab.gguf.tmp" "$out/llama3-vocab.gguf"
fi
for preset in smollm2-135m qwen2.5-0.5b; do # vocab-only files for the tokenizer conformance tests
  if [ ! -f "$out/$preset-vocab.gguf" ]; then
    python3 "$shared/tools/synth_gguf.py" --preset "$preset" --vocab-only \
      --tokenizers "$shared/models/tokenizers" -o "$out/$preset-vocab.gguf.tmp" >/dev/null
    mv "$out/$preset-vocab.gguf.tmp" "$out/$preset-vocab.gguf"
  fi
done
for t in f32 q8_0 q3_k; do gen tiny-smollm2-$t tiny-smollm2 $t; done
for t in bf16 f16 q2_k q3_k q4_0 q4_1 q4_k q5_0 q5_1 q5_k q6_k q8_0; do gen tiny256-smollm2-$t tiny256-smollm2 $t; done
# more families (phi3, gemma, gemma2) and the embedding models (bert, nomic-bert)
for fam in tiny-phi3 tiny-gemma tiny-gemma2; do
  for t in f32 q8_0 q4_0 q4_k_m; do gen $fam-$t $fam $t; done
done
gen bge-small-f16 bge-small f16
gen bge-small-q8_0 bge-small q8_0
[ "$which" = small ] && exit 0
for t in f16 q8_0 q4_0 q4_k_m; do gen smollm2-135m-$t smollm2-135m $t; done
gen qwen2.5-0.5b-q8_0 qwen2.5-0.5b q8_0
gen qwen2.5-0.5b-q4_k_m qwen2.5-0.5b q4_k_m
gen llama3.2-1b-q4_0 llama3.2-1b q4_0
gen llama3.2-1b-q4_k_m llama3.2-1b q4_k_m
gen nomic-embed-f16 nomic-embed f16
gen nomic-embed-q8_0 nomic-embed q8_0
for t in f16 q8_0 q4_0 q4_k_m; do gen phi3-mini-4l-$t phi3-mini-4l $t; done
for t in f16 q8_0 q4_0 q4_k_m; do gen gemma2-2b-$t gemma2-2b $t; done
