#!/usr/bin/env bash
# slm redact: exact output bytes for JSONL and plain lines in mask/detect modes, --json and plain,
# code-point offsets, placeholders numbered per line, hostile lines (bad JSON, wrong shape, invalid
# UTF-8, NUL) reported with their line number and exit status 1 after the other lines; then, when
# $SLM_TEST_DATA is set, scripts/pii_eval.py on pii-data/dev.jsonl must meet the targets.
set -u
bin=${SLM_BIN:?SLM_BIN not set}
src=${SLM_SRC:-.}
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

expect() { # name expected-file actual-file
  if ! cmp -s "$2" "$3"; then
    echo "FAIL: $1" >&2
    diff "$2" "$3" | head -20 >&2
    fail=1
  fi
}

# --json, mask mode: offsets in code points (the dash and é are one each), one placeholder per value
printf '%s\n' 'Hi Anna, mail anna@gmail.com or ANNA: anna@gmail.com' \
  '{"id":7,"text":"call +1-202-555-0143 — é DE89370400440532013000","other":1}' \
  'no pii here, version 10.2.3.4' >"$tmp/in"
"$bin" redact --json <"$tmp/in" >"$tmp/out" 2>"$tmp/err"
rc=$?
cat >"$tmp/want" <<'W'
{"text":"Hi Anna, mail anna@gmail.com or ANNA: anna@gmail.com","spans":[{"start":3,"end":7,"label":"PERSON"},{"start":14,"end":28,"label":"EMAIL"},{"start":38,"end":52,"label":"EMAIL"}],"redacted":"Hi [PERSON_1], mail [EMAIL_1] or ANNA: [EMAIL_1]"}
{"id":7,"text":"call +1-202-555-0143 — é DE89370400440532013000","spans":[{"start":5,"end":20,"label":"PHONE"},{"start":25,"end":47,"label":"IBAN"}],"redacted":"call [PHONE_1] — é [IBAN_1]"}
{"text":"no pii here, version 10.2.3.4","spans":[],"redacted":"no pii here, version 10.2.3.4"}
W
expect "--json mask" "$tmp/want" "$tmp/out"
[ "$rc" -eq 0 ] && [ ! -s "$tmp/err" ] || { echo "FAIL: --json mask: rc $rc, stderr $(cat "$tmp/err")" >&2; fail=1; }

# plain output of mask mode: the redacted text per line; placeholders restart on each line
printf 'Dear Mr. Collins, SSN 123-45-6789\nmail bob@corp.io and jo@corp.io\nmail jo@corp.io\n' |
  "$bin" redact >"$tmp/out"
printf 'Dear Mr. [PERSON_1], SSN [US_SSN_1]\nmail [EMAIL_1] and [EMAIL_2]\nmail [EMAIL_1]\n' >"$tmp/want"
expect "plain mask" "$tmp/want" "$tmp/out"

# detect mode: --json has no "redacted"; plain lists LINE LABEL START END VALUE
printf 'born 1980? DOB: 03/12/1985\n' | "$bin" redact --mode detect --json >"$tmp/out"
printf '{"text":"born 1980? DOB: 03/12/1985","spans":[{"start":16,"end":26,"label":"DATE_OF_BIRTH"}]}\n' >"$tmp/want"
expect "detect --json" "$tmp/want" "$tmp/out"
printf 'x\n{"text":"Wohnort: Celle\\nIP 192.168.1.20"}\n' | "$bin" redact --mode=detect >"$tmp/out"
printf '2\tLOCATION\t9\t14\tCelle\n2\tIP_ADDRESS\t18\t30\t192.168.1.20\n' >"$tmp/want"
expect "detect plain" "$tmp/want" "$tmp/out"

# hostile lines: every line is answered (an error object keeps --json output aligned), the
# errors name their lines, the exit status is 1; NUL inside a JSON string is text
printf '{"text":"a\\u0000 bob@corp.io"}\n{"text": 5}\n{broken\n\xff\xfe mail x@corp.io\n[1,2]\nok\n' >"$tmp/in"
"$bin" redact --json <"$tmp/in" >"$tmp/out" 2>"$tmp/err"
rc=$?
cat >"$tmp/want" <<'W'
{"text":"a\u0000 bob@corp.io","spans":[{"start":3,"end":14,"label":"EMAIL"}],"redacted":"a\u0000 [EMAIL_1]"}
{"line":2,"error":"a JSON line must be an object with a string \"text\""}
{"line":3,"error":"invalid JSON at column 7: string or '}' expected near 'broken'"}
{"line":4,"error":"text is not valid UTF-8"}
{"text":"[1,2]","spans":[],"redacted":"[1,2]"}
{"text":"ok","spans":[],"redacted":"ok"}
W
expect "hostile --json" "$tmp/want" "$tmp/out"
cat >"$tmp/want" <<'W'
slm redact: line 2: a JSON line must be an object with a string "text"
slm redact: line 3: invalid JSON at column 7: string or '}' expected near 'broken'
slm redact: line 4: text is not valid UTF-8
slm redact: 3 line(s) could not be processed
W
expect "hostile stderr" "$tmp/want" "$tmp/err"
[ "$rc" -eq 1 ] || { echo "FAIL: hostile input: exit status $rc, want 1" >&2; fail=1; }
# plain mode passes invalid UTF-8 through byte for byte
printf '\xff mail x@corp.io\n' | "$bin" redact >"$tmp/out"
printf '\xff mail [EMAIL_1]\n' >"$tmp/want"
expect "plain invalid UTF-8" "$tmp/want" "$tmp/out"

# usage errors
"$bin" redact --mode nope </dev/null >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 1 ] && grep -q "unknown --mode 'nope'" "$tmp/err" || { echo "FAIL: --mode nope (rc $rc)" >&2; fail=1; }
"$bin" redact --bogus </dev/null >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "unknown argument '--bogus'" "$tmp/err" || { echo "FAIL: --bogus" >&2; fail=1; }
"$bin" redact --help >"$tmp/out" && grep -q "code points" "$tmp/out" || { echo "FAIL: --help" >&2; fail=1; }

# quality targets on the labelled development set
if [ -n "${SLM_TEST_DATA:-}" ]; then
  data=$SLM_TEST_DATA/pii-data/dev.jsonl
  if [ ! -f "$data" ]; then
    echo "FAIL: SLM_TEST_DATA set but $data absent" >&2
    fail=1
  elif ! command -v python3 >/dev/null; then
    echo "FAIL: python3 needed for scripts/pii_eval.py" >&2
    fail=1
  elif ! python3 "$src/scripts/pii_eval.py" --slm "$bin" --data "$data" --check >"$tmp/eval" 2>&1; then
    cat "$tmp/eval" >&2
    echo "FAIL: pii_eval targets" >&2
    fail=1
  else
    tail -2 "$tmp/eval"
  fi
else
  echo "redact.sh: SLM_TEST_DATA not set, quality targets not checked" >&2
fi
exit $fail
