#!/usr/bin/env bash
# Request-path benchmark: POST /v1/score at 1 and 16 candidates against the combined bound of
# transport-only req/s and the forward pass (h2load and scenescore load, server --threads 1 on
# core 0, clients on core 1), and --threads 2 against --threads 1 with CPU seconds per request.
# All options are scripts/bench_request_path.py's: scripts/bench-request-path.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 scripts/bench_request_path.py "$@"
