#!/usr/bin/env bash
# The architecture rules hold (scripts/check-arch.py): no include cycle between the folders of src/,
# front ends include only the public headers. And the check can fail: a copy of the tree with a
# cycle, and one with a front end reaching into the library, must each be refused by name.
set -u
SRC=${SLM_SRC:?}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

out=$(python3 "$SRC/scripts/check-arch.py" 2>&1) || fail "the tree breaks the rules: $out"

copy() { rm -rf "$tmp/t"; mkdir -p "$tmp/t"; cp -r "$SRC/src" "$SRC/include" "$SRC/scripts" "$tmp/t/"; }

copy # the tokenizer reaching up into the model layer closes a cycle (model -> tokenizer -> model)
sed -i '1i #include "model/model.h"' "$tmp/t/src/tokenizer/api.c"
out=$(python3 "$tmp/t/scripts/check-arch.py" 2>&1) && fail "a model <-> tokenizer cycle passed"
grep -q "include cycle between folders model -> tokenizer -> model" <<<"$out" || fail "cycle not named: $out"

copy # a front end including a private header
sed -i '1i #include "util/err.h"' "$tmp/t/src/cli/main.c"
out=$(python3 "$tmp/t/scripts/check-arch.py" 2>&1) && fail "a front end including util/err.h passed"
grep -q 'src/cli/main.c: front end includes the private header "util/err.h"' <<<"$out" || fail "private include not named: $out"

copy # a header that exists nowhere
sed -i '1i #include "nowhere/missing.h"' "$tmp/t/src/engine/engine.c"
out=$(python3 "$tmp/t/scripts/check-arch.py" 2>&1) && fail "a missing header passed"

# the build agrees: the front ends compile with include/ only (no -I.../src for the slm target)
grep -q 'target_include_directories(slmcore PUBLIC include PRIVATE src)' "$SRC/CMakeLists.txt" ||
  fail "CMakeLists.txt exports src/ to the front ends"

[ $fails -eq 0 ] && echo "arch_check: ok" && exit 0
exit 1
