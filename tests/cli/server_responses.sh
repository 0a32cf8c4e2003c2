#!/usr/bin/env bash
# The OpenAI Responses API (POST /v1/responses, GET/DELETE /v1/responses/{id}) and n > 1 on chat
# and completions: slm serve with stories260K driven by the official `openai` npm client
# (tests/npm/responses.test.mjs). Two stored keys show that a key sees only its own responses.
set -euo pipefail
. "$SLM_SRC/tests/npm/server_lib.sh"
srv_require_node
srv_require_curl
srv_npm_install
srv_model_path >/dev/null # skips when the shared data is absent
data="$SRV_TMP/data"
key() { "$SLM_BIN" keys create --data-dir "$data" "$@" 2>/dev/null; }
SLM_KEY=$(key --name alice)
SLM_KEY_OTHER=$(key --name bob)
SLM_KEY_MASK=$(key --name clinic --pii mask) # an output filter on every reply
export SLM_KEY SLM_KEY_OTHER SLM_KEY_MASK
srv_start --data-dir "$data" -np 4 --quiet
node --test --test-concurrency=1 "$SLM_NPM_DIR/responses.test.mjs"
srv_stop
