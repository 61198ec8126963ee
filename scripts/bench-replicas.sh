#!/usr/bin/env bash
# Replica benchmark (propagation of pushed heads to 2 and 8 replicas sharing a PostgreSQL
# registry; h2load through HAProxy in front of 2 replicas vs 1 replica directly).
# All options are scripts/bench_replicas.py's: scripts/bench-replicas.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 scripts/bench_replicas.py "$@"
