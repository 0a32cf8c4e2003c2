#!/usr/bin/env bash
# Not part of ctest (a minute or two): multi-model serving under load with --max-memory forcing
# evictions. Four models of the build's testdata (1.6 GB together) are imported into a fresh store;
# `slm serve --max-memory BOUND` (default 1G: at most two of them resident) gets CLIENTS concurrent
# clients, each sending short chat requests to a random one of the four for SECONDS. Prints failed
# requests (must be 0), loads, the largest sum of resident model bytes /api/ps reported, and the
# process's resident memory (VmRSS sampled every 0.1 s, and VmHWM) against the bound plus the
# server's own baseline (measured before the first model loads).
#   bench/ondemand_load.sh SLM_BIN [BOUND] [CLIENTS] [SECONDS]
set -euo pipefail
bin=$1
bound=${2:-1G}
clients=${3:-6}
seconds=${4:-60}
here=$(cd "$(dirname "$0")/.." && pwd)
models=${SLM_TEST_MODELS:-$here/build/testdata}
shared=${SLM_TEST_DATA:-$here/../shared}
tmp=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
names=()
for f in smollm2-135m-q8_0 qwen2.5-0.5b-q4_k_m phi3-mini-4l-q4_0 llama3.2-1b-q4_0; do
  [ -f "$models/$f.gguf" ] || { echo "ondemand_load: $models/$f.gguf absent (scripts/gen-test-models.sh all)" >&2; exit 1; }
  "$bin" import "$models/$f.gguf" --name "$f" --data-dir "$tmp/data" >/dev/null
  names+=("$f")
done
"$bin" serve --model "$shared/models/stories260K.gguf" --data-dir "$tmp/data" --no-audit --port 0 \
  --port-file "$tmp/port" -np 2 -c 512 --max-memory "$bound" 2>"$tmp/log" &
pid=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
url="http://127.0.0.1:$(cat "$tmp/port")"
for _ in $(seq 100); do [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/health")" = 200 ] && break; sleep 0.1; done
base_kb=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)

(while kill -0 $pid 2>/dev/null; do
  awk '/VmRSS/ {print $2}' /proc/$pid/status 2>/dev/null
  curl -s "$url/api/ps" | python3 -c 'import json,sys; print("ps", sum(m["size"] for m in json.load(sys.stdin)["models"]))' 2>/dev/null
  sleep 0.1
done) >"$tmp/samples" &
sampler=$!

end=$(($(date +%s) + seconds))
client() {
  local n=0 bad=0 me=$BASHPID
  while [ "$(date +%s)" -lt "$end" ]; do
    local m=${names[$((RANDOM % ${#names[@]}))]}
    code=$(curl -s -o "$tmp/body.$me" -w '%{http_code}' "$url/v1/chat/completions" -H 'Content-Type: application/json' \
      -d "{\"model\":\"$m\",\"messages\":[{\"role\":\"user\",\"content\":\"Tell me a story\"}],\"max_tokens\":16}")
    n=$((n + 1))
    [ "$code" = 200 ] || { bad=$((bad + 1)); echo "$code $(cat "$tmp/body.$me")" >>"$tmp/failures"; }
  done
  echo "$n $bad"
}
for c in $(seq "$clients"); do client >"$tmp/client.$c" & done
wait $(jobs -p | grep -v "^$sampler$" | grep -v "^$pid$") 2>/dev/null || true
for c in $(seq "$clients"); do while [ ! -s "$tmp/client.$c" ]; do sleep 0.1; done; done
cp "$tmp/log" /tmp/ondemand_load.log 2>/dev/null || true
hwm_kb=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
kill $sampler 2>/dev/null || true
total=0 bad=0
for c in $(seq "$clients"); do read -r n b <"$tmp/client.$c"; total=$((total + n)); bad=$((bad + b)); done
loads=$(grep -c "on demand" "$tmp/log" || true)
max_rss_kb=$(grep -v ps "$tmp/samples" | sort -n | tail -1)
max_ps=$(grep ^ps "$tmp/samples" | awk '{print $2}' | sort -n | tail -1)
bound_bytes=$(python3 -c "
import sys; v=sys.argv[1]; u={'K':1<<10,'M':1<<20,'G':1<<30,'T':1<<40}
print(int(float(v[:-1])*u[v[-1].upper()]) if v[-1].upper() in u else int(v))" "$bound")
echo "models: ${names[*]} ($(du -shL "$tmp/data/models/blobs" | cut -f1) together)"
echo "bound: --max-memory $bound = $bound_bytes bytes; $clients clients for $seconds s"
echo "requests: $total, failed: $bad; model loads: $loads"
[ -s "$tmp/failures" ] && sort "$tmp/failures" | uniq -c | head -5
echo "largest sum of resident model bytes (/api/ps): $max_ps ($(python3 -c "print(f'{$max_ps/$bound_bytes:.2f}')") of the bound)"
echo "process RSS: baseline $((base_kb / 1024)) MiB; max sampled $((max_rss_kb / 1024)) MiB; VmHWM $((hwm_kb / 1024)) MiB;" \
  "bound + baseline $(((bound_bytes / 1024 + base_kb) / 1024)) MiB"
[ "$bad" = 0 ] && [ "$max_ps" -le "$bound_bytes" ] && [ "$hwm_kb" -le $((bound_bytes / 1024 + base_kb)) ]
