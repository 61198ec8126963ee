#!/usr/bin/env bash
# The main job: install what is missing, build the release binary (vector ISA selected in
# Package.swift), and serve https://localhost:8443 with the default model. Extra arguments go to
# `scenescore serve` (see `.build/release/scenescore serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
swift build -c release --product scenescore
exec .build/release/scenescore serve "$@"
