#!/usr/bin/env bash
# slm router: train on some MMLU subjects and evaluate on others (JSON shape, metrics in range, the
# random router's exact line); a cascade router on a held-out GSM8K fold must beat random by a clear
# margin; router info thresholds; hostile router files and CSVs give one error line and exit 1.
set -u
bin=${SLM_BIN:?SLM_BIN not set}
shared=${SLM_TEST_DATA:-${SLM_SRC:-.}/../shared}
data=$shared/router-data
if [ ! -f "$data/gsm8k/gsm8k_dev.csv" ] || [ ! -d "$data/mmlu" ]; then
  echo "router.sh: $data absent (set SLM_TEST_DATA)" >&2
  exit 77
fi
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
m=$data/mmlu

bad() { echo "FAIL: $*" >&2; fail=1; }

# one clear line on stderr, nothing on stdout, exit status 1
expect_error() { # name pattern command...
  local name=$1 pattern=$2
  shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  if [ $rc -ne 1 ] || [ -s "$tmp/out" ] || [ "$(wc -l <"$tmp/err")" -ne 1 ] || ! grep -q -- "$pattern" "$tmp/err"; then
    bad "$name: rc=$rc, stderr: $(head -c 300 "$tmp/err")"
  fi
}

# --- prompt router: 4 subjects in, 3 unseen subjects out
"$bin" router train --data "$m/mmlu_high_school_psychology.csv" "$m/mmlu_formal_logic.csv" \
  "$m/mmlu_college_mathematics.csv" "$m/mmlu_nutrition.csv" -o "$tmp/prompt.rt" --seed 3 2>"$tmp/err" ||
  bad "prompt train: $(cat "$tmp/err")"
"$bin" router eval --router "$tmp/prompt.rt" --data "$m/mmlu_abstract_algebra.csv" \
  "$m/mmlu_high_school_geography.csv" "$m/mmlu_professional_psychology.csv" --json >"$tmp/eval.json" 2>"$tmp/err" ||
  bad "prompt eval: $(cat "$tmp/err")"
python3 - "$tmp/eval.json" <<'EOF' || fail=1
import json, math, sys
text = open(sys.argv[1]).read()
assert text.count("\n") == 1, "one JSON object on one line"
d = json.loads(text)
def check(m, name):
    for k in ("apgr", "cpt50", "cpt80", "share_at_95", "curve", "local_acc", "frontier_acc"):
        assert k in m, f"{name}: no {k}"
    for k in ("cpt50", "cpt80", "share_at_95"):
        assert 0 <= m[k] <= 1, f"{name}: {k}={m[k]}"
    assert m["cpt50"] <= m["cpt80"] + 1e-12, f"{name}: cpt50 > cpt80"
    assert -1 <= m["apgr"] <= 2, f"{name}: apgr {m['apgr']}"
    c = m["curve"]
    assert len(c) == 21 and all(len(p) == 2 for p in c), f"{name}: curve shape"
    assert all(abs(p[0] - i / 20) < 1e-9 for i, p in enumerate(c)), f"{name}: curve shares"
    assert all(0 <= p[1] <= 1 for p in c), f"{name}: accuracies"
    assert abs(c[0][1] - m["local_acc"]) < 1e-8 and abs(c[20][1] - m["frontier_acc"]) < 1e-8, f"{name}: curve ends"
# 100 + 198 + 612 prompts; local right 32 + 171 + 461 = 664, frontier right 46 + 187 + 544 = 777
assert d["n"] == 910, d["n"]
assert abs(d["local_acc"] - 664 / 910) < 1e-8 and abs(d["frontier_acc"] - 777 / 910) < 1e-8, d
check(d, "router")
r = d["random"]
check(r, "random")
assert abs(r["apgr"] - 0.5) < 1e-8 and abs(r["cpt50"] - 0.5) < 1e-8 and abs(r["cpt80"] - 0.8) < 1e-8, r
gap = d["frontier_acc"] - d["local_acc"]
assert abs(r["share_at_95"] - (0.95 * d["frontier_acc"] - d["local_acc"]) / gap) < 1e-8, r
assert all(abs(p[1] - (d["local_acc"] + p[0] * gap)) < 1e-8 for p in r["curve"]), "random curve is the line"
EOF

