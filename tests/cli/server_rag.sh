#!/usr/bin/env bash
# The retrieval API of `slm serve` with curl: collections, uploads (multipart, JSON text, base64),
# search (bm25; vector and hybrid when the bge test model exists), removal, per-key collection
# scopes (403 naming the collection, lists filtered), PII masking at ingest, chat completions with
# "rag" (citations checked against the uploaded bytes, streamed and not, refused combinations), and
# hostile uploads (a fake PDF, a zip bomb as .docx, an upload over the body limit, binary junk, names
# with '..' or '/'): one clear error each, and the collection answers the same search afterwards.
# Then tests/npm/rag.test.mjs with the official `openai` npm client.
set -euo pipefail
. "$SLM_SRC/tests/npm/server_lib.sh"
srv_require_curl
command -v python3 >/dev/null || srv_skip "python3 is not installed"
models_dir="${SLM_TEST_MODELS:-$SLM_BUILD/testdata}"
bge="$models_dir/bge-small-q8_0.gguf"
extra=()
if [ -f "$bge" ]; then
  extra=(--model "$bge")
else
  echo "server_rag: $bge absent (scripts/gen-test-models.sh writes it); vector search not tested" >&2
fi

fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
T="$SRV_TMP"
data="$T/data"
# keys before the server starts: an admin key (every collection) and one scoped to "kb"
ADMIN=$("$SLM_BIN" keys create --name admin --admin --data-dir "$data")
READER=$("$SLM_BIN" keys create --name reader --collections kb,shared --data-dir "$data")
export SLM_KEY="$ADMIN"
# a small body limit, so the oversize upload is cheap
srv_start --data-dir "$data" --max-body-bytes 1048576 -np 2 --quiet "${extra[@]}"
U="$SLM_URL/v1/rag"

# req METHOD PATH KEY [curl args...]: the status in $T/status, the body in $T/body
req() {
  local m=$1 p=$2 k=$3
  shift 3
  curl -s -o "$T/body" -w '%{http_code}' -X "$m" -H "Authorization: Bearer $k" "$@" "$SLM_URL$p" > "$T/status" || echo 000 > "$T/status"
}
# expect STATUS [PYTHON-ASSERTION on b (the JSON body)] -- message. The status is checked now; the
# body is kept and every assertion runs in one python process at the end (check_bodies), since a
# python start costs a quarter of a second on a busy machine.
mkdir -p "$T/checks"
n_checks=0
expect() {
  local want=$1 check=${2:-True} what=$3
  local got
  got=$(cat "$T/status")
  if [ "$got" != "$want" ]; then
    fail "$what: status $got, want $want: $(head -c 400 "$T/body")"
    return
  fi
  n_checks=$((n_checks + 1))
  cp "$T/body" "$T/checks/$n_checks.json"
  printf '%s' "$check" > "$T/checks/$n_checks.check"
  printf '%s' "$what" > "$T/checks/$n_checks.what"
}
check_bodies() {
  local bad
  bad=$(python3 - "$T/checks" "$n_checks" <<'EOF'
import json, sys
d, n, bad = sys.argv[1], int(sys.argv[2]), 0
for i in range(1, n + 1):
    check = open(f"{d}/{i}.check").read()
    what = open(f"{d}/{i}.what").read()
    text = open(f"{d}/{i}.json").read()
    try:
        b = json.loads(text)
        ok = eval(check, {"json": json, "b": b})
    except Exception as e:
        ok = False
        text = f"{e!r}: {text}"
    if not ok:
        print(f"FAIL: {what}: {text[:400]}", file=sys.stderr)
        bad += 1
print(bad)
EOF
)
  fails=$((fails + ${bad:-1}))
}
json() { req "$1" "$2" "$ADMIN" -H 'Content-Type: application/json' -d "$3"; }

