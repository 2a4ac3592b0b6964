#!/usr/bin/env bash
# Builds the libFuzzer targets in Fuzz/ (frame: the frame parser; submission: the HTTP job request; session: a
# node's message sequences after the handshake, against a real Coordinator) and runs each for a bounded time on its committed seed corpus.
#   scripts/fuzz.sh [SECONDS]   build the package, then run each target SECONDS (default 20); non-zero on a crash
#   scripts/fuzz.sh --no-build 5    the same on the existing debug build (make test runs this)
#   scripts/fuzz.sh --seeds     write Fuzz/corpus/frame again from the protocol tests' sample messages
#   FUZZ_OPT=-O scripts/fuzz.sh 600  optimized targets (slower to build, about twice the inputs per second)
#
# A target is its Fuzz/*.swift entry point (LLVMFuzzerTestOneInput) compiled by swiftc with
# -sanitize=fuzzer,address together with the sources it tests, so that they carry coverage and address
# checks; their dependencies (NIOCore, swift-crypto, Hummingbird, ...) come uninstrumented from the package's
# debug build, with the same compiler flags SwiftPM used (read from .build/debug.yaml).
# Not a SwiftPM target: the normal build never compiles it. Crashing inputs go to .build/fuzz/crashes/.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="run"
seconds=20
build_package=1
for argument in "$@"; do
  case "$argument" in
    --seeds) mode="seeds" ;;
    --no-build) build_package=0 ;;
    *) seconds="$argument" ;;
  esac
done

bin=.build/debug
if [ "$build_package" = 1 ] || [ ! -f "$bin/farm.product/Objects.LinkFileList" ]; then
  swift build --product farm >/dev/null
fi
out=.build/fuzz
mkdir -p "$out/crashes"

# From SwiftPM's build manifest: the compiler flags of the modules whose sources the targets compile (search
# paths, C module maps, language settings), and the package's objects with the libraries farm links, less
# the farm executable's own objects (its main would clash with libFuzzer's).
python3 - "$out" "$bin/farm.product/Objects.LinkFileList" <<'EOF'
import sys, yaml
out, link_list = sys.argv[1], sys.argv[2]
loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
commands = yaml.load(open(".build/debug.yaml"), Loader=loader)["commands"]
with_value = {"-I", "-Xcc", "-module-cache-path", "-swift-version", "-enable-upcoming-feature", "-target",
              "-enable-experimental-feature", "-package-name"}
for module in ["FarmProtocol", "FarmCoordinator"]:
    args = next(c["args"] for k, c in commands.items() if k.startswith(f"C.{module}-") and k.endswith("-debug.module"))
    keep, i = [], 1
    while i < len(args):
        if args[i] in with_value:
            keep += [args[i], args[i + 1]]
            i += 2
            continue
        if args[i].startswith("-D") or args[i].startswith("-I"):
            keep.append(args[i])
        i += 1
    open(f"{out}/{module}.flags", "w").write("\n".join(keep) + "\n")
    # The session target compiles the whole module beside its entry point; there, clang's module for
    # <sys/stat.h> may come out as Dispatch's, which MemberImportVisibility then refuses in files that
    # import only Glibc. Import checking is all it relaxes.
    lenient, j = [], 0
    while j < len(keep):
        if keep[j] == "-enable-upcoming-feature" and keep[j + 1] == "MemberImportVisibility":
            j += 2
            continue
        lenient.append(keep[j])
        j += 1
    open(f"{out}/{module}-lenient.flags", "w").write("\n".join(lenient) + "\n")
link = next(c["args"] for k, c in commands.items() if k.startswith("C.farm-") and k.endswith("-debug.exe"))
objects = [line for line in open(link_list).read().split("\n") if line and "/farm.build/" not in line]
libraries = [a for a in link if a.startswith("-l") or a.startswith("-L/")]
open(f"{out}/objects.txt", "w").write("\n".join(objects + libraries) + "\n")
EOF
objects="$out/objects.txt"

# build NAME MODULE-OF-FLAGS EXTRA-SWIFTC-FLAGS -- SOURCES...
build() {
  local name="$1" module="$2" extra="$3"
  shift 4
  swiftc $extra -parse-as-library -module-name "Fuzz_$name" -g ${FUZZ_OPT:--Onone} \
    @"$out/$module.flags" "$@" @"$objects" -o "$out/$name" 2> "$out/$name.build.log" || {
    cat "$out/$name.build.log" >&2
    exit 1
  }
}

if [ "$mode" = "seeds" ]; then
  build seeds FarmProtocol "" -- Fuzz/FrameSeeds.swift Tests/ProtocolTests/Samples.swift
  rm -f Fuzz/corpus/frame/*
  "$out/seeds" Fuzz/corpus/frame
  ls Fuzz/corpus/frame | wc -l | xargs echo "seeds written:"
  exit 0
fi

sanitize="-sanitize=fuzzer,address"
start=$(date +%s)
build frame FarmProtocol "$sanitize" -- Fuzz/FrameFuzz.swift Sources/Protocol/*.swift
build submission FarmCoordinator "$sanitize" -- Fuzz/SubmissionFuzz.swift Sources/Coordinator/HTTP/Submission.swift \
  Sources/Coordinator/HTTP/APIModels.swift Sources/Coordinator/HTTP/APIError.swift Sources/Coordinator/Configuration.swift \
  Sources/Coordinator/NodeTLS.swift Sources/Coordinator/Download/SourcePolicies.swift
# The node session's message handling against a real Coordinator actor: every source of the module goes in.
build session FarmCoordinator-lenient "$sanitize" -- Fuzz/SessionFuzz.swift $(find Sources/Coordinator -name '*.swift' | sort)
echo "fuzz: targets built in $(($(date +%s) - start)) s"

status=0
for target in frame submission session; do
  work="$out/corpus-$target"
  mkdir -p "$work"
  # New inputs go to the work corpus; the committed seeds are read only.
  if "$out/$target" "$work" "Fuzz/corpus/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=4096 -artifact_prefix="$out/crashes/$target-" -print_final_stats=1 > "$out/$target.log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out/$target.log" | grep -o '[0-9]*$' || echo "?")
    cov=$(grep -o 'cov: [0-9]*' "$out/$target.log" | tail -1 || true)
    echo "fuzz: $target: no crash in ${seconds} s, $runs inputs, $cov"
  else
    echo "fuzz: $target: CRASH (input in $out/crashes/); the end of its log:" >&2
    tail -40 "$out/$target.log" >&2
    status=1
  fi
done
exit $status
