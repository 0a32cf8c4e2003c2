#!/usr/bin/env bash
# Not part of ctest (a minute or two of CPU): aggregate generation tok/s of 8 concurrent streams
# each applying a DIFFERENT LoRA adapter (rank 8 on q,k,v,o,gate,up,down; one batch, eight adapter
# sets) vs 8 streams without adapters, on one `slm serve -np 8`. Rounds alternate (with, without)
# so machine noise hits both; the medians and their ratio are printed (target >= 0.8x), as wall-clock
# tokens per second (the throughput) and as tokens per CPU-second of the server (steadier when other
# work shares the machine: run it a few times and note `uptime`'s load).
#   bench/lora_throughput.sh SLM_BIN [MODEL [PRESET]] [ROUNDS] [THREADS]
# MODEL defaults to build/testdata/smollm2-135m-q8_0.gguf (scripts/gen-test-models.sh all), whose
# adapters are made with synth_gguf.py --adapter-for PRESET (default smollm2-135m); LORA_TARGETS picks
# the adapted matrices (default all seven; PEFT's default for llama models is q,v).
set -euo pipefail
bin=$1
here=$(cd "$(dirname "$0")/.." && pwd)
model=${2:-$here/build/testdata/smollm2-135m-q8_0.gguf}
preset=${3:-smollm2-135m}
rounds=${4:-5}
threads=${5:-2}
shared=${SLM_TEST_DATA:-$here/../shared}
[ -f "$model" ] || { echo "lora_throughput: $model absent (scripts/gen-test-models.sh all)" >&2; exit 1; }
tmp=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
args=()
targets=${LORA_TARGETS:-q,k,v,o,gate,up,down}
echo "adapters: rank 8 on $targets, model $(basename "$model"), $threads threads"
for i in 0 1 2 3 4 5 6 7; do
  python3 "$shared/tools/synth_gguf.py" --adapter-for "$preset" --rank 8 --alpha 16 --seed $((i + 1)) --targets "$targets" \
    --lora-rel 0.25 -o "$tmp/a$i.gguf" 2>/dev/null
  args+=(--lora "$tmp/a$i.gguf:0")
done
"$bin" serve --model "$model" --port 0 --port-file "$tmp/port" --no-data-dir -np 8 -c 512 -t "$threads" \
  "${args[@]}" --quiet 2>"$tmp/slm.log" &
pid=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
url="http://127.0.0.1:$(cat "$tmp/port")"
for _ in $(seq 600); do curl -sf "$url/health" >/dev/null && break; sleep 0.1; done
python3 - "$url" "$rounds" "$pid" <<'EOF'
import json, os, statistics, sys, threading, time, urllib.request
url, rounds, pid = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def cpu_seconds():  # the server's user + system time: steadier than wall time on a shared machine
    f = open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
prompts = ["Once upon a time", "The weather today", "In a small village", "My favourite food",
           "The history of", "A good friend", "The first step", "On the mountain"]
def one(i, lora, out):
    body = {"prompt": prompts[i], "max_tokens": 96, "temperature": 0, "ignore_eos": True}
    if lora: body["lora"] = [{"id": i, "scale": 1.0}]
    req = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        out[i] = json.loads(r.read())["usage"]["completion_tokens"]
def round_(lora):
    out = [0] * 8
    ts = [threading.Thread(target=one, args=(i, lora, out)) for i in range(8)]
    t0, c0 = time.monotonic(), cpu_seconds()
    for t in ts: t.start()
    for t in ts: t.join()
    return sum(out) / (time.monotonic() - t0), sum(out) / max(cpu_seconds() - c0, 1e-9)
round_(False)  # warm-up
with_, without = [], []
for _ in range(rounds):
    with_.append(round_(True))
    without.append(round_(False))
for k, what in ((0, "tok/s (wall)"), (1, "tok per CPU-second")):
    a, b = statistics.median(x[k] for x in with_), statistics.median(x[k] for x in without)
    print("%-19s 8 streams x 8 different adapters %.1f (rounds %s); 8 streams, no adapter %.1f (rounds %s); ratio %.3f" %
          (what, a, ", ".join("%.1f" % x[k] for x in with_), b, ", ".join("%.1f" % x[k] for x in without), a / b))
print("target: ratio >= 0.8")
EOF
