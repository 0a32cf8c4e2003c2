#!/usr/bin/env bash
# Runs one libFuzzer target on a scratch copy of its seed corpus (the committed seeds stay clean).
#   fuzz/run.sh TARGET [SECONDS] [extra libFuzzer flags...]
# Env: BUILD (default <repo>/build-fuzz), WORK (default /tmp/slm-fuzz). Crash files land in
# $WORK/<target>-out/; the grown corpus in $WORK/<target>-corpus/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
target=${1:?usage: fuzz/run.sh TARGET [SECONDS] [libFuzzer flags...]}
seconds=${2:-180}
shift $(( $# >= 2 ? 2 : 1 ))
build=${BUILD:-$here/../build-fuzz}
work=${WORK:-/tmp/slm-fuzz}
name=${target#fuzz_}
bin=$build/fuzz_$name
[ -x "$bin" ] || { echo "run.sh: $bin is not built (cmake -DSLM_FUZZ=ON -DCMAKE_C_COMPILER=clang)" >&2; exit 1; }
corpus=$work/$name-corpus
out=$work/$name-out
mkdir -p "$corpus" "$out"
cp -n "$here/corpus/$name/"* "$corpus/" 2>/dev/null || true

# Per-target limits: inputs long enough for the structure, short enough to stay fast.
case $name in
  gguf) flags=(-max_len=4096 -malloc_limit_mb=256 -rss_limit_mb=1024) ;;
  grammar) flags=(-max_len=4096 -rss_limit_mb=2048 -timeout=20) ;;
  json_schema) flags=(-max_len=4096 -rss_limit_mb=2048 -timeout=20) ;;
  tokenizer) flags=(-max_len=1024 -rss_limit_mb=3072 -timeout=20) ;;
  http_request) flags=(-max_len=4096 -rss_limit_mb=2048 -timeout=20) ;;
  *) flags=() ;;
esac
cd "$out"
exec "$bin" -max_total_time="$seconds" -print_final_stats=1 "${flags[@]}" "$@" "$corpus"
