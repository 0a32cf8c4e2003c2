#!/usr/bin/env bash
# slm finetune on stories260K with a text in a distinct style (tests/data/finetune): validation loss
# drops; the adapter is llama.cpp's adapter GGUF and lowers perplexity when applied with --lora;
# a seed and thread count give identical adapter bytes; resuming from a checkpoint gives the same
# adapter as the uninterrupted run; chat JSONL trains; bad inputs give one clear error line.
set -u
bin=${SLM_BIN:?SLM_BIN not set}
src=${SLM_SRC:-.}
shared=${SLM_TEST_DATA:-$src/../shared}
stories=$shared/models/stories260K.gguf
data=$src/tests/data/finetune
if [ ! -f "$stories" ]; then
  echo "finetune.sh: $stories absent (set SLM_TEST_DATA)" >&2
  exit 77
fi
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
check() { # name condition...
  local name=$1
  shift
  if ! "$@"; then
    echo "FAIL: $name" >&2
    fail=1
  fi
}

common=(--data "$data/style_train.txt" --val "$data/style_val.txt" --ctx 48 --batch 4 --lr 5e-3 --warmup 2
  --max-steps 8 --threads 2 --seed 5 -q)

# 1. a run with checkpoints every 3 steps (the file keeps step 6)
if ! "$bin" finetune "$stories" "${common[@]}" --checkpoint-every 3 --checkpoint "$tmp/ck" -o "$tmp/a.gguf" \
  >"$tmp/a.out" 2>"$tmp/a.err"; then
  echo "FAIL: finetune run" >&2
  cat "$tmp/a.err" >&2
  exit 1
fi
read -r before after < <(sed -n 's/^validation loss \([0-9.]*\) -> \([0-9.]*\) .*/\1 \2/p' "$tmp/a.out")
check "validation loss printed" test -n "${before:-}" -a -n "${after:-}"
check "validation loss drops by 0.5 nats ($before -> $after)" awk -v b="${before:-0}" -v a="${after:-9}" 'BEGIN { exit !(a < b - 0.5) }'
check "8 steps reported" grep -q ' 8 steps ' "$tmp/a.out"
check "checkpoint written" test -s "$tmp/ck"
check "no temporary file left" test ! -e "$tmp/ck.tmp" -a ! -e "$tmp/a.gguf.tmp"

# 2. the file is a llama.cpp LoRA adapter: keys, tensor names, ggml shapes [n_in, rank] / [rank, n_out], f32
python3 - "$tmp/a.gguf" >"$tmp/meta" 2>&1 <<'EOF'
import struct, sys
b = open(sys.argv[1], 'rb').read()
assert b[:4] == b'GGUF', 'magic'
ver, nt, nkv = struct.unpack_from('<IQQ', b, 4)
o = 24
def s():
    global o
    n, = struct.unpack_from('<Q', b, o); o += 8
    v = b[o:o + n].decode(); o += n
    return v
kv = {}
for _ in range(nkv):
    k = s(); t, = struct.unpack_from('<I', b, o); o += 4
    if t == 8: kv[k] = s()
    elif t == 6: kv[k] = struct.unpack_from('<f', b, o)[0]; o += 4
    elif t in (4, 5): kv[k] = struct.unpack_from('<I', b, o)[0]; o += 4
    else: raise SystemExit('unexpected kv type %d' % t)
print('kv', kv['general.type'], kv['general.architecture'], kv['adapter.type'], kv['adapter.lora.alpha'])
for _ in range(nt):
    name = s(); nd, = struct.unpack_from('<I', b, o); o += 4
    ne = struct.unpack_from('<%dQ' % nd, b, o); o += 8 * nd
    ty, off = struct.unpack_from('<IQ', b, o); o += 12
    print('t', name, 'x'.join(map(str, ne)), ty)
EOF
check "adapter keys" grep -qx 'kv adapter llama lora 16.0' "$tmp/meta"
check "35 pairs (5 layers x 7 matrices)" test "$(grep -c '^t blk\..*\.lora_[ab] ' "$tmp/meta")" = 70
check "q: lora_a [64, 8], f32" grep -qx 't blk.0.attn_q.weight.lora_a 64x8 0' "$tmp/meta"
check "down: lora_b [8, 64]" grep -qx 't blk.4.ffn_down.weight.lora_b 8x64 0' "$tmp/meta"
check "gate: lora_b [8, 172]" grep -qx 't blk.2.ffn_gate.weight.lora_b 8x172 0' "$tmp/meta"

# 3. same seed and threads: the same bytes; another seed: different ones
"$bin" finetune "$stories" "${common[@]}" -o "$tmp/b.gguf" >/dev/null 2>&1
check "deterministic adapter bytes" cmp -s "$tmp/a.gguf" "$tmp/b.gguf"
"$bin" finetune "$stories" "${common[@]}" --seed 6 -o "$tmp/c.gguf" >/dev/null 2>&1
check "another seed changes the adapter" test -s "$tmp/c.gguf" -a -n "$(cmp "$tmp/a.gguf" "$tmp/c.gguf" 2>&1)"

# 4. resumed from the step-6 checkpoint: the same adapter as the uninterrupted run
cp "$tmp/ck" "$tmp/ck6"
"$bin" finetune "$stories" "${common[@]}" --resume "$tmp/ck6" -o "$tmp/r.gguf" >"$tmp/r.out" 2>"$tmp/r.err"
check "resume succeeds" test -s "$tmp/r.gguf"
check "resumed = uninterrupted" cmp -s "$tmp/a.gguf" "$tmp/r.gguf"