# ---------- collections ----------
json POST /v1/rag/collections '{"name":"kb","chunk_tokens":32}'
expect 201 'b["name"] == "kb" and b["documents"] == 0 and b["pii"] == "off" and b["embed_model"] is None' "create"
json POST /v1/rag/collections '{"name":"kb"}'
expect 409 'b["error"]["code"] == "collection_exists" and b["error"]["param"] == "name"' "create twice"
json POST /v1/rag/collections '{"name":"../x"}'
expect 400 'b["error"]["param"] == "name"' "bad collection name"
json POST /v1/rag/collections '{"name":"y","colour":"red"}'
expect 400 'b["error"]["param"] == "colour"' "unknown create field"
json POST /v1/rag/collections '{"name":"y","pii":"shred"}'
expect 400 'b["error"]["param"] == "pii"' "bad pii option"
json POST /v1/rag/collections '{"name":"y","embed_model":"/etc/passwd"}'
expect 400 'b["error"]["param"] == "embed_model"' "embed_model must be a served model's id"
json POST /v1/rag/collections '{"name":"y","chunk_tokens":3}'
expect 400 'b["error"]["param"] == "chunk_tokens"' "chunk_tokens range"
json POST /v1/rag/collections '{"name":"other"}'
expect 201 True "create other"
json POST /v1/rag/collections '{"name":"priv","pii":"mask"}'
expect 201 'b["pii"] == "mask"' "create with pii mask"
req GET /v1/rag/collections/kb "$ADMIN"
expect 200 'b["name"] == "kb" and b["chunk_tokens"] == 32' "get collection"
req GET /v1/rag/collections/nope "$ADMIN"
expect 404 'b["error"]["code"] == "collection_not_found"' "get a missing collection"
req PUT /v1/rag/collections "$ADMIN"
expect 405 True "PUT"
req DELETE /v1/rag/collections/kb/search "$ADMIN"
expect 405 True "DELETE on search"
req GET /v1/rag/nothing "$ADMIN"
expect 404 True "unknown path"

# ---------- documents ----------
printf '# Engines\n\nThe turbine compresses air before combustion.\n\n## Fuel\n\nKerosene burns in the combustor.\n' > "$T/engines.md"
printf 'Wings make lift.\n\nA swept wing delays compressibility effects.\n' > "$T/wings.txt"
printf '<html><body><h1>Blades</h1><p>Helicopter rotor blades flap.</p></body></html>' > "$T/rotors.html"
req POST /v1/rag/collections/kb/documents "$ADMIN" -F "file=@$T/engines.md"
expect 201 'b["status"] == "added" and b["name"] == "engines" and b["format"] == "md" and b["chunks"] >= 2' "multipart upload"
req POST /v1/rag/collections/kb/documents "$ADMIN" -F "file=@$T/engines.md"
expect 200 'b["status"] == "unchanged"' "same upload again"
json POST /v1/rag/collections/kb/documents "$(python3 -c 'import json,sys; print(json.dumps({"name": "wings.txt", "text": open(sys.argv[1]).read()}))' "$T/wings.txt")"
expect 201 'b["status"] == "added" and b["format"] == "txt"' "JSON text upload"
json POST /v1/rag/collections/kb/documents "{\"name\":\"rotors.html\",\"content_base64\":\"$(base64 -w0 "$T/rotors.html")\"}"
expect 201 'b["format"] == "html" and b["bytes"] > 60' "base64 upload"
json POST /v1/rag/collections/kb/documents '{"name":"notes","text":"Flaps raise lift at low speed."}'
expect 201 'b["format"] == "txt"' "JSON text without an extension is text"
req GET /v1/rag/collections/kb/documents "$ADMIN"
expect 200 'sorted(d["name"] for d in b["data"]) == ["engines", "notes", "rotors", "wings"]' "document list"

