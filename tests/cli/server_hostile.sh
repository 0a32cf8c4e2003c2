#!/usr/bin/env bash
# Hostile clients against slm serve (loopback only, bounded in time): slow headers and bodies
# against the absolute deadlines and the connection reserve (/health and a running stream keep
# being served), a huge chunk extension and an endless chunk, the server-wide body budget (503 +
# Retry-After), stalled stream readers (dropped, their slots freed), log injection, duplicate
# Content-Length on every kind of route, requests no token can satisfy (400, also in a stream),
# constraint compile limits, abandoned task requests, and a drain that is not held up.
# Raw-socket clients are Python (stdlib); each prints facts this script checks.
set -euo pipefail
. "$SLM_SRC/tests/npm/server_lib.sh"
srv_require_curl
command -v python3 >/dev/null || srv_skip "python3 is not installed"
set +e # checks below count failures instead of stopping at the first

pass=0
fail=0
check() { # check NAME CONDITION-EXIT-STATUS [what was seen]
  if [ "$2" = 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1${3:+: $3}" >&2; fi
}
fact() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2" | head -1; } # fact KEY LINE
port() { cat "$SRV_TMP/port"; }
H="$SRV_TMP/hostile.py"
cat >"$H" <<'PY'
#!/usr/bin/env python3
"""Raw-socket hostile clients for tests/cli/server_hostile.sh (stdlib only, loopback only).

Each subcommand prints one line of facts (key=value) the shell script checks; none of them
asserts itself, so the script can show what the server did."""
import os
import socket
import sys
import threading
import time

HOST = "127.0.0.1"


def connect(port, timeout=5.0):
    s = socket.create_connection((HOST, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_reply(s, limit=1 << 20, timeout=5.0):
    """Reads until EOF, `limit` bytes or `timeout`; returns (bytes, how it ended)."""
    s.settimeout(timeout)
    out = b""
    end = "eof"
    t0 = time.time()
    try:
        while len(out) < limit:
            b = s.recv(65536)
            if not b:
                break
            out += b
            if time.time() - t0 > timeout:
                end = "timeout"
                break
    except socket.timeout:
        end = "timeout"
    except OSError as e:
        end = "reset" if out == b"" else "eof"  # a reset after the reply still counts as a reply
        if out == b"":
            end = "reset:" + type(e).__name__
    return out, end


def status_of(data):
    try:
        line = data.split(b"\r\n", 1)[0].decode("latin-1")
        return int(line.split(" ")[1])
    except (IndexError, ValueError):
        return 0


def cmd_raw(port, payload):
    """Sends payload (Python bytes literal), prints status, end, and whether the connection closed."""
    data = eval(payload)  # the test's own literal, e.g. b'GET / HTTP/1.1\r\n...'
    s = connect(port)
    try:
        s.sendall(data)
    except OSError:
        pass
    out, end = read_reply(s, timeout=8)
    body = out.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in out else b""
    closed = b"connection: close" in out.lower()
    print("status=%d end=%s close=%d body=%s" % (status_of(out), end, closed, body[:300].decode("latin-1").replace("\n", " ")))


def cmd_slow_headers(port, n, seconds, interval):
    """n connections each trickling one header byte per `interval`, for `seconds`: prints how many
    the server cut and when, and the worst /health latency measured meanwhile."""
    n, seconds, interval = int(n), float(seconds), float(interval)
    socks = []
    for _ in range(n):
        try:
            s = connect(port)
            s.sendall(b"G")
            socks.append(s)
        except OSError:
            pass
    request = b"ET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100000
    pos = [0] * len(socks)
    cut = [None] * len(socks)
    t0 = time.time()
    worst = 0.0
    health_fail = 0
    health_n = 0
    next_health = t0 + 0.5
    while time.time() - t0 < seconds:
        for i, s in enumerate(socks):
            if cut[i] is not None:
                continue
            try:
                s.send(request[pos[i]:pos[i] + 1])
                pos[i] += 1
            except OSError:
                cut[i] = time.time() - t0
        if time.time() >= next_health:
            next_health = time.time() + 0.5
            h0 = time.time()
            ok = False
            try:
                hs = connect(port, timeout=3)
                hs.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                out, _ = read_reply(hs, timeout=3)
                ok = status_of(out) == 200
                hs.close()
            except OSError:
                pass
            dt = time.time() - h0
            health_n += 1
            if not ok:
                health_fail += 1
                dt = 3.0
            worst = max(worst, dt)
        time.sleep(interval)
    # a connection the server shut down shows as EOF on read
    for i, s in enumerate(socks):
        if cut[i] is None:
            s.setblocking(False)
            try:
                if s.recv(4096) == b"":
                    cut[i] = seconds
            except BlockingIOError:
                pass
            except OSError:
                cut[i] = seconds
        s.close()
    ncut = sum(1 for c in cut if c is not None)
    print("opened=%d cut=%d health_n=%d health_fail=%d health_worst_ms=%d" % (len(socks), ncut, health_n, health_fail, worst * 1000))


def cmd_slow_body(port, seconds):
    """Complete headers, then one body byte every 0.2 s: prints when (if) the server closed it."""
    seconds = float(seconds)
    s = connect(port)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
    t0 = time.time()
    closed_at = -1.0
    while time.time() - t0 < seconds:
        try:
            s.send(b" ")
            s.setblocking(False)
            try:
                if s.recv(4096) == b"":
                    closed_at = time.time() - t0
                    break
            except BlockingIOError:
                pass
            s.setblocking(True)
        except OSError:
            closed_at = time.time() - t0
            break
        time.sleep(0.2)
    print("closed_after_ms=%d" % (closed_at * 1000 if closed_at >= 0 else -1))


def cmd_endless_chunk(port, megabytes):
    """One chunk that never ends: prints the status the server answered with and how much it took."""
    total = int(float(megabytes) * (1 << 20))
    s = connect(port)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffff\r\n")
    block = b"x" * 65536
    sent = 0
    stopped = "all_sent"
    s.settimeout(5)
    try:
        while sent < total:
            s.sendall(block)
            sent += len(block)
    except OSError:
        stopped = "server_closed"
    out, end = read_reply(s, timeout=5)
    print("status=%d end=%s stopped=%s sent_mb=%.1f" % (status_of(out), end, stopped, sent / (1 << 20)))


def cmd_body_budget(port, held, size):
    """`held` connections each announce a `size`-byte body and send half of it; then one more
    request of that size: prints its status, whether it had Retry-After, and how long it took."""
    held, size = int(held), int(size)
    socks = []
    for _ in range(held):
        s = connect(port)
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % size)
        s.sendall(b" " * (size // 2))
        socks.append(s)
    time.sleep(0.3)
    t0 = time.time()
    s = connect(port)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % size)
    s.settimeout(3)
    out = b""
    try:
        out = s.recv(65536)
    except OSError:
        pass
    dt = time.time() - t0
    retry = b"retry-after:" in out.lower()
    print("status=%d retry_after=%d ms=%d body=%s" % (status_of(out), retry, dt * 1000,
          out.split(b"\r\n\r\n", 1)[-1][:200].decode("latin-1")))
    for s2 in socks:
        s2.close()
    s.close()


def cmd_stalled_readers(port, n, hold):
    """n streaming requests whose client never reads: after `hold` seconds prints how many the server
    closed (EOF after draining the socket) — the reading is done only at the end."""
    n, hold = int(n), float(hold)
    body = (b'{"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":1900,"ignore_eos":true,'
            b'"stream":true,"logprobs":true,"top_logprobs":20,"temperature":1}')
    socks = []
    for _ in range(n):
        s = connect(port)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                  % (len(body), body))
        socks.append(s)
    time.sleep(hold)
    print("ready")
    sys.stdout.flush()
    sys.stdin.readline()  # the script measures the server meanwhile
    # now read: a connection the server dropped ends (EOF) once its buffered bytes are read
    closed = set()
    t0 = time.time()
    while len(closed) < len(socks) and time.time() - t0 < 10:
        for i, s in enumerate(socks):
            if i in closed:
                continue
            s.setblocking(False)
            try:
                while True:
                    b = s.recv(1 << 20)
                    if not b:
                        closed.add(i)
                        break
            except BlockingIOError:
                pass
            except OSError:
                closed.add(i)
        time.sleep(0.05)
    print("closed=%d of=%d" % (len(closed), len(socks)))
    for s in socks:
        s.close()


def cmd_abandon(port, path, body_file, n, after):
    """n requests to path with the body in body_file, each abandoned (closed) after `after` seconds."""
    n, after = int(n), float(after)
    body = open(body_file, "rb").read()
    socks = []
    for _ in range(n):
        s = connect(port)
        s.sendall(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                  % (path.encode(), len(body)) + body)
        socks.append(s)
    time.sleep(after)
    for s in socks:
        s.close()
    print("abandoned=%d" % n)


def main():
    cmd, port, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    {"raw": cmd_raw, "slow_headers": cmd_slow_headers, "slow_body": cmd_slow_body, "endless_chunk": cmd_endless_chunk,
     "body_budget": cmd_body_budget, "stalled_readers": cmd_stalled_readers, "abandon": cmd_abandon}[cmd](port, *args)


if __name__ == "__main__":
    main()
PY
hostile() { timeout 60 python3 "$H" "$1" "$(port)" "${@:2}"; }
metric() { curl -s "$SLM_URL/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

# One server for most checks: small limits so every bound is reached in a second or two.
srv_start -np 4 --max-connections 128 --header-timeout 3 --body-timeout 3 --max-body-bytes 1048576 \
  --max-body-total 4194304 --stream-buffer-bytes 65536 --drain-timeout 2

# --- slow headers: 200 connections (more than the 128 slots) trickle a header byte every 0.5 s
# while /health is asked twice a second and a stream runs; each byte used to reset the idle timer.
curl -s -N "$SLM_URL/v1/completions" -d '{"prompt":"Once upon a time","max_tokens":1500,"ignore_eos":true,"stream":true}' \
  >"$SRV_TMP/stream_during_flood" 2>/dev/null &
stream_pid=$!
out=$(hostile slow_headers 200 7 0.5)
wait $stream_pid
[ "$(fact health_fail "$out")" = 0 ]
check "slow headers: /health answered every time" $? "$out"
[ "$(fact health_worst_ms "$out")" -lt 2000 ]
check "slow headers: /health within 2 s" $? "$out"
[ "$(fact cut "$out")" = "$(fact opened "$out")" ]
check "slow headers: every trickling connection cut (deadline or reserve)" $? "$out"
cut=$(metric slm_connections_cut_total)
[ "${cut:-0}" -ge 100 ]
check "slow headers: slm_connections_cut_total counts them" $? "cut=$cut"
grep -q '^data: \[DONE\]' "$SRV_TMP/stream_during_flood"
check "slow headers: a running stream is served to its end" $? "$(tail -c 200 "$SRV_TMP/stream_during_flood")"

# --- slow body: headers complete, then a byte every 0.2 s: cut at the body deadline (3 s)
out=$(hostile slow_body 9)
ms=$(fact closed_after_ms "$out")
[ "$ms" -ge 0 ] && [ "$ms" -lt 6000 ]
check "slow body: closed at its absolute deadline" $? "$out"

# --- chunked bodies libmicrohttpd cannot frame: a 100 kB chunk extension, an endless chunk
out=$(hostile raw "b'POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=' + b'A'*100000 + b'\r\nhello\r\n0\r\n\r\n'")
[ "$(fact status "$out")" = 400 ]
check "huge chunk extension: 400, not libmicrohttpd's 500" $? "$out"
grep -q '"error"' <<<"$out"
check "huge chunk extension: the API's error JSON" $? "$out"
out=$(hostile endless_chunk 24)
[ "$(fact status "$out")" = 413 ] && [ "$(fact stopped "$out")" = server_closed ]
check "endless single chunk: 413 and the connection closes, not read forever" $? "$out"

# --- body budget: 3 bodies of 1 MiB held half-sent (4 MiB total budget): the next one gets 503
out=$(hostile body_budget 3 1048576)
[ "$(fact status "$out")" = 503 ] && [ "$(fact retry_after "$out")" = 1 ] && [ "$(fact ms "$out")" -lt 2000 ]
check "body budget: 503 + Retry-After at once when the server-wide budget is spent" $? "$out"
grep -q 'max-body-total' <<<"$out"
check "body budget: the 503 names --max-body-total" $? "$out"
sleep 0.3
code=$(curl -s -o /dev/null -w '%{http_code}' "$SLM_URL/v1/completions" -d '{"prompt":"x","max_tokens":2}')
[ "$code" = 200 ]
check "body budget: released when those connections close" $? "$code"

# --- log injection: %0a and %1b in the path stay escaped in the request log
hostile raw "b'GET /v1/x%0aGET%20/forged%20200%1b[31m HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'" >/dev/null
sleep 0.2
! grep -q '^GET /forged' "$SRV_TMP/server.log"
check "log injection: no forged log line" $?
! grep -q $'\x1b' "$SRV_TMP/server.log"
check "log injection: no terminal escape in the log" $?
grep -q 'x0aGET /forged' "$SRV_TMP/server.log"
check "log injection: the path is logged escaped" $? "$(tail -3 "$SRV_TMP/server.log")"

# --- duplicate Content-Length (request smuggling) on every kind of route: 400 and close
for req in "GET /health" "GET /" "GET /metrics" "POST /v1/completions" "POST /v1/chat/completions" "POST /api/generate" \
  "POST /v1/classify" "GET /nowhere" "OPTIONS /v1/models" "DELETE /v1/models"; do
  out=$(hostile raw "b'$req HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}'")
  [ "$(fact status "$out")" = 400 ] && [ "$(fact close "$out")" = 1 ]
  check "duplicate Content-Length: $req: 400 and close" $? "$out"
done
out=$(hostile raw "b'POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'")
[ "$(fact status "$out")" = 400 ]
check "Content-Length with Transfer-Encoding: 400" $? "$out"

# --- no token possible: 400 (the client's request), never a 5xx
ban_all=$(python3 -c 'print(",".join("\"%d\":-100" % i for i in range(512)))')
code=$(curl -s -o "$SRV_TMP/body" -w '%{http_code}' "$SLM_URL/v1/completions" -d "{\"prompt\":\"x\",\"logit_bias\":{$ban_all}}")
[ "$code" = 400 ] && grep -q 'no token is possible' "$SRV_TMP/body"
check "logit_bias banning every token: 400 no token is possible" $? "$code $(head -c 200 "$SRV_TMP/body")"
# the tokens that could start "a" banned (all but one), the grammar allowing only "a"
ban_most=$(python3 -c 'print(",".join("\"%d\":-100" % i for i in range(512) if i != 265))')
gen="\"max_tokens\":5,\"grammar\":\"root ::= \\\"a\\\"\",\"logit_bias\":{$ban_most}"
code=$(curl -s -o "$SRV_TMP/body" -w '%{http_code}' "$SLM_URL/v1/completions" -d "{\"prompt\":\"x\",$gen}")
[ "$code" = 400 ] && grep -q 'no token is possible' "$SRV_TMP/body"
check "grammar + logit_bias leaving no token: 400" $? "$code $(head -c 200 "$SRV_TMP/body")"
code=$(curl -s -o "$SRV_TMP/body" -w '%{http_code}' "$SLM_URL/api/generate" -d "{\"prompt\":\"x\",\"stream\":false,\"format\":\"json\",\"options\":{\"num_predict\":5}}")
[ "$code" = 200 ]
check "Ollama format json still answers" $? "$code"
curl -s -N "$SLM_URL/v1/completions" -d "{\"prompt\":\"x\",\"stream\":true,$gen}" >"$SRV_TMP/body"
grep -q '"status":400' "$SRV_TMP/body" && grep -q 'invalid_request_error' "$SRV_TMP/body"
check "stream: the error event says 400 / invalid_request_error" $? "$(head -c 300 "$SRV_TMP/body")"

# --- constraint compile limits: too large -> 400 naming the limit
big=$(python3 -c 'print(" ".join("\\\"%s\\\"{0,100000}" % c for c in "abcdefghijk"))')
code=$(curl -s -o "$SRV_TMP/body" -w '%{http_code}' "$SLM_URL/v1/completions" -d "{\"prompt\":\"x\",\"max_tokens\":2,\"grammar\":\"root ::= $big\"}")
[ "$code" = 400 ] && grep -q '"code":"constraint_too_large"' "$SRV_TMP/body" && grep -q 'limit' "$SRV_TMP/body"
check "grammar over the rule limit: 400 constraint_too_large naming the limit" $? "$code $(head -c 300 "$SRV_TMP/body")"

# --- abandoned task requests are cancelled: six summaries of a long text, their clients gone,
# do not hold up a classify
python3 -c 'import json; print(json.dumps({"input": "Once upon a time there was a little girl. " * 3000, "max_words": 300}))' >"$SRV_TMP/sum.json"
hostile abandon /v1/summarize "$SRV_TMP/sum.json" 6 0.5 >/dev/null
# (their chunk requests can fill the queue for the moment it takes to see the clients gone: a
# 503 + Retry-After then, as documented, and the retry gets through)
t0=$(date +%s%N)
for _ in $(seq 50); do
  code=$(curl -s -o "$SRV_TMP/body" -w '%{http_code}' --max-time 30 "$SLM_URL/v1/classify" -d '{"input":"I love it","labels":["good","bad"]}')
  [ "$code" = 503 ] || break
  sleep 0.1
done
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$code" = 200 ] && [ "$ms" -lt 5000 ]
check "abandoned summaries are cancelled: classify answered in ${ms} ms" $? "$code $(head -c 200 "$SRV_TMP/body")"
busy=$(metric slm_slots_busy)
for _ in $(seq 30); do [ "$busy" = 0 ] && break; sleep 0.1; busy=$(metric slm_slots_busy); done
[ "$busy" = 0 ]
check "abandoned summaries: slots free again" $? "busy=$busy"

# --- stalled readers: 16 streams whose client never reads are dropped once 64 KiB pile up
coproc STALL { python3 "$H" stalled_readers "$(port)" 16 12; }
read -r line <&"${STALL[0]}"
echo >&"${STALL[1]}"
read -r line <&"${STALL[0]}"
wait "$STALL_PID" 2>/dev/null
[ "$(fact closed "$line")" = 16 ]
check "stalled readers: every one dropped by the server" $? "$line"
busy=$(metric slm_slots_busy)
[ "$busy" = 0 ]
check "stalled readers: their slots are free" $? "busy=$busy"

# --- drain while constraints compile: SIGTERM is not held up past --drain-timeout (2 s)
for _ in 1 2 3; do
  curl -s -o /dev/null --max-time 20 "$SLM_URL/v1/completions" -d "{\"prompt\":\"x\",\"max_tokens\":2000,\"ignore_eos\":true,\"grammar\":\"root ::= $big\"}" &
done
sleep 0.2
t0=$(date +%s%N)
kill -TERM "$SRV_PID"
wait "$SRV_PID"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
SRV_PID=""
[ "$ms" -lt 6000 ]
check "drain with compiles in flight: exited in ${ms} ms" $?
wait

echo "server_hostile: $pass passed, $fail failed"
[ "$fail" = 0 ]
