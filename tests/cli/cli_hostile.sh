#!/usr/bin/env bash
# Hostile inputs to the verbs: endless devices, huge files and unknown template names must give one
# clear error line and a non-zero exit, fast and in bounded memory, never an out-of-memory crawl.
set -u
SLM=${SLM_BIN:?}
SRC=${SLM_SRC:?}
DATA=${SLM_TEST_DATA:-$SRC/../shared}
M=$DATA/models/stories260K.gguf
if [ ! -f "$M" ]; then
  echo "cli_hostile: shared test data absent (set SLM_TEST_DATA; looked for $M)" >&2
  exit 77
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

MAX_KB=300000 # peak resident memory allowed for a refused input
SECS=20       # and time
have_time=0
/usr/bin/time -f %M true 2>/dev/null && have_time=1
# Virtual memory is capped at 2 GB so that a regression fails this test instead of exhausting the
# machine; an AddressSanitizer build cannot start under ulimit -v, so it gets ASan's own RSS cap.
vcap="ulimit -v 2000000"
if ! bash -c 'ulimit -v 2000000; "$0" --help; exit $?' "$SLM" >/dev/null 2>&1; then
  vcap=true
  export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}hard_rss_limit_mb=2000"
fi

# hostile NAME STDIN PATTERN -- ARGS...: the command must exit non-zero by itself within SECS with
# exactly one stderr line matching PATTERN (grep -E), and peak RSS under MAX_KB.
hostile() {
  local name=$1 input=$2 pattern=$3
  shift 4
  local rc
  (
    $vcap
    if [ $have_time = 1 ]; then
      exec /usr/bin/time -o "$tmp/time" -f %M timeout "$SECS" "$SLM" "$@" <"$input" >/dev/null 2>"$tmp/err"
    else
      exec timeout "$SECS" "$SLM" "$@" <"$input" >/dev/null 2>"$tmp/err"
    fi
  )
  rc=$?
  if [ $rc = 0 ]; then fail "$name: accepted"; return; fi
  if [ $rc = 124 ] || [ $rc = 137 ]; then fail "$name: still running after $SECS s"; return; fi
  # classify adds its progress summary line after the error; only the "slm <verb>:" lines count
  local errs
  errs=$(grep -c '^slm [a-z]*: ' "$tmp/err")
  [ "$errs" = 1 ] || fail "$name: $errs error lines: $(head -c 600 "$tmp/err")"
  grep -Eq "$pattern" "$tmp/err" || fail "$name: error does not match /$pattern/: $(head -c 600 "$tmp/err")"
  if [ $have_time = 1 ]; then
    local kb
    kb=$(tail -n 1 "$tmp/time")
    [[ "$kb" =~ ^[0-9]+$ ]] && [ "$kb" -lt $MAX_KB ] || fail "$name: peak memory ${kb} KB (limit $MAX_KB KB)"
  fi
}

Z=/dev/zero N=/dev/null
hostile "run -f /dev/zero" $N "/dev/zero: more than [0-9]+ bytes, the most that can fit the [0-9]+-token context" -- \
  run "$M" -f /dev/zero -n 1
hostile "run --json-schema /dev/zero" $N "/dev/zero: more than the 4 MiB limit for a JSON Schema" -- \
  run "$M" -p hi --json-schema /dev/zero -n 1
hostile "run --grammar /dev/zero" $N "/dev/zero: more than the 4 MiB limit for a grammar" -- \
  run "$M" -p hi --grammar /dev/zero -n 1
hostile "run -f - < /dev/zero" $Z "stdin: more than [0-9]+ bytes" -- run "$M" -f - -n 1
hostile "extract --schema /dev/zero" $N "/dev/zero: more than the 4 MiB limit for a JSON Schema" -- \
  extract "$M" --schema /dev/zero -p hi
hostile "extract -f /dev/zero" $N "/dev/zero: more than the 16 MiB limit" -- \
  extract "$M" --schema "$SRC/tests/schemas/01_person.json" -f /dev/zero
