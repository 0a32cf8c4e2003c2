#!/usr/bin/env bash
# The model store: import (content-addressed: two names, one blob), list, show and run by name, cp,
# rm (the blob goes with its last name), bundles (export/import round trip; a corrupted blob or a
# missing one is refused and nothing becomes visible), hostile names and files.
set -uo pipefail
: "${SLM_BIN:?}"
data="${SLM_TEST_DATA:-$SLM_SRC/../shared}"
M="$data/models/stories260K.gguf"
[ -f "$M" ] || { echo "SKIP: no $M (set SLM_TEST_DATA)"; exit 77; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
check() { if [ "$2" = 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1" >&2; fi; }
S() { "$SLM_BIN" "$@" --data-dir "$T/d"; }
digest=$(sha256sum "$M" | cut -d' ' -f1)

S import "$M" --name stories 2>/dev/null; check "import" $?
S import "$M" --name stories:v2 2>/dev/null; check "import a second tag" $?
[ "$(ls "$T/d/models/blobs")" = "sha256-$digest" ]; check "one blob named by its sha256" $?
S cp stories copy 2>/dev/null; check "cp" $?
[ "$(S list --json | python3 -c 'import json,sys; print(" ".join(json.loads(l)["name"] for l in sys.stdin))')" = \
  "copy:latest stories:latest stories:v2" ]; check "list names all three" $?
S list --json | head -1 | grep -q "\"arch\":\"llama\",.*\"digest\"\|\"digest\":\"sha256:$digest\"" ; check "list shows the digest" $?
"$SLM_BIN" show stories --data-dir "$T/d" >"$T/show"; grep -q "sha256-$digest" "$T/show"; check "show by name" $?
want=$("$SLM_BIN" run "$M" -p "Once upon a time" -n 8 --temp 0 2>/dev/null)
got=$(SLM_HOME="$T/d" "$SLM_BIN" run stories:v2 -p "Once upon a time" -n 8 --temp 0 2>/dev/null)
[ -n "$want" ] && [ "$got" = "$want" ]; check "run by name equals run by path" $?

# a template (as /api/create or a registry pull writes it) travels with cp and bundles
python3 - "$T/d/models/manifests/stories/latest.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1])); m["template"] = "{{ .Prompt }}"; m["params"] = '{"stop":["x"]}'
json.dump(m, open(sys.argv[1], "w"))
PY
S cp stories copy 2>/dev/null
S bundle export stories copy -o "$T/b.tar" 2>/dev/null; check "bundle export" $?
[ "$(tar tf "$T/b.tar" | grep -c '^blobs/')" = 1 ]; check "a shared blob is bundled once" $?
"$SLM_BIN" bundle import "$T/b.tar" --data-dir "$T/e" 2>/dev/null; check "bundle import" $?
[ "$("$SLM_BIN" list --json --data-dir "$T/e" | wc -l)" = 2 ]; check "both names arrive" $?
python3 -c "import json,sys; m=json.load(open(sys.argv[1])); assert m['template']=='{{ .Prompt }}' and m['params']=='{\"stop\":[\"x\"]}', m" \
  "$T/e/models/manifests/copy/latest.json"; check "the template and params survive cp and the bundle" $?
# a corrupted blob: the bundle is refused and nothing appears
python3 - "$T/b.tar" "$T/bad.tar" <<'PY'
import sys, tarfile, io
src, dst = tarfile.open(sys.argv[1]), tarfile.open(sys.argv[2], "w")
for m in src.getmembers():
    data = src.extractfile(m).read()
    if m.name.startswith("blobs/"):
        data = bytearray(data); data[len(data) // 2] ^= 1; data = bytes(data)
    dst.addfile(m, io.BytesIO(data))
dst.close()
PY
"$SLM_BIN" bundle import "$T/bad.tar" --data-dir "$T/f" 2>"$T/err"; [ $? = 1 ] && grep -q "corrupt" "$T/err"
check "a corrupted blob is refused ($(cat "$T/err"))" $?
[ "$("$SLM_BIN" list --json --data-dir "$T/f" | wc -l)" = 0 ] && [ -z "$(ls "$T/f/models/blobs" 2>/dev/null)" ]
check "nothing from the bad bundle stays" $?
python3 - "$T/b.tar" "$T/noblob.tar" <<'PY'
import sys, tarfile, io
src, dst = tarfile.open(sys.argv[1]), tarfile.open(sys.argv[2], "w")
for m in src.getmembers():
    if not m.name.startswith("blobs/"): dst.addfile(m, src.extractfile(m))
dst.close()
PY
"$SLM_BIN" bundle import "$T/noblob.tar" --data-dir "$T/g" 2>"$T/err"; [ $? = 1 ] && grep -q "does not hold" "$T/err"
check "a manifest without its blob is refused" $?
head -c 5000 /dev/urandom >"$T/junk.tar"
"$SLM_BIN" bundle import "$T/junk.tar" --data-dir "$T/g" 2>"$T/err"; [ $? = 1 ] && [ "$(wc -l <"$T/err")" = 1 ]
check "junk is one error line" $?

S rm stories 2>/dev/null; check "rm one name" $?
[ -e "$T/d/models/blobs/sha256-$digest" ]; check "the blob stays while other names use it" $?
S rm stories:v2 copy 2>/dev/null; check "rm the others" $?
[ -z "$(ls "$T/d/models/blobs")" ]; check "the blob goes with its last name" $?
S rm stories 2>"$T/err"; [ $? = 1 ] && grep -q "no model named" "$T/err"; check "rm of a missing name" $?
S import /etc/hostname --name x 2>"$T/err"; [ $? = 1 ] && grep -q "GGUF" "$T/err"; check "a non-GGUF is refused" $?
S import "$M" --name "../evil" 2>"$T/err"; [ $? = 1 ] && [ ! -e "$T/d/models/evil" ]; check "a path in a name is refused" $?
"$SLM_BIN" show no-such-model --data-dir "$T/d" 2>"$T/err"; [ $? = 1 ] && grep -q "neither a file nor a model" "$T/err"
check "an unknown name says what was tried" $?

# pull over HTTP from a local server that honours Range and can be slowed down: killed with -9
# halfway, then resumed (only the rest is fetched); a wrong --sha256 keeps nothing; the air gap
cat >"$T/serve.py" <<'PY'
import http.server, os, sys, time
path, slow = sys.argv[1], float(sys.argv[3])
honour_range = len(sys.argv) < 5
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        data = open(path, "rb").read()
        start = 0
        rng = self.headers.get("Range") if honour_range else None
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416); self.end_headers(); return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data)-1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        with open(sys.argv[2], "a") as log: log.write(f"{start}\n")
        try:
            for i in range(start, len(data), 65536):
                self.wfile.write(data[i:i + 65536]); self.wfile.flush(); time.sleep(slow)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client was killed: that is the test
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
PY
python3 "$T/serve.py" "$M" "$T/ranges" 0.05 >"$T/port" &
srv=$!
trap 'kill $srv 2>/dev/null; rm -rf "$T"' EXIT
for _ in $(seq 50); do [ -s "$T/port" ] && break; sleep 0.1; done
url="http://127.0.0.1:$(cat "$T/port")/stories260K.gguf"
"$SLM_BIN" pull "$url" --name pulled --sha256 "$digest" --data-dir "$T/p" 2>/dev/null &
pull=$!
sleep 0.4
kill -9 $pull; wait $pull 2>/dev/null
partial=$(ls -A "$T/p/models/blobs/" 2>/dev/null | grep '^\.pull-' | head -1)
[ -z "$("$SLM_BIN" list --json --data-dir "$T/p")" ] && [ -n "$partial" ]; check "a killed pull leaves only its partial file" $?
"$SLM_BIN" pull "$url" --name pulled --sha256 "$digest" --data-dir "$T/p" 2>"$T/err"; check "the pull resumes ($(cat "$T/err"))" $?
[ "$(tail -1 "$T/ranges")" -gt 0 ]; check "the second request asked for the rest only (from byte $(tail -1 "$T/ranges"))" $?
[ -e "$T/p/models/blobs/sha256-$digest" ] && [ -z "$(ls -a "$T/p/models/blobs" | grep '^\.pull-')" ]; check "the verified blob is stored" $?
"$SLM_BIN" pull "$url" --name wrong --sha256 "$(printf '0%.0s' $(seq 64))" --data-dir "$T/q" 2>"$T/err"
[ $? = 1 ] && grep -q "does not match" "$T/err" && [ -z "$(ls -A "$T/q/models/blobs")" ]; check "a wrong sha256 keeps nothing" $?
"$SLM_BIN" pull "$url" --name gapped --air-gapped --data-dir "$T/r" 2>"$T/err"
[ $? = 1 ] && grep -qi "air-gapped" "$T/err"; check "air-gapped: refused ($(cat "$T/err"))" $?

# a server that ignores Range: the stale partial file is replaced, not appended to
python3 "$T/serve.py" "$M" "$T/ranges2" 0 norange >"$T/port2" &
srv2=$!
trap 'kill $srv $srv2 2>/dev/null; rm -rf "$T"' EXIT
for _ in $(seq 50); do [ -s "$T/port2" ] && break; sleep 0.1; done
url2="http://127.0.0.1:$(cat "$T/port2")/stories260K.gguf"
mkdir -p "$T/s/models/blobs"
head -c 5000 /dev/urandom >"$T/s/models/blobs/.pull-url-$(printf '%s' "$url2" | sha256sum | cut -c1-32)"
"$SLM_BIN" pull "$url2" --sha256 "$digest" --data-dir "$T/s" 2>"$T/err"; check "a server ignoring Range: the pull starts over ($(cat "$T/err"))" $?
"$SLM_BIN" list --json --data-dir "$T/s" | grep -q '"name":"stories260K:latest"'; check "the name defaults to the URL's file name" $?

echo "models: $pass passed, $fail failed"
[ "$fail" = 0 ]
