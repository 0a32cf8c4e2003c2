#!/usr/bin/env bash
# Not part of ctest (minutes of CPU): aggregate generation tok/s of 1 vs 8 concurrent streams on
# the same model, for slm serve and, when built, llama-server -np 8.
#   tests/npm/bench_throughput.sh SLM_BIN MODEL [LLAMA_SERVER] [THREADS]
set -euo pipefail
bin=$1 model=$2 llama=${3:-} threads=${4:-2}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
wait_up() { for _ in $(seq 600); do curl -sf "$1/health" >/dev/null && return 0; sleep 0.1; done; echo "server did not come up" >&2; exit 1; }
run() { # name url
  local one eight
  one=$(node "$here/throughput.mjs" "$2" 1 128 3)
  eight=$(node "$here/throughput.mjs" "$2" 8 128 3)
  node -e 'const a=JSON.parse(process.argv[2]), b=JSON.parse(process.argv[3]);
    console.log(`${process.argv[1]}: 1 stream ${a.tok_per_s} tok/s, 8 streams ${b.tok_per_s} tok/s aggregate (${(b.tok_per_s/a.tok_per_s).toFixed(2)}x)`)' "$1" "$one" "$eight"
}
"$bin" serve --model "$model" --port 0 --port-file "$tmp/port" -np 8 -c 512 -t "$threads" --quiet 2>"$tmp/slm.log" &
pid=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
url="http://127.0.0.1:$(cat "$tmp/port")"
wait_up "$url"
run "slm serve -np 8" "$url"
kill "$pid"; wait "$pid" || true; pid=""
if [ -n "$llama" ] && [ -x "$llama" ]; then
  port=$((20000 + RANDOM % 20000))
  "$llama" -m "$model" --host 127.0.0.1 --port "$port" -np 8 -c 4096 -t "$threads" >"$tmp/llama.log" 2>&1 &
  pid=$!
  wait_up "http://127.0.0.1:$port"
  run "llama-server -np 8" "http://127.0.0.1:$port"
fi
