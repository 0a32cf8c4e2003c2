#!/usr/bin/env bash
# slm quantize against llama-quantize, without needing llama.cpp: the sha256 of llama-quantize's
# output for every type on two synthetic f16 models, and its per-tensor types on smollm2-135m, are
# stored in tests/data/quantize/ (recorded from the peer build). slm's files must be byte-identical
# (and so type-identical). The quantized models' logits stay within per-type bounds of the f16 model's,
# thread count does not change a byte, and hostile inputs are one clear error with nothing left behind.
set -euo pipefail
: "${SLM_BIN:?}" "${SLM_SRC:?}"
shared=${SLM_TEST_DATA:-$SLM_SRC/../shared}
synth="$shared/tools/synth_gguf.py"
if [ ! -f "$synth" ]; then echo "SKIP: shared test data absent ($synth)" >&2; exit 77; fi
command -v python3 >/dev/null || { echo "SKIP: python3 absent" >&2; exit 77; }
data="$SLM_SRC/tests/data/quantize"
models_dir="${SLM_TEST_MODELS:-${SLM_BUILD:-.}/testdata}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
sha() { sha256sum < "$1" | cut -d' ' -f1; }

python3 "$synth" --preset tiny-smollm2 --type f16 --seed 1 -o "$tmp/tiny-smollm2-f16.gguf" >/dev/null 2>&1
if [ -f "$models_dir/tiny256-smollm2-f16.gguf" ]; then
  ln -s "$models_dir/tiny256-smollm2-f16.gguf" "$tmp/tiny256-smollm2-f16.gguf"
else
  python3 "$synth" --preset tiny256-smollm2 --type f16 --seed 1 -o "$tmp/tiny256-smollm2-f16.gguf" >/dev/null 2>&1
fi

# 1. byte identity with llama-quantize, every type, both shapes (64-wide rows force the fallbacks)
n=0
while read -r preset type want; do
  case "$preset" in '#'*|'') continue ;; esac
  out="$tmp/$preset-$type.gguf"
  "$SLM_BIN" quantize "$tmp/$preset-f16.gguf" "$out" "$type" 2>/dev/null || fail "quantize $preset $type failed"
  got=$(sha "$out")
  [ "$got" = "$want" ] || fail "$preset $type: sha256 $got, llama-quantize's is $want"
  n=$((n + 1))
done < "$data/sha256.txt"
[ "$n" -ge 36 ] || fail "only $n golden entries"
[ ! -e "$tmp/tiny256-smollm2-Q4_K_M.gguf.tmp" ] || fail "a temporary file was left"

# 1b. with an importance matrix (llama-imatrix's GGUF and legacy .dat files): the weighted searches
#     give llama-quantize's bytes (and its quantize.imatrix.* keys), every type that takes one
n_im=0
while read -r preset type im want; do
  case "$preset" in '#'*|'') continue ;; esac
  (cd "$data" && "$SLM_BIN" quantize "$tmp/$preset-f16.gguf" "$tmp/im-$type.gguf" "$type" --imatrix "$im" 2>/dev/null) ||
    fail "quantize $preset $type --imatrix $im failed"
  [ "$(sha "$tmp/im-$type.gguf")" = "$want" ] || fail "$preset $type --imatrix $im: bytes differ from llama-quantize's"
  cmp -s "$tmp/im-$type.gguf" "$tmp/$preset-$type.gguf" && fail "$type: the importance matrix changed nothing"
  rm -f "$tmp/im-$type.gguf"
  n_im=$((n_im + 1))
done < "$data/imatrix-sha256.txt"
[ "$n_im" -ge 26 ] || fail "only $n_im imatrix golden entries"

