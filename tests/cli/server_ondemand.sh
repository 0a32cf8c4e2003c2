#!/usr/bin/env bash
# Models on demand from the store: a request naming a stored model loads it (its greedy text equals
# `slm run` of the blob), /api/tags and /v1/models list stored models, --max-memory unloads the
# least recently used idle model to make room (never more than the bound resident, checked while
# 24 requests over three models run at once, none failing), a model larger than the bound is a 400,
# Ollama's keep_alive works: 0 unloads, "1s" expires, -1 stays, a malformed one is a 400; and a model
# created with a system prompt and parameters serves with them unless the request says otherwise.
# SLM_MODEL naming a URL is pulled into the store on first use and found there the next time.
set -euo pipefail
. "$SLM_SRC/tests/npm/server_lib.sh"
srv_require_curl
set +e
pass=0
fail=0
check() { if [ "$2" = 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1" >&2; fi; }

models_dir="${SLM_TEST_MODELS:-$SLM_SRC/build/testdata}"
for f in tiny-smollm2-q8_0 tiny-phi3-q4_0 tiny-gemma-q4_0 bge-small-q8_0; do
  [ -f "$models_dir/$f.gguf" ] || srv_skip "no $models_dir/$f.gguf (scripts/gen-test-models.sh)"
done
data="$SRV_TMP/data"
"$SLM_BIN" import "$models_dir/tiny-smollm2-q8_0.gguf" --name a --data-dir "$data" >/dev/null &&
  "$SLM_BIN" import "$models_dir/tiny-phi3-q4_0.gguf" --name b --data-dir "$data" >/dev/null &&
  "$SLM_BIN" import "$models_dir/tiny-gemma-q4_0.gguf" --name c:v1 --data-dir "$data" >/dev/null &&
  "$SLM_BIN" import "$models_dir/bge-small-q8_0.gguf" --name emb --data-dir "$data" >/dev/null
check "import four models" $?
shared="${SLM_TEST_DATA:-$SLM_SRC/../shared}"
python3 "$shared/tools/synth_gguf.py" --adapter-for tiny-smollm2 --rank 4 --alpha 8 --seed 1 -o "$SRV_TMP/ad.gguf" 2>/dev/null &&
  "$SLM_BIN" import "$SRV_TMP/ad.gguf" --name ad --data-dir "$data" >/dev/null
check "import an adapter" $?

# 20 MiB: the --model (1.8 MB) and any two of a (5.2 MB), b (11 MB), c (6 MB) fit, all three do not;
# the embedding model (37 MB) never does
bound=$((20 * 1024 * 1024))
srv_start -np 2 -c 256 --max-memory 20M --quiet
first=$(basename "$SLM_MODEL_PATH" .gguf)

tags=$(curl -s "$SLM_URL/api/tags" | python3 -c 'import json,sys; print(" ".join(m["name"] for m in json.load(sys.stdin)["models"]))')
[ "$tags" = "$first:latest a:latest b:latest c:v1 emb:latest" ]; check "/api/tags lists the stored models ($tags)" $?
ids=$(curl -s "$SLM_URL/v1/models" | python3 -c 'import json,sys; print(" ".join(m["id"] for m in json.load(sys.stdin)["data"]))')
[ "$ids" = "$first a b c:v1 emb" ]; check "/v1/models lists the stored models ($ids)" $?
ps_names() { curl -s "$SLM_URL/api/ps" | python3 -c 'import json,sys; print(" ".join(m["name"] for m in json.load(sys.stdin)["models"]))'; }
[ "$(ps_names)" = "$first:latest" ]; check "nothing loaded before the first request ($(ps_names))" $?

# each stored model answers as `slm run` of its blob does
for pair in "a tiny-smollm2-q8_0" "b tiny-phi3-q4_0" "c:v1 tiny-gemma-q4_0"; do
  set -- $pair
  want=$("$SLM_BIN" run "$models_dir/$2.gguf" -p "Once upon a time" -n 8 --temp 0 --ignore-eos -t 1 2>/dev/null)
  got=$(curl -s "$SLM_URL/v1/completions" -H 'Content-Type: application/json' \
    -d "{\"model\":\"$1\",\"prompt\":\"Once upon a time\",\"max_tokens\":8,\"temperature\":0,\"ignore_eos\":true}" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["model"]); print(d["choices"][0]["text"], end="")')
  [ "$got" = "$1"$'\n'"$want" ]; check "$1 loaded on demand answers as slm run (got [$got], want [$want])" $?
done
# a, b, c in that order: a (least recently used) made room for c
[ "$(ps_names)" = "$first:latest c:v1 b:latest" ] || [ "$(ps_names)" = "$first:latest b:latest c:v1" ]
check "LRU unloaded a for c ($(ps_names))" $?
resident() { curl -s "$SLM_URL/api/ps" | python3 -c 'import json,sys; print(sum(m["size"] for m in json.load(sys.stdin)["models"]))'; }
[ "$(resident)" -le "$bound" ]; check "resident bytes $(resident) within --max-memory $bound" $?
grep -c "loaded '.*' on demand" "$SRV_TMP/server.log" | grep -qx 3; check "three loads so far" $?

# 24 requests over three models at once: all answered, and the bound holds throughout
: >"$SRV_TMP/sizes"
(for _ in $(seq 40); do resident >>"$SRV_TMP/sizes"; sleep 0.05; done) &
sampler=$!
pids=()
for i in $(seq 24); do
  m=$(echo "a b c:v1" | cut -d' ' -f$((i % 3 + 1)))
  curl -s -o "$SRV_TMP/load.$i" -w '%{http_code}' "$SLM_URL/v1/chat/completions" -H 'Content-Type: application/json' \
    -d "{\"model\":\"$m\",\"messages\":[{\"role\":\"user\",\"content\":\"hello $i\"}],\"max_tokens\":24,\"ignore_eos\":true}" \
    >"$SRV_TMP/code.$i" &
  pids+=($!)
done
wait "${pids[@]}"
wait $sampler
ok=0
for i in $(seq 24); do
  [ "$(cat "$SRV_TMP/code.$i")" = 200 ] && grep -q '"completion_tokens":24' "$SRV_TMP/load.$i" && ok=$((ok + 1))
done
[ "$ok" = 24 ]; check "24 concurrent requests over three models all answered ($ok)" $?
max=$(sort -n "$SRV_TMP/sizes" | tail -1)
[ -n "$max" ] && [ "$max" -le "$bound" ]; check "resident bytes sampled under load stay within the bound (max $max)" $?
loads=$(grep -c "loaded '.*' on demand" "$SRV_TMP/server.log")
[ "$loads" -gt 3 ]; check "the load forced unloads and reloads ($loads loads)" $?
metrics=$(curl -s "$SLM_URL/metrics")
echo "$metrics" | grep -qx "slm_model_loads_total $loads" && echo "$metrics" | grep -qx "slm_models_max_memory_bytes $bound" &&
  [ "$(echo "$metrics" | awk '/^slm_model_unloads_total/ {print $2}')" -ge $((loads - 2)) ]
check "/metrics counts the loads and unloads ($(echo "$metrics" | grep -E '^slm_model' | tr '\n' ' '))" $?

# larger than the bound: a 400 naming it, and the server goes on
code=$(curl -s -o "$SRV_TMP/body" -w '%{http_code}' "$SLM_URL/api/embed" -d '{"model":"emb","input":"x"}')
[ "$code" = 400 ] && grep -q "more than the server's --max-memory" "$SRV_TMP/body"; check "too large for --max-memory: 400 ($code $(cat "$SRV_TMP/body"))" $?
code=$(curl -s -o /dev/null -w '%{http_code}' "$SLM_URL/v1/chat/completions" -d '{"model":"nope","messages":[{"role":"user","content":"x"}]}')
[ "$code" = 404 ]; check "unknown model: 404 ($code)" $?
code=$(curl -s -o "$SRV_TMP/body" -w '%{http_code}' "$SLM_URL/api/generate" -d '{"model":"ad","prompt":"x","stream":false}')
[ "$code" = 400 ] && grep -q "is a LoRA adapter for llama models" "$SRV_TMP/body"; check "an adapter named as the model: 400 ($code $(cat "$SRV_TMP/body"))" $?

# keep_alive
body=$(curl -s "$SLM_URL/api/generate" -d '{"model":"a","keep_alive":0}')
echo "$body" | grep -q '"done_reason":"unload"'; check "keep_alive 0 answers unload ($body)" $?
sleep 0.3
ps_names | grep -q "a:latest"; [ $? != 0 ]; check "keep_alive 0 unloaded a ($(ps_names))" $?
curl -s "$SLM_URL/api/generate" -d '{"model":"a","keep_alive":"1s"}' | grep -q '"done_reason":"load"'; check "load with keep_alive 1s" $?
ps_names | grep -q "a:latest"; check "a is resident right after ($(ps_names))" $?
sleep 1.6
ps_names | grep -q "a:latest"; [ $? != 0 ]; check "a expired after 1 s ($(ps_names))" $?
curl -s "$SLM_URL/api/chat" -d '{"model":"b","keep_alive":-1,"messages":[{"role":"user","content":"hi"}],"stream":false,"options":{"num_predict":2}}' >/dev/null
exp=$(curl -s "$SLM_URL/api/ps" | python3 -c 'import json,sys; print([m["expires_at"] for m in json.load(sys.stdin)["models"] if m["name"]=="b:latest"][0])')
[ "$exp" = "9999-12-31T23:59:59Z" ]; check "keep_alive -1 keeps b for ever ($exp)" $?
code=$(curl -s -o "$SRV_TMP/body" -w '%{http_code}' "$SLM_URL/api/generate" -d '{"model":"a","keep_alive":"5 minutes"}')
[ "$code" = 400 ] && grep -q keep_alive "$SRV_TMP/body"; check "malformed keep_alive: 400 ($code)" $?

# a model created with a system prompt and parameters serves with them (Ollama's SYSTEM and PARAMETER)
code=$(curl -s -o "$SRV_TMP/body" -w '%{http_code}' "$SLM_URL/api/create" \
  -d '{"model":"terse","from":"a","system":"You are terse.","parameters":{"num_predict":3,"temperature":0},"stream":false}')
[ "$code" = 200 ]; check "create terse from a ($code $(cat "$SRV_TMP/body"))" $?
chat() { curl -s "$SLM_URL/api/chat" -d "{\"model\":\"$1\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":false$2}" |
  python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["prompt_eval_count"], d["eval_count"])'; }
read -r plain_prompt _ <<<"$(chat a ',"options":{"num_predict":8}')"
read -r terse_prompt terse_eval <<<"$(chat terse '')"
[ "$terse_eval" = 3 ] && [ "$terse_prompt" -gt "$plain_prompt" ]
check "terse applies its system prompt and num_predict 3 (prompt $terse_prompt vs $plain_prompt, generated $terse_eval)" $?
read -r own_prompt own_eval <<<"$(curl -s "$SLM_URL/api/chat" -d '{"model":"terse","messages":[{"role":"system","content":"x"},{"role":"user","content":"hi"}],"stream":false,"options":{"num_predict":5}}' |
  python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["prompt_eval_count"], d["eval_count"])')"
