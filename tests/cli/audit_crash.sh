#!/usr/bin/env bash
# The audit log survives kill -9: under load (plain and streamed requests from 4 client threads),
# the server is killed with SIGKILL at a random moment, 20 times. After each kill, `slm audit
# verify` passes (a torn last record is declared, never silently dropped), and every request that
# got a complete response has its record, found by the x-request-id the response carried.
set -euo pipefail
. "$SLM_SRC/tests/npm/server_lib.sh"
srv_require_curl
set +e
D="$SRV_TMP/state"
ids="$SRV_TMP/complete-ids"
: >"$ids"
rounds=${SLM_CRASH_ROUNDS:-20}

cat >"$SRV_TMP/load.py" <<'EOF'
# Sends requests until killed; prints the x-request-id of every response that arrived whole.
import http.client, json, sys, threading
port, out = int(sys.argv[1]), open(sys.argv[2], "a")
lock = threading.Lock()
def worker(k):
    i = 0
    while True:
        i += 1
        stream = (i + k) % 2 == 0
        body = json.dumps({"prompt": "Once upon a time", "max_tokens": 6, "stream": stream})
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
            r = c.getresponse()
            data = r.read()
            rid = r.getheader("x-request-id")
            whole = r.status == 200 and (data.rstrip().endswith(b"data: [DONE]") if stream else json.loads(data)["usage"])
            if whole and rid:
                with lock:
                    out.write(rid + "\n")
                    out.flush()
            c.close()
        except Exception:
            pass
for k in range(4):
    threading.Thread(target=worker, args=(k,), daemon=True).start()
threading.Event().wait()
EOF

fail=0
for round in $(seq "$rounds"); do
  srv_start --data-dir "$D" --quiet
  port=${SLM_URL##*:}
  python3 "$SRV_TMP/load.py" "$port" "$ids" &
  load=$!
  sleep "0.$((RANDOM % 8 + 2))"
  kill -KILL "$SRV_PID"
  wait "$SRV_PID" 2>/dev/null
  kill "$load" 2>/dev/null
  wait "$load" 2>/dev/null
  SRV_PID=""
  if ! "$SLM_BIN" audit verify --data-dir "$D" >"$SRV_TMP/verify" 2>&1; then
    echo "FAIL: round $round: audit verify after kill -9:" >&2
    cat "$SRV_TMP/verify" >&2
    fail=1
    break
  fi
done
"$SLM_BIN" audit query --json --data-dir "$D" >"$SRV_TMP/records" || fail=1
python3 - "$ids" "$SRV_TMP/records" "$rounds" <<'EOF' || fail=1
import json, sys
complete = [l.strip() for l in open(sys.argv[1]) if l.strip()]
recorded = {json.loads(l).get("request_id") for l in open(sys.argv[2])}
missing = [r for r in complete if r not in recorded]
print(f"audit_crash: {sys.argv[3]} kills, {len(complete)} complete responses, {len(recorded)} records, {len(missing)} missing")
assert len(complete) >= 20, "the load generator got too few responses to mean anything"
assert not missing, f"complete responses without a record: {missing[:5]}"
EOF
tail -1 "$SRV_TMP/verify"
[ "$fail" = 0 ]
