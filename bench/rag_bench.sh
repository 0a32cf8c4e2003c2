#!/usr/bin/env bash
# Retrieval benchmark: bench/rag_bench.sh [BUILD_DIR] [--quick]
#  1. ingest speed (MB/s, chunks/s) of Cranfield, BM25 only and with embeddings (the synthetic
#     bge-small from scripts/gen-test-models.sh: its speed is a real bge-small's, its vectors are
#     not), and the peak memory of ingest;
#  2. BM25 query latency p50/p99 (the first 100 Cranfield queries) at ~10k and ~100k chunks: the corpus
#     is Cranfield repeated with every copy perturbed (its words rotated and a copy tag), ingested
#     as a user would;
#  3. exact vector top-10 latency over 10k and 100k f16 vectors of 384 dims, and the recall@10 of
#     f16 storage against f32 (bench/rag_vec_bench.c, built here against the library).
# --quick: 10k chunks only. Needs SLM_TEST_DATA (default ../shared) with rag-data/cranfield.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build}
[ $# -gt 0 ] && shift
quick=0
[ "${1:-}" = "--quick" ] && quick=1
data=${SLM_TEST_DATA:-$src/../shared}/rag-data/cranfield
models=${SLM_TEST_MODELS:-$src/build/testdata}
[ -d "$data" ] || { echo "rag_bench: $data not found (set SLM_TEST_DATA)" >&2; exit 77; }
cmake --build "$build" --target slm slmcore -j2 >/dev/null
slm="$build/slm"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
D="--data-dir $work/data"
mb=$(du -sb "$data/docs" | cut -f1)

ingest() { # NAME PATH → "seconds peak_rss_kb cpu_seconds" (wall and CPU: the machine may be shared)
    /usr/bin/time -f "%e %M %U %S" -o "$work/time" "$slm" rag ingest "$1" "$2" $D -q
    awk '{print $1, $2, $3 + $4}' "$work/time"
}
chunks() { "$slm" rag list $D --json | python3 -c "import json,sys; print({c['name']: c['chunks'] for c in map(json.loads, sys.stdin)}['$1'])"; }

echo "== ingest (Cranfield, $(( mb / 1000 )) kB, 1400 files)"
"$slm" rag create bm25 $D -q
read -r s rss cpu < <(ingest bm25 "$data/docs")
n=$(chunks bm25)
python3 -c "print(f'BM25 only:       {$mb/1e6/$s:6.2f} MB/s, {$n/$s:8.0f} chunks/s ({$n} chunks, {$s} s wall, {$cpu:.2f} s CPU), peak RSS {$rss/1024:.0f} MB')"
if [ -f "$models/bge-small-q8_0.gguf" ]; then
    # embedding is compute-bound (a 512-token chunk is ~35 GFLOP through bge-small): 50 files
    mkdir -p "$work/sub"
    for f in $(ls "$data/docs" | sed -n 1,50p); do cp "$data/docs/$f" "$work/sub/"; done
    submb=$(du -sb "$work/sub" | cut -f1)
    "$slm" rag create emb --embed-model "$models/bge-small-q8_0.gguf" $D -q
    read -r s rss cpu < <(ingest emb "$work/sub")
    n=$(chunks emb)
    python3 -c "print(f'with embeddings: {$submb/1e3/$s:6.2f} kB/s, {$n/$s:8.2f} chunks/s ({$n} chunks of 50 files, {$s} s wall, {$cpu:.1f} s CPU = {$n/$cpu:.2f} chunks per CPU-second), peak RSS {$rss/1024:.0f} MB (bge-small q8_0, synthetic weights, $(nproc) threads)')"
else
    echo "with embeddings: skipped ($models/bge-small-q8_0.gguf absent: scripts/gen-test-models.sh)"
fi

synth() { # COPIES DIR: Cranfield repeated, copy k with its words rotated by k and tagged
    python3 - "$data/docs" "$1" "$2" <<'PY'
import os, sys
src, copies, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
docs = [(f[:-4], open(os.path.join(src, f)).read().split()) for f in sorted(os.listdir(src)) if f.endswith(".txt")]
for k in range(copies):
    d = os.path.join(out, f"c{k:03d}")
    os.makedirs(d, exist_ok=True)
    for name, words in docs:
        r = k % max(len(words), 1)
        with open(os.path.join(d, f"{name}-{k}.txt"), "w") as f:
            f.write(" ".join(words[r:] + words[:r]) + f"\n\ncopy{k}\n")
PY
}
sizes="7 66"
[ $quick = 1 ] && sizes="7"
for copies in $sizes; do
    name=big$copies
    synth "$copies" "$work/$name"
    "$slm" rag create $name $D -q
    bytes=$(du -sb "$work/$name" | cut -f1)
    read -r s rss cpu < <(ingest $name "$work/$name")
    n=$(chunks $name)
    python3 -c "print(f'== {$n} chunks ({$bytes/1e6:.0f} MB): ingest {$bytes/1e6/$s:.2f} MB/s, {$n/$s:.0f} chunks/s ({$s} s wall, {$cpu:.1f} s CPU), peak RSS {$rss/1024:.0f} MB')"
    head -100 "$data/queries.jsonl" > "$work/q100.jsonl"
    /usr/bin/time -f "%U %S" -o "$work/qtime" "$slm" rag search $name --queries "$work/q100.jsonl" --trec b --top 10 --stats $D 2>&1 >/dev/null |
        sed 's/^slm rag: /BM25 top-10: /'
    awk '{printf "(CPU per query: %.1f ms)\n", ($1 + $2) * 10}' "$work/qtime"
done

echo "== exact vector search (384 dims, f16)"
cc -O2 -I"$src/include" -I"$src/src" "$src/bench/rag_vec_bench.c" "$build/libslmcore.a" -o "$work/rag_vec_bench" \
    $(pkg-config --libs libpcre2-8 libutf8proc jansson sqlite3 libsodium yaml-0.1 libcurl poppler-glib libarchive libxml-2.0) -lpthread -lm
"$work/rag_vec_bench" 10000 384 200
[ $quick = 1 ] || "$work/rag_vec_bench" 100000 384 100
