#!/usr/bin/env bash
# Ollama's model management API (/api/pull, push, create, copy, delete, blobs) through the official
# `ollama` npm client (tests/npm/ollama_models.test.mjs), against `slm serve` with a data directory
# and Debian's docker-registry on loopback (stories260K pushed to it first with `slm push`).
set -euo pipefail
. "$SLM_SRC/tests/npm/server_lib.sh"
srv_require_node
srv_require_curl
REG_BIN=$(command -v docker-registry || true)
[ -n "$REG_BIN" ] || srv_skip "docker-registry is not installed (scripts/install-deps.sh --test installs it)"
model=$(srv_model_path)
other="$(dirname "$model")/llama-2-tiny-random.gguf"
[ -f "$other" ] || srv_skip "shared test data absent: $other"
srv_npm_install

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$SRV_TMP/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $SRV_TMP/registry
http:
  addr: 127.0.0.1:$port
EOF
"$REG_BIN" serve "$SRV_TMP/registry.yml" >"$SRV_TMP/registry.log" 2>&1 &
REG_PID=$!
trap 'kill $REG_PID 2>/dev/null; srv_cleanup' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/v2/" && break; sleep 0.1; done
"$SLM_BIN" import "$model" --name stories --data-dir "$SRV_TMP/seed" 2>/dev/null
"$SLM_BIN" push stories "127.0.0.1:$port/library/stories:v1" --data-dir "$SRV_TMP/seed"

export SLM_KEY="test-key-$$" SLM_REGISTRY="127.0.0.1:$port" SLM_DATA="$SRV_TMP/data" SLM_OTHER_MODEL="$other" SLM_BIN
srv_start --api-key "$SLM_KEY" --quiet
node --test --test-concurrency=1 "$SLM_NPM_DIR/ollama_models.test.mjs"
srv_stop

# an air-gapped server refuses pulls and pushes with 403 before any connection
srv_start --api-key "$SLM_KEY" --quiet --air-gapped
code=$(curl -s -o "$SRV_TMP/out" -w '%{http_code}' -H "Authorization: Bearer $SLM_KEY" \
  -d "{\"model\":\"$SLM_REGISTRY/library/stories:v1\",\"stream\":false}" "$SLM_URL/api/pull")
[ "$code" = 403 ] && grep -q "air-gapped" "$SRV_TMP/out" || { echo "FAIL: air-gapped /api/pull answered $code: $(cat "$SRV_TMP/out")" >&2; exit 1; }
code=$(curl -s -o "$SRV_TMP/out" -w '%{http_code}' -H "Authorization: Bearer $SLM_KEY" \
  -d "{\"model\":\"$SLM_REGISTRY/library/stories:v1\"}" "$SLM_URL/api/push")
[ "$code" = 403 ] || { echo "FAIL: air-gapped /api/push answered $code: $(cat "$SRV_TMP/out")" >&2; exit 1; }
srv_stop
echo "server_ollama_models: air-gapped pull and push refused (403)"

