#!/usr/bin/env bash
# The whole test suite: Swift unit and end-to-end tests, then the Python reference tests.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

# Each phase's wall time, printed at the end (CI must stay well inside 20 minutes).
timings=()
phase_start=$SECONDS
phase() {
  if [ -n "${phase_name:-}" ]; then timings+=("$(printf '%5d s  %s' $((SECONDS - phase_start)) "$phase_name")"); fi
  phase_name="$1"; phase_start=$SECONDS
  if [ -n "$1" ]; then echo "== $1"; fi
}
trap 'status=$?; phase ""; printf "%s\n" "== phase timings (exit $status)" "${timings[@]}" "$(printf "%5d s  total" $SECONDS)"' EXIT

phase "swift test"
swift build --build-tests
# The end-to-end tests start the real release server binary and load the bundled plugins (and
# the broken fixture plugins the loader must refuse).
swift build -c release --product scenescore
# The allocation probe (Tests/AllocationProbe) and the malloc interposer it is run with.
swift build -c release --product AllocationProbe
for plugin in ApparelPlugin ElectronicsPlugin BeautyPlugin PluginFixtureBadABI PluginFixtureNoEntry \
              PluginFixtureFailingCreate PluginFixtureWrongCounts; do
  swift build -c release --product "$plugin"
done
swift test --skip-build 2>&1 | tee .build/swift-test.log
grep -q "Test run with .* passed" .build/swift-test.log

phase "sanitizers: AddressSanitizer (every test target)"
./scripts/sanitizers.sh address
phase "sanitizers: ThreadSanitizer (transport, server, registry)"
./scripts/sanitizers.sh thread

# Short runs from the committed corpora: a smoke test that every target still builds, runs and
# holds its invariants on what the seeds reach; the long runs are scripts/fuzz.sh TARGET SECONDS.
phase "fuzzing: every target for 10 s (Tests/Fuzz)"
./scripts/fuzz.sh --all 10

# Separate runs: each suite has its own conftest.py and rootdir. Tests/replicas starts a private
# PostgreSQL cluster on loopback and HAProxy, and stops both.
for suite in Proto/python/tests Tests/interop Tests/training Tests/e2e Tests/load Tests/replicas Tests/deploy Tests/onnx; do
  phase "pytest $suite"
  python3 -m pytest -q -p no:cacheprovider "$suite"
done
