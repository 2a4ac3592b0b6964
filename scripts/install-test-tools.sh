#!/usr/bin/env bash
# Installs the Python tools the tests drive the coordinator with, pinned, into a virtual environment of their own
# (default .build/test-tools; FARM_TEST_TOOLS to move it). Safe to run again and from several tests at once: it does
# nothing when the pinned versions are there. Prints the environment's python on its last line.
#   tuspy                   a stock tus 1.0 client (TusTests)
#   schemathesis            the contract test against a live coordinator (scripts/contract-test.sh)
#   openapi-spec-validator  validates docs/openapi.yaml (scripts/contract-test.sh)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="${FARM_TEST_TOOLS:-$root/.build/test-tools}"
requirements=(
  "tuspy==1.1.0"
  "schemathesis==4.32.5"
  "openapi-spec-validator==0.9.0"
)
mkdir -p "$tools"
exec 9>"$tools/.lock"
flock 9
python="$tools/venv/bin/python"
if [ ! -x "$python" ]; then
  python3 -m venv "$tools/venv" >&2
fi
wanted="$(printf '%s\n' "${requirements[@]}" | sort)"
if [ "$(cat "$tools/installed" 2>/dev/null || true)" != "$wanted" ]; then
  "$python" -m pip install --quiet --disable-pip-version-check "${requirements[@]}" >&2
  printf '%s\n' "$wanted" >"$tools/installed"
fi
echo "$python"
