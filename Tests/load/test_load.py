"""`scenescore load` against the real server process.

- request and response counts match the server's /metrics (scenescore_requests_total);
- a server stopped for 200 ms (SIGSTOP/SIGCONT) shows in the corrected p99 (from intended send
  times) and much less in the uncorrected service time;
- a bad URL, a refused connection, a TLS failure and an unknown scene each give one clear error
  line and exit 1;
- Ctrl-C (SIGINT) prints the partial report (exit 130);
- the swap scenario pushes heads through the admin API during the run;
- sweeps, replayed request files, the .hgrm file and the SVG plot.

Every test starts its own load-tool process with a timeout (and kills it if it outlives it);
servers come from the e2e fixtures, which stop them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from e2e_fixtures import BINARY
from h2util import H2Conn, free_ports
from heads import backbone_spec, write_head
from scenescore_client.wire import encode_request

import numpy as np


def load(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(BINARY), "load", *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def load_json(*args: str, timeout: float = 60) -> dict:
    r = load(*args, "--json", "-q", timeout=timeout)
    assert r.returncode == 0, f"scenescore load {' '.join(args)} exited {r.returncode}: {r.stderr}"
    return json.loads(r.stdout)


def requests_total(srv) -> float:
    """Sum of scenescore_requests_total over scenes and statuses."""
    with H2Conn.h2c(srv.h2c_port) as conn:
        r = conn.get("/metrics", timeout=5)
    assert r.status == 200, r
    total = 0.0
    for line in r.body.decode().splitlines():
        if line.startswith("scenescore_requests_total"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def tls_url(srv) -> str:
    return f"https://127.0.0.1:{srv.port}"


# ---------------------------------------------------------------------------
# Counts
# ---------------------------------------------------------------------------


def test_closed_loop_counts_match_server_metrics(server):
    before = requests_total(server)
    report = load_json(tls_url(server), "--cacert", str(server.cafile), "-c", "3", "-m", "8", "-n", "3000",
                       "--warm-up", "300ms", "--candidates", "1-8")
    after = requests_total(server)
    assert report["requests"] == 3000 and report["ok"] == 3000 and report["errors"] == 0, report
    assert report["totalSent"] == report["totalOK"] > 3000, report  # the warm-up's requests too
    assert report["totalErrors"] == 0
    assert after - before == report["totalSent"], (before, after, report["totalSent"])
    assert sum(report["headVersions"].values()) == report["ok"]
    assert report["statuses"] == {"200": 3000}
    assert report["throughput"] > 0 and 0 < report["latency"]["p50"] <= report["latency"]["p99"] <= report["latency"]["max"]
    assert report["connect"]["max"] > 0 and report["tlsHandshake"]["max"] > 0


def test_open_loop_h2c_poisson_counts_match(server, model):
    before = requests_total(server)
    report = load_json(f"http://127.0.0.1:{server.h2c_port}", "-c", "2", "-m", "16", "--rate", "800",
                       "--arrival", "poisson", "-D", "1500ms", "--scene", model.scenes[0], "--check", "full")
    after = requests_total(server)
    assert report["mode"] == "open" and report["arrival"] == "poisson"
    assert report["errors"] == 0 and report["totalErrors"] == 0, report["errorKinds"]
    assert after - before == report["totalSent"] == report["totalOK"]
    # A Poisson process at 800/s over 1.5 s: 1200 ± a few sqrt(1200).
    assert 1000 <= report["sent"] <= 1400, report["sent"]
    assert list(report["headVersions"]) == [model.version(model.scenes[0])]


# ---------------------------------------------------------------------------
# Coordinated omission: a stalled server
# ---------------------------------------------------------------------------


def test_stalled_server_shows_in_corrected_not_uncorrected_latency(launcher, tmp_path):
    srv = launcher.start(name="stall")
    hgrm, plot = tmp_path / "lat.hgrm", tmp_path / "lat.svg"
    proc = subprocess.Popen([str(BINARY), "load", tls_url(srv), "--cacert", str(srv.cafile), "-c", "2", "-m", "1",
                             "--rate", "400", "-D", "3s", "--candidates", "1", "--json", "-q", "--hgrm", str(hgrm),
                             "--plot", str(plot)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.3)
        os.kill(srv.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(0.2)
        finally:
            os.kill(srv.proc.pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    report = json.loads(out)
    corrected, uncorrected = report["latency"], report["serviceTime"]
    assert report["errors"] == 0, report["errorKinds"]
    # ~80 requests were due during the 200 ms stall (400/s), about 7 % of the run: the corrected
    # p99 lands inside the stall; with one stream per connection only 2 requests were in the server.
    assert corrected["p99"] >= 100, report
    assert corrected["max"] >= 150, report
    assert uncorrected["p99"] < corrected["p99"] / 3, report
    assert report["heldBack"] >= 20, report

    text = hgrm.read_text()
    assert "Value" in text.splitlines()[0] and "#[Max" in text
    assert float(re.search(r"#\[Max\s*=\s*([\d.]+)", text).group(1)) == pytest.approx(corrected["max"], rel=0.01)
    assert (tmp_path / "lat.uncorrected.hgrm").read_text().startswith(text.splitlines()[0])
    svg = ET.parse(plot).getroot()
    lines = [e for e in svg.iter() if e.tag.endswith("polyline")]
    assert len(lines) == 2, "corrected and uncorrected curves"


# ---------------------------------------------------------------------------
# One clear error line
# ---------------------------------------------------------------------------


def _one_error_line(r: subprocess.CompletedProcess, *keywords: str) -> str:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, f"expected one error line, got: {r.stderr!r}"
    assert lines[0].startswith("scenescore load: "), lines[0]
    for k in keywords:
        assert k in lines[0], (k, lines[0])
    assert r.stdout == ""
    return lines[0]


def test_bad_url():
    _one_error_line(load("not a url", "-D", "1s"), "bad URL")
    _one_error_line(load("ftp://127.0.0.1:1", "-D", "1s"), "bad URL", "ftp")


def test_refused_connection():
    port = free_ports(1)[0]
    _one_error_line(load(f"https://127.0.0.1:{port}", "-D", "1s"), "cannot connect", f"127.0.0.1:{port}", "refused")


def test_tls_failure(server):
    # No --cacert: the test CA is not trusted.
    _one_error_line(load(tls_url(server), "-D", "1s"), "TLS handshake", "certificate verify failed")
    # TLS to the cleartext port.
    _one_error_line(load(f"https://127.0.0.1:{server.h2c_port}", "--cacert", str(server.cafile), "-D", "1s"), "TLS handshake")


def test_unknown_scene(server, model):
    line = _one_error_line(load(tls_url(server), "--cacert", str(server.cafile), "--scene", "no-such-scene", "-D", "1s"),
                           "unknown scene 'no-such-scene'")
    assert model.scenes[0] in line


# ---------------------------------------------------------------------------
# Ctrl-C
# ---------------------------------------------------------------------------


def test_sigint_prints_partial_report(server):
    proc = subprocess.Popen([str(BINARY), "load", tls_url(server), "--cacert", str(server.cafile), "-c", "2", "-m", "4",
                             "-D", "60s", "--json", "--progress", "plain"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    report = json.loads(out)
    assert report["interrupted"] is True
    assert report["requests"] > 0 and report["errors"] == 0, report
    assert 1.0 < report["seconds"] < 10, report["seconds"]
    assert "req/s" in err  # plain progress lines before the interruption
    assert report["totalSent"] == report["totalOK"]


# ---------------------------------------------------------------------------
# Swap scenario, sweep, replay
# ---------------------------------------------------------------------------


def test_swap_scenario(launcher, model, model_dir, tmp_path):
    srv = launcher.start(name="swap", admin=True)
    scene = model.scenes[0]
    backbone = backbone_spec(model_dir)
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    write_head(a, backbone, scene, f"{scene}-loadswap-a", seed=31)
    write_head(b, backbone, scene, f"{scene}-loadswap-b", seed=32)
    token = tmp_path / "token"
    token.write_text(srv.admin_token + "\n")
    report = load_json(tls_url(srv), "--cacert", str(srv.cafile), "-c", "2", "-m", "4", "-D", "2500ms",
                       "--candidates", "4", "--swap-every", "200ms", "--head", str(a), "--head", str(b),
                       "--admin-url", srv.admin_url, "--token-file", str(token), "--swap-window", "50ms")
    swap = report["swap"]
    assert swap["scene"] == scene and swap["failed"] == 0, swap["events"]
    assert swap["swaps"] >= 5 and swap["uploads"] == 2 and swap["labelChanges"] == swap["swaps"] - 2, swap
    assert report["errors"] == 0, report["errorKinds"]
    assert {f"{scene}-loadswap-a", f"{scene}-loadswap-b"} <= set(report["headVersions"]), report["headVersions"]
    assert swap["inSwap"]["requests"] > 0 and swap["steady"]["requests"] > 0
    assert swap["inSwap"]["requests"] + swap["steady"]["requests"] == report["requests"]

    # A wrong token is refused before any load is sent: one line, exit 1.
    token.write_text("not-the-token-0123456789\n")
    _one_error_line(load(tls_url(srv), "--cacert", str(srv.cafile), "-D", "1s", "--swap-every", "200ms", "--head", str(a),
                         "--admin-url", srv.admin_url, "--token-file", str(token)), "admin API", "401")


def test_sweep_rows(server):
    r = load(f"http://127.0.0.1:{server.h2c_port}", "-c", "2", "--sweep", "streams:1,4", "--window", "400ms",
             "--max-windows", "3", "--candidates", "1", "--csv", "-q", timeout=60)
    assert r.returncode == 0, r.stderr
    rows = [l.split(",") for l in r.stdout.strip().splitlines()]
    header, steps = rows[0], rows[1:]
    assert header[:3] == ["step", "dimension", "value"] and len(steps) == 2, r.stdout
    col = {name: i for i, name in enumerate(header)}
    assert [s[col["streams"]] for s in steps] == ["1", "4"]
    for s in steps:
        assert 2 <= int(s[col["windows"]]) <= 3 and float(s[col["throughput"]]) > 0 and s[col["errors"]] == "0"


def test_replay_request_files(server, model, tmp_path):
    rng = np.random.default_rng(5)
    ci, cd, ii, idn = model.schema
    for n in (1, 3, 7):
        body = encode_request(model.scenes[0], rng.integers(0, 2**32, size=ci, dtype=np.uint32),
                              rng.standard_normal(cd).astype(np.float32),
                              rng.integers(0, 2**32, size=(n, ii), dtype=np.uint32),
                              rng.standard_normal((n, idn)).astype(np.float32), request_id=n)
        (tmp_path / f"req-{n}.bin").write_bytes(body)
    (tmp_path / "notes.txt").write_text("ignored: not *.bin")
    report = load_json(tls_url(server), "--cacert", str(server.cafile), "--replay", str(tmp_path), "-c", "2", "-m", "4",
                       "-n", "600", "--check", "full")
    assert report["requestBodies"] == 3 and report["scenes"] == [model.scenes[0]]
    assert report["ok"] == 600 and report["errors"] == 0, report["errorKinds"]

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.bin").write_bytes(b"not a request")
    _one_error_line(load(tls_url(server), "--cacert", str(server.cafile), "--replay", str(bad), "-D", "1s"),
                    "not a binary SceneScore request")