[ "$own_eval" = 5 ] && [ "$own_prompt" -lt "$terse_prompt" ]
check "the request's own system message and options win ($own_prompt tokens, $own_eval generated)" $?

srv_stop; check "clean shutdown" $?

# SLM_MODEL naming a URL: pulled into the store on first use, then served from the store with the
# network gone
mkdir -p "$SRV_TMP/www"
cp "$models_dir/tiny-smollm2-q8_0.gguf" "$SRV_TMP/www/webmodel.gguf"
python3 -m http.server 0 --bind 127.0.0.1 --directory "$SRV_TMP/www" >"$SRV_TMP/http.log" 2>&1 &
web=$!
for _ in $(seq 50); do grep -qo 'port [0-9]*' "$SRV_TMP/http.log" && break; sleep 0.1; done
web_port=$(grep -o 'port [0-9]*' "$SRV_TMP/http.log" | head -1 | cut -d' ' -f2)
serve_env() { # serves SLM_MODEL=$1 once: asks for a completion by the id, prints its text
  rm -f "$SRV_TMP/port2"
  SLM_MODEL="$1" "$SLM_BIN" serve --data-dir "$data" --port 0 --port-file "$SRV_TMP/port2" -c 256 --quiet 2>>"$SRV_TMP/env.log" &
  local pid=$!
  for _ in $(seq 100); do [ -s "$SRV_TMP/port2" ] && break; sleep 0.1; done
  local url="http://127.0.0.1:$(cat "$SRV_TMP/port2" 2>/dev/null)"
  for _ in $(seq 100); do [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/health")" = 200 ] && break; sleep 0.1; done
  curl -s "$url/v1/completions" -d '{"model":"webmodel","prompt":"Once upon a time","max_tokens":6,"temperature":0,"ignore_eos":true}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["choices"][0]["text"], end="")' 2>/dev/null
  kill -TERM $pid
  wait $pid
}
want=$("$SLM_BIN" run "$models_dir/tiny-smollm2-q8_0.gguf" -p "Once upon a time" -n 6 --temp 0 --ignore-eos -t 1 2>/dev/null)
got=$(serve_env "http://127.0.0.1:$web_port/webmodel.gguf")
[ -n "$got" ] && [ "$got" = "$want" ] && grep -q "pulling http" "$SRV_TMP/env.log"
check "SLM_MODEL=URL pulls on first use and serves it ([$got] vs [$want])" $?
kill $web
wait $web 2>/dev/null
got=$(serve_env "http://127.0.0.1:$web_port/webmodel.gguf")
[ "$got" = "$want" ] && grep -q "is in the store as webmodel" "$SRV_TMP/env.log"
check "the second start finds it in the store without the network ([$got])" $?
echo "server_ondemand: $pass passed, $fail failed"
[ "$fail" = 0 ]
