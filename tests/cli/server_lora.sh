#!/usr/bin/env bash
# LoRA adapters in `slm serve`: two adapters (--lora, ids 0 and 1) on stories260K; requests with
# different adapters sent at the same time (so they share forward passes) must give the same greedy
# text as `slm run --lora` alone; llama-server's "lora" field, vLLM's "model": "base:adapter",
# GET/POST /lora-adapters (default scales), hot load and unload over /v1/lora/adapters; unknown
# adapters are 400s naming the field, and the server keeps serving.
set -euo pipefail
. "$SLM_SRC/tests/npm/server_lib.sh"
srv_require_curl
command -v python3 >/dev/null || srv_skip "python3 absent"
model=$(srv_model_path)
shared=$(dirname "$(dirname "$model")")
synth="$shared/tools/synth_gguf.py"
[ -f "$synth" ] || srv_skip "$synth absent"
A="$SRV_TMP/story-a.gguf" B="$SRV_TMP/story-b.gguf"
python3 "$synth" --adapter-for "$model" --rank 4 --alpha 8 --targets q,v --seed 1 --lora-rel 0.5 -o "$A" 2>/dev/null
python3 "$synth" --adapter-for "$model" --rank 8 --alpha 8 --targets q,k,v,o,gate,up,down --seed 2 --lora-rel 0.5 -o "$B" 2>/dev/null
prompts=("Once upon a time" "The little dog" "Lily went to the park" "One day, Tom")
run_ref() { # prompt [--lora ...]: the greedy text of slm run alone
  local p=$1; shift
  "$SLM_BIN" run "$model" -p "$p" -n 24 --temp 0 "$@" 2>/dev/null
}
# the references: each prompt under base, A, B and A at 0.5
declare -A ref
for i in 0 1 2 3; do
  ref[base,$i]=$(run_ref "${prompts[$i]}")
  ref[a,$i]=$(run_ref "${prompts[$i]}" --lora "$A")
  ref[b,$i]=$(run_ref "${prompts[$i]}" --lora "$B")
  ref[a5,$i]=$(run_ref "${prompts[$i]}" --lora "$A:0.5")
done
ref[ab,2]=$(run_ref "${prompts[2]}" --lora "$A" --lora "$B")
[ "${ref[a,0]}" != "${ref[base,0]}" ] || { echo "FAIL: adapter A does not change the output" >&2; exit 1; }
[ "${ref[b,0]}" != "${ref[base,0]}" ] || { echo "FAIL: adapter B does not change the output" >&2; exit 1; }

srv_start --no-data-dir -np 8 --lora "$A:0" --lora "$B:0"
export SRV_PROMPTS="$(printf '%s\n' "${prompts[@]}")"
for k in "${!ref[@]}"; do export "REF_${k/,/_}=${ref[$k]}"; done
python3 - "$SLM_URL" "$A" <<'EOF'
import json, os, sys, threading, urllib.request, urllib.error
url, path_a = sys.argv[1], sys.argv[2]
prompts = os.environ["SRV_PROMPTS"].split("\n")
ref = lambda which, i: os.environ["REF_%s_%d" % (which, i)]
fails = []
def check(cond, what):
    if not cond:
        fails.append(what)
        print("FAIL:", what, file=sys.stderr)
def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
def complete(i, **extra):
    body = {"model": "stories260K", "prompt": prompts[i], "max_tokens": 24, "temperature": 0}
    body.update(extra)
    st, out = call("POST", "/v1/completions", body)
    return st, (out["choices"][0]["text"] if st == 200 else out)

# 1. concurrent requests, each with its own adapter set, batched together
cases = [(0, "a", [{"id": 0, "scale": 1}]), (1, "b", [{"id": 1, "scale": 1.0}]), (2, "base", None),
         (3, "a5", [{"id": 0, "scale": 0.5}]), (0, "b", [{"id": 1}]), (1, "base", []), (2, "a", [{"id": 0}]),
         (3, "b", [{"id": 1, "scale": 1}, {"id": 0, "scale": 0}])]
