#!/usr/bin/env bash
# The engine's verbs end to end on the real stories260K model: bytes in, bytes out.
set -u
SLM=${SLM_BIN:?}
SRC=${SLM_SRC:?}
DATA=${SLM_TEST_DATA:-$SRC/../shared}
if [ ! -d "$DATA/reference" ]; then
  echo "engine_cli: shared test data absent (set SLM_TEST_DATA; looked in $DATA)" >&2
  exit 77
fi
M=$DATA/models/stories260K.gguf
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
expect_eq() { [ "$1" == "$2" ] || fail "$3: got [$1] want [$2]"; }

# Greedy generation: the continuation llama.cpp gives (README of shared/models).
out=$("$SLM" run "$M" -p "Once upon a time" -n 27 --temp 0 -t 1 2>"$tmp/err")
expect_eq "$out" ", there was a little girl named Lily. She loved to play outside in the park." "greedy run"
grep -q "finish: length" "$tmp/err" || fail "run: stderr lacks the finish reason: $(cat "$tmp/err")"

# Same seed, same text; temperature sampling differs from greedy.
a=$("$SLM" run "$M" -p "Once upon a time" -n 32 --temp 1 --seed 42 -t 1 2>/dev/null)
b=$("$SLM" run "$M" -p "Once upon a time" -n 32 --temp 1 --seed 42 -t 2 2>/dev/null)
c=$("$SLM" run "$M" -p "Once upon a time" -n 32 --temp 1 --seed 7 -t 1 2>/dev/null)
expect_eq "$a" "$b" "same seed, different thread count"
[ "$a" != "$c" ] || fail "seeds 42 and 7 gave the same text: $a"

# Stop strings end the text before the stop string.
out=$("$SLM" run "$M" -p "Once upon a time" -n 40 --temp 0 --stop "Lily" 2>/dev/null)
expect_eq "$out" ", there was a little girl named " "stop string"

# Context limits are errors, never truncation.
"$SLM" run "$M" -p "Once upon a time there was a girl" -c 4 -n 1 >/dev/null 2>"$tmp/err" && fail "prompt past context accepted"
grep -q "more than the context size 4" "$tmp/err" || fail "prompt past context: $(cat "$tmp/err")"
"$SLM" run "$M" -p "Once upon a time" -c 16 -n 64 >/dev/null 2>"$tmp/err" && fail "generation past context accepted"
grep -q "exceeds the context size 16" "$tmp/err" || fail "generation past context: $(cat "$tmp/err")"

"$SLM" run "$M" -p "Once upon a time" -n 0 >/dev/null 2>"$tmp/err" && fail "-n 0 accepted"
grep -q "would generate nothing" "$tmp/err" || fail "-n 0: $(cat "$tmp/err")"

