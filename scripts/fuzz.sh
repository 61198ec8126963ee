#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer + AddressSanitizer) of SceneScore's input boundaries.
#
#   scripts/fuzz.sh TARGET [SECONDS]          fuzz one target (default 60 s)
#   scripts/fuzz.sh --all SECONDS             every target in turn, SECONDS each (CI: 10)
#   scripts/fuzz.sh --minimize TARGET FILE    minimise a crashing input into Tests/Fuzz/regressions/TARGET/
#   scripts/fuzz.sh --list                    the targets
#   scripts/fuzz.sh --build                   only build the fuzz binary and its plugins
#
# Targets (Sources/FuzzTargets): wire-binary, wire-json, safetensors, npy, h2-server, plugins,
# admin. Each run starts from the committed seeds (Tests/Fuzz/corpus/TARGET, read only) and the
# working corpus var/fuzz/TARGET (kept between runs; new inputs go there), with the dictionary
# Tests/Fuzz/dict/TARGET.dict. A crash, leak, timeout or failed invariant is written to
# var/fuzz/artifacts/TARGET/ and fails the run (exit 1). Reproduce one with
#   SCENESCORE_FUZZ_TARGET=TARGET .build-asan/debug/scenescore-fuzz FILE    (or, without
#   sanitizers: swift build --product scenescore-fuzz && .build/debug/scenescore-fuzz TARGET FILE)
# then minimise it (--minimize), fix the cause, and commit the minimised input: `swift test`
# replays Tests/Fuzz/regressions (Tests/FuzzRegressionTests).
#
# The fuzz binary and the bundled plugins it loads are built by scripts/sanitizers.sh's
# AddressSanitizer build (.build-asan, debug, with coverage instrumentation and libFuzzer linked
# into scenescore-fuzz only), the same build the ASan tests run: a first build takes a few
# minutes, later ones only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=(wire-binary wire-json safetensors npy h2-server plugins admin)
scratch=.build-asan
bin="$scratch/debug/scenescore-fuzz"
# Swift's backtracer would spend ~30 s symbolicating every crash; libFuzzer and ASan report it.
export SWIFT_BACKTRACE=enable=no

usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

known() { local t; for t in "${targets[@]}"; do [ "$t" = "$1" ] && return 0; done; return 1; }

# Per target: largest input, and the time one input may take (the server and admin targets
# load heads and plugins, and wait for deferred answers).
max_len() {
    case "$1" in
        safetensors) echo 65536 ;; admin) echo 32768 ;; h2-server|wire-binary|wire-json) echo 16384 ;; *) echo 8192 ;;
    esac
}
timeout_for() { case "$1" in h2-server|admin) echo 30 ;; *) echo 10 ;; esac; }

build() {
    local start=$SECONDS
    echo "== building the fuzz binary and the plugins it loads (the AddressSanitizer build, $scratch)" >&2
    ./scripts/sanitizers.sh --build-only address >&2
    echo "== built in $((SECONDS - start)) s" >&2
}

# Runs libFuzzer on one target; prints its summary line; returns 1 on any finding.
run() {
    local target=$1 seconds=$2
    local work="var/fuzz/$target" artifacts="var/fuzz/artifacts/$target/" log="var/fuzz/$target.log"
    mkdir -p "$work" "$artifacts"
    local status=0
    SCENESCORE_FUZZ_TARGET="$target" "$bin" "$work" "Tests/Fuzz/corpus/$target" \
        -dict="Tests/Fuzz/dict/$target.dict" -max_total_time="$seconds" -timeout="$(timeout_for "$target")" \
        -rss_limit_mb=4096 -max_len="$(max_len "$target")" -artifact_prefix="$artifacts" \
        -print_final_stats=1 -reload=0 > "$log" 2>&1 || status=$?
    local execs per_second cov ft corpus crashes
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    per_second=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || true)
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || true)
    corpus=$(find "$work" -type f | wc -l)
    crashes=$(grep -c 'Test unit written to' "$log" || true)
    printf '%-12s %10s execs %5s s %7s exec/s  corpus %5s (+%s seeds)  cov %5s ft %6s  crashes %s\n' \
        "$target" "${execs:-?}" "$seconds" "${per_second:-?}" "$corpus" "$(ls "Tests/Fuzz/corpus/$target" | wc -l)" \
        "${cov:-?}" "${ft:-?}" "$crashes"
    if [ "$status" -ne 0 ] || [ "$crashes" -ne 0 ]; then
        echo "FAILED $target (exit $status): log $log" >&2
        grep -E '^(==[0-9]+==ERROR|SUMMARY|Fatal error|.*fuzz invariant)' "$log" | head -5 >&2 || true
        grep 'Test unit written to' "$log" >&2 || true
        return 1
    fi
}

# Inputs a crashed fuzzer process left behind in /dev/shm (its scratch directory).
clean_scratch() {
    local dir pid
    for dir in /dev/shm/scenescore-fuzz-*; do
        [ -d "$dir" ] || continue
        pid=${dir##*-}
        kill -0 "$pid" 2>/dev/null || rm -rf "$dir"
    done
}

[ "$#" -ge 1 ] || usage
case "$1" in
    --list) printf '%s\n' "${targets[@]}" ;;
    --build) build ;;
    --all)
        [ "$#" -eq 2 ] || usage
        build
        failed=0
        for target in "${targets[@]}"; do run "$target" "$2" || failed=1; clean_scratch; done
        exit "$failed" ;;
    --minimize)
        [ "$#" -eq 3 ] && known "$2" || usage
        build
        name=$(basename "$3")
        mkdir -p "Tests/Fuzz/regressions/$2"
        SCENESCORE_FUZZ_TARGET="$2" "$bin" -minimize_crash=1 -runs=20000 -max_total_time=120 \
            -exact_artifact_path="Tests/Fuzz/regressions/$2/$name" "$3" || true
        clean_scratch
        echo "minimised input: Tests/Fuzz/regressions/$2/$name" ;;
    -*) usage ;;
    *)
        known "$1" || { echo "unknown target '$1' (targets: ${targets[*]})" >&2; exit 2; }
        build
        status=0
        run "$1" "${2:-60}" || status=1
        clean_scratch
        exit "$status" ;;
esac
