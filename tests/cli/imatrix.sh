#!/usr/bin/env bash
# slm imatrix against llama-imatrix, without needing llama.cpp: llama-imatrix's files for the same
# model, text and chunking are recorded in tests/data (recorded from the peer build, text
# shared/reference/texts/stories260K-samples.txt named imtext.txt):
#   quantize/tiny256-smollm2.imatrix(.dat)  tiny256-smollm2 f16, -c 64 --chunks 8 (GGUF and legacy .dat)
#   imatrix/stories260K-c128-x20-output.imatrix  stories260K, -c 128 --chunks 20 --process-output
# slm's files must have the same bytes everywhere but in the sums (names, order, counts, keys,
# layout), and every sum within a relative tolerance of llama's (measured: 1.7e-3 on the f16 model,
# whose matmuls llama.cpp runs on f16-rounded activations; 8e-4 on the f32 one). A matrix from slm
# then quantizes to the same types as llama's and almost the same blocks. Hostile inputs: one line.
set -euo pipefail
: "${SLM_BIN:?}" "${SLM_SRC:?}"
shared=${SLM_TEST_DATA:-$SLM_SRC/../shared}
text="$shared/reference/texts/stories260K-samples.txt"
story="$shared/models/stories260K.gguf"
if [ ! -f "$text" ] || [ ! -f "$story" ]; then echo "SKIP: shared test data absent ($text)" >&2; exit 77; fi
command -v python3 >/dev/null || { echo "SKIP: python3 absent" >&2; exit 77; }
models_dir="${SLM_TEST_MODELS:-${SLM_BUILD:-.}/testdata}"
tiny="$models_dir/tiny256-smollm2-f16.gguf"
if [ ! -f "$tiny" ]; then echo "SKIP: $tiny absent (scripts/gen-test-models.sh)" >&2; exit 77; fi
data="$SLM_SRC/tests/data"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
cp "$text" "$tmp/imtext.txt"
cd "$tmp" # the dataset name recorded in the files is the -f argument as given

# compare SLM LLAMA TOLERANCE: same structure byte for byte, sums within TOLERANCE (relative)
compare() {
  python3 - "$1" "$2" "$3" <<'EOF'
import struct, sys
def gguf(path):
    b = open(path, "rb").read(); p = [4]
    def u32():
        v = struct.unpack_from("<I", b, p[0])[0]; p[0] += 4; return v
    def u64():
        v = struct.unpack_from("<Q", b, p[0])[0]; p[0] += 8; return v
    def s():
        n = u64(); p[0] += n; return b[p[0] - n:p[0]]
    SZ = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    def val(t):
        if t == 8: s(); return
        if t == 9:
            at = u32(); n = u64()
            for _ in range(n): val(at)
            return
        p[0] += SZ[t]
    assert b[:4] == b"GGUF", path + ": not GGUF"
    u32(); nt = u64(); nkv = u64()
    for _ in range(nkv): s(); val(u32())
    ts = []
    for _ in range(nt):
        name = s().decode(); nd = u32(); ne = [u64() for _ in range(nd)]; u32(); ts.append((name, ne, u64()))
    data = (p[0] + 31) // 32 * 32
    sums = {}
    for name, ne, off in ts:
        n = 1
        for x in ne: n *= x
        sums[name] = struct.unpack_from("<%df" % n, b, data + off)
    return b[:data], sums, len(b)
def dat(path):
    b = open(path, "rb").read(); o = 4; sums = {}; head = [b[:4]]
    for _ in range(struct.unpack_from("<i", b, 0)[0]):
        l = struct.unpack_from("<i", b, o)[0]; nc, nv = struct.unpack_from("<ii", b, o + 4 + l)
        head.append(b[o:o + 12 + l]); sums[b[o + 4:o + 4 + l].decode()] = struct.unpack_from("<%df" % nv, b, o + 12 + l)
        o += 12 + l + 4 * nv
    head.append(b[o:])
    return b"".join(head), sums, len(b)
load = gguf if open(sys.argv[2], "rb").read(4) == b"GGUF" else dat
hs, s, ns = load(sys.argv[1]); hl, l, nl = load(sys.argv[2])
tol = float(sys.argv[3])
if hs != hl or ns != nl or list(s) != list(l):
    sys.exit("structure differs from llama-imatrix's (header, names, counts or size)")
worst, where = 0.0, ""
for k in l:
    if k.endswith(".counts"):
        if s[k] != l[k]: sys.exit("%s: %s, llama-imatrix has %s" % (k, s[k], l[k]))
        continue
    for j, (x, y) in enumerate(zip(s[k], l[k])):
        r = abs(x - y) / abs(y)
        if r > worst: worst, where = r, "%s[%d]: %g vs %g" % (k, j, x, y)
print("%d entries, worst relative difference %.2e (%s)" % (len(l), worst, where), file=sys.stderr)
sys.exit(0 if worst <= tol else "worst relative difference %.2e above %.0e" % (worst, tol))
EOF
}