# --- cascade router: GSM8K, fold 0 of 3 held out; the local answer must make it clearly beat random
g=$data/gsm8k/gsm8k_dev.csv
"$bin" router train --kind cascade --data "$g" --fold 0/3 -o "$tmp/cascade.rt" 2>"$tmp/err" || bad "cascade train: $(cat "$tmp/err")"
"$bin" router eval --router "$tmp/cascade.rt" --data "$g" --fold 0/3 --json >"$tmp/cascade.json" 2>"$tmp/err" ||
  bad "cascade eval: $(cat "$tmp/err")"
python3 - "$tmp/cascade.json" <<'EOF' || fail=1
import json, sys
d = json.load(open(sys.argv[1]))
assert 150 < d["n"] < 300, d["n"]  # about a third of 667
r = d["random"]
assert d["apgr"] >= r["apgr"] + 0.15, f"cascade APGR {d['apgr']:.3f} vs random {r['apgr']:.3f}"
assert d["cpt80"] <= r["cpt80"] - 0.2, f"cascade CPT80 {d['cpt80']:.3f} vs random {r['cpt80']:.3f}"
assert d["share_at_95"] <= r["share_at_95"] - 0.2, f"share_at_95 {d['share_at_95']:.3f} vs {r['share_at_95']:.3f}"
EOF
# the same router on the training folds is not what is asserted above: fold 0 was never seen
"$bin" router eval --router "$tmp/cascade.rt" --data "$g" --fold 0/3 >"$tmp/human" || bad "eval text form"
grep -q '^router ' "$tmp/human" && grep -q '^random ' "$tmp/human" || bad "eval text form: $(cat "$tmp/human")"

# --- info: thresholds fall as the share rises; share 0 is never, 1 always
"$bin" router info "$tmp/cascade.rt" --share 0 --share 0.1 --share 0.5 --share 1 >"$tmp/info" 2>"$tmp/err" || bad "info: $(cat "$tmp/err")"
python3 - "$tmp/info" <<'EOF' || fail=1
import sys
lines = open(sys.argv[1]).read().splitlines()
assert lines[0] == "kind cascade", lines
t = [float(l.split()[-1]) for l in lines[1:]]
assert t[0] == float("inf") and t[3] == 0 and 1 >= t[1] >= t[2] > 0, t
EOF

# --- hostile inputs
head -c 1000 "$tmp/prompt.rt" >"$tmp/trunc.rt"
expect_error "truncated router" "truncated" "$bin" router eval --router "$tmp/trunc.rt" --data "$g"
expect_error "csv as router" "not a router file" "$bin" router info "$g"
expect_error "missing router" "No such file" "$bin" router eval --router "$tmp/none.rt" --data "$g"
printf 'prompt,a,b\n"never closed,True,False\n' >"$tmp/open.csv"
expect_error "unterminated quote" "line 2: quoted field never closed" "$bin" router train --data "$tmp/open.csv" -o "$tmp/x.rt"
head -c 3000 /dev/urandom >"$tmp/garbage.csv"
expect_error "garbage csv" "garbage.csv" "$bin" router train --data "$tmp/garbage.csv" -o "$tmp/x.rt"
printf 'prompt,a,b\nq,maybe,True\n' >"$tmp/bool.csv"
expect_error "bad boolean" "line 2: the correctness columns must be True or False" "$bin" router eval --router "$tmp/prompt.rt" --data "$tmp/bool.csv"
expect_error "no answers for a cascade" "_response" "$bin" router train --kind cascade --data "$m/mmlu_management.csv" -o "$tmp/x.rt"
expect_error "bad fold" "--fold" "$bin" router eval --router "$tmp/prompt.rt" --data "$g" --fold 3/3
expect_error "unknown feature" "unknown name" "$bin" router train --data "$g" --features dense,nope -o "$tmp/x.rt"
[ -e "$tmp/x.rt" ] && bad "a failed train left a router file"
"$bin" router --help >/dev/null || bad "--help"

[ $fail -eq 0 ] && echo "router.sh: ok"
exit $fail
