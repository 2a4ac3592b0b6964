#!/usr/bin/env bash
# Runs schemathesis against a live coordinator (docs/openapi.yaml is the contract): every check,
# a fixed seed, no nodes. The coordinator lives in a temporary directory with a small queue and
# small uploads, and is stopped and removed afterwards; the exit code is schemathesis's.
#   scripts/contract-test.sh FARM_BIN [short|long]
set -euo pipefail
farm="${1:?usage: contract-test.sh FARM_BIN [short|long]}"
mode="${2:-short}"
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$(dirname "$(bash "$root/scripts/install-test-tools.sh" | tail -1)")"
case "$mode" in
    short) limits=(--max-examples 12 --seed 15) ;;
    long) limits=(--max-examples 200 --seed "${SEED:-15}" --max-time "${CONTRACT_SECONDS:-600}") ;;
    *) echo "contract-test.sh: mode must be short or long, got '$mode'" >&2; exit 2 ;;
esac

"$bin/openapi-spec-validator" "$root/docs/openapi.yaml" >&2

work="$(mktemp -d "${TMPDIR:-/tmp}/farm-contract.XXXXXX")"
pid=""
cleanup() {
    if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/sources"
token="contract-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s' "$token" > "$work/api-token"
# Free ports from the kernel: bind port 0 and read what it chose.
read -r http_port node_port < <(python3 -c '
import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])')
FARM_JOIN_TOKEN=contract-join-token-long-enough-for-the-coordinator "$farm" coordinator --http "127.0.0.1:$http_port" --node-listen "127.0.0.1:$node_port" \
    --data-dir "$work/data" --source-root "$work/sources" --api-token-file "$work/api-token" \
    --queue-limit 3 --max-jobs 1 --max-upload-gib 0.001 --max-uploads 2 --min-free-gib 0 \
    --insecure-plain-tcp > "$work/coordinator.log" 2>&1 &
pid=$!
for _ in $(seq 1 200); do
    if curl -fsS "http://127.0.0.1:$http_port/health" > /dev/null 2>&1; then break; fi
    if ! kill -0 "$pid" 2>/dev/null; then cat "$work/coordinator.log" >&2; echo "contract-test.sh: the coordinator exited" >&2; exit 1; fi
    sleep 0.1
done

status=0
"$bin/schemathesis" --config-file "$root/Tests/Contract/schemathesis.toml" run "$root/docs/openapi.yaml" --url "http://127.0.0.1:$http_port" \
    --checks all "${limits[@]}" --workers 1 --request-timeout 20 --suppress-health-check all \
    -H "Authorization: Bearer $token" --report junit --report-junit-path "$work/report/junit.xml" || status=$?
if [[ $status -ne 0 ]]; then
    echo "contract-test.sh: schemathesis failed ($status); the coordinator's log ends:" >&2
    tail -n 40 "$work/coordinator.log" >&2
    exit "$status"
fi
# A run that tested nothing is a failure too (a filter or a schema change that left no operation).
tests="$(python3 -c '
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root)
print(sum(int(s.get("tests", 0)) for s in suites))' "$work/report/junit.xml" 2>/dev/null || echo 0)"
if [[ "$tests" -lt 10 ]]; then
    echo "contract-test.sh: schemathesis ran $tests operations; expected every operation of the document" >&2
    exit 1
fi
echo "contract-test.sh: $tests operations passed every check" >&2