# 1. tiny256-smollm2 (f16), both formats; the GGUF format is the default (-o without a suffix too)
"$SLM_BIN" imatrix "$tiny" -f imtext.txt -c 64 --chunks 8 -o tiny.imatrix -t 2 > ppl.txt 2> err.txt ||
  { cat err.txt >&2; fail "imatrix on tiny256-smollm2"; }
compare tiny.imatrix "$data/quantize/tiny256-smollm2.imatrix" 5e-3 || fail "tiny256-smollm2 GGUF differs from llama-imatrix's"
grep -q "note: writing tiny.imatrix in the GGUF format" err.txt || fail "no note on the GGUF format of a non-.gguf name"
grep -q "^Final estimate: PPL = 6625[0-9]\." ppl.txt || fail "the perplexity report is not llama-imatrix's 66252.86: $(tail -1 ppl.txt)"
"$SLM_BIN" imatrix "$tiny" -f imtext.txt --ctx 64 --chunks 8 -o tiny.dat --output-format dat --no-ppl -t 2 > ppl.txt 2>/dev/null
[ ! -s ppl.txt ] || fail "--no-ppl still printed: $(cat ppl.txt)"
compare tiny.dat "$data/quantize/tiny256-smollm2.imatrix.dat" 5e-3 || fail "tiny256-smollm2 .dat differs from llama-imatrix's"

# 1b. llama-imatrix decodes 2048 / CTX chunks at once and skips a ubatch of fewer than 16 tokens:
#     the counts it wrote (5156 of 10 x 516 tokens, 9 chunks; 5128 of 20 x 257, 19 chunks) are slm's
for spec in 516:5156:9 257:5128:19; do
  IFS=: read -r c want_count want_chunks <<< "$spec"
  "$SLM_BIN" imatrix "$tiny" -f imtext.txt -c "$c" -o "c$c.gguf" --no-ppl -t 2 2>/dev/null
  python3 - "c$c.gguf" "$want_count" "$want_chunks" <<'EOF' || fail "-c $c: counts differ from llama-imatrix's"
import struct, sys
b = open(sys.argv[1], "rb").read(); p = [8]
def u32():
    p[0] += 4; return struct.unpack_from("<I", b, p[0] - 4)[0]
def u64():
    p[0] += 8; return struct.unpack_from("<Q", b, p[0] - 8)[0]
def text():
    n = u64(); p[0] += n; return b[p[0] - n:p[0]].decode()
nt = u64(); nkv = u64(); kv = {}
for _ in range(nkv):
    k = text(); t = u32()
    if t == 4: kv[k] = u32()
    elif t == 8: text()
    elif t == 9:
        at = u32(); n = u64()
        for _ in range(n): text()
counts = {}
for _ in range(nt):
    name = text(); nd = u32(); p[0] += 8 * nd; u32(); counts[name] = u64()
data = (p[0] + 31) // 32 * 32
got = struct.unpack_from("<f", b, data + counts["blk.0.attn_k.weight.counts"])[0]
print("%s: count %g, chunk_count %d" % (sys.argv[1], got, kv["imatrix.chunk_count"]), file=sys.stderr)
assert got == float(sys.argv[2]) and kv["imatrix.chunk_count"] == int(sys.argv[3])
EOF
done

# 2. stories260K (f32, untied output) with --process-output: output.weight is collected too
"$SLM_BIN" imatrix "$story" -f imtext.txt -c 128 --chunks 20 --process-output -o story.gguf --no-ppl 2>/dev/null
compare story.gguf "$data/imatrix/stories260K-c128-x20-output.imatrix" 3e-3 || fail "stories260K differs from llama-imatrix's"
"$SLM_BIN" imatrix "$story" -f imtext.txt -c 128 --chunks 3 -o story3.gguf --no-ppl 2>/dev/null
python3 - story3.gguf <<'EOF' || fail "without --process-output, output.weight was collected or the chunk count is wrong"
import struct, sys
b = open(sys.argv[1], "rb").read()
assert struct.pack("<Q", 21) + b"output.weight.in_sum2" not in b and b"blk.4.ffn_down.weight.in_sum2" in b
i = b.index(b"imatrix.chunk_count") + len("imatrix.chunk_count") + 4
assert int.from_bytes(b[i:i + 4], "little") == 3
EOF

