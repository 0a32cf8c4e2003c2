#!/usr/bin/env bash
# Several models in one server (one engine): `slm serve --model A --model B` lists both in
# /v1/models, /api/tags and /api/ps, each request is answered by the model it names (the greedy
# text equals `slm run` of that model), an unknown model is a 404 naming the served ones, and the
# same file twice is refused at start-up. Also: every response carries an x-request-id.
set -euo pipefail
. "$SLM_SRC/tests/npm/server_lib.sh"
srv_require_curl
set +e
pass=0
fail=0
check() { if [ "$2" = 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1" >&2; fi; }

data="${SLM_TEST_DATA:-$SLM_SRC/../shared}"
second="$data/models/llama-2-tiny-random.gguf"
[ -f "$second" ] || srv_skip "no $second"
models_dir="${SLM_TEST_MODELS:-$SLM_SRC/build/testdata}"
embedder="$models_dir/bge-small-q8_0.gguf" # an encoder-only embedding model (scripts/gen-test-models.sh)
[ -f "$embedder" ] || srv_skip "no $embedder (scripts/gen-test-models.sh)"
srv_start --model "$second" --model "$embedder" -np 2 --quiet
first=$(basename "$SLM_MODEL_PATH" .gguf)

models=$(curl -s "$SLM_URL/v1/models" | python3 -c 'import json,sys; print(" ".join(m["id"] for m in json.load(sys.stdin)["data"]))')
[ "$models" = "$first llama-2-tiny-random bge-small-q8_0" ]; check "/v1/models lists all three ($models)" $?
tags=$(curl -s "$SLM_URL/api/tags" | python3 -c 'import json,sys; print(" ".join(m["name"] for m in json.load(sys.stdin)["models"]))')
[ "$tags" = "$first:latest llama-2-tiny-random:latest bge-small-q8_0:latest" ]; check "/api/tags lists all three ($tags)" $?
ps=$(curl -s "$SLM_URL/api/ps" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["models"]))')
[ "$ps" = 3 ]; check "/api/ps lists all three ($ps)" $?
curl -s "$SLM_URL/v1/models/llama-2-tiny-random" | grep -q '"id":"llama-2-tiny-random"'; check "/v1/models/{id} of the second" $?

# each model answers its own requests, exactly as `slm run` of that model
for m in "$SLM_MODEL_PATH" "$second"; do
  id=$(basename "$m" .gguf)
  want=$("$SLM_BIN" run "$m" -p "Once upon a time" -n 12 --temp 0 --ignore-eos -t 1 2>/dev/null)
  got=$(curl -s "$SLM_URL/v1/completions" -H 'Content-Type: application/json' \
    -d "{\"model\":\"$id\",\"prompt\":\"Once upon a time\",\"max_tokens\":12,\"temperature\":0,\"ignore_eos\":true}" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["model"]); print(d["choices"][0]["text"], end="")')
  [ "$got" = "$id"$'\n'"$want" ]; check "completion by $id equals slm run (got [$got], want [$id / $want])" $?
done
# both at once: two requests to two models in flight together
curl -s "$SLM_URL/v1/completions" -H 'Content-Type: application/json' \
  -d '{"model":"llama-2-tiny-random","prompt":"a","max_tokens":64,"ignore_eos":true}' -o "$SRV_TMP/a" &
pa=$!
curl -s "$SLM_URL/v1/completions" -H 'Content-Type: application/json' \
  -d "{\"model\":\"$first\",\"prompt\":\"a\",\"max_tokens\":64,\"ignore_eos\":true}" -o "$SRV_TMP/b" &
pb=$!
wait $pa $pb # not plain wait: the server runs in the background too
grep -q '"completion_tokens":64' "$SRV_TMP/a" && grep -q '"completion_tokens":64' "$SRV_TMP/b"; check "two models served concurrently" $?

# the embedding model embeds (many inputs in one request), and refuses to generate or classify
code=$(curl -s -o "$SRV_TMP/body" -w '%{http_code}' "$SLM_URL/v1/embeddings" -H 'Content-Type: application/json' \
  -d '{"model":"bge-small-q8_0","input":["one","two words","three words here","four","five","six","seven"]}')
dims=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(len(d["data"]), len(d["data"][0]["embedding"]), d["model"])' "$SRV_TMP/body" 2>/dev/null)
[ "$code" = 200 ] && [ "$dims" = "7 384 bge-small-q8_0" ]; check "embeddings from the embedding model ($code, $dims)" $?
for route in /v1/chat/completions /api/chat; do
  code=$(curl -s -o "$SRV_TMP/body" -w '%{http_code}' "$SLM_URL$route" -H 'Content-Type: application/json' \
    -d '{"model":"bge-small-q8_0","messages":[{"role":"user","content":"hi"}],"stream":false}')
  [ "$code" = 400 ] && grep -q "embedding model" "$SRV_TMP/body"; check "$route on the embedding model: 400 ($code)" $?
done
code=$(curl -s -o "$SRV_TMP/body" -w '%{http_code}' "$SLM_URL/v1/classify" -H 'Content-Type: application/json' \
  -d '{"model":"bge-small-q8_0","input":"x","labels":["a","b"]}')
[ "$code" = 400 ] && grep -q "model_not_generative" "$SRV_TMP/body"; check "/v1/classify on the embedding model: 400 ($code)" $?

code=$(curl -s -o "$SRV_TMP/body" -w '%{http_code}' "$SLM_URL/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"model":"nope","messages":[{"role":"user","content":"hi"}]}')
[ "$code" = 404 ] && grep -q "llama-2-tiny-random" "$SRV_TMP/body"; check "unknown model: 404 naming the served ones ($code)" $?
curl -s -D "$SRV_TMP/h" -o /dev/null "$SLM_URL/v1/models"
grep -qi '^x-request-id: req_[0-9a-f]\{16\}' "$SRV_TMP/h"; check "x-request-id header" $?
srv_stop 2>/dev/null || true

out=$("$SLM_BIN" serve --model "$second" --model "$second" --port 0 2>&1); rc=$?
[ $rc != 0 ] && grep -q "given twice" <<<"$out"; check "the same model twice is refused ($out)" $?

echo "server_models: $pass passed, $fail failed"
[ "$fail" = 0 ]
