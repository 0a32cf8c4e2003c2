#!/usr/bin/env bash
# Hostile bodies: 3 x 500 random, type-confused and truncated JSON requests to every POST route
# (tests/npm/fuzz_requests.py). The server must answer each with a 2xx/4xx (never 5xx other than
# 503, never a dropped connection), stay up, and exit 0 on SIGTERM (LeakSanitizer-clean in ASan builds).
set -euo pipefail
. "$SLM_SRC/tests/npm/server_lib.sh"
srv_require_curl
command -v python3 >/dev/null || srv_skip "python3 is not installed"
srv_start -np 4 --quiet
port=${SLM_URL##*:}
fail=0
for seed in 1 2 3; do
  python3 "$SLM_NPM_DIR/fuzz_requests.py" "$port" 500 "$seed" || fail=1
  kill -0 "$SRV_PID" || { echo "server died" >&2; cat "$SRV_TMP/server.log" >&2; exit 1; }
done
srv_stop || { echo "server did not exit cleanly:" >&2; cat "$SRV_TMP/server.log" >&2; fail=1; }
if grep -q "runtime error" "$SRV_TMP/server.log" 2>/dev/null; then cat "$SRV_TMP/server.log" >&2; fail=1; fi
[ "$fail" = 0 ] && echo "server_fuzz: 1 passed, 0 failed" || echo "server_fuzz: 0 passed, 1 failed"
exit "$fail"
