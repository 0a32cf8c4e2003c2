#!/usr/bin/env bash
# The chat page of slm serve in headless Chromium via playwright-core (tests/npm/web.test.mjs).
set -euo pipefail
. "$SLM_SRC/tests/npm/server_lib.sh"
srv_require_node
srv_require_curl
export SLM_CHROMIUM=${SLM_CHROMIUM:-/usr/bin/chromium}
[ -x "$SLM_CHROMIUM" ] || srv_skip "chromium is not installed at $SLM_CHROMIUM (scripts/install-deps.sh --test installs it)"
srv_npm_install
export SLM_KEY="web-key-$$"
srv_start --api-key "$SLM_KEY" -np 2 --quiet
node --test "$SLM_NPM_DIR/web.test.mjs"
srv_stop
