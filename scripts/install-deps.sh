#!/usr/bin/env bash
# Installs the Debian packages slm builds and tests with. Idempotent: does nothing when all are present.
set -euo pipefail
pkgs=(build-essential cmake pkg-config python3 clang libclang-rt-14-dev
      libpcre2-dev libutf8proc-dev libjansson-dev libmicrohttpd-dev libcurl4-openssl-dev libsqlite3-dev
      libsodium-dev libyaml-dev libpoppler-glib-dev libarchive-dev libxml2-dev)
if [ "${1:-}" = "--test" ]; then pkgs+=(hyperfine chromium chromium-driver); fi
if [ "${1:-}" = "--test" ]; then pkgs+=(docker-registry); fi # tests/cli/models_oci.sh: a real OCI registry on loopback
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js may come from outside Debian (e.g. NodeSource): what matters is the commands, not the package.
if [ "${1:-}" = "--test" ]; then
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "install-deps: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