# 3. slm's matrix quantizes like llama's: the same type for every tensor, and all but a few blocks
#    the same (measured 99.3% on smollm2-135m; here on tiny256-smollm2 Q4_K_M)
"$SLM_BIN" quantize "$tiny" q-slm.gguf Q4_K_M --imatrix tiny.imatrix 2>/dev/null
"$SLM_BIN" quantize "$tiny" q-llama.gguf Q4_K_M --imatrix "$data/quantize/tiny256-smollm2.imatrix" 2>/dev/null
"$SLM_BIN" quantize "$tiny" q-none.gguf Q4_K_M 2>/dev/null
"$SLM_BIN" quantize "$tiny" q-dat.gguf Q4_K_M --imatrix tiny.dat 2>/dev/null || fail "slm's .dat was not read back"
[ "$("$SLM_BIN" quantize "$tiny" Q4_K_M --imatrix tiny.imatrix --dry-run | cut -f3)" = \
  "$("$SLM_BIN" quantize "$tiny" Q4_K_M --imatrix "$data/quantize/tiny256-smollm2.imatrix" --dry-run | cut -f3)" ] ||
  fail "the per-tensor types differ between slm's and llama's matrix"
python3 - q-slm.gguf q-llama.gguf q-none.gguf <<'EOF' || fail "quantized with slm's matrix, too many bytes differ from llama's"
import struct, sys
def tensor_data(path): # the bytes after the header (the keys before them differ in length)
    b = open(path, "rb").read(); p = [8]
    def u32():
        p[0] += 4; return struct.unpack_from("<I", b, p[0] - 4)[0]
    def u64():
        p[0] += 8; return struct.unpack_from("<Q", b, p[0] - 8)[0]
    def skip(t):
        if t == 8:
            n = u64(); p[0] += n
        elif t == 9:
            at = u32(); n = u64()
            for _ in range(n): skip(at)
        else: p[0] += {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}[t]
    nt = u64(); nkv = u64()
    for _ in range(nkv): skip(8); skip(u32())
    for _ in range(nt):
        skip(8); nd = u32(); p[0] += 8 * nd + 12
    return b[(p[0] + 31) // 32 * 32:]
a, b, c = (tensor_data(p) for p in sys.argv[1:4])
assert len(a) == len(b) == len(c)
diff_ab = sum(x != y for x, y in zip(a, b)); diff_bc = sum(x != y for x, y in zip(b, c))
print("Q4_K_M: slm's matrix vs llama's: %d bytes differ; no matrix vs llama's: %d" % (diff_ab, diff_bc), file=sys.stderr)
assert diff_ab * 50 < diff_bc and diff_ab < len(a) // 1000
EOF

# 4. hostile inputs: one error line, exit 1, no output file and no temporary
expect_error() { # expect_error PATTERN args...
  local pattern=$1; shift
  if "$SLM_BIN" imatrix "$@" > out.txt 2> err.txt; then fail "accepted: $*"; fi
  [ "$(grep -vc '^slm imatrix: note' err.txt)" -eq 1 ] || { cat err.txt >&2; fail "not one error line: $*"; }
  grep -q -- "$pattern" err.txt || { cat err.txt >&2; fail "error does not say '$pattern': $*"; }
  [ ! -e bad.gguf ] && [ ! -e bad.gguf.tmp ] || fail "left a file behind: $*"
}
head -c 400 imtext.txt > short.txt
expect_error "at least 256" "$tiny" -f short.txt -c 128 -o bad.gguf
expect_error "no text" "$tiny" -o bad.gguf
expect_error "gguf or dat" "$tiny" -f imtext.txt --output-format json -o bad.gguf
expect_error "too small" "$tiny" -f imtext.txt -c 8 -o bad.gguf
expect_error "cannot open\|No such file" "$tiny" -f absent.txt -o bad.gguf
printf 'Once upon\0 a time' > nul.txt
expect_error "NUL byte" "$tiny" -f nul.txt -o bad.gguf
expect_error "unknown option" "$tiny" -f imtext.txt --bogus -o bad.gguf
if [ -f "$models_dir/bge-small-f16.gguf" ]; then
  expect_error "encoder-only" "$models_dir/bge-small-f16.gguf" -f imtext.txt -c 64 -o bad.gguf
fi
cp "$tiny" model-copy.gguf
if "$SLM_BIN" imatrix model-copy.gguf -f imtext.txt -c 64 -o model-copy.gguf 2> err.txt; then fail "overwrote the model"; fi
grep -q "would overwrite the model" err.txt && cmp -s model-copy.gguf "$tiny" || fail "the model was not protected: $(cat err.txt)"
if "$SLM_BIN" imatrix "$tiny" -f imtext.txt -c 64 -o ./imtext.txt 2> err.txt; then fail "overwrote the text"; fi
grep -q "would overwrite the text" err.txt || fail "the text was not protected: $(cat err.txt)"
expect_error "missing/bad.gguf" "$tiny" -f imtext.txt -c 64 --chunks 2 --no-ppl -o missing/bad.gguf
[ ! -e missing ] || fail "created a directory"
echo "imatrix: ok"
