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
