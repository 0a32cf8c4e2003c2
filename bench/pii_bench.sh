#!/bin/sh
# PII detector throughput on the dev texts: bench/pii_bench.sh [BUILD_DIR] [--mb N] [--runs N]
# Builds the pii_bench target in BUILD_DIR (default build) and runs it on
# $SLM_TEST_DATA/pii-data/dev.jsonl (default ../shared beside the source tree): median MB/s of
# slm_pii_scan, one core, texts scanned one by one and repeated to several MB.
set -e
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build}
[ $# -gt 0 ] && shift
data=${SLM_TEST_DATA:-$src/../shared}/pii-data/dev.jsonl
if [ ! -f "$data" ]; then
    echo "pii_bench: $data not found (set SLM_TEST_DATA)" >&2
    exit 77
fi
cmake --build "$build" --target pii_bench -j2 >/dev/null
exec "$build/pii_bench" "$data" "$@"
