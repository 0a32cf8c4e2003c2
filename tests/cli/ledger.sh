#!/usr/bin/env bash
# slm ledger report against a ledger made by real requests: a server with the local story model and a
# mock upstream (tests/cli/upstream_mock.py), both priced in the config. Local and upstream calls,
# streamed and not, under two keys; then `slm ledger report --json` must give exactly the counts and
# token sums of the responses' own usage, cost = tokens x price / 1e6, the counterfactual at the
# upstream's price and local_share, the same as GET /v1/ledger/summary, per route and per key. Then
# --since in each form, the table output, and hostile arguments (one error line, exit 2).
set -euo pipefail
. "$SLM_SRC/tests/npm/server_lib.sh"
srv_require_curl
command -v python3 >/dev/null || srv_skip "python3 is not installed"
srv_mock_upstream
model=$(srv_model_path)
D="$SRV_TMP/state"
fail() { echo "FAIL: $*" >&2; exit 1; }
key() { "$SLM_BIN" keys create --data-dir "$D" "$@" 2>/dev/null; }
KEY_ADMIN=$(key --name ops --admin)
KEY_APP=$(key --name app)
KEY_TEAM=$(key --name team)
cat >"$SRV_TMP/slm.yaml" <<YAML
models:
  local: { path: $model, price: { input: 0.1, output: 0.2 } }
upstreams:
  frontier: { url: $MOCK_URL, model: gpt-mock, price: { input: 2.5, output: 10.0 } }
YAML
srv_start --config "$SRV_TMP/slm.yaml" --data-dir "$D" --quiet
T_START=$(date +%s)

# The requests: each response's usage goes to $SRV_TMP/usage as "key route prompt completion".
export SLM_URL KEY_APP KEY_TEAM
python3 - "$SRV_TMP/usage" <<'PY'
import json, os, sys, urllib.request
url = os.environ["SLM_URL"] + "/v1/chat/completions"
out = open(sys.argv[1], "w")

