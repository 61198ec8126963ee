"""Heap allocations per scored request on the binary path, as a tracked number.

Tests/AllocationProbe runs the real server in its own process with malloc-interposer
(ordo-one/malloc-interposer: linked, and preloaded so that it wins every malloc lookup) and h2load, in another process, as the client: after a warm-up run,
counting covers exactly one h2load run on one connection, one request at a time.

A run's count is a fixed part (the run's connection: TLS handshake, channel, nghttp2 session; the
per-connection timer ticking while it lasts) plus a part per request. Two runs of different
lengths separate them: the marginal allocations per request, (a(long) - a(short)) / (long - short),
is what a scored request costs in steady state. The committed thresholds
(allocation-thresholds.json) are what the server reaches today plus a margin, so a change that
adds allocations per request fails here; lower them when the number falls.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from conftest import BINARY, HERE
from h2util import free_port

PROBE = BINARY.parent / "AllocationProbe"
INTERPOSER = BINARY.parent / "libMallocInterposerSwift.so"
THRESHOLDS = json.loads((HERE / "allocation-thresholds.json").read_text())


def run_probe(model_dir, plugin_dir, workdir, candidates: list[int], requests: int = 5000, warmup: int = 2000) -> dict:
    h2load = shutil.which("h2load")
    assert h2load, "h2load (nghttp2-client) is missing: scripts/setup.sh installs it"
    assert PROBE.is_file() and INTERPOSER.is_file(), \
        f"{PROBE.name} / {INTERPOSER.name} are not built: swift build -c release --product AllocationProbe"
    args = [str(PROBE), "--model-dir", str(model_dir), "--plugin-dir", str(plugin_dir), "--port", str(free_port()),
            "--requests", str(requests), "--warmup", str(warmup), "--h2load", h2load]
    for n in candidates:
        args += ["--candidates", str(n)]
    env = dict(os.environ, LD_PRELOAD=str(INTERPOSER))
    result = subprocess.run(args, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"AllocationProbe exited {result.returncode}:\n{result.stdout}\n{result.stderr[-4000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


SHORT, LONG = 4000, 20000


def test_allocations_per_binary_request_stay_under_the_committed_threshold(model_dir, plugin_dir, tmp_path):
    runs = {}
    for requests in (SHORT, LONG):
        report = run_probe(model_dir, plugin_dir, tmp_path, [1, 64], requests=requests)
        assert report["interposer_active"], report
        assert report["openssl_thread_cache"], f"OpenSSL's allocator was not installed: {report}"
        runs[requests] = {r["candidates"]: r for r in report["results"]}
    for n in (1, 64):
        short, long = runs[SHORT][n]["allocations"], runs[LONG][n]["allocations"]
        marginal = (long - short) / (LONG - SHORT)
        fixed = short - marginal * SHORT
        print(f"{n} candidates: {marginal:.4f} allocations per request in steady state, {fixed:.0f} per connection "
              f"({short} in {SHORT} requests, {long} in {LONG}); thresholds {THRESHOLDS['marginal_per_request']} "
              f"and {THRESHOLDS['per_connection']}")
        assert marginal <= THRESHOLDS["marginal_per_request"], \
            f"{n} candidates: {marginal:.4f} heap allocations per request, above the committed " \
            f"{THRESHOLDS['marginal_per_request']} (Tests/e2e/allocation-thresholds.json): {runs[SHORT][n]}, {runs[LONG][n]}"
        assert fixed <= THRESHOLDS["per_connection"], \
            f"{n} candidates: {fixed:.0f} allocations per connection, above the committed {THRESHOLDS['per_connection']}"
