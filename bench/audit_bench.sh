#!/usr/bin/env bash
# Audit log throughput on this disk: durable appends/s (write + fdatasync, group commit) with 1 and
# 8 threads, unsigned and ed25519-signed, then verify and query speed over the result.
# usage: bench/audit_bench.sh [path/to/slm] [records per thread] [folder on the disk to measure]
set -euo pipefail
BIN=${1:-build/slm}
N=${2:-2000}
base=${3:-${TMPDIR:-/tmp}}
tmp=$(mktemp -d "$base/slm-audit-bench-XXXXXX"); trap 'rm -rf "$tmp"' EXIT
echo "disk: $(df -P "$tmp" | awk 'NR == 2 { print $1 " mounted on " $6 }')"
for sign in "" --sign; do
  for threads in 1 8; do
    d=$tmp/log-$threads$sign
    "$BIN" audit append-bench --data-dir "$d" --threads "$threads" --records "$N" --quiet $sign 2>&1
  done
done
d=$tmp/log-8
records=$(cat "$d"/audit/audit-*.jsonl | wc -l)
t0=$(date +%s.%N); "$BIN" audit verify --data-dir "$d" >/dev/null; t1=$(date +%s.%N)
"$BIN" audit query --key nobody --data-dir "$d" 2>/dev/null; t2=$(date +%s.%N)
d=$tmp/log-8--sign
t3=$(date +%s.%N); "$BIN" audit verify --data-dir "$d" >/dev/null; t4=$(date +%s.%N)
awk -v n="$records" -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" -v e="$t4" 'BEGIN {
  printf "verify: %.0f records/s unsigned, %.0f records/s signed; query (a filter matching nothing): %.0f records/s\n",
    n / (b - a), n / (e - d), n / (c - b) }'