def call(key_env, model, text, max_tokens, stream):
    body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    req = urllib.request.Request(url, json.dumps(body).encode(), {
        "Authorization": "Bearer " + os.environ[key_env], "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        route = r.headers["x-slm-route"]
        raw = r.read().decode()
    if stream:
        usage = None
        for line in raw.splitlines():
            if line.startswith("data: {"):
                usage = json.loads(line[6:]).get("usage") or usage
    else:
        usage = json.loads(raw)["usage"]
    assert usage and route in ("local", "upstream"), (route, raw[:300])
    out.write("%s %s %d %d\n" % (key_env, route, usage["prompt_tokens"], usage["completion_tokens"]))

call("KEY_APP", "local", "Once upon a time", 5, False)
call("KEY_APP", "local", "The little dog ran to the park", 9, False)
call("KEY_APP", "local", "Lily saw a bird", 7, True)
call("KEY_TEAM", "local", "Tom had a red ball", 3, False)
call("KEY_TEAM", "frontier", "What is the capital of France?", 50, False)
call("KEY_TEAM", "frontier", "Explain the proof of Fermat's last theorem in three words", 6, True)
call("KEY_APP", "frontier", "one two three", 50, False)
PY
[ "$(wc -l <"$SRV_TMP/usage")" = 7 ] || fail "expected 7 answered requests: $(cat "$SRV_TMP/usage")"

# The ledger row is written when the call ends, just after the reply: wait until all 7 are counted.
for _ in $(seq 50); do
  n=$(curl -s -H "Authorization: Bearer $KEY_ADMIN" "$SLM_URL/v1/ledger/summary" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])')
  [ "$n" = 7 ] && break
  sleep 0.1
done
[ "$n" = 7 ] || fail "the server's ledger counts $n requests, not 7"
curl -s -H "Authorization: Bearer $KEY_ADMIN" "$SLM_URL/v1/ledger/summary?by=route" >"$SRV_TMP/http_route.json"
curl -s -H "Authorization: Bearer $KEY_ADMIN" "$SLM_URL/v1/ledger/summary?by=key" >"$SRV_TMP/http_key.json"
# the CLI reads the store while the server runs (SQLite WAL), then once more after it stopped
"$SLM_BIN" ledger report --json --by route --data-dir "$D" >"$SRV_TMP/cli_route_live.json"
srv_stop

report() { "$SLM_BIN" ledger report --data-dir "$D" "$@"; }
report --json >"$SRV_TMP/all.json"
report --json --by route >"$SRV_TMP/route.json"
report --json --by key >"$SRV_TMP/key.json"
report --json --by model >"$SRV_TMP/model.json"
report --json --since "$((T_START + 3600))" >"$SRV_TMP/future.json"
report --json --since 1h >"$SRV_TMP/span.json"
report --json --since 1970-01-02 >"$SRV_TMP/date.json"
report --json --since "$(date -u -d "@$((T_START - 60))" +%Y-%m-%dT%H:%M:%SZ)" >"$SRV_TMP/rfc3339.json"
report --json --since "$(date -u -d "@$((T_START + 7200))" +%Y-%m-%dT%H:%M:%S)+01:00" >"$SRV_TMP/offset.json"
report --json --since all >"$SRV_TMP/sinceall.json"
for f in all route key model future span date rfc3339 offset sinceall; do
  [ "$(wc -l <"$SRV_TMP/$f.json")" = 1 ] || fail "--json printed more than one line ($f)"
done

python3 - "$SRV_TMP" <<'PY'
import json, sys
d = sys.argv[1]
load = lambda n: json.load(open(f"{d}/{n}.json"))
rows = [l.split() for l in open(f"{d}/usage")]
PRICE = {"local": (0.1, 0.2), "upstream": (2.5, 10.0)}
FRONTIER = PRICE["upstream"]

def expect(rs):
    p = sum(int(r[2]) for r in rs); c = sum(int(r[3]) for r in rs)
    cost = sum((int(r[2]) * PRICE[r[1]][0] + int(r[3]) * PRICE[r[1]][1]) / 1e6 for r in rs)
    frontier = sum((int(r[2]) * FRONTIER[0] + int(r[3]) * FRONTIER[1]) / 1e6 for r in rs)
    local = sum(r[1] == "local" for r in rs)
    return {"requests": len(rs), "prompt_tokens": p, "completion_tokens": c, "cost": cost,
            "frontier_cost": frontier, "savings": frontier - cost, "local_share": local / len(rs) if rs else 0.0}

def same(got, want, what):
    assert set(got) == set(want), f"{what}: fields {sorted(got)} != {sorted(want)}"
    for k, v in want.items():
        ok = got[k] == v if isinstance(v, int) and not isinstance(v, bool) and k != "local_share" else abs(got[k] - v) <= 1e-12 + 1e-9 * abs(v)
        assert ok, f"{what}: {k} = {got[k]!r}, expected {v!r}"

routes = {r[1] for r in rows}
assert routes == {"local", "upstream"}, routes
assert sum(r[1] == "local" for r in rows) == 4
assert all(int(r[3]) > 0 for r in rows), rows
same(load("all"), expect(rows), "all")
for name in ("route", "cli_route_live", "http_route"):
    got = load(name)
    assert got["by"] == "route" and set(got["groups"]) == {"local", "upstream"}, got
    same({k: v for k, v in got.items() if k not in ("by", "groups")}, expect(rows), name)
    for g in ("local", "upstream"):
        same(got["groups"][g], expect([r for r in rows if r[1] == g]), f"{name}/{g}")
assert load("route") == load("http_route"), "the CLI and GET /v1/ledger/summary disagree (by route)"
assert load("key") == load("http_key"), "the CLI and GET /v1/ledger/summary disagree (by key)"
keys = {"KEY_APP": "app", "KEY_TEAM": "team"}
assert set(load("key")["groups"]) == {"app", "team"}, load("key")
for env, name in keys.items():
    same(load("key")["groups"][name], expect([r for r in rows if r[0] == env]), f"key/{name}")
models = load("model")["groups"]
assert sum(g["requests"] for g in models.values()) == 7 and len(models) == 2, models
assert models["local"]["requests"] == 4 and models["local"]["local_share"] == 1.0, models
same(load("future"), expect([]), "--since in the future")
for n in ("span", "date", "rfc3339", "sinceall"):
    same(load(n), expect(rows), f"--since ({n})")
same(load("offset"), expect([]), "--since with an offset (one hour after the requests)")
print("ledger: 7 requests, cost %.9f vs frontier %.9f, local share %.3f: CLI = HTTP = the responses' usage"
      % (load("all")["cost"], load("all")["frontier_cost"], load("all")["local_share"]))
PY

# the table: totals and the groups, with the same numbers
report --by route >"$SRV_TMP/table.txt"
grep -q "^  requests           7 (local 4, upstream 3)$" "$SRV_TMP/table.txt" || fail "table: $(cat "$SRV_TMP/table.txt")"
grep -q "^  served locally     57.1%$" "$SRV_TMP/table.txt" || fail "table: $(cat "$SRV_TMP/table.txt")"
grep -Eq '^  savings            \$[0-9.]+ \([0-9]+\.[0-9]%\)$' "$SRV_TMP/table.txt" || fail "table: $(cat "$SRV_TMP/table.txt")"
grep -Eq '^local +4 ' "$SRV_TMP/table.txt" && grep -Eq '^upstream +3 ' "$SRV_TMP/table.txt" || fail "table: $(cat "$SRV_TMP/table.txt")"

# a key name with a terminal escape in the ledger (written straight into the store): the table shows
# it escaped, the JSON carries it as it is
python3 -c '
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1])
db.execute("INSERT INTO ledger (request_id, time, key, model, route, prompt_tokens, completion_tokens, cost,"
           " frontier_cost, latency_ms, status) VALUES (?, ?, ?, ?, ?, 1, 2, 0, 0, 1, 200)",
           ("x", time.time(), "evil\x1b[31mred", "local", "local"))