# ---------- search ----------
json POST /v1/rag/collections/kb/search '{"query":"which fuel burns in the combustor","top_k":1}'
expect 200 'len(b["data"]) == 1 and b["data"][0]["document"] == "engines" and "Kerosene" in b["data"][0]["text"] and b["mode"] == "bm25"' "search"
python3 - "$T/body" "$T/engines.md" <<'EOF' || fail "search hit is not the document's bytes at its offsets"
import json, sys
h = json.load(open(sys.argv[1]))["data"][0]
doc = open(sys.argv[2], "rb").read()
assert doc[h["start"]:h["end"]].decode() == h["text"], (h, doc)
EOF
json POST /v1/rag/collections/kb/search '{"query":"rotor blades"}'
expect 200 'b["data"][0]["document"] == "rotors"' "html search"
json POST /v1/rag/collections/kb/search '{"query":""}'
expect 400 'b["error"]["param"] == "query"' "empty query"
json POST /v1/rag/collections/kb/search '{"query":"x","top_k":100000}'
expect 400 'b["error"]["param"] == "top_k"' "top_k range"
json POST /v1/rag/collections/kb/search '{"query":"x","mode":"fuzzy"}'
expect 400 'b["error"]["param"] == "mode"' "unknown mode"
json POST /v1/rag/collections/kb/search '{"query":"x","mode":"vector"}'
expect 400 'b["error"]["code"] == "no_embeddings"' "vector mode without embeddings"
json POST /v1/rag/collections/kb/search '{"query":"x","limit":3}'
expect 400 'b["error"]["param"] == "limit"' "unknown search field"
json POST /v1/rag/collections/kb/search 'not json'
expect 400 True "search body not JSON"
json POST /v1/rag/collections/nope/search '{"query":"x"}'
expect 404 True "search a missing collection"

# ---------- hostile uploads: one clear error each, the collection intact ----------
json POST /v1/rag/collections/kb/search '{"query":"kerosene turbine wing rotor flaps","top_k":10}'
cp "$T/body" "$T/before.json"
req GET /v1/rag/collections/kb "$ADMIN"
cp "$T/body" "$T/coll_before.json"
printf 'hello, I am not a PDF' > "$T/fake.pdf"
req POST /v1/rag/collections/kb/documents "$ADMIN" -F "file=@$T/fake.pdf"
expect 400 'b["error"]["code"] == "invalid_document" and "not a PDF" in b["error"]["message"] and b["error"]["param"] == "file"' "fake PDF"
python3 - "$T/bomb.docx" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    with z.open("word/document.xml", "w", force_zip64=True) as f:
        block = b" " * (1 << 20)
        for _ in range(80):
            f.write(block)
EOF
[ "$(stat -c %s "$T/bomb.docx")" -lt 1048576 ] || fail "the zip bomb does not fit the body limit"
req POST /v1/rag/collections/kb/documents "$ADMIN" -F "file=@$T/bomb.docx"
expect 400 'b["error"]["code"] == "invalid_document" and "zip bomb" in b["error"]["message"]' "zip bomb as .docx"
printf 'PK\003\004not really a zip' > "$T/broken.docx"
req POST /v1/rag/collections/kb/documents "$ADMIN" -F "file=@$T/broken.docx"
expect 400 'b["error"]["code"] == "invalid_document"' "broken docx"
head -c 2000000 /dev/zero | tr '\0' 'a' > "$T/big.txt"
req POST /v1/rag/collections/kb/documents "$ADMIN" -F "file=@$T/big.txt"
expect 413 'b["error"]["code"] == "request_too_large"' "upload over the body limit"
head -c 3000 /dev/urandom > "$T/junk.txt"
req POST /v1/rag/collections/kb/documents "$ADMIN" -F "file=@$T/junk.txt"
expect 400 '"binary data" in b["error"]["message"]' "binary junk"
for name in '../evil.txt' 'a/b.txt' '..' '..\\x.txt'; do
  req POST /v1/rag/collections/kb/documents "$ADMIN" -F "file=@$T/wings.txt;filename=$name"
  expect 400 'b["error"]["code"] == "invalid_name"' "multipart name $name"
  json POST /v1/rag/collections/kb/documents "$(python3 -c 'import json,sys; print(json.dumps({"name": sys.argv[1], "text": "x"}))' "$name")"
  expect 400 'b["error"]["code"] == "invalid_name" and b["error"]["param"] == "name"' "JSON name $name"
