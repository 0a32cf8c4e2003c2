#!/usr/bin/env bash
# Governance and routing through the official `openai` npm client (tests/npm/governance.test.mjs):
# 401, 403 (model outside the key's scope; an upstream for a local-only key), 429 (rpm, and a spent
# budget as insufficient_quota), the PII mask round trip through a mock upstream (it sees
# placeholders, the client gets its values back, streamed and not) and block. Then the air gap:
# with the same upstream configured and --air-gapped, a routed request is answered locally, the
# upstream named directly is refused, and a listener standing in for the upstream sees no connection.
set -euo pipefail
. "$SLM_SRC/tests/npm/server_lib.sh"
srv_require_node
srv_require_curl
srv_npm_install
srv_mock_upstream
model=$(srv_model_path)
D="$SRV_TMP/state"
key() { "$SLM_BIN" keys create --data-dir "$D" "$@" 2>/dev/null; }
export KEY_ADMIN=$(key --name ops --admin)
export KEY_APP=$(key --name app)
export KEY_SCOPED=$(key --name scoped --models local)
export KEY_LOCAL_ONLY=$(key --name lab --local-only)
export KEY_RPM=$(key --name batch --rpm 2)
export KEY_BUDGET=$(key --name trial --budget 0.0001/day)
export KEY_MASK=$(key --name clinic --pii mask)
export KEY_BLOCK=$(key --name bank --pii block)
export SLM_TEST_FRONTIER_KEY="frontier-secret-$$"
# a cascade router trained on the GSM8K labels with the local model's answers (../shared/router-data)
"$SLM_BIN" router train --kind cascade --data "${SLM_TEST_DATA:-$SLM_SRC/../shared}/router-data/gsm8k/gsm8k_dev.csv" \
  -o "$SRV_TMP/cascade.router" >/dev/null 2>&1 || srv_skip "no router-data to train the cascade router on"
cat >"$SRV_TMP/slm.yaml" <<YAML
models:
  local: { path: $model, price: { input: 0.0, output: 0.0 } }
upstreams:
  frontier:
    url: $MOCK_URL
    model: gpt-mock
    key_env: SLM_TEST_FRONTIER_KEY
    price: { input: 2.5, output: 10.0 }
routes:
  auto: { local: local, upstream: frontier, on_upstream_error: local }
  careful: { local: local, upstream: frontier, router: $SRV_TMP/cascade.router, cascade: { threshold: 0 } }
  thrifty: { local: local, upstream: frontier, router: $SRV_TMP/cascade.router, cascade: { threshold: 1 } }
  smart: { local: local, upstream: frontier, router: default, frontier_share: 1.0, pii: local }
  frugal: { local: local, upstream: frontier, router: default, frontier_share: 0.0 }
YAML
srv_start --config "$SRV_TMP/slm.yaml" --data-dir "$D" -c 256 --quiet
export SLM_BIN
node --test --test-concurrency=1 "$SLM_NPM_DIR/governance.test.mjs"
# an upstream stream that breaks after it started: the client gets the text so far, then an error
# event, and the response ends (never hangs); nothing is retried after the first byte
curl -s -X POST "${MOCK_URL%/v1}/control/reset" >/dev/null
curl -s "${MOCK_URL%/v1}/control/faults" -d '{"faults":["break:3"]}' >/dev/null
timeout 20 curl -sN -H "Authorization: Bearer $KEY_APP" "$SLM_URL/v1/chat/completions" \
  -d '{"model":"frontier","stream":true,"max_tokens":200,"messages":[{"role":"user","content":"tell me"}]}' >"$SRV_TMP/broken"
rc=$?
[ "$rc" = 0 ] && grep -q '"content":"Mock' "$SRV_TMP/broken" && grep -q '"error"' "$SRV_TMP/broken" ||
  { echo "FAIL: broken upstream stream (curl $rc): $(cat "$SRV_TMP/broken")" >&2; exit 1; }
[ "$(curl -s "${MOCK_URL%/v1}/control/log" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["requests"]))')" = 1 ] ||
  { echo "FAIL: a stream that broke after its first byte was retried" >&2; exit 1; }
srv_stop
"$SLM_BIN" audit verify --data-dir "$D" >/dev/null || { echo "FAIL: audit verify" >&2; exit 1; }
! grep -rq "jane.doe@mailbox.org" "$D/audit" || { echo "FAIL: personal data in the audit log" >&2; exit 1; }
! grep -rqF "$SLM_TEST_FRONTIER_KEY" "$D" "$SRV_TMP/server.log" || { echo "FAIL: the upstream key leaked" >&2; exit 1; }

