#!/usr/bin/env bash
# slm tokenize: exact bytes printed for a few texts (ids from llama.cpp's tokenize.jsonl),
# stdin input, --ids/--no-bos/--special, escaping, --help and errors.
set -u
bin=${SLM_BIN:?SLM_BIN not set}
shared=${SLM_TEST_DATA:-${SLM_SRC:-.}/../shared}
models=${SLM_TEST_MODELS:-${SLM_BUILD:-.}/testdata}
stories=$shared/models/stories260K.gguf
if [ ! -f "$stories" ]; then
  echo "tokenize.sh: $stories absent (set SLM_TEST_DATA)" >&2
  exit 77
fi
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

# default listing: id and quoted piece per line (SPM: BOS, pieces with their leading space)
"$bin" tokenize "$stories" "Hello world" >"$tmp/out" 2>"$tmp/err"
printf "     1 '<s>'\n   346 ' He'\n   306 'll'\n   414 'o'\n   263 ' w'\n   304 'or'\n   341 'ld'\n" >"$tmp/want"
expect "listing" "$tmp/want" "$tmp/out"

# --ids, with and without BOS
"$bin" tokenize "$stories" --ids "Hello world" >"$tmp/out"
printf '1 346 306 414 263 304 341\n' >"$tmp/want"
expect "--ids" "$tmp/want" "$tmp/out"
"$bin" tokenize "$stories" --no-bos --ids "Hello world" >"$tmp/out"
printf '346 306 414 263 304 341\n' >"$tmp/want"
expect "--no-bos --ids" "$tmp/want" "$tmp/out"

# text from stdin, control characters and backslash escaped
printf 'a\tb\n\\q' | "$bin" tokenize "$stories" - >"$tmp/out"
printf "     1 '<s>'\n   261 ' a'\n    12 '\\\\t'\n   430 'b'\n    13 '\\\\n'\n   500 '\\\\\\\\'\n   456 'q'\n" >"$tmp/want"
expect "stdin + escapes" "$tmp/want" "$tmp/out"

# a byte-fallback character is printed byte by byte as \xNN
"$bin" tokenize "$stories" --no-bos "😀" >"$tmp/out"
printf "   410 ' '\n   243 '\\\\xf0'\n   162 '\\\\x9f'\n   155 '\\\\x98'\n   131 '\\\\x80'\n" >"$tmp/want"
expect "byte pieces" "$tmp/want" "$tmp/out"

# --special on a ChatML vocabulary (vocab-only GGUF is enough)
smol=$models/tiny-smollm2-f32.gguf
[ -f "$smol" ] || smol=$models/smollm2-135m-vocab.gguf
if [ -f "$smol" ]; then
  printf '<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n' | "$bin" tokenize "$smol" --special --ids - >"$tmp/out"
  printf '1 4093 198 26843 665 2 198 1 520 9531 198\n' >"$tmp/want"
  expect "--special" "$tmp/want" "$tmp/out"
  "$bin" tokenize "$smol" --ids "<|im_start|>" >"$tmp/out"
  printf '44 108 306 79 3738 108 46\n' >"$tmp/want"
  expect "special text without --special" "$tmp/want" "$tmp/out"
else
  echo "tokenize.sh: no SmolLM2 GGUF in $models, --special case skipped" >&2
fi

# --help goes to stdout with status 0
if ! "$bin" tokenize --help >"$tmp/out" 2>&1 || ! grep -q '^usage: slm tokenize MODEL' "$tmp/out"; then
  echo "FAIL: --help" >&2
  fail=1
fi

# errors: one line on stderr, status 1
if "$bin" tokenize "$tmp/missing.gguf" x >"$tmp/out" 2>"$tmp/err" || ! grep -q '^slm tokenize: ' "$tmp/err"; then
  echo "FAIL: missing model should fail with a message" >&2
  fail=1
fi
if "$bin" tokenize "$stories" --bogus x >"$tmp/out" 2>"$tmp/err" || ! grep -q "unknown option '--bogus'" "$tmp/err"; then
  echo "FAIL: unknown option should fail" >&2
  fail=1
fi
exit $fail
