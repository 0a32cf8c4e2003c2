#!/usr/bin/env bash
# slm serve with stories260K and an API key, driven by the official `openai` and `ollama` npm
# clients (tests/npm/api.test.mjs): content checks against `slm run`, streaming, errors.
set -euo pipefail
. "$SLM_SRC/tests/npm/server_lib.sh"
srv_require_node
srv_require_curl
srv_npm_install
export SLM_KEY="test-key-$$"
srv_start --api-key "$SLM_KEY" -np 4 --quiet
export SLM_BIN
node --test --test-concurrency=1 "$SLM_NPM_DIR/api.test.mjs"
srv_stop