hostile "summarize < /dev/zero" $Z "stdin: more than the 16 MiB limit" -- summarize "$M"
hostile "perplexity -f /dev/zero" $N "/dev/zero: contains a NUL byte at offset 0" -- perplexity "$M" -f /dev/zero
hostile "tokenize < /dev/zero" $Z "stdin: more than the 16 MiB limit" -- tokenize "$M"
hostile "chat < /dev/zero" $Z "line is longer than 4 MiB" -- chat "$M" --chat-template chatml
hostile "classify < /dev/zero" $Z "line is longer than 4 MiB" -- classify "$M" --labels a,b

# A 50 MB prompt file is refused from its size, before it is read or tokenized.
yes "Once upon a time there was a little girl named Lily who loved to play in the park." | head -c 52428800 >"$tmp/big.txt"
hostile "run -f 50MB" $N "big.txt: 52428800 bytes, more than [0-9]+ bytes, the most that can fit" -- \
  run "$M" -f "$tmp/big.txt" -n 1
# perplexity streams a long text: chunks are scored as the text is read, in bounded memory (it is
# stopped once the first chunk is out; it would run on to the end of the 50 MB).
(
  $vcap
  if [ $have_time = 1 ]; then
    exec /usr/bin/time -o "$tmp/time" -f %M timeout "$SECS" "$SLM" perplexity "$M" -f "$tmp/big.txt" -c 128 -t 1 \
      >"$tmp/ppl" 2>"$tmp/err"
  else
    exec timeout "$SECS" "$SLM" perplexity "$M" -f "$tmp/big.txt" -c 128 -t 1 >"$tmp/ppl" 2>"$tmp/err"
  fi
) &
bg=$!
for _ in $(seq $((SECS * 10))); do
  grep -q '^\[1\][0-9.]*,' "$tmp/ppl" 2>/dev/null && break
  sleep 0.1
done
# timeout passes the signal on to slm
if [ $have_time = 1 ]; then kill -TERM $(pgrep -P $bg) 2>/dev/null; else kill -TERM $bg 2>/dev/null; fi
wait $bg
grep -q '^\[1\][0-9.]*,' "$tmp/ppl" || fail "perplexity -f 50MB: no chunk scored while streaming: $(head -c 300 "$tmp/ppl") $(head -c 300 "$tmp/err")"
if [ $have_time = 1 ]; then
  kb=$(tail -n 1 "$tmp/time")
  [[ "$kb" =~ ^[0-9]+$ ]] && [ "$kb" -lt $MAX_KB ] || fail "perplexity -f 50MB: peak memory ${kb} KB (limit $MAX_KB KB)"
fi
hostile "run --json-schema 50MB" $N "big.txt: 52428800 bytes, more than the 4 MiB limit for a JSON Schema" -- \
  run "$M" -p hi --json-schema "$tmp/big.txt" -n 1
hostile "run -f DIR" $N "is a directory" -- run "$M" -f "$tmp" -n 1

# A prompt file that fits is still read whole: the bound is not a cut.
printf 'Once upon a time' >"$tmp/small.txt"
out=$("$SLM" run "$M" -f "$tmp/small.txt" -n 8 --temp 0 2>/dev/null)
want=$("$SLM" run "$M" -p "Once upon a time" -n 8 --temp 0 2>/dev/null)
[ -n "$out" ] && [ "$out" == "$want" ] || fail "run -f small file: [$out] vs -p [$want]"

# Unknown --chat-template: refused at start-up, naming the known templates; serve exits by itself.
names="chatml, llama3, llama2"
hostile "serve --chat-template bogus" $N "'bogus' is not a known name.*$names" -- \
  serve --model "$M" --host 127.0.0.1 --port 0 --chat-template bogus --quiet
hostile "chat --chat-template bogus" $N "'bogus' is not a known name.*$names" -- chat "$M" --chat-template bogus

if [ $fails -gt 0 ]; then
  echo "cli_hostile: $fails failure(s)" >&2
  exit 1
fi
echo "cli_hostile: all checks passed"
