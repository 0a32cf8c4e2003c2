#!/usr/bin/env bash
# Pull and push against a REAL registry (Debian's docker-registry: the distribution API v2 on
# loopback, filesystem storage in a temp dir) and against a mock of Hugging Face's API
# (tests/cli/hf_mock.py): push then pull under another name is byte-identical; a pull killed with -9
# resumes with HTTP Range; a corrupted blob in the registry's storage is refused and leaves nothing;
# an unknown tag is one error line; a second push sends no blob again; HF quant selection, default
# Q4_K_M, a listing whose sha256 lies; the air gap refuses all of it.
set -uo pipefail
: "${SLM_BIN:?}"
data="${SLM_TEST_DATA:-$SLM_SRC/../shared}"
M="$data/models/stories260K.gguf"
M2="$data/models/llama-2-tiny-random.gguf"
[ -f "$M" ] && [ -f "$M2" ] || { echo "SKIP: no $M (set SLM_TEST_DATA)"; exit 77; }
REG=$(command -v docker-registry || true)
[ -n "$REG" ] || { echo "SKIP: docker-registry is not installed (scripts/install-deps.sh --test installs it)"; exit 77; }
T=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$T"; }
trap cleanup EXIT
pass=0 fail=0
check() { if [ "$2" = 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1" >&2; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; return 1; }
digest=$(sha256sum "$M" | cut -d' ' -f1)
digest2=$(sha256sum "$M2" | cut -d' ' -f1)
S() { "$SLM_BIN" "$@"; }

# ---------- the registry ----------
port=$(free_port)
cat >"$T/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $T/registry
http:
  addr: 127.0.0.1:$port
EOF
"$REG" serve "$T/registry.yml" >"$T/registry.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$port/v2/" || { echo "FAIL: docker-registry did not start: $(tail -3 "$T/registry.log")"; exit 1; }
R="127.0.0.1:$port"

# A proxy in front of it: logs every request (method, path, Range); while $T/slow exists it slows
# blob bodies down so a pull can be killed halfway; while $T/auth exists it wants a bearer token
# from its /token service, as Docker Hub does.
cat >"$T/proxy.py" <<'PY'
import http.client, http.server, os, sys, time
upstream, log_path, slow_flag, auth_flag = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
class P(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def relay(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        with open(log_path, "a") as log: log.write(f"{self.command} {self.path} {self.headers.get('Range', '-')}\n")
        if os.path.exists(auth_flag):  # a token service like Docker Hub's: 401 + challenge, /token gives one
            host = self.headers.get("Host")
            if self.path.startswith("/token?"):
                return self.answer(200, b'{"token":"tok-123"}')
            if self.headers.get("Authorization") != "Bearer tok-123":
                return self.answer(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                                   [("WWW-Authenticate", f'Bearer realm="http://{host}/token",service="test-registry",scope="repository:x:pull"')])
        c = http.client.HTTPConnection(upstream)
        hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        c.request(self.command, self.path, body=body, headers=hdrs)
        r = c.getresponse()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("connection", "transfer-encoding"): self.send_header(k, v)
        self.end_headers()
        data = r.read()
        slow = "/blobs/sha256:" in self.path and self.command == "GET" and len(data) > 65536
        try:
            for i in range(0, len(data), 65536):
                self.wfile.write(data[i:i + 65536]); self.wfile.flush()
                if slow and os.path.exists(slow_flag): time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client was killed: that is the test
    def answer(self, status, body, headers=()):
        self.send_response(status)
        self.send_header("Content-Type", "application/json"); self.send_header("Content-Length", str(len(body)))
        for k, v in headers: self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD": self.wfile.write(body)
    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = relay
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), P)
print(s.server_address[1], flush=True)
s.serve_forever()
PY
python3 "$T/proxy.py" "$R" "$T/proxy.log" "$T/slow" "$T/auth" >"$T/proxy.port" &
pids+=($!)
for _ in $(seq 50); do [ -s "$T/proxy.port" ] && break; sleep 0.1; done
P="127.0.0.1:$(cat "$T/proxy.port")"

S import "$M" --name stories --data-dir "$T/a" 2>/dev/null; check "import" $?
S push stories "$R/library/stories:v1" --data-dir "$T/a" 2>"$T/err"; check "push ($(cat "$T/err"))" $?
curl -s -H "Accept: application/vnd.docker.distribution.manifest.v2+json" "http://$R/v2/library/stories/manifests/v1" >"$T/manifest.json"
python3 - "$T/manifest.json" "$digest" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
assert m["schemaVersion"] == 2 and m["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json", m
model = [l for l in m["layers"] if l["mediaType"] == "application/vnd.ollama.image.model"]
assert len(model) == 1 and model[0]["digest"] == "sha256:" + sys.argv[2] and model[0]["size"] > 0, m
assert m["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json", m
PY
check "the registry holds an Ollama-layout manifest naming the GGUF by its digest" $?
S pull "$R/library/stories:v1" --name copy --data-dir "$T/b" 2>"$T/err"; check "pull under another name ($(cat "$T/err"))" $?
[ "$(sha256sum "$T/b/models/blobs/sha256-$digest" 2>/dev/null | cut -d' ' -f1)" = "$digest" ] &&
  S list --json --data-dir "$T/b" | grep -q "\"name\":\"copy:latest\",\"digest\":\"sha256:$digest\""
check "push then pull: the same bytes under the new name" $?
S pull "$R/library/stories" --data-dir "$T/b2" 2>"$T/err"; [ $? = 1 ] && [ "$(wc -l <"$T/err")" = 1 ] && grep -q "has no library/stories:latest" "$T/err"
check "an unknown tag is one error line ($(cat "$T/err"))" $?
S pull "$R/library/nothing:v1" --data-dir "$T/b2" 2>"$T/err"; [ $? = 1 ] && grep -q "has no library/nothing:v1" "$T/err"
check "an unknown repository is one error line" $?
[ -z "$(ls -A "$T/b2/models/blobs" 2>/dev/null)" ] && [ -z "$(S list --json --data-dir "$T/b2")" ]; check "a failed pull leaves nothing" $?
: >"$T/proxy.log"
S push stories "$P/library/stories:v1" --data-dir "$T/a" 2>"$T/err"; check "a second push" $?
grep -q "^HEAD /v2/library/stories/blobs/sha256:$digest" "$T/proxy.log" && ! grep -q "^PUT .*/blobs/uploads" "$T/proxy.log"
check "a second push asks (HEAD) and sends no blob again" $?
SLM_HOME="$T/b" "$SLM_BIN" run copy -p "Once upon a time" -n 6 --temp 0 >"$T/out1" 2>/dev/null
"$SLM_BIN" run "$M" -p "Once upon a time" -n 6 --temp 0 >"$T/out2" 2>/dev/null
[ -s "$T/out1" ] && cmp -s "$T/out1" "$T/out2"; check "the pulled model runs like the original" $?

# ---------- token auth (WWW-Authenticate: Bearer realm=…) ----------
touch "$T/auth"
: >"$T/proxy.log"
S pull "$P/library/stories:v1" --name tokened --data-dir "$T/t" 2>"$T/err"; check "pull through a token service ($(cat "$T/err"))" $?
grep -q "^GET /token?service=test-registry&scope=repository%3Ax%3Apull" "$T/proxy.log"; check "the token was asked for the challenge's service and scope" $?
S push stories "$P/library/stories:v3" --data-dir "$T/a" 2>"$T/err"; check "push through a token service ($(cat "$T/err"))" $?
rm -f "$T/auth"

# ---------- kill -9 in the middle of a big blob, then resume ----------
# a GGUF with 12 MiB of padding after its data: still a valid model, big enough to interrupt
python3 -c "import sys; d=open(sys.argv[1],'rb').read(); open(sys.argv[2],'wb').write(d + bytes(12 << 20))" "$M" "$T/big.gguf"
big=$(sha256sum "$T/big.gguf" | cut -d' ' -f1)
S import "$T/big.gguf" --name big --data-dir "$T/a" 2>"$T/err"; check "import a padded GGUF ($(cat "$T/err"))" $?
S push big "$R/test/big:v1" --data-dir "$T/a" 2>/dev/null; check "push the big model" $?
: >"$T/proxy.log"
touch "$T/slow"
"$SLM_BIN" pull "$P/test/big:v1" --data-dir "$T/c" 2>/dev/null &
pull=$!
for _ in $(seq 100); do
  sz=$(stat -c %s "$T/c/models/blobs/.pull-$big" 2>/dev/null || echo 0)
  [ "$sz" -gt 1000000 ] && break
  sleep 0.05
done
kill -9 $pull; wait $pull 2>/dev/null
rm -f "$T/slow"
sz=$(stat -c %s "$T/c/models/blobs/.pull-$big" 2>/dev/null || echo 0)
[ "$sz" -gt 0 ] && [ "$sz" -lt $((12 << 20)) ] && [ -z "$(S list --json --data-dir "$T/c")" ]
check "a killed pull leaves only its partial blob ($sz bytes)" $?
S pull "$P/test/big:v1" --data-dir "$T/c" 2>"$T/err"; check "the pull resumes ($(cat "$T/err"))" $?
grep -q "^GET /v2/test/big/blobs/sha256:$big bytes=[1-9]" "$T/proxy.log"; check "the resumed pull asked for the rest only (Range)" $?
[ "$(sha256sum "$T/c/models/blobs/sha256-$big" 2>/dev/null | cut -d' ' -f1)" = "$big" ] &&
  [ -z "$(ls -A "$T/c/models/blobs" | grep '^\.pull-')" ] && S list --json --data-dir "$T/c" | grep -q '"name":"big:v1"'
check "the resumed blob is complete and verified" $?

# ---------- a corrupted blob in the registry's storage ----------
stored="$T/registry/docker/registry/v2/blobs/sha256/${big:0:2}/$big/data"
[ -f "$stored" ] && python3 -c "
import sys; f=open(sys.argv[1],'r+b'); f.seek(5 << 20); b=f.read(1); f.seek(5 << 20); f.write(bytes([b[0] ^ 1])); f.close()" "$stored"
check "corrupt the registry's copy" $?
S pull "$R/test/big:v1" --name bad --data-dir "$T/d" 2>"$T/err"
[ $? = 1 ] && [ "$(wc -l <"$T/err")" = 1 ] && grep -q "corrupt" "$T/err"; check "a corrupted blob is refused ($(cat "$T/err"))" $?
[ -z "$(ls -A "$T/d/models/blobs" 2>/dev/null)" ] && [ -z "$(S list --json --data-dir "$T/d")" ]; check "nothing of it stays" $?

# ---------- hostile references and the air gap ----------
S pull "$R/Library/Stories:v1" --data-dir "$T/e" 2>"$T/err"; [ $? = 1 ] && grep -q "lower-case" "$T/err"; check "upper case is refused" $?
S pull "$R/library/stories@sha256:$digest" --data-dir "$T/e" 2>"$T/err"; [ $? = 1 ] && grep -q "by digest" "$T/err"; check "digest refs are refused" $?
S pull "$R/library/stories:v1" --air-gapped --data-dir "$T/e" 2>"$T/err"; [ $? = 1 ] && grep -q "air-gapped" "$T/err" && [ "$(wc -l <"$T/err")" = 1 ]
check "air-gapped: pull refused ($(cat "$T/err"))" $?
SLM_AIR_GAPPED=1 "$SLM_BIN" push stories "$R/library/stories:v2" --data-dir "$T/a" 2>"$T/err"; [ $? = 1 ] && grep -q "air-gapped" "$T/err"
check "air-gapped: push refused" $?
S push nosuch "$R/library/x:v1" --data-dir "$T/a" 2>"$T/err"; [ $? = 1 ] && grep -q "no model named" "$T/err"; check "push of an unknown model" $?

# ---------- Hugging Face (a mock of its API on loopback) ----------
mkdir -p "$T/hf/test/tiny" "$T/hf/test/liar" "$T/hf/test/lone" "$T/hf/test/etag"
cp "$M" "$T/hf/test/etag/etag-Q4_K_M.gguf"
touch "$T/hf/test/etag/.etag-lie"
cp "$M" "$T/hf/test/tiny/tiny-Q4_K_M.gguf"
cp "$M2" "$T/hf/test/tiny/tiny-Q8_0.gguf"
echo "not a model" >"$T/hf/test/tiny/README.md"
cp "$M" "$T/hf/test/liar/liar-Q4_K_M.gguf"
touch "$T/hf/test/liar/.lie"
cp "$M2" "$T/hf/test/lone/model-f16.gguf"
python3 "$SLM_SRC/tests/cli/hf_mock.py" "$T/hf" "$T/hf.log" >"$T/hf.port" &
pids+=($!)
for _ in $(seq 50); do [ -s "$T/hf.port" ] && break; sleep 0.1; done
export SLM_HF_ENDPOINT="http://127.0.0.1:$(cat "$T/hf.port")"
S pull hf.co/test/tiny --data-dir "$T/h" 2>"$T/err"; check "hf pull, default quant ($(cat "$T/err"))" $?
S list --json --data-dir "$T/h" | grep -q "\"name\":\"tiny:latest\",\"digest\":\"sha256:$digest\""; check "the default is Q4_K_M" $?
grep -q "^GET /test/tiny/resolve/main/tiny-Q4_K_M.gguf" "$T/hf.log" && grep -q "^GET /cdn/" "$T/hf.log"
check "resolved through /resolve/main/FILE and its redirect" $?
S pull hf.co/test/tiny:Q8_0 --data-dir "$T/h" 2>"$T/err"; check "hf pull :Q8_0" $?
S list --json --data-dir "$T/h" | grep -q "\"name\":\"tiny:Q8_0\",\"digest\":\"sha256:$digest2\""; check "QUANT picks its file" $?
S pull hf.co/test/tiny:q8_0 --name lower --data-dir "$T/h" 2>/dev/null && S list --json --data-dir "$T/h" | grep -q "\"name\":\"lower:latest\",\"digest\":\"sha256:$digest2\""
check "QUANT is case-insensitive; --name names it" $?
S pull hf.co/test/tiny:Q2_K --data-dir "$T/h" 2>"$T/err"; [ $? = 1 ] && grep -q "no GGUF for Q2_K (it has: tiny-Q4_K_M.gguf, tiny-Q8_0.gguf)" "$T/err"
check "a missing quant names what there is ($(cat "$T/err"))" $?
S pull hf.co/test/lone --data-dir "$T/h" 2>"$T/err" && S list --json --data-dir "$T/h" | grep -q "\"name\":\"lone:latest\",\"digest\":\"sha256:$digest2\""
check "a repo with one GGUF and no Q4_K_M: that one" $?
S pull hf.co/test/liar --data-dir "$T/i" 2>"$T/err"; [ $? = 1 ] && grep -q "does not match" "$T/err" && [ "$(wc -l <"$T/err")" = 1 ]
check "a sha256 mismatch is refused ($(cat "$T/err"))" $?
[ -z "$(ls -A "$T/i/models/blobs" 2>/dev/null)" ] && [ -z "$(S list --json --data-dir "$T/i")" ]; check "and leaves nothing" $?
S pull hf.co/test/etag --data-dir "$T/i" 2>"$T/err"; [ $? = 1 ] && grep -q "X-Linked-ETag disagree" "$T/err" && [ -z "$(ls -A "$T/i/models/blobs" 2>/dev/null)" ]
check "an X-Linked-ETag that disagrees with the listing is refused ($(cat "$T/err"))" $?
S pull hf.co/test/nothing --data-dir "$T/i" 2>"$T/err"; [ $? = 1 ] && grep -q "has no repository test/nothing" "$T/err"
check "an unknown repo ($(cat "$T/err"))" $?
S pull hf.co/../etc --data-dir "$T/i" 2>"$T/err"; [ $? = 1 ] && grep -q "expected hf.co/ORG/REPO" "$T/err"; check "a hostile hf reference" $?
S pull hf.co/test/tiny --air-gapped --data-dir "$T/i" 2>"$T/err"; [ $? = 1 ] && grep -q "air-gapped" "$T/err"; check "air-gapped: hf refused" $?

echo "models_oci: $pass passed, $fail failed"
[ "$fail" = 0 ]