# 2. the thread count does not change a byte
"$SLM_BIN" quantize "$tmp/tiny256-smollm2-f16.gguf" "$tmp/t1.gguf" Q4_K_M --threads 1 2>/dev/null
"$SLM_BIN" quantize "$tmp/tiny256-smollm2-f16.gguf" "$tmp/t3.gguf" q4_k --threads 3 2>/dev/null # alias, any case
cmp -s "$tmp/t1.gguf" "$tmp/tiny256-smollm2-Q4_K_M.gguf" || fail "--threads 1 differs"
cmp -s "$tmp/t3.gguf" "$tmp/tiny256-smollm2-Q4_K_M.gguf" || fail "--threads 3 / the Q4_K alias differs"

# 3. the per-tensor types of llama-quantize on a 30-layer model (the _M mixes' layer rules, 576-wide
#    fallbacks), every type, by --dry-run; and one full run byte for byte
if [ -f "$models_dir/smollm2-135m-f16.gguf" ]; then
  big="$models_dir/smollm2-135m-f16.gguf"
  while read -r type want_sha types; do
    case "$type" in '#'*|'') continue ;; esac
    got=$("$SLM_BIN" quantize "$big" "$type" --dry-run | cut -f3 | paste -sd, -)
    [ "$got" = "$types" ] || fail "smollm2-135m $type: per-tensor types differ from llama-quantize's"
  done < "$data/smollm2-135m.txt"
  names=$("$SLM_BIN" quantize "$big" Q8_0 --dry-run | cut -f1 | paste -sd, -)
  [ "$names" = "$(cat "$data/smollm2-135m.names")" ] || fail "smollm2-135m: tensor order differs from llama-quantize's"
  want=$(awk '$1 == "Q4_K_M" {print $2}' "$data/smollm2-135m.txt")
  "$SLM_BIN" quantize "$big" "$tmp/big.gguf" Q4_K_M 2>/dev/null
  [ "$(sha "$tmp/big.gguf")" = "$want" ] || fail "smollm2-135m Q4_K_M differs from llama-quantize's bytes"
  rm -f "$tmp/big.gguf"
else
  echo "note: $models_dir/smollm2-135m-f16.gguf absent: its checks skipped" >&2
fi

# 4. logits of the quantized models against the f16 model's (max and mean |difference| in units of
#    the logits' standard deviation, top-1 agreement): bounds per type, ~1.5x what these files give
prompt="Once upon a time, there"
logits() { "$SLM_BIN" logits "$1" -p "$prompt" --top 49152 --json --exact 2>/dev/null; }
logits "$tmp/tiny256-smollm2-f16.gguf" > "$tmp/base.jsonl"
for spec in F32:0.0001:0.00001:6 BF16:0.05:0.007:6 Q8_0:0.15:0.022:6 Q4_K_M:1.5:0.24:3 Q2_K:3.5:0.58:0; do
  IFS=: read -r type max mean top1 <<< "$spec"
  logits "$tmp/tiny256-smollm2-$type.gguf" > "$tmp/q.jsonl"
  python3 - "$tmp/base.jsonl" "$tmp/q.jsonl" "$type" "$max" "$mean" "$top1" <<'EOF' || fail "logits of $type out of bounds"
import json, math, sys
def load(p):
    return [{i: v for i, v in json.loads(l)["top"]} for l in open(p)]
a, b = load(sys.argv[1]), load(sys.argv[2])
assert len(a) == len(b) and len(a) >= 5 and len(a[0]) == 49152
vals = [v for d in a for v in d.values()]
mu = sum(vals) / len(vals)
sd = math.sqrt(sum((v - mu) ** 2 for v in vals) / len(vals))
mx = sm = 0.0
agree = 0
for da, db in zip(a, b):
    for k, v in da.items():
        d = abs(v - db[k]); mx = max(mx, d); sm += d
    agree += max(da, key=lambda k: (da[k], -k)) == max(db, key=lambda k: (db[k], -k))
mx /= sd; mean = sm / len(vals) / sd
ok = mx <= float(sys.argv[4]) and mean <= float(sys.argv[5]) and agree >= int(sys.argv[6])
print("%-7s max %.4f sigma, mean %.5f sigma, top-1 %d/%d %s" % (sys.argv[3], mx, mean, agree, len(a), "ok" if ok else "OUT OF BOUNDS"), file=sys.stderr)
sys.exit(0 if ok else 1)
EOF
done

