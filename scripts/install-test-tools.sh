#!/usr/bin/env bash
# The Python tools the contract tests use, pinned, in a virtual environment under .build
# (make test calls this; it installs only what is missing). Prints the environment's bin directory.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.build/test-tools"
requirements=("schemathesis==4.32.5" "openapi-spec-validator==0.9.0")
stamp="$venv/installed-$(printf '%s\n' "${requirements[@]}" | sha256sum | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${requirements[@]}" >&2
    touch "$stamp"
fi
echo "$venv/bin"
