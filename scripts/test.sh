#!/usr/bin/env bash
# The whole test suite: dependencies, release build + tests, then an ASan+UBSan build + tests.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh --test
export SLM_TEST_DATA=${SLM_TEST_DATA:-$(cd .. && pwd)/shared}
if [ ! -d "$SLM_TEST_DATA/reference" ]; then
  echo "test: shared data absent at $SLM_TEST_DATA (set SLM_TEST_DATA)" >&2
  exit 1
fi
export SLM_TEST_MODELS=${SLM_TEST_MODELS:-$PWD/build/testdata}
jobs=$(nproc)

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"
./scripts/gen-test-models.sh all
(cd build && ctest --output-on-failure -j 2 --timeout 900)

# Sanitizer pass: same suite, ASan+UBSan, big models excluded by the tests themselves when
# SLM_TEST_QUICK=1 (each test says what it skips). The conformance runs forced onto the AVX2 and
# scalar paths are release-only: the sanitizers see the forward pass on the CPU's own path here,
# and every ISA's kernels through test_kernels, which runs them all.
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Release -DSLM_SANITIZE=ON -DCMAKE_C_COMPILER=clang >/dev/null
cmake --build build-asan -j "$jobs"
(cd build-asan && SLM_TEST_QUICK=1 ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
   ctest --output-on-failure -j 2 --timeout 900 -E '^conformance/conf_[a-z_]*_(avx2|scalar)$')
# Fuzz targets (clang, libFuzzer + ASan/UBSan): from the seed corpus, up to a fixed number of
# executions or 60 s each (whichever comes first: a slow target ends cleanly instead of being killed),
# so the suite fails on a crash, a leak, a hang or a sanitizer report. fuzz/run.sh runs them for longer.
cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Release -DSLM_FUZZ=ON -DCMAKE_C_COMPILER=clang >/dev/null
fuzzers=()
for f in fuzz/fuzz_*.c; do fuzzers+=("$(basename "$f" .c)"); done
cmake --build build-fuzz -j "$jobs" --target "${fuzzers[@]}" # only these link libFuzzer and the sanitizers
fuzz_work=$(mktemp -d)
root=$PWD
for t in "${fuzzers[@]}"; do
  name=${t#fuzz_}
  mkdir -p "$fuzz_work/$name"
  cp "fuzz/corpus/$name/"* "$fuzz_work/$name/" 2>/dev/null || true
  runs=20000
  case "$t" in fuzz_bundle) runs=5000 ;; esac # every run writes and removes files
  echo "test: $t: $runs runs"
  (cd "$fuzz_work" && ASAN_OPTIONS=detect_leaks=1 timeout 180 "$root/build-fuzz/$t" -runs=$runs -max_total_time=60 \
     -max_len=4096 -rss_limit_mb=3072 -timeout=30 "$fuzz_work/$name" >"$fuzz_work/$name.log" 2>&1) ||
    { tail -40 "$fuzz_work/$name.log" >&2; echo "test: $t failed (log above)" >&2; exit 1; }
done
rm -rf "$fuzz_work"
echo "test: all passed"
