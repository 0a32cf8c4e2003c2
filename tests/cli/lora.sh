#!/usr/bin/env bash
# LoRA adapters on the command line: --lora FILE[:SCALE] on logits/run/perplexity changes the
# output the way the scaling rule says (two adapters at 0.5 = one at 1.0; scale 0 = none), and
# hostile adapters (a model file, another architecture, a wrong shape, a truncated file, a bad
# scale) are one clear error line each, never a crash. Adapters in the model store (import, pull,
# list, --lora NAME, merge by name, rm) behave as their files do.
set -euo pipefail
: "${SLM_BIN:?}" "${SLM_SRC:?}"
shared=${SLM_TEST_DATA:-$SLM_SRC/../shared}
model="$shared/models/stories260K.gguf"
synth="$shared/tools/synth_gguf.py"
if [ ! -f "$model" ] || [ ! -f "$synth" ]; then echo "SKIP: shared test data absent ($model)" >&2; exit 77; fi
command -v python3 >/dev/null || { echo "SKIP: python3 absent" >&2; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
A="$tmp/story-a.gguf"
python3 "$synth" --adapter-for "$model" --rank 4 --alpha 8 --targets q,v --seed 1 --lora-rel 0.5 -o "$A" 2>/dev/null
python3 "$synth" --adapter-for "$model" --rank 4 --alpha 8 --targets q,v --seed 1 --lora-rel 0.5 --adapter-type f16 \
  -o "$tmp/story-a16.gguf" 2>/dev/null
ids=1,403,407,261,117,31,300
logits() { "$SLM_BIN" logits "$model" --ids $ids --json --top 5 --exact "$@"; }
base=$(logits)
one=$(logits --lora "$A")
half2=$(logits --lora "$A:0.5" --lora "$A:0.5")
zero=$(logits --lora "$A:0")
[ "$one" != "$base" ] || fail "the adapter changes nothing"
[ "$zero" = "$base" ] || fail "scale 0 is not the base"
# two adapters at 0.5 add up to one at 1.0 (to float rounding: compare the top ids and the logits to 1e-4)
python3 - "$one" "$half2" <<'EOF' || fail "two halves differ from one whole"
import json, sys
a = [json.loads(l) for l in sys.argv[1].splitlines()]
b = [json.loads(l) for l in sys.argv[2].splitlines()]
assert len(a) == len(b) == 7
for x, y in zip(a, b):
    assert [t[0] for t in x["top"]] == [t[0] for t in y["top"]], (x, y)
    assert all(abs(p[1] - q[1]) < 1e-4 for p, q in zip(x["top"], y["top"])), (x, y)
EOF
# an f16 copy of the adapter: the same within the f16 rounding of A and B
f16=$(logits --lora "$tmp/story-a16.gguf")
python3 - "$one" "$f16" <<'EOF' || fail "the f16 adapter differs from the f32 one"
import json, sys
a = [json.loads(l) for l in sys.argv[1].splitlines()]
b = [json.loads(l) for l in sys.argv[2].splitlines()]
for x, y in zip(a, b):
    assert x["top"][0][0] == y["top"][0][0] and abs(x["top"][0][1] - y["top"][0][1]) < 0.05, (x, y)
EOF
# the fast path agrees with the exact one to the fast tolerance
fast=$("$SLM_BIN" logits "$model" --ids $ids --json --top 1 --lora "$A")
python3 - "$one" "$fast" <<'EOF' || fail "fast path with the adapter"
import json, sys
a = [json.loads(l) for l in sys.argv[1].splitlines()]
b = [json.loads(l) for l in sys.argv[2].splitlines()]
for x, y in zip(a, b):
    assert x["top"][0][0] == y["top"][0][0] and abs(x["top"][0][1] - y["top"][0][1]) < 0.05 * 7.2, (x, y)
EOF
# run: greedy text changes with the adapter and is deterministic
r0=$("$SLM_BIN" run "$model" -p "Once upon a time" -n 16 --temp 0 2>/dev/null)
r1=$("$SLM_BIN" run "$model" -p "Once upon a time" -n 16 --temp 0 --lora "$A" 2>/dev/null)
r2=$("$SLM_BIN" run "$model" -p "Once upon a time" -n 16 --temp 0 --lora "$A:1.0" 2>/dev/null)
[ "$r0" != "$r1" ] || fail "run: the adapter changes nothing"
[ "$r1" = "$r2" ] || fail "run: FILE and FILE:1.0 differ"
# perplexity takes it too (and the number moves)
printf 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park.\n%.0s' 1 2 3 4 >"$tmp/text.txt"
p0=$("$SLM_BIN" perplexity "$model" -f "$tmp/text.txt" -c 32 2>&1 | grep -o 'PPL = [0-9.]*' | tail -1)
p1=$("$SLM_BIN" perplexity "$model" -f "$tmp/text.txt" -c 32 --lora "$A" 2>&1 | grep -o 'PPL = [0-9.]*' | tail -1)
[ -n "$p0" ] && [ -n "$p1" ] && [ "$p0" != "$p1" ] || fail "perplexity: '$p0' vs '$p1'"

# slm lora merge: the merged model's logits equal base + adapter (oracle path, 1e-3 sigma of 7.2)
"$SLM_BIN" lora merge "$model" "$A:0.75" -o "$tmp/merged.gguf" 2>"$tmp/merge.log" || fail "merge: $(cat "$tmp/merge.log")"
grep -q "10 matrices merged" "$tmp/merge.log" || fail "merge note: $(cat "$tmp/merge.log")"
merged=$("$SLM_BIN" logits "$tmp/merged.gguf" --ids $ids --json --top 5 --exact)
applied=$(logits --lora "$A:0.75")
python3 - "$merged" "$applied" "$base" <<'EOF2' || fail "merged model differs from base + adapter"
import json, sys
m, a, b = ([json.loads(l) for l in s.splitlines()] for s in sys.argv[1:4])
worst = max(abs(p[1] - q[1]) for x, y in zip(m, a) for p, q in zip(x["top"], y["top"]))
assert all([t[0] for t in x["top"]] == [t[0] for t in y["top"]] for x, y in zip(m, a)), "top ids differ"
assert worst <= 1e-3 * 7.1984, worst
moved = max(abs(p[1] - q[1]) for x, y in zip(m, b) for p, q in zip(x["top"], y["top"]))
assert moved > 0.05, moved  # and the merge did change the model
EOF2
# a failed merge leaves nothing behind
python3 "$synth" --adapter-for tiny-smollm2 --rank 8 --alpha 16 --targets gate,up --seed 1 -o "$tmp/tiny.gguf" 2>/dev/null
"$SLM_BIN" lora merge "$model" "$tmp/tiny.gguf" -o "$tmp/bad-merge.gguf" 2>/dev/null && fail "merge of a wrong-shape adapter succeeded"
[ -z "$(ls "$tmp" | grep bad-merge)" ] || fail "a failed merge left $(ls "$tmp" | grep bad-merge)"
"$SLM_BIN" lora merge "$model" -o "$tmp/x.gguf" 2>/dev/null && fail "merge without an adapter succeeded"
# a quantized base is re-quantized in its own type (and the adapter shows in its logits)
q8="${SLM_TEST_MODELS:-${SLM_BUILD:-.}/testdata}/tiny-smollm2-q8_0.gguf"
if [ -f "$q8" ]; then
  python3 "$synth" --adapter-for tiny-smollm2 --rank 8 --alpha 16 --seed 1 --lora-rel 0.25 -o "$tmp/tiny-all.gguf" 2>/dev/null
  "$SLM_BIN" lora merge "$q8" "$tmp/tiny-all.gguf" -o "$tmp/mq8.gguf" 2>"$tmp/merge.log" || fail "q8_0 merge"
  grep -q "14 re-quantized" "$tmp/merge.log" || fail "q8_0 merge note: $(cat "$tmp/merge.log")"
  [ "$("$SLM_BIN" show "$tmp/mq8.gguf" 2>&1 | grep -c q8_0)" -ge 14 ] || fail "the merged q8_0 model is not q8_0"
  mq=$("$SLM_BIN" logits "$tmp/mq8.gguf" --ids 1,2,3,4,5 --json --top 1)
  aq=$("$SLM_BIN" logits "$q8" --ids 1,2,3,4,5 --json --top 1 --lora "$tmp/tiny-all.gguf")
  python3 - "$mq" "$aq" <<'EOF2' || fail "merged q8_0 vs q8_0 + adapter"
import json, sys
m, a = ([json.loads(l) for l in s.splitlines()] for s in sys.argv[1:3])
d = max(abs(x["logsumexp"] - y["logsumexp"]) for x, y in zip(m, a))
assert d <= 0.05 * 0.2784, d  # the fast path's log-sum-exp tolerance for quantized weights
EOF2
fi

# hostile adapters: exit 1, one line that says what is wrong
expect_error() { # pattern args...
  local pat=$1 out rc=0; shift
  out=$("$SLM_BIN" logits "$model" --ids 1,2 --json "$@" 2>&1 >/dev/null) || rc=$?
  [ $rc -eq 1 ] || fail "$*: exit $rc (want 1): $out"
  [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] || fail "$*: more than one line: $out"
  printf '%s' "$out" | grep -q -- "$pat" || fail "$*: '$out' does not say '$pat'"
}
expect_error "not a LoRA adapter" --lora "$model"
expect_error "needs lora_a" --lora "$tmp/tiny.gguf"
# another architecture: the same file with general.architecture "llama" renamed to "qwen2"
python3 - "$A" "$tmp/qwen.gguf" <<'EOF'
import sys
d = open(sys.argv[1], "rb").read()
key = b"general.architecture"
i = d.index(key) + len(key) + 4 + 8  # value type (u32), string length (u64)
assert d[i:i + 5] == b"llama"
open(sys.argv[2], "wb").write(d[:i] + b"qwen2" + d[i + 5:])
EOF
expect_error 'architecture "qwen2", the model is "llama"' --lora "$tmp/qwen.gguf"
head -c 5000 "$A" >"$tmp/trunc.gguf"
expect_error "past end of file\|truncated\|extends" --lora "$tmp/trunc.gguf"
expect_error "not a finite number" --lora "$A:inf"
expect_error "No such file\|cannot open" --lora "$tmp/none.gguf"
# a lora_b without its lora_a: rename one .lora_a tensor
python3 - "$A" "$tmp/orphan.gguf" <<'EOF'
import sys
d = open(sys.argv[1], "rb").read()
i = d.index(b"blk.0.attn_q.weight.lora_a")
open(sys.argv[2], "wb").write(d[:i] + b"blk.0.attn_q.weight.lora_x" + d[i + 26:])
EOF
expect_error "neither a .lora_a nor" --lora "$tmp/orphan.gguf"
# random bytes after a valid header: never a crash
for seed in 1 2 3 4 5; do
  python3 - "$A" "$tmp/noise.gguf" $seed <<'EOF'
import random, sys
d = bytearray(open(sys.argv[1], "rb").read())
r = random.Random(int(sys.argv[3]))
for _ in range(20):
    d[r.randrange(8, 1800)] = r.randrange(256)
open(sys.argv[2], "wb").write(bytes(d))
EOF
  rc=0
  "$SLM_BIN" logits "$model" --ids 1,2 --json --lora "$tmp/noise.gguf" >/dev/null 2>"$tmp/noise.err" || rc=$?
  [ $rc -le 1 ] || fail "noise seed $seed: exit $rc"
  if grep -q "Sanitizer\|runtime error" "$tmp/noise.err"; then cat "$tmp/noise.err" >&2; fail "noise seed $seed"; fi
done
# an embedding model cannot take an adapter
models_dir="${SLM_TEST_MODELS:-${SLM_BUILD:-.}/testdata}"
if [ -f "$models_dir/bge-small-f16.gguf" ]; then
  out=$("$SLM_BIN" logits "$models_dir/bge-small-f16.gguf" --ids 1,2 --json --lora "$A" 2>&1) && fail "bge took an adapter"
  printf '%s' "$out" | grep -q "embedding model" || fail "bge: $out"
fi
# adapters as store objects: imported, listed as adapters of their base architecture, named by
# --lora NAME[:SCALE] with the same logits as the file, merged by name, refused as a model, removed
export SLM_HOME="$tmp/home"
"$SLM_BIN" import "$A" --name story-style 2>"$tmp/import.err" || fail "import of an adapter: $(cat "$tmp/import.err")"
grep -q "LoRA adapter for llama" "$tmp/import.err" || fail "import does not say it is an adapter: $(cat "$tmp/import.err")"
"$SLM_BIN" import "$model" --name stories 2>/dev/null || fail "import of the base"
"$SLM_BIN" list --json | grep -q '"name":"story-style:latest".*"arch":"llama","kind":"adapter"' || fail "list: $("$SLM_BIN" list --json)"
"$SLM_BIN" list --json | grep -q '"name":"stories:latest".*"kind":"model"' || fail "list (model): $("$SLM_BIN" list --json)"
"$SLM_BIN" list | grep -q '^story-style:latest .* llama *adapter ' || fail "list (table): $("$SLM_BIN" list)"
# slm show of an adapter (by name and by file): what it is for and its tensors, not a model error
for a in story-style "$A"; do
  "$SLM_BIN" show "$a" >"$tmp/show" 2>&1 || fail "show $a: $(cat "$tmp/show")"
  grep -q '^LoRA adapter for llama models' "$tmp/show" && grep -q '^  rank  *[0-9]' "$tmp/show" &&
    grep -q 'lora_a  *f32  *[0-9]* x [0-9]*' "$tmp/show" || fail "show $a: $(head -5 "$tmp/show")"
done
[ "$(logits --lora story-style)" = "$one" ] || fail "--lora NAME differs from --lora FILE"
[ "$(logits --lora story-style:latest:0.5 --lora story-style:0.5)" = "$half2" ] || fail "--lora NAME:TAG:SCALE / NAME:SCALE"
[ "$("$SLM_BIN" logits stories --ids $ids --json --top 5 --exact --lora story-style)" = "$one" ] || fail "base and adapter both by name"
"$SLM_BIN" lora merge stories story-style -o "$tmp/merged-by-name.gguf" 2>/dev/null || fail "merge by store names"
merged=$("$SLM_BIN" logits "$tmp/merged-by-name.gguf" --ids $ids --json --top 5 --exact)
[ "$merged" != "$base" ] || fail "the merge by name changed nothing"
out=$(logits --lora no-such-adapter 2>&1) && fail "an unknown adapter name was accepted"
printf '%s' "$out" | grep -q "no-such-adapter.*neither a file nor a model in the store" || fail "unknown name: $out"
out=$(logits --lora stories 2>&1) && fail "a model was taken as an adapter"
printf '%s' "$out" | grep -q "not a LoRA adapter" || fail "model as adapter: $out"
# a pull of an adapter over HTTP arrives as an adapter too, and --lora takes its name
python3 - "$tmp" >"$tmp/http.port" 2>/dev/null <<'PY' &
import functools, http.server, sys
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
h.log_message = lambda *a: None
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), h)
print(s.server_address[1], flush=True)
s.serve_forever()
PY
http_pid=$!
trap 'kill $http_pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 50); do [ -s "$tmp/http.port" ] && break; sleep 0.1; done
"$SLM_BIN" pull "http://127.0.0.1:$(cat "$tmp/http.port")/story-a.gguf" --name pulled-style 2>"$tmp/pull.err" ||
  fail "pull of an adapter: $(cat "$tmp/pull.err")"
"$SLM_BIN" list --json | grep -q '"name":"pulled-style:latest".*"kind":"adapter"' || fail "pulled adapter: $("$SLM_BIN" list --json)"
[ "$(logits --lora pulled-style)" = "$one" ] || fail "--lora with a pulled adapter's name"
kill $http_pid 2>/dev/null || true
"$SLM_BIN" rm story-style 2>/dev/null || fail "rm of an adapter"
"$SLM_BIN" list --json | grep -q story-style && fail "the adapter is still listed after rm"
"$SLM_BIN" rm pulled-style 2>/dev/null || fail "rm of the pulled adapter"
[ "$(ls "$SLM_HOME/models/blobs" | wc -l)" = 1 ] || fail "the adapter's blob was not collected"
echo "lora: ok"