results = [None] * len(cases)
def worker(k):
    i, which, lora = cases[k]
    results[k] = complete(i, **({} if lora is None else {"lora": lora}))
threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(cases))]
for t in threads: t.start()
for t in threads: t.join()
for k, (i, which, lora) in enumerate(cases):
    st, text = results[k]
    check(st == 200 and text == ref(which, i), "concurrent %d (prompt %d, %s): %r vs slm run %r" % (k, i, which, text, ref(which, i)))

# 2. vLLM naming: the adapter as the model
st, text = complete(1, model="stories260K:story-a")
check(st == 200 and text == ref("a", 1), "model base:adapter: %s %r" % (st, text))
st, text = complete(1, model="story-b")
check(st == 200 and text == ref("b", 1), "model adapter name alone: %s %r" % (st, text))

# n > 1: every choice applies the request's adapters
st, out = call("POST", "/v1/completions", {"model": "stories260K", "prompt": prompts[0], "max_tokens": 24,
                                           "temperature": 0, "n": 2, "lora": [{"id": 0}]})
check(st == 200 and [c["text"] for c in out["choices"]] == [ref("a", 0)] * 2, "n=2 with an adapter: %s %s" % (st, out))

# 3. unknown adapters: 400 naming the field; the server keeps serving
st, out = complete(0, lora=[{"id": 7, "scale": 1}])
check(st == 400 and out["error"]["param"] == "lora", "unknown id: %s %s" % (st, out))
st, out = complete(0, lora={"id": 0})
check(st == 400 and out["error"]["param"] == "lora", "lora not an array: %s %s" % (st, out))
st, out = complete(0, lora=[{"id": 0, "scale": "big"}])
check(st == 400 and out["error"]["param"] == "lora", "bad scale: %s %s" % (st, out))
st, out = complete(0, model="stories260K:nope")
check(st == 400 and out["error"]["param"] == "model", "unknown adapter name: %s %s" % (st, out))
st, text = complete(0)
check(st == 200 and text == ref("base", 0), "after the errors: %s %r" % (st, text))

# 4. llama-server's list and default scales
st, lst = call("GET", "/lora-adapters")
check(st == 200 and [a["id"] for a in lst] == [0, 1] and lst[0]["scale"] == 0, "GET /lora-adapters: %s" % lst)
st, out = call("POST", "/lora-adapters", [{"id": 1, "scale": 1}])
check(st == 200, "POST /lora-adapters: %s %s" % (st, out))
st, text = complete(2)
check(st == 200 and text == ref("b", 2), "default scale of B: %r" % text)
st, out = call("POST", "/lora-adapters", [{"id": 9, "scale": 1}])
check(st == 400, "POST /lora-adapters unknown id: %s" % st)
st, text = complete(2)
check(st == 200 and text == ref("b", 2), "scales unchanged by the refused POST: %r" % text)
call("POST", "/lora-adapters", [])

# 5. hot load and unload
st, out = call("POST", "/v1/lora/adapters", {"name": "hot", "path": path_a})
check(st == 201 and out["id"] == 2, "hot load: %s %s" % (st, out))
st, text = complete(3, lora=[{"id": 2}])
check(st == 200 and text == ref("a", 3), "hot-loaded adapter: %r" % text)
st, out = call("POST", "/v1/lora/adapters", {"name": "hot", "path": path_a})
check(st == 409, "duplicate name: %s" % st)
st, out = call("POST", "/v1/lora/adapters", {"name": "bad", "path": os.environ.get("SLM_MODEL_PATH", "")})
check(st == 400 and "not a LoRA adapter" in out["error"]["message"], "a model file as adapter: %s %s" % (st, out))
st, out = call("DELETE", "/v1/lora/adapters/hot")
check(st == 200, "unload: %s" % st)
st, out = complete(3, lora=[{"id": 2}])
check(st == 400 and out["error"]["param"] == "lora", "unloaded id: %s %s" % (st, out))
st, out = call("DELETE", "/v1/lora/adapters/hot")
check(st == 404, "unload twice: %s" % st)
st, text = complete(3, lora=[{"id": 0}])
check(st == 200 and text == ref("a", 3), "after unload, adapter 0 still: %r" % text)

