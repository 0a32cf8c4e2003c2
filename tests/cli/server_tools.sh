#!/usr/bin/env bash
# Tool calling: slm serve with stories260K (and tiny-smollm2 when the synthetic test models exist)
# driven by the official `openai` and `ollama` npm clients (tests/npm/tools.test.mjs), then
# scripts/tool_call_check.py: tool schemas x seeds at temperature 1, every emitted call must parse
# and validate (2 seeds here to stay fast; run it by hand with --seeds 5 for the full 20 x 5).
set -euo pipefail
. "$SLM_SRC/tests/npm/server_lib.sh"
srv_require_node
srv_require_curl
srv_npm_install
export SLM_KEY="test-key-$$"
models_dir="${SLM_TEST_MODELS:-$SLM_BUILD/testdata}"
smollm="$models_dir/tiny-smollm2-f32.gguf"
extra=()
if [ -f "$smollm" ]; then
  extra=(--model "$smollm")
  export SLM_TOOLS_SMOLLM=1
else
  echo "server_tools: $smollm absent (scripts/gen-test-models.sh writes it); testing stories260K only" >&2
fi
srv_start --api-key "$SLM_KEY" -np 4 --quiet "${extra[@]}"
node --test --test-concurrency=1 "$SLM_NPM_DIR/tools.test.mjs"
srv_stop
if python3 -c "import jsonschema" 2>/dev/null; then
  check_models=("$(srv_model_path)")
  [ -f "$smollm" ] && check_models+=("$smollm")
  python3 "$SLM_SRC/scripts/tool_call_check.py" "$SLM_BIN" "${check_models[@]}" --seeds 2
else
  echo "server_tools: python3 jsonschema absent; scripts/tool_call_check.py skipped" >&2
fi