done
printf 'x' > "$T/program.exe"
req POST /v1/rag/collections/kb/documents "$ADMIN" -F "file=@$T/program.exe"
expect 415 'b["error"]["code"] == "unsupported_format"' "unsupported format"
json POST /v1/rag/collections/kb/documents '{"name":"a.pdf","content_base64":"%%%not base64"}'
expect 400 'b["error"]["param"] == "content_base64"' "bad base64"
json POST /v1/rag/collections/kb/documents '{"name":"a.txt","text":"x","content_base64":"eA=="}'
expect 400 True "text and content_base64 together"
req POST /v1/rag/collections/kb/documents "$ADMIN" -H 'Content-Type: multipart/form-data; boundary=XYZ' --data-binary $'--XYZ\r\nContent-Disposition: form-data; name="file"; filename="cut.txt"\r\n\r\nno end'
expect 400 '"cut short" in b["error"]["message"]' "truncated multipart body"
req POST /v1/rag/collections/kb/documents "$ADMIN" -H 'Content-Type: multipart/form-data' --data-binary 'x'
expect 400 '"boundary" in b["error"]["message"]' "multipart without a boundary"
req POST /v1/rag/collections/kb/documents "$ADMIN" -F "file=@$T/wings.txt" -F "evil=1"
expect 400 'b["error"]["param"] == "evil"' "unknown form field"
json POST /v1/rag/collections/kb/search '{"query":"kerosene turbine wing rotor flaps","top_k":10}'
cmp -s "$T/body" "$T/before.json" || fail "search answers differently after the hostile uploads"
req GET /v1/rag/collections/kb "$ADMIN"
cmp -s "$T/body" "$T/coll_before.json" || fail "collection changed by hostile uploads: $(cat "$T/body")"

# ---------- PII masked at ingest ----------
json POST /v1/rag/collections/priv/documents '{"name":"contacts.txt","text":"Write to jane.doe@acme.org about the turbine today."}'
expect 201 True "upload to the masking collection"
json POST /v1/rag/collections/priv/search '{"query":"turbine"}'
expect 200 '"jane.doe@acme.org" not in json.dumps(b) and "[EMAIL_1]" in b["data"][0]["text"]' "PII masked before indexing"
json POST /v1/rag/collections/priv/search '{"query":"jane"}'
expect 200 'b["data"] == []' "the masked value is not searchable"

# ---------- per-key scopes ----------
req GET /v1/rag/collections "$READER"
expect 200 '[c["name"] for c in b["data"]] == ["kb"]' "scoped key lists only its collections"
req GET /v1/rag/collections "$ADMIN"
expect 200 'sorted(c["name"] for c in b["data"]) == ["kb", "other", "priv"]' "admin lists every collection"
req POST /v1/rag/collections/kb/search "$READER" -H 'Content-Type: application/json' -d '{"query":"kerosene"}'
expect 200 'b["data"][0]["document"] == "engines"' "scoped key searches its collection"
req POST /v1/rag/collections/other/search "$READER" -H 'Content-Type: application/json' -d '{"query":"kerosene"}'
expect 403 'b["error"]["code"] == "collection_not_allowed" and "other" in b["error"]["message"]' "scoped key, another collection"
req POST /v1/rag/collections/secret/documents "$READER" -H 'Content-Type: application/json' -d '{"name":"a.txt","text":"x"}'
expect 403 '"secret" in b["error"]["message"]' "scoped key, missing collection: 403 before 404"
req POST /v1/rag/collections "$READER" -H 'Content-Type: application/json' -d '{"name":"mine"}'
expect 403 '"mine" in b["error"]["message"]' "scoped key creates outside its scope"
req POST /v1/chat/completions "$READER" -H 'Content-Type: application/json' -d '{"messages":[{"role":"user","content":"fuel"}],"max_tokens":4,"rag":{"collection":"other"}}'
expect 403 'b["error"]["param"] == "rag.collection" and "other" in b["error"]["message"]' "scoped key, chat with another collection"
req GET /v1/rag/collections "bad-key"
expect 401 True "no valid key"
# a scoped key made over HTTP (POST /v1/keys) behaves the same
req POST /v1/keys "$ADMIN" -H 'Content-Type: application/json' -d '{"name":"web","collections":["priv"]}'
expect 201 'b["collections"] == ["priv"]' "POST /v1/keys with collections"
WEB=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["key"])' "$T/body")
req GET /v1/keys "$ADMIN"
expect 200 '[k["collections"] for k in b["data"] if k["name"] in ("reader", "web", "admin")] == [[], ["kb", "shared"], ["priv"]]' "keys list the scopes"
req GET /v1/rag/collections "$WEB"
expect 200 '[c["name"] for c in b["data"]] == ["priv"]' "HTTP-made scoped key lists its collection"
req POST /v1/rag/collections/kb/search "$WEB" -H 'Content-Type: application/json' -d '{"query":"kerosene"}'
expect 403 '"kb" in b["error"]["message"]' "HTTP-made scoped key, another collection"
req POST /v1/keys "$ADMIN" -H 'Content-Type: application/json' -d '{"name":"bad","collections":"a,,b"}'
expect 400 True "empty name in a collections list"