# 6. the same "lora" field on Ollama's /api/generate and /api/chat
def ollama(path, body):
    return call("POST", path, dict(body, model="stories260K", stream=False, options={"temperature": 0, "num_predict": 24, "repeat_penalty": 1.0}))
st, out = ollama("/api/generate", {"prompt": prompts[1], "raw": True, "lora": [{"id": 1, "scale": 1}]})
check(st == 200 and out["response"] == ref("b", 1), "/api/generate with lora: %s %r vs %r" % (st, out, ref("b", 1)))
st, out = ollama("/api/generate", {"prompt": prompts[1], "raw": True})
check(st == 200 and out["response"] == ref("base", 1), "/api/generate without lora: %s %r" % (st, out))
st, out = ollama("/api/generate", {"prompt": prompts[1], "raw": True, "lora": [{"id": 42}]})
check(st == 400 and "lora" in json.dumps(out), "/api/generate unknown lora id: %s %s" % (st, out))
msgs = [{"role": "user", "content": prompts[2]}]
st, with_a = ollama("/api/chat", {"messages": msgs, "lora": [{"id": 0}]})
st2, without = ollama("/api/chat", {"messages": msgs})
st3, with_a2 = ollama("/api/chat", {"messages": msgs, "lora": [{"id": 0, "scale": 1.0}]})
check(st == st2 == st3 == 200 and with_a["message"]["content"] != without["message"]["content"] and
      with_a["message"]["content"] == with_a2["message"]["content"], "/api/chat with lora: %s %s %s" % (with_a, without, with_a2))

# 7. /v1/models lists each adapter as base:adapter with its base as parent
st, out = call("GET", "/v1/models")
ids = {m["id"]: m for m in out["data"]} if st == 200 else {}
check("stories260K:story-a" in ids and ids["stories260K:story-a"].get("parent") == "stories260K" and
      ids["stories260K:story-a"]["meta"]["kind"] == "lora" and "stories260K:story-b" in ids, "/v1/models: %s" % out)
sys.exit(1 if fails else 0)
EOF
srv_stop

# adapters in the model store: hot load by store name; Ollama's /api/create "adapters" (an uploaded
# adapter blob on a base from the store) makes a model whose requests apply the adapter
D="$SRV_TMP/store"
"$SLM_BIN" import "$model" --name stories --data-dir "$D" 2>/dev/null
"$SLM_BIN" import "$A" --name story-style --data-dir "$D" 2>/dev/null
srv_start --data-dir "$D" -np 4
ADAPTER_A="$A" python3 - "$SLM_URL" "$B" <<'EOF'
import hashlib, json, os, sys, urllib.request, urllib.error
url, path_b = sys.argv[1], sys.argv[2]
prompts = os.environ["SRV_PROMPTS"].split("\n")
ref = lambda which, i: os.environ["REF_%s_%d" % (which, i)]
fails = []
def check(cond, what):
    if not cond:
        fails.append(what)
        print("FAIL:", what, file=sys.stderr)
def call(method, path, body=None, raw=None):
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            text = r.read()
            return r.status, json.loads(text) if text.strip() else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
def complete(i, model, **extra):
    st, out = call("POST", "/v1/completions", dict({"model": model, "prompt": prompts[i], "max_tokens": 24, "temperature": 0}, **extra))
    return st, (out["choices"][0]["text"] if st == 200 else out)