# /api/create with "quantize" (Ollama's field; "quantization" is its older spelling): the source blob
# quantized into a new one, byte-identical to `slm quantize` (itself llama-quantize's bytes), with
# Ollama's NDJSON progress; what cannot work is a 400 before anything starts, leaving nothing behind.
qdata="$SRV_TMP/qdata"
"$SLM_BIN" import "$model" --name stories --data-dir "$qdata" 2>/dev/null          # F32, 64 wide
"$SLM_BIN" import "$other" --name tiny --data-dir "$qdata" 2>/dev/null             # F16, 8-wide rows
"$SLM_BIN" quantize "$model" "$SRV_TMP/want-q4km.gguf" Q4_K_M 2>/dev/null
"$SLM_BIN" quantize "$model" "$SRV_TMP/want-f16.gguf" F16 2>/dev/null
want_q4km="sha256:$(sha256sum < "$SRV_TMP/want-q4km.gguf" | cut -d' ' -f1)"
want_f16="sha256:$(sha256sum < "$SRV_TMP/want-f16.gguf" | cut -d' ' -f1)"
srv_start --api-key "$SLM_KEY" --quiet --data-dir "$qdata"
qfail() { echo "FAIL: /api/create quantize: $*" >&2; cat "$SRV_TMP/out" >&2; exit 1; }
create() { curl -s -o "$SRV_TMP/out" -w '%{http_code}' -H "Authorization: Bearer $SLM_KEY" -d "$1" "$SLM_URL/api/create"; }
code=$(create '{"model":"story-q","from":"stories","quantize":"q4_K_M","system":"Be brief."}')
[ "$code" = 200 ] || qfail "answered $code"
python3 - "$SRV_TMP/out" "$want_q4km" <<'PY' || qfail "the NDJSON stream is not Ollama's"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
want = sys.argv[2]
progress = [l for l in lines if l.get("digest") == "0000000000000000000"]
assert progress and all(l["status"] == "quantizing F32 model to Q4_K_M" and l["total"] == 1185376 for l in progress), lines
done = [l["completed"] for l in progress]
assert done == sorted(done) and done[-1] == 1185376, done
assert [l["status"] for l in lines[len(progress):]] == ["verifying conversion", "creating new layer " + want, "writing manifest", "success"], lines
PY
python3 - "$qdata/models/manifests/story-q/latest.json" "$want_q4km" <<'PY' || qfail "the manifest is not the quantized blob with the extras"
import json, sys
m = json.load(open(sys.argv[1]))
assert m["digest"] == sys.argv[2] and m["system"] == "Be brief." and m["size"] == 304096, m
PY
code=$(create '{"model":"story-f16:v1","from":"stories","quantization":"f16","stream":false}')
[ "$code" = 200 ] && [ "$(cat "$SRV_TMP/out")" = '{"status":"success"}' ] || qfail "stream false answered $code"
grep -q "\"digest\": \"$want_f16\"" "$qdata/models/manifests/story-f16/v1.json" || qfail "F16 blob is not slm quantize's"
expect_400() { # expect_400 PATTERN BODY
  code=$(create "$2")
  [ "$code" = 400 ] && grep -q -- "$1" "$SRV_TMP/out" || qfail "$2 answered $code, not 400 '$1'"
  python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; assert isinstance(e,str) and "\n" not in e' "$SRV_TMP/out" ||
    qfail "not Ollama's error JSON"
}
expect_400 "unsupported quantization type Q9_K" '{"model":"bad1","from":"stories","quantize":"Q9_K"}'
expect_400 "only supported for F16, BF16 and F32 models (this one is Q4_K_M)" '{"model":"bad2","from":"story-q","quantize":"q8_0"}'
expect_400 "not a multiple of" '{"model":"bad3","from":"tiny","quantize":"Q4_K_M"}'
expect_400 "" '{"model":"../bad4","from":"stories","quantize":"Q4_K_M"}'
expect_400 "" '{"model":"bad5","from":"stories","quantize":7}'
for n in bad1 bad2 bad3 bad5; do [ ! -e "$qdata/models/manifests/$n" ] || qfail "$n was stored"; done
[ -z "$(find "$qdata/models" -name '.quantize-*')" ] || qfail "a temporary file was left"
# the official ollama npm client reads the stream: progress with total/completed, then success
(cd "$SLM_NPM_DIR" && node --input-type=module -e '
import { Ollama } from "ollama";
const o = new Ollama({ host: process.env.SLM_URL, headers: { Authorization: `Bearer ${process.env.SLM_KEY}` } });
const seen = [];
for await (const p of await o.create({ model: "story-q5", from: "stories", quantize: "Q5_K_M", stream: true })) seen.push(p);
const bars = seen.filter((p) => p.status === "quantizing F32 model to Q5_K_M");
if (!bars.length || bars.at(-1).completed !== bars.at(-1).total || seen.at(-1).status !== "success")
  throw new Error(JSON.stringify(seen));
const r = await o.create({ model: "story-q5b", from: "stories", quantize: "q5_k_m", stream: false });
if (r.status !== "success") throw new Error(JSON.stringify(r));
') || qfail "the ollama npm client did not read the quantize stream"
d5=$(grep -o '"digest": "sha256:[0-9a-f]*"' "$qdata/models/manifests/story-q5/latest.json") || qfail "no story-q5 manifest"
[ "$d5" = "$(grep -o '"digest": "sha256:[0-9a-f]*"' "$qdata/models/manifests/story-q5b/latest.json")" ] ||
  qfail "the same quantization gave two blobs"
# a client that leaves mid-stream: the server stays healthy and cleans up
curl -s -m 0.05 -H "Authorization: Bearer $SLM_KEY" -d '{"model":"gone","from":"stories","quantize":"Q6_K"}' \
  "$SLM_URL/api/create" > /dev/null || true
for _ in $(seq 50); do [ -z "$(find "$qdata/models" -name '.quantize-*')" ] && break; sleep 0.1; done
[ -z "$(find "$qdata/models" -name '.quantize-*')" ] || qfail "a cancelled quantization left its file"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$SLM_URL/health")" = 200 ] || qfail "server unhealthy after a client left"
srv_stop
echo "server_ollama_models: create with quantize ok (Q4_K_M and F16 blobs = slm quantize's; 400s for bad requests)"