db.commit()' "$D/state.db"
report --by key >"$SRV_TMP/table.txt"
grep -qF 'evil\x1b[31mred ' "$SRV_TMP/table.txt" || fail "escaped key name: $(cat -v "$SRV_TMP/table.txt")"
! grep -q $'\x1b' "$SRV_TMP/table.txt" || fail "the table sent a raw escape byte to the terminal"
report --json --by key | python3 -c 'import json,sys; g=json.load(sys.stdin)["groups"]; assert g["evil\x1b[31mred"]["requests"] == 1, g'

# a name that is not UTF-8 (0xff) with a C1 CSI (U+009B): escaped in the table, U+FFFD in the JSON
python3 -c '
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1])
db.execute("INSERT INTO ledger (request_id, time, key, model, route, prompt_tokens, completion_tokens, cost,"
           " frontier_cost, latency_ms, status) VALUES (?, ?, CAST(? AS TEXT), ?, ?, 1, 2, 0, 0, 1, 200)",
           ("y", time.time(), b"bad\xff\xc2\x9bname", "local", "local"))
db.commit()' "$D/state.db"
report --by key >"$SRV_TMP/table.txt"
grep -qF 'bad\xff\u009bname ' "$SRV_TMP/table.txt" || fail "escaped non-UTF-8 name: $(cat -v "$SRV_TMP/table.txt")"
report --json --by key | python3 -c 'import json,sys; g=json.load(sys.stdin)["groups"]; assert g["bad\ufffd\u009bname"]["requests"] == 1 and len(g) == 4, g'

# hostile arguments: one error line each, exit 2, nothing on stdout
bad() {
  local rc=0
  "$SLM_BIN" ledger "$@" >"$SRV_TMP/bad.out" 2>"$SRV_TMP/bad.err" || rc=$?
  [ "$rc" = 2 ] || fail "ledger $*: exit $rc, expected 2"
  [ "$(wc -l <"$SRV_TMP/bad.err")" = 1 ] && [ ! -s "$SRV_TMP/bad.out" ] || fail "ledger $*: $(cat "$SRV_TMP/bad.err" "$SRV_TMP/bad.out")"
}
for s in "" bogus 24x 0h -5 1e3 2026-13-01 2026-02-30 "2026-12-05T25:00:00Z" "2026-12-05T10:00:00+1" 99999999999999999999d "24h "; do
  bad report --data-dir "$D" --since "$s"
done
grep -q "since" "$SRV_TMP/bad.err" || fail "the --since error does not name the option: $(cat "$SRV_TMP/bad.err")"
bad report --data-dir "$D" --by user
grep -q "'user' is not key, route or model" "$SRV_TMP/bad.err" || fail "--by error: $(cat "$SRV_TMP/bad.err")"
bad report --data-dir "$D" --by
bad report --data-dir "$D" --since
bad report --data-dir "$D" --frobnicate
bad report --data-dir ""
bad explode
# a missing data directory is reported, and not created by the report
rc=0
"$SLM_BIN" ledger report --data-dir "$SRV_TMP/nowhere" 2>"$SRV_TMP/bad.err" >/dev/null || rc=$?
[ "$rc" = 1 ] && grep -q "no data directory at $SRV_TMP/nowhere" "$SRV_TMP/bad.err" || fail "missing dir: rc $rc $(cat "$SRV_TMP/bad.err")"
[ ! -e "$SRV_TMP/nowhere" ] || fail "the report created the missing data directory"
mkdir "$SRV_TMP/empty"
rc=0
"$SLM_BIN" ledger report --data-dir "$SRV_TMP/empty" 2>"$SRV_TMP/bad.err" >/dev/null || rc=$?
[ "$rc" = 1 ] && grep -q "no state store" "$SRV_TMP/bad.err" || fail "empty dir: rc $rc $(cat "$SRV_TMP/bad.err")"
[ -z "$(ls -A "$SRV_TMP/empty")" ] || fail "the report wrote into an empty data directory"
"$SLM_BIN" ledger --help | grep -q "a span back from now" || fail "help does not document --since"
# a group recorded with bytes that are not UTF-8 (a store written by something else) is shown with
# U+FFFD in the HTTP summary rather than dropped from it
python3 - "$D/state.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("INSERT INTO ledger (request_id, time, key, model, route, prompt_tokens, completion_tokens, cost, frontier_cost, latency_ms, status)"
           " VALUES ('r-bad', strftime('%s','now'), 'app', CAST(X'6D6F64656CFF' AS TEXT), 'local', 1, 1, 0, 0, 1, 200)")
db.commit()
PY
srv_start --config "$SRV_TMP/slm.yaml" --data-dir "$D" --quiet
curl -s -H "Authorization: Bearer $KEY_ADMIN" "$SLM_URL/v1/ledger/summary?by=model" >"$SRV_TMP/bad_utf8.json"
srv_stop
python3 -c '
import json, sys
o = json.load(open(sys.argv[1])); g = o["groups"]
assert "model\ufffd" in g and g["model\ufffd"]["requests"] == 1, g
assert sum(v["requests"] for v in g.values()) == o["requests"], o' "$SRV_TMP/bad_utf8.json" || fail "non-UTF-8 group: $(cat "$SRV_TMP/bad_utf8.json")"
echo "ledger: report, groups, --since forms and 19 hostile arguments checked"
