#!/usr/bin/env bash
# The whole test suite: Swift unit and end-to-end tests, then the Python reference tests.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

echo "== swift test"
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

echo "== sanitizers: AddressSanitizer (every test target), ThreadSanitizer (transport, server, registry)"
./scripts/sanitizers.sh address thread

echo "== fuzzing: every target for 30 s from the committed corpora (Tests/Fuzz)"
./scripts/fuzz.sh --all 30

echo "== python reference and end-to-end tests (real server process, real clients)"
# Separate runs: each suite has its own conftest.py and rootdir.
for suite in Proto/python/tests Tests/interop Tests/training Tests/e2e Tests/load; do
  python3 -m pytest -q -p no:cacheprovider "$suite"
done