# Perplexity: llama-perplexity's 2.8382 +/- 0.05426 on the same text and chunking.
"$SLM" perplexity "$M" -f "$DATA/reference/texts/stories260K-samples.txt" -c 128 -t 2 >"$tmp/ppl" 2>/dev/null || fail "perplexity failed"
python3 - "$tmp/ppl" "$DATA/reference/stories260K/perplexity.json" <<'PY' || fails=$((fails + 1))
import json, re, sys
out = open(sys.argv[1]).read(); ref = json.load(open(sys.argv[2]))
final = float(re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", out).group(1))
running = [float(x) for x in re.findall(r"\[\d+\]([0-9.]+),", out)]
assert abs(final - ref["final_ppl"]) <= 0.005, (final, ref["final_ppl"])
assert len(running) == ref["n_chunks"], (len(running), ref["n_chunks"])
worst = max(abs(a - b) for a, b in zip(running, ref["running_ppl_after_each_chunk"]))
assert worst <= 0.001 + 1e-9, worst
print(f"perplexity {final} (ref {ref['final_ppl']}), running values within {worst:.4f}")
PY

# Teacher-forced logits as JSON lines, compared with llama.cpp's logits.jsonl for prompt 0.
ids=$(python3 -c "import json;print(','.join(map(str,json.loads(open('$DATA/reference/stories260K/logits.jsonl').readline())['prompt_ids'])))")
"$SLM" logits "$M" --ids "$ids" --top 40 --json -t 1 >"$tmp/logits" 2>"$tmp/err" || fail "logits failed: $(cat "$tmp/err")"
python3 - "$tmp/logits" "$DATA/reference/stories260K/logits.jsonl" <<'PY' || fails=$((fails + 1))
import json, sys
ours = [json.loads(l) for l in open(sys.argv[1])]
ref = [json.loads(l) for l in open(sys.argv[2]) if json.loads(l)["prompt"] == 0]
assert len(ours) == len(ref) == 16, (len(ours), len(ref))
sigma = 7.1984
for o, r in zip(ours, ref):
    assert o["pos"] == r["pos"] and o["token"] == r["token"]
    assert [t[0] for t in o["top"][:5]] == [t[0] for t in r["top"][:5]], (o["pos"], o["top"][:5], r["top"][:5])
    d = max(abs(a[1] - b[1]) for a, b in zip(o["top"], r["top"]) if a[0] == b[0])
    assert d <= 0.05 * sigma, d
    assert abs(o["logsumexp"] - r["logsumexp"]) <= 0.05 * sigma
print("logits JSON lines agree with llama.cpp")

PY

# show: metadata and tensors.
"$SLM" show "$M" >"$tmp/show" || fail "show failed"
grep -q "architecture: llama" "$tmp/show" || fail "show lacks the architecture"
grep -Eq "blk.4.ffn_down.weight +f32 +172 x 64" "$tmp/show" || fail "show lacks the tensor table: $(grep ffn_down "$tmp/show" | head -2)"

# Hostile files: one clear error line, non-zero exit, no crash.
printf 'GGUF\3\0\0\0' >"$tmp/trunc.gguf"
head -c 100000 "$M" >"$tmp/cut.gguf"
printf 'NOPE0000000000000000000000000000' >"$tmp/magic.gguf"
for f in trunc cut magic; do
  "$SLM" run "$tmp/$f.gguf" -p hi >/dev/null 2>"$tmp/err"; rc=$?
  [ $rc -eq 1 ] || fail "$f.gguf: exit $rc"
  [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "$f.gguf: expected one error line, got: $(cat "$tmp/err")"
done
grep -q "bad magic" <("$SLM" show "$tmp/magic.gguf" 2>&1) || fail "bad magic not reported"
grep -q "unsupported architecture 'bert'" <("$SLM" run "$DATA/models/vocab/ggml-vocab-bert-bge.gguf" -p hi 2>&1) \
  || grep -q "no tensors" <("$SLM" run "$DATA/models/vocab/ggml-vocab-bert-bge.gguf" -p hi 2>&1) || fail "vocab-only file not reported"

# Help texts.
"$SLM" --help | grep -q "perplexity" || fail "slm --help"
for v in run chat show logits perplexity tokenize; do "$SLM" $v --help >/dev/null || fail "slm $v --help"; done
"$SLM" frobnicate 2>/dev/null && fail "unknown verb accepted"

# chat: the model has no template -> a clear error listing the known names.
echo hi | "$SLM" chat "$M" 2>"$tmp/err" >/dev/null && fail "chat without template accepted"
grep -q "chatml" "$tmp/err" || fail "chat error does not list template names: $(cat "$tmp/err")"
# chat with an explicit template works and streams a reply per line.
printf 'Hello\nTell me a story\n' | "$SLM" chat "$M" --chat-template chatml -n 8 --temp 0 >"$tmp/chat" 2>/dev/null || fail "chat failed"
[ "$(wc -l <"$tmp/chat")" -eq 2 ] || fail "chat: expected 2 reply lines, got $(wc -l <"$tmp/chat")"

# A stop string far longer than the output costs nothing and changes nothing.
long_stop=$(head -c 100000 /dev/zero | tr '\0' x)
out=$("$SLM" run "$M" -p "Once upon a time" -n 27 --temp 0 -t 1 --stop "$long_stop" 2>/dev/null)
expect_eq "$out" ", there was a little girl named Lily. She loved to play outside in the park." "long stop string"

# Text files used as C strings: a NUL byte inside is one error line, never a silent cut.
printf '{"type":"object"}\0{"type":"string"}' >"$tmp/nul.json"
"$SLM" run "$M" -p hi -n 4 --json-schema "$tmp/nul.json" >/dev/null 2>"$tmp/err" && fail "schema with NUL accepted"
[ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "NUL byte at offset 17" "$tmp/err" || fail "schema with NUL: $(cat "$tmp/err")"
printf '{"type":"object"}' >"$tmp/obj.json"
printf 'Tom is 7.\0 He likes cats.' | "$SLM" extract "$M" --schema "$tmp/obj.json" -n 8 >/dev/null 2>"$tmp/err" \
  && fail "extract input with NUL accepted"
[ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "stdin: contains a NUL byte at offset 9" "$tmp/err" || fail "extract NUL: $(cat "$tmp/err")"
printf 'Tom is 7.\0 He likes cats.' | "$SLM" summarize "$M" -n 8 >/dev/null 2>"$tmp/err" && fail "summarize input with NUL accepted"
grep -q "NUL byte" "$tmp/err" || fail "summarize NUL: $(cat "$tmp/err")"

# classify: repeated labels are one up-front error, not one error per input line.
printf '"a"\n"b"\n' | "$SLM" classify "$M" --labels "yes, no,yes" >"$tmp/out" 2>"$tmp/err" && fail "repeated label accepted"
[ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "'yes' is given twice" "$tmp/err" || fail "repeated label: $(cat "$tmp/err")"
[ -s "$tmp/out" ] && fail "repeated label still wrote output: $(cat "$tmp/out")"

# chat: a line holding a NUL byte is refused and the conversation goes on.
printf 'a\0b\nHello\n' | "$SLM" chat "$M" --chat-template chatml -n 4 --temp 0 >"$tmp/chat" 2>"$tmp/err" || fail "chat after NUL line failed"
grep -q "NUL byte" "$tmp/err" || fail "chat NUL line not reported: $(cat "$tmp/err")"
[ "$(wc -l <"$tmp/chat")" -eq 1 ] || fail "chat after NUL line: expected 1 reply line, got $(wc -l <"$tmp/chat")"

# Task verbs: usage on no arguments (exit 1), help on --help (exit 0).
for v in extract summarize classify; do
  "$SLM" $v >/dev/null 2>"$tmp/err" && fail "slm $v without arguments succeeded"
  grep -q "usage: slm $v" "$tmp/err" || fail "slm $v without arguments: $(cat "$tmp/err")"
  "$SLM" $v --help | grep -q "usage: slm $v" || fail "slm $v --help"
done

[ $fails -eq 0 ] && echo "engine_cli: all passed" || echo "engine_cli: $fails failures" >&2
exit $((fails > 0))