# 4b. what a type costs: slm perplexity --kl-divergence-base on the real model (stories260K): the model
#     against itself is KLD 0 with the same top token everywhere; its Q4_K_M (byte-identical to
#     llama-quantize's) costs what llama-perplexity measured for that file (bench/RESULTS.md: 0.01389)
story="$shared/models/stories260K.gguf"
text="$shared/reference/texts/stories260K-samples.txt"
if [ -f "$story" ] && [ -f "$text" ]; then
  "$SLM_BIN" quantize "$story" "$tmp/story-q4km.gguf" Q4_K_M 2>/dev/null
  self=$("$SLM_BIN" perplexity "$story" -f "$text" -c 128 --kl-divergence-base "$story" 2>/dev/null)
  grep -q "^Mean    KLD:   0.000000 ±" <<< "$self" || fail "KLD of a model against itself is not 0"
  grep -q "^Same top p: 100.000 ±" <<< "$self" || fail "a model against itself does not agree on the top token"
  q=$("$SLM_BIN" perplexity "$tmp/story-q4km.gguf" -f "$text" -c 128 --kl-divergence-base "$story" 2>/dev/null)
  kld=$(awk '/^Mean    KLD:/ {print $3}' <<< "$q")
  top=$(awk '/^Same top p:/ {print $4}' <<< "$q")
  awk -v k="$kld" -v t="$top" 'BEGIN {exit !(k > 0.0130 && k < 0.0148 && t > 93 && t < 95.5)}' ||
    fail "stories260K Q4_K_M: KLD $kld, same top $top%, llama-perplexity says 0.01389 and 94.17%"
  ppl=$(awk '/^Mean PPL\(Q\) *:/ {print $4; exit}' <<< "$q")
  awk -v p="$ppl" 'BEGIN {exit !(p > 2.870 && p < 2.890)}' ||
    fail "stories260K Q4_K_M: PPL(Q) $ppl, llama-perplexity says 2.8813 (packed and unpacked kernels round activations apart: 2.8789-2.8805)"
  if "$SLM_BIN" perplexity "$story" -f "$text" -c 128 --kl-divergence-base "$tmp/tiny-smollm2-f16.gguf" 2> "$tmp/stderr" > /dev/null; then
    fail "a base model with another vocabulary was accepted"
  fi
  grep -q "not the same model" "$tmp/stderr" || fail "vocabulary mismatch not named: $(cat "$tmp/stderr")"
fi

