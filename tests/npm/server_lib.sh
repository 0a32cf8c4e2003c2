# Shared setup for tests/cli/server_*.sh (sourced, not a test itself): finds node, npm and the
# model, installs the pinned npm packages once, starts `slm serve` on a free loopback port and
# stops it when the test exits.
set -euo pipefail

: "${SLM_BIN:?SLM_BIN must point at the slm binary}"
: "${SLM_SRC:?SLM_SRC must point at the source tree}"
SLM_NPM_DIR="$SLM_SRC/tests/npm"
SRV_TMP=$(mktemp -d)
SRV_PID=""

srv_cleanup() {
  if [ -n "$SRV_PID" ] && kill -0 "$SRV_PID" 2>/dev/null; then
    kill -TERM "$SRV_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SRV_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SRV_PID" 2>/dev/null || true
  fi
  rm -rf "$SRV_TMP"
}
trap srv_cleanup EXIT
trap 'exit 143' TERM INT # so a ctest timeout still runs srv_cleanup and stops the server

srv_skip() { echo "SKIP: $*" >&2; exit 77; }

srv_require_node() {
  command -v node >/dev/null || srv_skip "node is not installed (scripts/install-deps.sh --test installs it)"
  command -v npm >/dev/null || srv_skip "npm is not installed (scripts/install-deps.sh --test installs it)"
}

srv_require_curl() { command -v curl >/dev/null || srv_skip "curl is not installed"; }

# The shared tiny story model: $SLM_TEST_DATA/models/stories260K.gguf (or ../shared beside the tree).
srv_model_path() {
  local d="${SLM_TEST_DATA:-$SLM_SRC/../shared}"
  local m="$d/models/stories260K.gguf"
  [ -f "$m" ] || srv_skip "shared test data absent: $m (set SLM_TEST_DATA)"
  echo "$m"
}

# Installs tests/npm/package-lock.json into tests/npm/node_modules unless it is already there.
# Serialised with flock because ctest runs the server tests in parallel.
srv_npm_install() {
  local stamp_want lock="${TMPDIR:-/tmp}/slm-npm-install-$(id -u).lock"
  stamp_want=$(cat "$SLM_NPM_DIR/package.json" "$SLM_NPM_DIR/package-lock.json" | sha256sum | cut -d' ' -f1)
  (
    flock 9
    if [ "$(cat "$SLM_NPM_DIR/node_modules/.slm-stamp" 2>/dev/null)" != "$stamp_want" ]; then
      echo "server test: npm ci in $SLM_NPM_DIR" >&2
      (cd "$SLM_NPM_DIR" && npm ci --no-audit --no-fund --loglevel=error >&2)
      echo "$stamp_want" > "$SLM_NPM_DIR/node_modules/.slm-stamp"
    fi
  ) 9>"$lock"
}

# srv_mock_upstream: starts tests/cli/upstream_mock.py (a mock OpenAI-compatible API) on a free
# loopback port; sets MOCK_URL (base URL with /v1) and MOCK_PID; stopped with the test.
srv_mock_upstream() {
  python3 "$SLM_SRC/tests/cli/upstream_mock.py" --port 0 >"$SRV_TMP/mock.port" 2>"$SRV_TMP/mock.log" &
  MOCK_PID=$!
  for _ in $(seq 100); do [ -s "$SRV_TMP/mock.port" ] && break; sleep 0.05; done
  [ -s "$SRV_TMP/mock.port" ] || { cat "$SRV_TMP/mock.log" >&2; echo "mock upstream did not start" >&2; exit 1; }
  MOCK_URL="http://127.0.0.1:$(head -1 "$SRV_TMP/mock.port")/v1"
  export MOCK_URL
  trap 'kill $MOCK_PID 2>/dev/null; srv_cleanup' EXIT
}

# srv_start [serve flags...]: starts the server on a free port; sets SLM_URL and SRV_PID.
srv_start() {
  local model
  model=$(srv_model_path)
  rm -f "$SRV_TMP/port"
  # each test server keeps its state (keys, ledger, audit log) in its own directory unless told
  local state=(--data-dir "$SRV_TMP/data")
  case " $* " in *" --data-dir "* | *" --no-data-dir "*) state=() ;; esac
  # a --config that names its own models replaces the default --model
  local model_arg=(--model "$model")
  case " $* " in *" --config "*) model_arg=() ;; esac
  "$SLM_BIN" serve "${model_arg[@]}" --port 0 --port-file "$SRV_TMP/port" "${state[@]}" "$@" >"$SRV_TMP/server.log" 2>&1 &
  SRV_PID=$!
  for _ in $(seq 300); do
    [ -s "$SRV_TMP/port" ] && break
    kill -0 "$SRV_PID" 2>/dev/null || { cat "$SRV_TMP/server.log" >&2; echo "server exited early" >&2; exit 1; }
    sleep 0.1
  done
  [ -s "$SRV_TMP/port" ] || { cat "$SRV_TMP/server.log" >&2; echo "server did not start listening" >&2; exit 1; }
  SLM_URL="http://127.0.0.1:$(cat "$SRV_TMP/port")"
  export SLM_URL SLM_MODEL_PATH="$model"
  for _ in $(seq 300); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "$SLM_URL/health")" = 200 ]; then return 0; fi
    kill -0 "$SRV_PID" 2>/dev/null || { cat "$SRV_TMP/server.log" >&2; echo "server exited while loading" >&2; exit 1; }
    sleep 0.1
  done
  cat "$SRV_TMP/server.log" >&2
  echo "server never became healthy" >&2
  exit 1
}

# Stops the server with SIGTERM and waits for it; prints its log on a non-zero exit.
srv_stop() {
  local rc=0
  kill -TERM "$SRV_PID"
  wait "$SRV_PID" || rc=$?
  SRV_PID=""
  return $rc
}
