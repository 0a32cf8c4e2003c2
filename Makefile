# Convenience front to CMake. `make` builds build/slm; `make test` installs what the tests need,
# builds, runs the whole suite, then runs it again under ASan+UBSan.
JOBS ?= $(shell nproc)
SLM_MODEL ?= ../shared/models/stories260K.gguf

.PHONY: all deps build serve test test-fast test-asan clean fuzz

all: build

deps:
	./scripts/install-deps.sh

build: deps
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build build -j $(JOBS)

serve: build
	./build/slm serve --model "$(SLM_MODEL)"

test:
	./scripts/test.sh

test-fast: build
	./scripts/gen-test-models.sh small
	cd build && ctest --output-on-failure -j 2

clean:
	rm -rf build build-asan build-fuzz
