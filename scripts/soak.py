#!/usr/bin/env python3
"""Soak: a long open-loop load at a fixed share of measured saturation, with a new head version
pushed every second, while the server's memory and file descriptors are sampled.

What it checks (issue 10), and prints as a table at the end:
  - RSS at the end within 5 % of RSS after the warm-up;
  - open file descriptors flat (end - after warm-up <= a small slack for in-flight uploads);
  - p99 of the last window within 10 % of the first window (windows of --window minutes);
  - zero failed score requests and zero failed pushes.

Usage (scripts/soak.sh builds first):  python3 scripts/soak.py [--minutes 30] [--window 5]
The server, the load tool and the pushes share this machine's cores; the load tool is
`scenescore load` (open loop, its --rate set to --share of the closed-loop maximum measured first).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
BINARY = REPO / ".build" / "release" / "scenescore"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Sampler(threading.Thread):
    """RSS and open fds of the server every `every` seconds."""

    def __init__(self, pid: int, every: float = 5.0):
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, int, int]] = []  # (time, rss KiB, fds)
        self.stop = threading.Event()

    def now(self) -> tuple[int, int]:
        return rss_kib(self.pid), open_fds(self.pid)

    def run(self) -> None:
        while not self.stop.wait(self.every):
            rss, fds = self.now()
            self.samples.append((time.monotonic(), rss, fds))


class Pusher(threading.Thread):
    """Every `every` seconds: derive a head with a new version from the scene's head, upload it
    as stable through the admin API (a full upload: validate, warm, swap, retire the old one)."""

    def __init__(self, admin_url: str, token: str, cafile: Path, scene: str, source_head: Path, workdir: Path,
                 every: float):
        super().__init__(daemon=True)
        self.admin_url, self.token, self.cafile = admin_url, token, cafile
        self.scene, self.source_head, self.workdir, self.every = scene, source_head, workdir, every
        self.pushed = 0
        self.failures: list[str] = []
        self.seconds: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        client = httpx.Client(http2=True, verify=str(self.cafile), timeout=30.0,
                              headers={"authorization": f"Bearer {self.token}"})
        n = 0
        next_at = time.monotonic()
        while not self.stop.is_set():
            n += 1
            head = self.workdir / "head.safetensors"
            derived = subprocess.run([str(BINARY), "model", "derive-head", "--from", str(self.source_head),
                                      "--scene", self.scene, "--version", f"{self.scene}-soak-{n}", "--out", str(head)],
                                     capture_output=True, text=True)
            if derived.returncode != 0:
                self.failures.append(f"derive-head: {derived.stderr.strip()}")
            else:
                started = time.monotonic()
                try:
                    r = client.post(f"{self.admin_url}/admin/v1/scenes/{self.scene}/versions?label=stable",
                                    content=head.read_bytes(), headers={"content-type": "application/octet-stream"})
                    if r.status_code // 100 != 2:
                        self.failures.append(f"push {n}: {r.status_code} {r.text[:200]}")
                    else:
                        self.pushed += 1
                        self.seconds.append(time.monotonic() - started)
                except httpx.HTTPError as error:
                    self.failures.append(f"push {n}: {error!r}")
            next_at += self.every
            self.stop.wait(max(0.0, next_at - time.monotonic()))
        client.close()


def load(url: str, cafile: Path, *args: str, timeout: float) -> dict:
    out = subprocess.run([str(BINARY), "load", url, "--cacert", str(cafile), "--json", "-q", *args],
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise SystemExit(f"scenescore load {' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout)


def wait_ready(port: int, cafile: Path, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(http2=True, verify=str(cafile), timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited ({proc.returncode}) before it was ready")
            try:
                if client.get(f"https://localhost:{port}/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    raise SystemExit("the server was not ready in time")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0, help="measured length (default 30)")
    ap.add_argument("--window", type=float, default=5.0, help="p99 window in minutes (default 5)")
    ap.add_argument("--warm-up", type=float, default=60.0, help="seconds of load and pushes before RSS is taken (60)")
    ap.add_argument("--share", type=float, default=0.7, help="share of the measured saturation (0.7)")
    ap.add_argument("--swap-every", type=float, default=1.0, help="seconds between head pushes (1)")
    ap.add_argument("--scene", default="apparel")
    ap.add_argument("--candidates", default="16")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--model-dir", default=str(REPO / "var" / "models" / "default"))
    ap.add_argument("--plugin-dir", default=str(REPO / "var" / "plugins"))
    ap.add_argument("--out", default=str(REPO / "var" / "soak"), help="where the report goes (soak.json)")
    args = ap.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the server is stopped and nothing is left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    windows = max(1, round(args.minutes / args.window))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="scenescore-soak-"))
    port, admin_port = free_port(), free_port()
    token = secrets.token_urlsafe(24)
    (work / "admin-token").write_text(token)
    (work / "admin-token").chmod(0o600)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(work / "key.pem"), "-out", str(work / "cert.pem"), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    cafile = work / "cert.pem"
    log = open(out_dir / "server.log", "w")
    server = subprocess.Popen([str(BINARY), "serve", "--host", "127.0.0.1", "--port", str(port),
                               "--tls-cert", str(cafile), "--tls-key", str(work / "key.pem"),
                               "--model-dir", args.model_dir, "--plugin-dir", args.plugin_dir,
                               "--state-dir", str(work / "state"), "--admin-port", str(admin_port),
                               "--admin-token-file", str(work / "admin-token"), "--log-level", "warning"],
                              stdout=log, stderr=subprocess.STDOUT, cwd=work)
    pusher = sampler = None
    try:
        wait_ready(port, cafile, server)
        url = f"https://localhost:{port}"
        common = ["--scene", args.scene, "--candidates", args.candidates, "-c", str(args.connections)]
        # Saturation is measured with the pushes already running: they share the cores.
        pusher = Pusher(f"https://localhost:{admin_port}", token, cafile, args.scene,
                        Path(args.model_dir) / "heads" / f"{args.scene}.safetensors", work, args.swap_every)
        pusher.start()
        saturation = load(url, cafile, *common, "-m", "8", "-D", "20s", "--warm-up", "5s", timeout=120)
        rate = max(1.0, args.share * saturation["throughput"])
        print(f"saturation (closed loop, -c {args.connections} -m 8, {args.candidates} candidates, pushes on): "
              f"{saturation['throughput']:.0f} req/s -> soak at {rate:.0f} req/s ({args.share:.0%})", flush=True)
        open_loop = [*common, "-m", "32", "--rate", f"{rate:.0f}"]
        warm = load(url, cafile, *open_loop, "-D", f"{args.warm_up:.0f}s", timeout=args.warm_up + 120)
        if warm["throughput"] < 0.95 * rate:
            # An open loop the server cannot keep up with measures queueing, not the server.
            raise SystemExit(f"the warm-up reached {warm['throughput']:.0f} of {rate:.0f} req/s: the machine is busy "
                             f"(another process on these cores?); nothing measured")
        sampler = Sampler(server.pid)
        rss0, fds0 = sampler.now()
        sampler.start()
        print(f"after warm-up: RSS {rss0 / 1024:.1f} MiB, {fds0} fds, {pusher.pushed} heads pushed", flush=True)

        rows = []
        for w in range(windows):
            report = load(url, cafile, *open_loop, "-D", f"{args.window * 60:.0f}s", timeout=args.window * 60 + 300)
            rss, fds = sampler.now()
            rows.append({"window": w + 1, "requests": report["requests"], "errors": report["errors"],
                         "throughput": report["throughput"], "p50_ms": report["latency"]["p50"],
                         "p99_ms": report["latency"]["p99"], "p999_ms": report["latency"]["p999"],
                         "rss_mib": rss / 1024, "fds": fds, "pushed": pusher.pushed})
            print(json.dumps(rows[-1]), flush=True)
        pusher.stop.set()
        pusher.join(timeout=60)
        sampler.stop.set()
        rss1, fds1 = sampler.now()
    finally:
        for thread in (pusher, sampler):
            if thread is not None:
                thread.stop.set()
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        log.close()

    failed_requests = sum(r["errors"] for r in rows)
    p99_first, p99_last = rows[0]["p99_ms"], rows[-1]["p99_ms"]
    rss_growth = (rss1 - rss0) / rss0
    checks = {
        "RSS at the end within 5 % of after warm-up": (abs(rss_growth) <= 0.05, f"{rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB ({rss_growth:+.1%})"),
        "open fds flat": (fds1 - fds0 <= 2, f"{fds0} -> {fds1}"),
        f"p99 of the last {args.window:g} min within 10 % of the first": (p99_last <= 1.1 * p99_first, f"{p99_first:.3f} -> {p99_last:.3f} ms ({p99_last / p99_first - 1:+.1%})"),
        "zero failed requests": (failed_requests == 0, f"{failed_requests} of {sum(r['requests'] for r in rows)}"),
        "zero failed pushes": (not pusher.failures, f"{len(pusher.failures)} of {pusher.pushed + len(pusher.failures)}"
                               + (f": {pusher.failures[:3]}" if pusher.failures else "")),
    }
    print()
    print("| window | requests | errors | req/s | p50 ms | p99 ms | p99.9 ms | RSS MiB | fds | heads pushed |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['window']} | {r['requests']} | {r['errors']} | {r['throughput']:.0f} | {r['p50_ms']:.3f} | "
              f"{r['p99_ms']:.3f} | {r['p999_ms']:.3f} | {r['rss_mib']:.1f} | {r['fds']} | {r['pushed']} |")
    print()
    for name, (ok, detail) in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
    push_p99 = statistics.quantiles(pusher.seconds, n=100)[98] if len(pusher.seconds) >= 100 else float("nan")
    print(f"pushes: {pusher.pushed}, admin answer p99 {push_p99 * 1000:.0f} ms; RSS samples every 5 s: "
          f"min {min(s[1] for s in sampler.samples) / 1024:.1f}, max {max(s[1] for s in sampler.samples) / 1024:.1f} MiB")
    (out_dir / "soak.json").write_text(json.dumps({
        "settings": vars(args), "rate": rate, "saturation": saturation["throughput"], "windows": rows,
        "rss_kib": [rss0, rss1], "fds": [fds0, fds1], "samples": sampler.samples, "pushes": pusher.pushed,
        "push_failures": pusher.failures, "checks": {k: {"ok": v[0], "detail": v[1]} for k, v in checks.items()},
    }, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all(ok for ok, _ in checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
