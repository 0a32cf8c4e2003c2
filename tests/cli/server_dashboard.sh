#!/usr/bin/env bash
# The /dashboard page of slm serve in headless Chromium via playwright-core
# (tests/npm/dashboard.test.mjs): a server with the local story model and a mock upstream, both
# priced; the page asks for an admin key, shows the empty state, then after local and upstream
# requests the totals of GET /v1/ledger/summary, the plotted points of /v1/ledger/series, and
# hostile key/model names as plain text, under a strict Content-Security-Policy.
set -euo pipefail
. "$SLM_SRC/tests/npm/server_lib.sh"
srv_require_node
srv_require_curl
command -v python3 >/dev/null || srv_skip "python3 is not installed"
export SLM_CHROMIUM=${SLM_CHROMIUM:-/usr/bin/chromium}
[ -x "$SLM_CHROMIUM" ] || srv_skip "chromium is not installed at $SLM_CHROMIUM (scripts/install-deps.sh --test installs it)"
srv_npm_install
srv_mock_upstream
model=$(srv_model_path)
D="$SRV_TMP/state"
key() { "$SLM_BIN" keys create --data-dir "$D" "$@" 2>/dev/null; }
export KEY_ADMIN=$(key --name ops --admin)
export KEY_APP=$(key --name app)
cat >"$SRV_TMP/slm.yaml" <<YAML
models:
  local: { path: $model, price: { input: 0.1, output: 0.2 } }
upstreams:
  frontier: { url: $MOCK_URL, model: gpt-mock, price: { input: 2.5, output: 10.0 } }
YAML
srv_start --config "$SRV_TMP/slm.yaml" --data-dir "$D" --quiet
export SLM_LEDGER_DB="$D/state.db"
# the page as served is public (the data behind it is not)
code=$(curl -s -o "$SRV_TMP/page.html" -w '%{http_code}' "$SLM_URL/dashboard")
[ "$code" = 200 ] || { echo "FAIL: GET /dashboard: $code" >&2; exit 1; }
! grep -q "innerHTML\|outerHTML\|insertAdjacentHTML\|document.write\|eval(\|new Function\| on[a-z]*=" "$SRV_TMP/page.html" ||
  { echo "FAIL: the page builds markup from strings or has inline handlers" >&2; exit 1; }
! grep -Eq '(src|href)="?(https?:)?//' "$SRV_TMP/page.html" || { echo "FAIL: the page loads something from elsewhere" >&2; exit 1; }
node --test "$SLM_NPM_DIR/dashboard.test.mjs"
srv_stop