# ---------- chat completions with rag ----------
bracket=$("$SLM_BIN" tokenize "$(srv_model_path)" '[' --no-bos --ids | awk '{print $NF}')
chat() { req POST /v1/chat/completions "$ADMIN" -H 'Content-Type: application/json' -d "$1"; }
chat "{\"messages\":[{\"role\":\"user\",\"content\":\"which fuel burns in the combustor\"}],\"max_tokens\":12,\"temperature\":0,\"logit_bias\":{\"$bracket\":30},\"rag\":{\"collection\":\"kb\",\"top_k\":2}}"
expect 200 'b["citations"] and all("[%d]" % c["index"] in b["choices"][0]["message"]["content"] for c in b["citations"])' "chat with rag"
python3 - "$T/body" "$T" <<'EOF' || fail "chat citations do not quote the uploaded bytes"
import json, re, sys
b = json.load(open(sys.argv[1]))
answer = b["choices"][0]["message"]["content"]
files = {"engines": "engines.md", "wings": "wings.txt", "notes": None}
for c in b["citations"]:
    assert c["index"] in (1, 2), c
    assert files[c["document"]], c
    doc = open(f"{sys.argv[2]}/{files[c['document']]}", "rb").read()
    assert doc[c["start"]:c["end"]].decode() == c["quote"], (c, doc)
for m in re.finditer(r"\[", answer):
    assert re.match(r"\[[12]\]", answer[m.start():]) or len(answer) - m.start() < 3, answer
EOF
curl -sN -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' "$SLM_URL/v1/chat/completions" \
  -d "{\"messages\":[{\"role\":\"user\",\"content\":\"kerosene\"}],\"max_tokens\":8,\"temperature\":0,\"stream\":true,\"logit_bias\":{\"$bracket\":30},\"rag\":{\"collection\":\"kb\",\"top_k\":1}}" > "$T/stream"
