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
# Error messages quote client text cut to a fixed size; a cut inside a UTF-8 character must still
# give the route's JSON error with its 4xx, not a 500.
odd=$(python3 -c 'print("a" + "\u00e9" * 300)')
hostile() { # hostile NAME WANT_STATUS PATH BODY
  local got
  got=$(curl -s -o "$SRV_TMP/hostile.body" -w '%{http_code}' "$SLM_URL$3" -H 'Content-Type: application/json' -d "$4") || got=curl-error
  if [ "$got" != "$2" ] || ! python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; assert e' "$SRV_TMP/hostile.body"; then
    echo "FAIL: $1: status $got, want $2: $(head -c 300 "$SRV_TMP/hostile.body")" >&2
    fail=1
  fi
}
hostile "openai unknown model with a long non-ASCII name" 404 /v1/chat/completions "{\"model\":\"$odd\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"
hostile "ollama unknown model with a long non-ASCII name" 404 /api/chat "{\"model\":\"$odd\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"
hostile "task unknown model with a long non-ASCII name" 404 /v1/classify "{\"model\":\"$odd\",\"input\":\"hi\",\"labels\":[\"a\"]}"
hostile "long non-ASCII role" 400 /v1/chat/completions "{\"messages\":[{\"role\":\"$odd\",\"content\":\"hi\"}]}"
hostile "long non-ASCII logit_bias key" 400 /v1/completions "{\"prompt\":\"hi\",\"logit_bias\":{\"$odd\":1}}"
hostile "long non-ASCII duplicate label" 400 /v1/classify "{\"input\":\"hi\",\"labels\":[\"$odd\",\"$odd\"]}"
hostile "long non-ASCII stop string" 400 /v1/completions "{\"prompt\":\"hi\",\"stop\":\"$odd\"}"
srv_stop || { echo "server did not exit cleanly:" >&2; cat "$SRV_TMP/server.log" >&2; fail=1; }
if grep -q "runtime error" "$SRV_TMP/server.log" 2>/dev/null; then cat "$SRV_TMP/server.log" >&2; fail=1; fi
[ "$fail" = 0 ] && echo "server_fuzz: 1 passed, 0 failed" || echo "server_fuzz: 0 passed, 1 failed"
exit "$fail"