# 5. hostile inputs: one error line, exit 1, no output and no temporary file
expect_error() { # expect_error PATTERN OUT args...
  local pattern=$1 out=$2; shift 2
  if "$SLM_BIN" quantize "$@" > "$tmp/stdout" 2> "$tmp/stderr"; then fail "accepted: $*"; fi
  [ "$(wc -l < "$tmp/stderr")" -eq 1 ] || { cat "$tmp/stderr" >&2; fail "not one error line: $*"; }
  grep -q -- "$pattern" "$tmp/stderr" || { cat "$tmp/stderr" >&2; fail "error does not say '$pattern': $*"; }
  [ ! -e "$out" ] && [ ! -e "$out.tmp" ] || fail "left a file behind: $*"
}
in="$tmp/tiny-smollm2-f16.gguf"
expect_error "unknown type 'Q9_9'" "$tmp/o.gguf" "$in" "$tmp/o.gguf" Q9_9
expect_error "missing" "$tmp/missing/dir/o.gguf" "$in" "$tmp/missing/dir/o.gguf" Q8_0
head -c 100000 "$in" > "$tmp/truncated.gguf"
expect_error "truncated\|past end" "$tmp/o.gguf" "$tmp/truncated.gguf" "$tmp/o.gguf" Q8_0
printf 'GGUX' | dd of="$tmp/badmagic.gguf" bs=1 conv=notrunc status=none; cat "$in" >> "$tmp/badmagic.gguf"
expect_error "not a GGUF" "$tmp/o.gguf" "$tmp/badmagic.gguf" "$tmp/o.gguf" Q8_0
expect_error "No such file" "$tmp/o.gguf" "$tmp/absent.gguf" "$tmp/o.gguf" Q8_0
expect_error "requantizing" "$tmp/o.gguf" "$tmp/tiny-smollm2-Q8_0.gguf" "$tmp/o.gguf" Q4_0
if "$SLM_BIN" quantize "$in" "$in" Q8_0 2> "$tmp/stderr"; then fail "overwrote the input"; fi
grep -q "overwrite" "$tmp/stderr" && [ -f "$in" ] || fail "the same input and output path is not refused"
# a 48-wide weight: Q4_0 has no fallback for it (llama-quantize stops there too); Q4_K_M falls back to F16
python3 - "$tmp/odd.gguf" <<'EOF'
import struct, sys
def s(b): return struct.pack("<Q", len(b)) + b
kv = [(b"general.architecture", 8, s(b"llama")), (b"llama.block_count", 4, struct.pack("<I", 1))]
tensors = [(b"blk.0.attn_q.weight", [48, 4])]
out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
for k, t, v in kv: out += s(k) + struct.pack("<I", t) + v
off = 0
for name, ne in tensors:
    out += s(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne) + struct.pack("<IQ", 0, off)
out += b"\0" * (-len(out) % 32)
out += b"".join(struct.pack("<f", (i % 7) * 0.25 - 0.5) for i in range(48 * 4))
open(sys.argv[1], "wb").write(out)
EOF
expect_error "not a multiple of the q4_0 block size 32" "$tmp/o.gguf" "$tmp/odd.gguf" "$tmp/o.gguf" Q4_0
"$SLM_BIN" quantize "$tmp/odd.gguf" "$tmp/odd-q4km.gguf" Q4_K_M 2>/dev/null || fail "Q4_K_M of a 48-wide weight"
[ "$("$SLM_BIN" quantize "$tmp/odd.gguf" Q4_K_M --dry-run | cut -f3,4)" = "$(printf 'f16\tfallback')" ] || fail "48-wide fallback is not F16"
# a NaN weight is refused, naming the tensor
python3 - "$tmp/odd.gguf" "$tmp/nan.gguf" <<'EOF'
import struct, sys
b = bytearray(open(sys.argv[1], "rb").read()); b[-4:] = struct.pack("<f", float("nan")); open(sys.argv[2], "wb").write(b)
EOF
expect_error "blk.0.attn_q.weight.*NaN" "$tmp/o.gguf" "$tmp/nan.gguf" "$tmp/o.gguf" Q4_K_M
# hostile importance matrices: one clear line, nothing written
im="$data/tiny256-smollm2.imatrix"
big_in="$tmp/tiny256-smollm2-f16.gguf"
head -c 5000 "$im" > "$tmp/im-trunc.gguf"
expect_error "truncated\|past end" "$tmp/o.gguf" "$big_in" "$tmp/o.gguf" Q4_0 --imatrix "$tmp/im-trunc.gguf"
head -c 3000 "$data/tiny256-smollm2.imatrix.dat" > "$tmp/im-trunc.dat"
expect_error "importance matrix\|do not fit\|truncated" "$tmp/o.gguf" "$big_in" "$tmp/o.gguf" Q4_0 --imatrix "$tmp/im-trunc.dat"
expect_error "imatrix.* metadata" "$tmp/o.gguf" "$big_in" "$tmp/o.gguf" Q4_0 --imatrix "$in"
# an imatrix of the other model: its entries do not fit the tensors
expect_error "values, the tensor needs" "$tmp/o.gguf" "$tmp/tiny-smollm2-f16.gguf" "$tmp/o.gguf" Q4_0 --imatrix "$im"
echo "quantize: ok ($n golden files, $n_im with an importance matrix)"