python3 - "$T/stream" <<'EOF' || fail "streamed chat with rag: $(head -c 600 "$T/stream")"
import json, sys
events = [l[6:] for l in open(sys.argv[1]).read().split("\n") if l.startswith("data: ")]
assert events[-1] == "[DONE]", events[-1]
chunks = [json.loads(e) for e in events[:-1]]
answer = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
with_cites = [c for c in chunks if "citations" in c]
assert len(with_cites) == 1 and with_cites[0]["choices"][0]["finish_reason"], with_cites
cites = with_cites[0]["citations"]
assert cites and cites[0]["index"] == 1 and cites[0]["document"] == "engines" and "[1]" in answer, (answer, cites)
EOF
chat '{"messages":[{"role":"user","content":"zzzqqq xylophone"}],"max_tokens":6,"rag":{"collection":"kb"}}'
expect 200 'b["citations"] == [] and "[" not in b["choices"][0]["message"]["content"]' "chat with nothing retrieved"
chat '{"messages":[{"role":"user","content":"fuel"}],"rag":{"collection":"nope"}}'
expect 404 'b["error"]["param"] == "rag.collection"' "chat, missing collection"
chat '{"messages":[{"role":"user","content":"fuel"}],"rag":"kb"}'
expect 400 'b["error"]["param"] == "rag"' "rag not an object"
chat '{"messages":[{"role":"user","content":"fuel"}],"rag":{"collection":"kb","top_k":0}}'
expect 400 'b["error"]["param"] == "rag.top_k"' "rag.top_k range"
chat '{"messages":[{"role":"user","content":"fuel"}],"rag":{"collection":"kb","filter":1}}'
expect 400 'b["error"]["param"] == "rag.filter"' "unknown rag field"
chat '{"messages":[{"role":"user","content":"fuel"}],"rag":{"collection":"kb"},"grammar":"root ::= \"a\""}'
expect 400 'b["error"]["param"] == "rag"' "rag with a grammar"
chat '{"messages":[{"role":"user","content":"fuel"}],"rag":{"collection":"kb"},"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]}'
expect 400 'b["error"]["param"] == "rag" and "tool" in b["error"]["message"]' "rag with tools"
chat '{"messages":[{"role":"system","content":"be brief"}],"rag":{"collection":"kb"}}'
expect 400 'b["error"]["param"] == "messages"' "rag without a user message"
chat '{"messages":[{"role":"user","content":"fuel"}],"rag":{"collection":"kb"},"n":2}'
expect 400 'b["error"]["param"] == "n"' "rag with n > 1"
req POST /v1/completions "$ADMIN" -H 'Content-Type: application/json' -d '{"prompt":"fuel","rag":{"collection":"kb"}}'
expect 400 'b["error"]["param"] == "rag"' "rag on /v1/completions"
# Ollama's /api/chat takes the same "rag": citations on the last line, streamed and not (Ollama has
# no logit_bias to force a marker, so the check is that citations and markers agree)
req POST /api/chat "$ADMIN" -H 'Content-Type: application/json' \
  -d "{\"messages\":[{\"role\":\"user\",\"content\":\"kerosene\"}],\"stream\":false,\"options\":{\"num_predict\":8,\"temperature\":0},\"logit_bias\":{\"$bracket\":30},\"rag\":{\"collection\":\"kb\",\"top_k\":1}}"
expect 200 'b["done"] and isinstance(b["citations"], list) and all("[%d]" % c["index"] in b["message"]["content"] and c["document"] == "engines" for c in b["citations"]) and ("[1]" in b["message"]["content"]) == (len(b["citations"]) == 1)' "Ollama chat with rag"
curl -sN -H "Authorization: Bearer $ADMIN" "$SLM_URL/api/chat" \
  -d "{\"messages\":[{\"role\":\"user\",\"content\":\"kerosene\"}],\"options\":{\"num_predict\":8,\"temperature\":0},\"logit_bias\":{\"$bracket\":30},\"rag\":{\"collection\":\"kb\",\"top_k\":1}}" > "$T/ostream"
python3 - "$T/ostream" <<'EOF' || fail "streamed Ollama chat with rag: $(head -c 600 "$T/ostream")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
answer = "".join(l["message"]["content"] for l in lines)
assert lines[-1]["done"] and all(not l["done"] for l in lines[:-1]), lines
assert all("citations" not in l for l in lines[:-1]), lines
cites = lines[-1]["citations"]
assert isinstance(cites, list) and ("[1]" in answer) == (len(cites) == 1), (answer, cites)
assert all(c["index"] == 1 and c["document"] == "engines" for c in cites), cites
EOF
req POST /api/generate "$ADMIN" -H 'Content-Type: application/json' -d '{"prompt":"fuel","rag":{"collection":"kb"},"stream":false}'
expect 400 'b["error"]' "rag on /api/generate"

