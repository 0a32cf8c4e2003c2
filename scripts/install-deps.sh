#!/usr/bin/env bash
# Installs the Debian packages slm builds and tests with. Idempotent: does nothing when all are present.
set -euo pipefail
pkgs=(build-essential cmake pkg-config python3 clang libclang-rt-14-dev
      libpcre2-dev libutf8proc-dev libjansson-dev libmicrohttpd-dev libcurl4-openssl-dev libsqlite3-dev)
if [ "${1:-}" = "--test" ]; then pkgs+=(nodejs npm hyperfine chromium chromium-driver); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "install-deps: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