# DLP on generated text (--pii-output): the upstream's reply carries an e-mail address (the mock
# echoes the prompt, sent unmasked under the detect policy); the client gets it masked, streamed or not
srv_start --config "$SRV_TMP/slm.yaml" --no-data-dir --pii-output --quiet
dlp='{"model":"frontier","messages":[{"role":"user","content":"Write to jane.doe@mailbox.org please"}],"max_tokens":200'
got=$(curl -s "$SLM_URL/v1/chat/completions" -d "$dlp}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["choices"][0]["message"]["content"])')
[ "$got" = "Mock reply to: Write to [EMAIL_1] please — ünïcødé ✓" ] || { echo "FAIL: DLP reply: $got" >&2; exit 1; }
got=$(curl -sN "$SLM_URL/v1/chat/completions" -d "$dlp,\"stream\":true}" | python3 -c '
import json, sys
out = ""
for line in sys.stdin:
    if line.startswith("data: {"):
        for ch in json.loads(line[6:])["choices"]:
            out += ch.get("delta", {}).get("content") or ""
print(out)')
[ "$got" = "Mock reply to: Write to [EMAIL_1] please — ünïcødé ✓" ] || { echo "FAIL: DLP stream: $got" >&2; exit 1; }
# a tool call's arguments are generated text too: the schema forces an e-mail address into them, and
# Ollama's client gets it masked in message.tool_calls, streamed and not (the OpenAI route likewise)
tool='"tools":[{"type":"function","function":{"name":"notify","parameters":{"type":"object","properties":{"to":{"enum":["jane.doe@mailbox.org"]}},"required":["to"],"additionalProperties":false}}}],"tool_choice":"required","parallel_tool_calls":false'
ask="{\"model\":\"local\",\"messages\":[{\"role\":\"user\",\"content\":\"Notify Jane\"}],$tool,\"options\":{\"num_predict\":200}"
args_of() { python3 -c '
import json, sys
calls = []
for line in sys.stdin:
    line = line.strip()
    if line.startswith("data: {"): line = line[6:]
    if not line.startswith("{"): continue
    o = json.loads(line)
    for c in (o.get("message") or {}).get("tool_calls") or []: calls.append(c["function"]["arguments"])
    for ch in o.get("choices") or []:
        for c in ((ch.get("message") or ch.get("delta") or {}).get("tool_calls") or []):
            a = c["function"].get("arguments")
            if a: calls.append(a)
print(json.dumps(calls, sort_keys=True))'; }
for stream in false true; do
  got=$(curl -sN "$SLM_URL/api/chat" -d "$ask,\"stream\":$stream}" | args_of)
  [ "$got" = '[{"to": "[EMAIL_1]"}]' ] || { echo "FAIL: Ollama tool arguments under --pii-output (stream $stream): $got" >&2; exit 1; }
done
oask="{\"model\":\"local\",\"messages\":[{\"role\":\"user\",\"content\":\"Notify Jane\"}],$tool,\"max_tokens\":200"
for stream in false true; do
  got=$(curl -sN "$SLM_URL/v1/chat/completions" -d "$oask,\"stream\":$stream}" | args_of)
  case "$got" in *'[EMAIL_1]'*) ;; *) echo "FAIL: OpenAI tool arguments under --pii-output (stream $stream): $got" >&2; exit 1 ;; esac
  case "$got" in *jane.doe*) echo "FAIL: the address leaked in OpenAI tool arguments (stream $stream): $got" >&2; exit 1 ;; esac
done
srv_stop

# the air gap: the upstream is a bare listener that counts connections
cat >"$SRV_TMP/listener.py" <<'PY'
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(16)
print(s.getsockname()[1], flush=True)
n = 0
while True:
    c, _ = s.accept(); n += 1
    open(sys.argv[1], "w").write(str(n)); c.close()
PY
python3 "$SRV_TMP/listener.py" "$SRV_TMP/connections" >"$SRV_TMP/listener.port" &
LISTENER=$!
trap 'kill $LISTENER $MOCK_PID 2>/dev/null; srv_cleanup' EXIT
for _ in $(seq 100); do [ -s "$SRV_TMP/listener.port" ] && break; sleep 0.05; done
cat >"$SRV_TMP/gapped.yaml" <<YAML
models:
  local: { path: $model }
upstreams:
  frontier: { url: "http://127.0.0.1:$(cat "$SRV_TMP/listener.port")/v1", model: gpt-mock }
routes:
  auto: { local: local, upstream: frontier, frontier_share: 1.0 }
YAML
srv_start --config "$SRV_TMP/gapped.yaml" --data-dir "$SRV_TMP/gapped" --air-gapped --quiet
grep -q "AIR-GAPPED" "$SRV_TMP/server.log" || { echo "FAIL: start-up does not show the air gap" >&2; exit 1; }
chat='{"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":4}'
code=$(curl -s -D "$SRV_TMP/h" -o "$SRV_TMP/b" -w '%{http_code}' "$SLM_URL/v1/chat/completions" -d "${chat/\{/\{\"model\":\"auto\",}")
[ "$code" = 200 ] && grep -qi '^x-slm-route: local' "$SRV_TMP/h" || { echo "FAIL: air-gapped auto: $code $(cat "$SRV_TMP/b")" >&2; exit 1; }
code=$(curl -s -o "$SRV_TMP/b" -w '%{http_code}' "$SLM_URL/v1/chat/completions" -d "${chat/\{/\{\"model\":\"frontier\",}")
[ "$code" = 403 ] && grep -q '"code":"air_gapped"' "$SRV_TMP/b" || { echo "FAIL: air-gapped upstream: $code $(cat "$SRV_TMP/b")" >&2; exit 1; }
sleep 0.3
[ ! -s "$SRV_TMP/connections" ] || { echo "FAIL: the upstream saw $(cat "$SRV_TMP/connections") connections" >&2; exit 1; }
srv_stop
echo "server_governance: air gap held (0 connections)"