st, out = call("POST", "/v1/lora/adapters", {"name": "by-name", "path": "story-style", "model": "stories260K"})
check(st == 201, "hot load by store name: %s %s" % (st, out))
st, text = complete(0, "stories260K", lora=[{"id": out["id"] if st == 201 else 0}])
check(st == 200 and text == ref("a", 0), "store adapter applied: %s %r" % (st, text))
blob = open(path_b, "rb").read()
digest = "sha256:" + hashlib.sha256(blob).hexdigest()
st, _ = call("POST", "/api/blobs/" + digest, raw=blob)
check(st in (200, 201), "blob upload: %s" % st)
st, out = call("POST", "/api/create", {"model": "story-b-model", "from": "stories", "adapters": {"b.gguf": digest}, "stream": False})
check(st == 200, "create with adapters: %s %s" % (st, out))
for i in (1, 3):
    st, text = complete(i, "story-b-model")
    check(st == 200 and text == ref("b", i), "the created model applies its adapter (prompt %d): %s %r vs %r" % (i, st, text, ref("b", i)))
st, text = complete(1, "stories")
check(st == 200 and text == ref("base", 1), "the base from the store stays the base: %s %r" % (st, text))
# two adapters in one created model: both apply, every time (neither evicts the other)
blob_a = open(os.environ["ADAPTER_A"], "rb").read()
digest_a = "sha256:" + hashlib.sha256(blob_a).hexdigest()
st, _ = call("POST", "/api/blobs/" + digest_a, raw=blob_a)
st, out = call("POST", "/api/create", {"model": "story-ab", "from": "stories", "adapters": {"a.gguf": digest_a, "b.gguf": digest},
                                       "stream": False})
check(st == 200, "create with two adapters: %s %s" % (st, out))
for _ in range(2):
    st, text = complete(2, "story-ab")
    check(st == 200 and text == ref("ab", 2), "two adapters of a created model: %s %r vs %r" % (st, text, ref("ab", 2)))
st, out = call("POST", "/api/create", {"model": "bad", "from": "stories", "adapters": {"b.gguf": "sha256:" + "0" * 64}, "stream": False})
check(st == 400 and "is not on the server" in json.dumps(out), "create with a missing adapter blob: %s %s" % (st, out))
st, out = call("POST", "/api/create", {"model": "bad", "from": "stories", "adapters": ["x"], "stream": False})
check(st == 400, "adapters not an object: %s %s" % (st, out))
sys.exit(1 if fails else 0)
EOF
# each adapter of a created model loads once, however many requests use it
[ "$(grep -c "'story-ab' applies its LoRA adapter" "$SRV_TMP/server.log")" = 2 ] || { cat "$SRV_TMP/server.log" >&2; echo "FAIL: adapters reloaded" >&2; exit 1; }
"$SLM_BIN" list --data-dir "$D" | grep -q '^story-b-model:latest .* model+1 adapter ' || { "$SLM_BIN" list --data-dir "$D" >&2; echo "FAIL: list of a created model" >&2; exit 1; }
srv_stop
# a bad --lora is a start-up error, one line
rm -f "$SRV_TMP/port"
if "$SLM_BIN" serve --model "$model" --port 0 --port-file "$SRV_TMP/port" --no-data-dir --lora "$model" >"$SRV_TMP/bad.log" 2>&1 & pid=$!; then
  for _ in $(seq 100); do
    kill -0 $pid 2>/dev/null || break
    [ -s "$SRV_TMP/port" ] && curl -s -o /dev/null "http://127.0.0.1:$(cat "$SRV_TMP/port")/health" || true
    sleep 0.1
  done
  rc=0; wait $pid || rc=$?
  [ $rc -ne 0 ] && grep -q "not a LoRA adapter" "$SRV_TMP/bad.log" || { cat "$SRV_TMP/bad.log" >&2; echo "FAIL: bad --lora" >&2; exit 1; }
fi
echo "server_lora: ok"
