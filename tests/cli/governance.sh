#!/usr/bin/env bash
# Governance through the gate, over HTTP with curl: keys from the state store (401 missing /
# unknown / revoked, 403 out of scope, 429 rpm with Retry-After, 429 insufficient_quota once the
# budget is spent), the admin API (list, create, revoke; 403 for a non-admin key), the PII policy
# (block: 400 naming the types; mask: placeholders reach the model, never the audit log), and the
# audit log: one record per call, carrying the x-request-id the response carried, verified.
set -euo pipefail
. "$SLM_SRC/tests/npm/server_lib.sh"
srv_require_curl
set +e
pass=0
fail=0
check() { if [ "$2" = 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1" >&2; fi; }

D="$SRV_TMP/state"
model=stories260K
admin=$("$SLM_BIN" keys create --name ops --admin --data-dir "$D" 2>/dev/null)
user=$("$SLM_BIN" keys create --name app --models "$model" --rpm 3 --data-dir "$D" 2>/dev/null)
other=$("$SLM_BIN" keys create --name other --models some-other-model --data-dir "$D" 2>/dev/null)
budget=$("$SLM_BIN" keys create --name payg --budget 0.001/day --data-dir "$D" 2>/dev/null)
blocker=$("$SLM_BIN" keys create --name strict --pii block --data-dir "$D" 2>/dev/null)
masker=$("$SLM_BIN" keys create --name masked --pii mask --data-dir "$D" 2>/dev/null)
[ "${#admin}" = 48 ] && [ "${admin:0:4}" = slm- ]; check "keys create prints a 48-character secret" $?
grep -qF "$admin" "$D/state.db"; [ $? != 0 ]; check "the secret itself is not stored" $?

# 1000 USD per 1M tokens: a dozen tokens cost more than the 0.001 USD budget
srv_start --data-dir "$D" --price "$model=1000,1000" --quiet

post() { # post KEY PATH BODY -> prints the status; body in $SRV_TMP/body, headers in $SRV_TMP/headers
  local auth=()
  [ -n "$1" ] && auth=(-H "Authorization: Bearer $1")
  curl -s -D "$SRV_TMP/headers" -o "$SRV_TMP/body" -w '%{http_code}' "${auth[@]}" -H 'Content-Type: application/json' \
    "$SLM_URL$2" -d "$3"
}
chat='{"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":4,"temperature":0}'

[ "$(post "" /v1/chat/completions "$chat")" = 401 ]; check "no key: 401" $?
[ "$(post "slm-not-a-key" /v1/chat/completions "$chat")" = 401 ]; check "unknown key: 401" $?
grep -q '"code":"invalid_api_key"' "$SRV_TMP/body"; check "401 code invalid_api_key" $?
[ "$(curl -s -o /dev/null -w '%{http_code}' "$SLM_URL/health")" = 200 ]; check "/health stays public" $?

[ "$(post "$user" /v1/chat/completions "$chat")" = 200 ]; check "scoped key on its model: 200" $?
rid=$(grep -i '^x-request-id:' "$SRV_TMP/headers" | tr -d '\r' | awk '{print $2}')
[ -n "$rid" ]; check "the response carries x-request-id" $?
grep -qi '^x-slm-route: local' "$SRV_TMP/headers"; check "the response says x-slm-route: local" $?
[ "$(post "$other" /v1/chat/completions "$chat")" = 403 ]; check "model outside the key's scope: 403" $?
grep -q "some-other-model" "$SRV_TMP/body" && grep -q '"code":"model_not_allowed"' "$SRV_TMP/body"; check "403 names the scope" $?

# rpm 3: the first request above counted; two more pass, the fourth is refused with Retry-After
post "$user" /v1/chat/completions "$chat" >/dev/null
post "$user" /v1/chat/completions "$chat" >/dev/null
[ "$(post "$user" /v1/chat/completions "$chat")" = 429 ]; check "over rpm: 429" $?
grep -q '"code":"rate_limit_exceeded"' "$SRV_TMP/body"; check "429 code rate_limit_exceeded" $?
ra=$(grep -i '^retry-after:' "$SRV_TMP/headers" | tr -d '\r' | awk '{print $2}')
[ -n "$ra" ] && [ "$ra" -ge 1 ] && [ "$ra" -le 60 ]; check "429 carries Retry-After in [1, 60] ($ra)" $?

# budget: the first call spends more than the budget; the next is refused
[ "$(post "$budget" /v1/chat/completions "$chat")" = 200 ]; check "budgeted key, first call: 200" $?
[ "$(post "$budget" /v1/chat/completions "$chat")" = 429 ]; check "budget spent: 429" $?
grep -q '"type":"insufficient_quota"' "$SRV_TMP/body" && grep -q '"code":"insufficient_quota"' "$SRV_TMP/body"
check "429 insufficient_quota in OpenAI's shape" $?

# PII policy: block names the types; mask sends placeholders to the model
pii='{"messages":[{"role":"user","content":"Mail jane.doe@mailbox.org or call +1 415 555 0134"}],"max_tokens":2}'
[ "$(post "$blocker" /v1/chat/completions "$pii")" = 400 ]; check "pii block: 400" $?
grep -q '"code":"pii_blocked"' "$SRV_TMP/body" && grep -q 'EMAIL' "$SRV_TMP/body"; check "400 names EMAIL" $?
[ "$(post "$masker" /v1/chat/completions "$pii")" = 200 ]; check "pii mask: 200" $?
mask_rid=$(grep -i '^x-request-id:' "$SRV_TMP/headers" | tr -d '\r' | awk '{print $2}')
# embedding inputs pass the same guard: blocked, or embedded with placeholders (the vector of the
# masked text itself), strings and token ids mixed in one request (Ollama's /api/embed too)
emb='{"input":["Mail jane.doe@mailbox.org today",[1,2,3]]}'
[ "$(post "$blocker" /v1/embeddings "$emb")" = 400 ] && grep -q '"code":"pii_blocked"' "$SRV_TMP/body"; check "pii block: embeddings 400" $?
[ "$(post "$blocker" /api/embed '{"input":"call +1 415 555 0134"}')" = 400 ]; check "pii block: /api/embed 400" $?
[ "$(post "$masker" /v1/embeddings "$emb")" = 200 ]; check "pii mask: embeddings 200" $?
cp "$SRV_TMP/body" "$SRV_TMP/emb_masked"
[ "$(post "$admin" /v1/embeddings '{"input":["Mail [EMAIL_1] today",[1,2,3]]}')" = 200 ]; check "embeddings of the masked text" $?
python3 -c '
import json, sys
a = [d["embedding"] for d in json.load(open(sys.argv[1]))["data"]]
b = [d["embedding"] for d in json.load(open(sys.argv[2]))["data"]]
assert len(a) == len(b) == 2 and all(max(abs(x - y) for x, y in zip(u, v)) < 1e-6 for u, v in zip(a, b))' \
  "$SRV_TMP/emb_masked" "$SRV_TMP/body"; check "masked input embeds as its placeholder text" $?

# admin API
[ "$(curl -s -o "$SRV_TMP/body" -w '%{http_code}' -H "Authorization: Bearer $masker" "$SLM_URL/v1/keys")" = 403 ]
check "non-admin key on /v1/keys: 403" $?
[ "$(curl -s -o "$SRV_TMP/body" -w '%{http_code}' -H "Authorization: Bearer $admin" "$SLM_URL/v1/keys")" = 200 ]
check "admin lists keys: 200" $?
names=$(python3 -c 'import json,sys; print(" ".join(k["name"] for k in json.load(open(sys.argv[1]))["data"]))' "$SRV_TMP/body")
[ "$names" = "ops app other payg strict masked" ]; check "the list names every key ($names)" $?
grep -q "$user" "$SRV_TMP/body"; [ $? != 0 ]; check "the list holds no secret" $?
[ "$(post "$admin" /v1/keys '{"name":"late","models":["stories260K"],"rpm":5}')" = 201 ]; check "admin creates a key: 201" $?
late=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["key"])' "$SRV_TMP/body")
[ "$(post "$late" /v1/chat/completions "$chat")" = 200 ]; check "the new key works at once" $?
[ "$(post "$admin" /v1/keys '{"name":"late"}')" = 409 ]; check "same name again: 409" $?
[ "$(post "$admin" /v1/keys '{"name":"x","colour":"red"}')" = 400 ]; check "unknown field: 400" $?
[ "$(curl -s -o /dev/null -w '%{http_code}' -X DELETE -H "Authorization: Bearer $admin" "$SLM_URL/v1/keys/late")" = 200 ]
check "admin revokes: 200" $?
[ "$(post "$late" /v1/chat/completions "$chat")" = 401 ]; check "revoked key: 401 at once" $?
"$SLM_BIN" keys revoke other --data-dir "$D" 2>/dev/null
[ "$(post "$other" /v1/chat/completions "$chat")" = 401 ]; check "revoked from the CLI while serving: 401" $?
[ "$(curl -s -o "$SRV_TMP/body" -w '%{http_code}' -H "Authorization: Bearer $admin" "$SLM_URL/v1/ledger/summary?by=key")" = 200 ]
check "ledger summary: 200" $?
python3 - "$SRV_TMP/body" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["requests"] >= 6 and d["local_share"] == 1.0, d
assert d["groups"]["payg"]["requests"] == 1 and d["groups"]["payg"]["cost"] > 0.001, d
EOF
check "ledger counts the calls and the budgeted key's cost" $?

curl -s -H "Authorization: Bearer $admin" "$SLM_URL/metrics" >"$SRV_TMP/metrics"
python3 - "$SRV_TMP/metrics" <<'EOF'
import re, sys
m = dict(re.findall(r'^(slm_[a-z_]+(?:\{[^}]*\})?) (\S+)$', open(sys.argv[1]).read(), re.M))
assert float(m['slm_route_calls_total{route="local"}']) >= 6, m
assert float(m['slm_route_calls_total{route="upstream"}']) == 0
assert float(m["slm_cost_usd_total"]) > 0.001
assert float(m['slm_route_tokens_total{route="local",kind="completion"}']) >= 20
EOF
check "Prometheus counters of routes, tokens and spend" $?

srv_stop
"$SLM_BIN" audit verify --data-dir "$D" >"$SRV_TMP/verify" 2>&1; check "audit verify passes ($(cat "$SRV_TMP/verify"))" $?
"$SLM_BIN" audit query --json --data-dir "$D" >"$SRV_TMP/audit.jsonl"
python3 - "$SRV_TMP/audit.jsonl" "$rid" "$mask_rid" <<'EOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
by_id = {r.get("request_id"): r for r in recs}
r = by_id[sys.argv[2]]
assert r["key"] == "app" and r["status"] == 200 and r["route"] == "local" and r["completion_tokens"] == 4, r
assert any(x.get("status") == 401 for x in recs), "refused calls are recorded too"
assert any(x.get("status") == 429 and x.get("error") == "insufficient_quota" for x in recs)
m = by_id[sys.argv[3]]
assert m["pii"]["action"] == "masked" and m["pii"]["found"]["EMAIL"] == 1, m
text = open(sys.argv[1]).read()
assert "jane.doe@mailbox.org" not in text, "personal data reached the audit log"
for x in recs:
    assert "slm-" not in json.dumps(x.get("key", "")), "a secret in the audit log"
EOF
check "audit records: request ids, statuses, PII decisions, no personal data" $?

echo "governance: $pass passed, $fail failed"
[ "$fail" = 0 ]