# 5. the adapter applied by slm (--lora) lowers the validation perplexity
ppl() { "$bin" perplexity "$stories" "$@" -f "$data/style_val.txt" -c 64 2>/dev/null | sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p'; }
base_ppl=$(ppl)
lora_ppl=$(ppl --lora "$tmp/a.gguf")
check "perplexity with --lora ($lora_ppl) below the base ($base_ppl)" \
  awk -v b="${base_ppl:-0}" -v a="${lora_ppl:-999}" 'BEGIN { exit !(b > 0 && a < b * 0.8) }'

# 6. chat JSONL: loss on assistant turns only
cat >"$tmp/chat.jsonl" <<'EOF'
{"messages": [{"role": "user", "content": "Tell me about the owl."}, {"role": "assistant", "content": "Hark! The owl hums. Tra-la, tra-lo."}]}

{"messages": [{"role": "system", "content": "Speak softly."}, {"role": "user", "content": "And the fox?"}, {"role": "assistant", "content": "Hark! The fox hums too. Tra-la, tra-lo."}]}
{"messages": [{"role": "user", "content": "And the toad?"}, {"role": "assistant", "content": "Hark! The toad sleeps. Tra-la, tra-lo."}, {"role": "user", "content": "Why?"}, {"role": "assistant", "content": "For the hills hum. Tra-la, tra-lo."}]}
EOF
"$bin" finetune "$stories" --data "$tmp/chat.jsonl" --chat-template chatml --ctx 160 --batch 2 --max-steps 2 -t 2 -q \
  -o "$tmp/chat.gguf" >"$tmp/chat.out" 2>"$tmp/chat.err"
check "chat JSONL trains ($(cat "$tmp/chat.err"))" test -s "$tmp/chat.gguf"
check "chat JSONL: 3 conversations, 1 held out" grep -q 'over 2 windows' "$tmp/chat.out"

# 7. bad inputs: exit 1 and one line "slm finetune: ..." naming the problem
bad() { # name expected-substring args...
  local name=$1 want=$2
  shift 2
  "$bin" finetune "$@" >"$tmp/bad.out" 2>"$tmp/bad.err"
  local rc=$?
  if [ $rc -ne 1 ] || [ "$(wc -l <"$tmp/bad.err")" -ne 1 ] || ! grep -q "^slm finetune: .*$want" "$tmp/bad.err"; then
    echo "FAIL: bad input: $name (rc $rc)" >&2
    cat "$tmp/bad.err" >&2
    fail=1
  fi
  if [ -e "$tmp/bad.gguf" ]; then
    echo "FAIL: bad input: $name left an adapter" >&2
    fail=1
  fi
}
printf 'a\0b' >"$tmp/nul.txt"
printf '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n{"messages": [\n' >"$tmp/broken.jsonl"
printf '{"messages": [{"role": "user", "content": "hi"}]}\n' >"$tmp/noasst.jsonl"
printf '{"messages": [{"role": "robot", "content": "hi"}]}\n' >"$tmp/role.jsonl"
head -c 100 "$tmp/ck" >"$tmp/short.ck"
ok=(--data "$data/style_val.txt" --ctx 32 --max-steps 1 -o "$tmp/bad.gguf")
bad "no data" "no training data" "$stories" -o "$tmp/bad.gguf"
bad "no output" "no output path" "$stories" --data "$data/style_val.txt"
bad "missing data file" "nope.txt" "$stories" --data "$tmp/nope.txt" -o "$tmp/bad.gguf"
bad "NUL in text" "NUL byte" "$stories" "${ok[@]}" --data "$tmp/nul.txt"
bad "broken JSONL" "line 2: not JSON" "$stories" "${ok[@]}" --ctx 64 --data "$tmp/broken.jsonl" --chat-template chatml
bad "no assistant turn" "line 1: no assistant message" "$stories" "${ok[@]}" --data "$tmp/noasst.jsonl" --chat-template chatml
bad "unknown role" "role 'robot'" "$stories" "${ok[@]}" --data "$tmp/role.jsonl" --chat-template chatml
bad "rank 0" "--rank" "$stories" "${ok[@]}" --rank 0
bad "unknown target" "unknown LoRA target 'qq'" "$stories" "${ok[@]}" --targets q,qq
bad "negative lr" "--lr" "$stories" "${ok[@]}" --lr -1
bad "unknown option" "unknown option --frobnicate" "$stories" "${ok[@]}" --frobnicate
bad "base is not a model" "" "$data/style_val.txt" "${ok[@]}"
bad "truncated checkpoint" "truncated\|not an slm" "$stories" "${common[@]}" --resume "$tmp/short.ck" -o "$tmp/bad.gguf"
bad "checkpoint of other settings" "another base model, data or settings" "$stories" "${common[@]}" --rank 4 \
  --resume "$tmp/ck6" -o "$tmp/bad.gguf"
bad "output directory missing" "cannot write .*directory" "$stories" "${ok[@]}" -o "$tmp/nodir/x.gguf"
bad "missing checkpoint" "cannot open checkpoint" "$stories" "${common[@]}" --resume "$tmp/none.ck" -o "$tmp/bad.gguf"

exit $fail
