#!/usr/bin/env bash
# The Swift tests under sanitizers (CI runs both; each has its own build folder):
#   address  AddressSanitizer + LeakSanitizer, every test target. TransferTests (minutes of
#            end-to-end training, about 6 min under ASan) is skipped; the same training code runs
#            under ASan in GradientTests, DataTests, FactorizationMachineTests and InteropTests.
#   thread   ThreadSanitizer on the transport, server and registry tests (H2Tests, ServerTests,
#            ScenesTests, RegistryPostgresTests): the code that runs on several event loops, swaps
#            heads under load, and follows the shared registry from a thread of its own.
# Findings fail the run. Suppressions (.ci/lsan.supp, .ci/tsan.supp) are only for reports inside
# dependencies, each with the reason.
# Usage: scripts/sanitizers.sh [--build-only] [address|thread]...   (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

# Line tables are all a sanitizer report needs; full debug info makes the build slower.
# The AddressSanitizer build is also the fuzzing build (scripts/fuzz.sh), so CI compiles the
# package once for both: it carries the coverage instrumentation libFuzzer reads (what swiftc's
# -sanitize=fuzzer and clang's -fsanitize=fuzzer-no-link add; without libFuzzer the sanitizer
# runtime's no-op hooks take it), and only scenescore-fuzz links libFuzzer (Package.swift).
build_address() {
  local libfuzzer
  libfuzzer=$(ls "$(dirname "$(readlink -f "$(command -v swiftc)")")"/../lib/clang/*/lib/linux/libclang_rt.fuzzer_no_main-"$(uname -m)".a | head -1)
  SCENESCORE_LIBFUZZER=$(readlink -f "$libfuzzer") \
    swift build --build-tests --sanitize=address --scratch-path .build-asan -Xswiftc -gline-tables-only \
      -Xswiftc -sanitize-coverage=edge,indirect-calls,trace-cmp,inline-8bit-counters,pc-table -Xcc -fsanitize=fuzzer-no-link
}
# Only the targets the TSan run tests (Package.swift, SCENESCORE_TEST_SUBSET).
build_thread() {
  SCENESCORE_TEST_SUBSET=concurrency swift build --build-tests --sanitize=thread --scratch-path .build-tsan -Xswiftc -gline-tables-only
}

run_address() {
  echo "== swift test under AddressSanitizer"
  build_address
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 LSAN_OPTIONS="suppressions=$PWD/.ci/lsan.supp" \
    swift test --skip-build --sanitize=address --scratch-path .build-asan --skip TransferTests 2>&1 | tee .build-asan/test.log
  grep -q "Test run with .* passed" .build-asan/test.log
  ! grep -q "ERROR: \(Address\|Leak\)Sanitizer" .build-asan/test.log
}

run_thread() {
  echo "== swift test under ThreadSanitizer (transport, server, registry)"
  build_thread
  # The TSan runtime is linked into the test executable statically and does not export its
  # symbols to dlopen()ed libraries, so instrumented plugins cannot load: the plugin tests load
  # the ordinary debug build's plugins (uninstrumented); the loader and registry around them are
  # instrumented.
  for plugin in ApparelPlugin ElectronicsPlugin BeautyPlugin PluginFixtureBadABI PluginFixtureNoEntry \
                PluginFixtureFailingCreate PluginFixtureWrongCounts; do
    swift build --product "$plugin"
  done
  SCENESCORE_PLUGIN_BUILD_DIR="$PWD/.build/debug" TSAN_OPTIONS="halt_on_error=1:suppressions=$PWD/.ci/tsan.supp" \
    SCENESCORE_TEST_SUBSET=concurrency swift test --skip-build --sanitize=thread --scratch-path .build-tsan --filter 'H2Tests|ServerTests|ScenesTests|RegistryPostgresTests' 2>&1 | tee .build-tsan/test.log
  grep -q "Test run with .* passed" .build-tsan/test.log
  ! grep -q "WARNING: ThreadSanitizer" .build-tsan/test.log
}

action=run
if [ "${1:-}" = "--build-only" ]; then action=build; shift; fi
for kind in "${@:-address thread}"; do
  for k in $kind; do
    case "$k" in
      address|thread) "${action}_$k" ;;
      *) echo "usage: $0 [--build-only] [address|thread]..." >&2; exit 2 ;;
    esac
  done
done
