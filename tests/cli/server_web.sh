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
# the page runs under a policy that allows only its own inline script and style (by hash), talks only
# to this server and cannot be framed; the browser test below fails if the policy blocks the page
for path in / /dashboard; do
  h=$(curl -s -D - -o /dev/null "$SLM_URL$path")
  csp=$(printf '%s' "$h" | tr -d '\r' | sed -n 's/^[Cc]ontent-[Ss]ecurity-[Pp]olicy: //p')
  case "$csp" in "default-src 'none'; script-src 'sha256-"*"connect-src 'self';"*"frame-ancestors 'none'") ;;
    *) echo "FAIL: $path Content-Security-Policy: '$csp'" >&2; exit 1 ;; esac
  printf '%s' "$h" | grep -qi '^x-frame-options: DENY' || { echo "FAIL: $path can be framed" >&2; exit 1; }
done
node --test "$SLM_NPM_DIR/web.test.mjs"
srv_stop