# ---------- vectors (with a served embedding model) ----------
if [ -f "$bge" ]; then
  json POST /v1/rag/collections '{"name":"vec","embed_model":"bge-small-q8_0","chunk_tokens":32}'
  expect 201 'b["embed_model"] == "bge-small-q8_0" and b["embed_model_served"]' "create with a served embedding model"
  req POST /v1/rag/collections/vec/documents "$ADMIN" -F "file=@$T/engines.md"
  expect 201 'b["chunks"] >= 2' "upload with embeddings"
  req POST /v1/rag/collections/vec/documents "$ADMIN" -F "file=@$T/wings.txt"
  expect 201 True "upload with embeddings 2"
  req GET /v1/rag/collections/vec "$ADMIN"
  expect 200 'b["dim"] == 384' "vectors stored"
  json POST /v1/rag/collections/vec/search '{"query":"kerosene combustor","mode":"vector","top_k":3}'
  expect 200 'b["mode"] == "vector" and len(b["data"]) == 3 and all(h["vector_rank"] == h["rank"] for h in b["data"])' "vector search"
  json POST /v1/rag/collections/vec/search '{"query":"kerosene combustor","top_k":2}'
  expect 200 'b["mode"] == "hybrid" and b["data"][0]["bm25_rank"] >= 1' "hybrid is the default with a served model"
  chat "{\"messages\":[{\"role\":\"user\",\"content\":\"kerosene\"}],\"max_tokens\":6,\"logit_bias\":{\"$bracket\":30},\"rag\":{\"collection\":\"vec\",\"top_k\":2,\"mode\":\"hybrid\"}}"
  expect 200 'b["citations"]' "chat with hybrid retrieval"
fi

# ---------- removal ----------
req GET /v1/rag/collections/kb/documents "$ADMIN"
wings_id=$(python3 -c 'import json,sys; print([d["id"] for d in json.load(open(sys.argv[1]))["data"] if d["name"] == "wings"][0])' "$T/body")
req DELETE "/v1/rag/collections/kb/documents/$wings_id" "$ADMIN"
expect 200 "b[\"deleted\"] and b[\"id\"] == $wings_id" "remove a document by id"
req DELETE "/v1/rag/collections/kb/documents/$wings_id" "$ADMIN"
expect 404 'b["error"]["code"] == "document_not_found"' "remove it again"
json POST /v1/rag/collections/kb/search '{"query":"swept wing"}'
expect 200 'all(h["document"] != "wings" for h in b["data"])' "removed document not found"
req DELETE /v1/rag/collections/kb/documents/notes "$ADMIN"
expect 200 True "remove a document by name"
req DELETE /v1/rag/collections/other "$READER"
expect 403 True "scoped key drops another collection"
req DELETE /v1/rag/collections/other "$ADMIN"
expect 200 'b["deleted"]' "drop a collection"
json POST /v1/rag/collections/other/search '{"query":"x"}'
expect 404 True "search a dropped collection"

srv_stop

# ---------- a small context: the sources that do not fit are dropped, worst first ----------
srv_start --data-dir "$data" -np 2 --ctx-size 1024 --quiet
json POST /v1/rag/collections '{"name":"wide"}'
expect 201 True "create a collection of 512-token chunks"
long=$(python3 -c 'print(" ".join(["The turbine burns kerosene fuel."] * 30))')
for i in 1 2 3 4 5; do
  json POST /v1/rag/collections/wide/documents "{\"name\":\"long$i.txt\",\"text\":\"$long ($i)\"}"
  expect 201 'b["chunks"] == 1' "long document $i"
done
# each source is ~400 tokens: one fits 1024 with the question and 16 to generate, five would not
chat "{\"messages\":[{\"role\":\"user\",\"content\":\"kerosene turbine\"}],\"max_tokens\":16,\"logit_bias\":{\"$bracket\":30},\"rag\":{\"collection\":\"wide\",\"top_k\":5}}"
expect 200 'b["usage"]["prompt_tokens"] + 16 <= 1024 and [c["index"] for c in b["citations"]] == [1]' "sources trimmed to the context"

# ---------- the official openai npm client ----------
if command -v node >/dev/null && command -v npm >/dev/null; then
  srv_npm_install
  node --test --test-concurrency=1 "$SLM_NPM_DIR/rag.test.mjs" || fail "tests/npm/rag.test.mjs"
else
  echo "server_rag: node/npm absent, tests/npm/rag.test.mjs not run" >&2
fi
srv_stop

check_bodies
[ $fails = 0 ] && echo "server_rag: ok ($n_checks responses checked)" && exit 0
echo "server_rag: $fails failures" >&2
exit 1
