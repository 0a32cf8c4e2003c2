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
# SLM_TEST_QUICK=1 (each test says what it skips).
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Release -DSLM_SANITIZE=ON -DCMAKE_C_COMPILER=clang >/dev/null
cmake --build build-asan -j "$jobs"
(cd build-asan && SLM_TEST_QUICK=1 ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
   ctest --output-on-failure -j 2 --timeout 900)
echo "test: all passed"
