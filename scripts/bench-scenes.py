#!/usr/bin/env python3
"""Scene registry benchmark: many scenes, hot swaps and mixed-scene traffic on the real server.

    scripts/bench-scenes.py [--scenes 1000,10000] [--duration 10] [--warm-up 2] [--concurrency 64]
                            [--swap-interval 0.1] [--candidates 1] [--mixed | --mixed-only]
                            [--model-dir DIR] [--json OUT.json] [--keep]

It starts `scenescore serve` (pinned to core 0, one event loop, admin API on) with a fresh state
directory, and from core 1:

1. registers one hot scene and measures POST /v1/score on it with h2load (binary body, TLS,
   -c 16 -m 32; p50/p99 from h2load's --log-file);
2. registers scenes through the admin API until there are 1,000, then 10,000 (--scenes), with
   heads the script makes (distinct weights, the default head shape), many uploads in flight
   over one HTTP/2 connection; after each step: the server's resident memory (VmRSS from
   /proc/PID/status) per added head against the head's weight bytes, the time to register, and
   the hot scene's p50/p99 again;
3. measures the hot scene's p99 while its head is swapped every --swap-interval seconds (a push
   with label stable) against a steady run just before;
4. with --mixed: four h2load processes in parallel, each on its own scene (mixed), against the
   same four all on one scene (single): req/s of mixed / single (--mixed-only: just this).

Prints Markdown tables and the commands. Needs h2load, taskset, openssl and the Python packages of
scripts/setup.sh. The server and every h2load listen/connect on 127.0.0.1 only and are stopped on
exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import safetensors.numpy

REPO = Path(__file__).resolve().parents[1]
for extra in (REPO / "Proto" / "python", REPO / "Tests" / "e2e", REPO / "Tests" / "interop", REPO / "scripts" / "bench"):
    sys.path.insert(0, str(extra))

import heads  # noqa: E402
import scenescore_model as sm  # noqa: E402
from h2util import free_ports, make_certs  # noqa: E402
from report import parse_log, parse_stdout, percentile  # noqa: E402
from scenescore_client import SceneDescription, encode_for_scene  # noqa: E402
from scenescore_client.admin import AdminClient, AsyncAdminClient  # noqa: E402

CT = "content-type: application/vnd.scenescore.v1"


def log(message: str) -> None:
    print(f"bench-scenes: {message}", file=sys.stderr, flush=True)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class HeadFactory:
    """Head files of the default shape for the served backbone, each with distinct weights
    (one random head, its output bias shifted per file), made in a fraction of a millisecond."""

    def __init__(self, backbone: dict, seed: int = 7):
        self.backbone = backbone
        spec = heads.head_spec(backbone, "x", "x")
        self.base = sm.to_storage(heads.head_tensors(spec, seed), "F32")
        self.weight_bytes = heads.weight_bytes(spec)
        self.count = 0

    def make(self, scene: str, version: str) -> bytes:
        self.count += 1
        spec = heads.head_spec(self.backbone, scene, version)
        stored = dict(self.base)
        stored["output.bias"] = (self.base["output.bias"] + np.float32(self.count * 1e-5)).astype("<f4")
        return safetensors.numpy.save(stored, metadata=sm.model_metadata("head", spec, stored))


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path):
        self.args = args
        self.work = work
        self.binary = Path(os.environ.get("SCENESCORE_BIN", REPO / ".build" / "release" / "scenescore"))
        self.proc: subprocess.Popen | None = None
        self.commands: list[str] = []
        self.server_cpu, self.client_cpu = ("0", "1") if (os.cpu_count() or 1) >= 2 else ("0", "0")

    # -- the server ------------------------------------------------------------------------------

    def model_dir(self) -> Path:
        if self.args.model_dir:
            return Path(self.args.model_dir)
        default = REPO / "var" / "models" / "default"
        if (default / "backbone.safetensors").is_file():
            return default
        target = self.work / "model"
        log(f"no model in {default}: scenescore model init --dir {target}")
        subprocess.run([str(self.binary), "model", "init", "--dir", str(target)], check=True,
                       stdout=subprocess.DEVNULL)
        return target

    def start(self) -> None:
        self.certs = make_certs(self.work / "certs")
        self.port, self.admin_port = free_ports(2)
        self.token = secrets.token_urlsafe(24)
        token_file = self.work / "admin-token"
        token_file.write_text(self.token)
        self.model = self.model_dir()
        (self.work / "plugins").mkdir()
        cmd = ["taskset", "-c", self.server_cpu, str(self.binary), "serve", "--host", "127.0.0.1",
               "--port", str(self.port), "--tls-cert", str(self.certs.server_cert), "--tls-key",
               str(self.certs.server_key), "--model-dir", str(self.model), "--state-dir", str(self.work / "state"),
               "--plugin-dir", str(self.work / "plugins"), "--admin-port", str(self.admin_port),
               "--admin-token-file", str(token_file), "--threads", "1", "--log-level", "warning"]
        self.commands.append(shlex.join(cmd))
        self.server_log = open(self.work / "server.log", "wb")
        self.proc = subprocess.Popen(cmd, cwd=self.work, stdout=self.server_log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        context = ssl.create_default_context(cafile=str(self.certs.ca))
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"bench-scenes: the server exited ({self.proc.returncode}): "
                                 f"{(self.work / 'server.log').read_text()[-2000:]}")
            try:
                with httpx.Client(http2=True, verify=context, timeout=2) as c:
                    if c.get(f"https://127.0.0.1:{self.port}/readyz").status_code == 200:
                        break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise SystemExit("bench-scenes: the server was not ready within 120 s")
        self.backbone = heads.backbone_spec(self.model)
        self.factory = HeadFactory(self.backbone)
        self.admin_url = f"https://127.0.0.1:{self.admin_port}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def admin(self) -> AdminClient:
        return AdminClient(self.admin_url, self.token, verify=str(self.certs.ca), timeout=120)

    # -- registering -----------------------------------------------------------------------------

    def register_many(self, names: list[str]) -> dict:
        """Registers `names` concurrently over one HTTP/2 connection; wall time and per-write latency."""
        latencies: list[float] = []

        async def run() -> None:
            limit = asyncio.Semaphore(self.args.concurrency)
            async with AsyncAdminClient(self.admin_url, self.token, verify=str(self.certs.ca)) as admin:
                async def one(name: str) -> None:
                    body = self.factory.make(name, f"{name}-1")
                    async with limit:
                        t0 = time.perf_counter()
                        await admin.register(name, body)
                        latencies.append(time.perf_counter() - t0)

                for start in range(0, len(names), 1000):  # bounded memory for the bodies
                    await asyncio.gather(*(one(n) for n in names[start:start + 1000]))

        started = time.perf_counter()
        asyncio.run(run())
        wall = time.perf_counter() - started
        latencies.sort()
        return {"scenes": len(names), "seconds": wall, "per_s": len(names) / wall if wall else None,
                "write_p50_ms": 1000 * percentile(latencies, 50), "write_p99_ms": 1000 * percentile(latencies, 99)}

    # -- h2load ----------------------------------------------------------------------------------

    def body_file(self, scene: str, candidates: int) -> Path:
        with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=str(self.certs.ca))) as c:
            scenes = {s["scene"]: s for s in c.get(f"https://127.0.0.1:{self.port}/v1/scenes").json()["scenes"]}
        desc = SceneDescription.from_json(scenes[scene])
        path = self.work / f"body-{scene}-{candidates}.bin"
        path.write_bytes(encode_for_scene(desc, candidates, 1000 + candidates, request_id=candidates))
        return path

    def h2load(self, tag: str, body: Path, *, clients: int, streams: int, duration: float,
               background: bool = False) -> subprocess.Popen | dict:
        out, log_file = self.work / f"{tag}.out", self.work / f"{tag}.tsv"
        cmd = ["taskset", "-c", self.client_cpu, "h2load", "-c", str(clients), "-m", str(streams), "-t", "1",
               "-D", str(max(1, round(duration))), "--warm-up-time", str(max(0, round(self.args.warm_up))),
               "-d", str(body), "-H", CT,
               "--log-file", str(log_file), f"https://127.0.0.1:{self.port}/v1/score"]
        self.commands.append(shlex.join(cmd))
        proc = subprocess.Popen(cmd, stdout=open(out, "wb"), stderr=subprocess.STDOUT)
        if background:
            proc.tag = tag  # type: ignore[attr-defined]
            return proc
        proc.wait()
        return self.h2load_result(tag)

    def h2load_result(self, tag: str) -> dict:
        result = parse_stdout((self.work / f"{tag}.out").read_text(errors="replace"))
        result.update(parse_log(self.work / f"{tag}.tsv"))
        result["tag"] = tag
        return result

    def warm(self, body: Path) -> None:
        """A short unrecorded run: first connections, page faults and allocator growth happen here."""
        self.h2load("warm-up", body, clients=16, streams=32, duration=2)

    def hot(self, tag: str) -> dict:
        return self.h2load(tag, self.hot_body, clients=16, streams=32, duration=self.args.duration)

    # -- the phases ------------------------------------------------------------------------------

    def scale(self) -> tuple[list[dict], list[dict]]:
        with self.admin() as admin:
            admin.register("hot", self.factory.make("hot", "hot-1"))
        self.hot_body = self.body_file("hot", self.args.candidates)
        self.warm(self.hot_body)
        latency = [dict(self.hot("hot-before"), phase="hot scene, before (4 scenes)")]
        registry = []
        rss_before = rss_bytes(self.proc.pid)
        registry.append({"scenes": 4, "rss": rss_before})
        registered = 0
        for target in self.args.scenes:
            names = [f"bench-{i:05d}" for i in range(registered, target)]
            log(f"registering {len(names)} scenes ({registered} -> {target})")
            step = self.register_many(names)
            registered = target
            time.sleep(2)  # the registry gauges and allocator settle
            rss = rss_bytes(self.proc.pid)
            step.update(scenes_total=target + 4, rss=rss,
                        rss_per_head=(rss - rss_before) / target, weight_bytes=self.factory.weight_bytes)
            registry.append(step)
            latency.append(dict(self.hot(f"hot-after-{target}"), phase=f"hot scene, after {target:,} scenes"))
        latency.append(dict(self.hot("hot-steady"), phase="hot scene, steady (before the swap run)"))
        latency.append(dict(self.swap_run(), phase=f"hot scene, head swapped every {self.args.swap_interval}s"))
        return registry, latency

    def swap_run(self) -> dict:
        proc = self.h2load("hot-swap", self.hot_body, clients=16, streams=32, duration=self.args.duration,
                           background=True)
        stop = threading.Event()
        swaps: list[float] = []

        def swapper() -> None:
            with self.admin() as admin:
                k = 2
                while not stop.is_set():
                    t0 = time.perf_counter()
                    admin.push("hot", self.factory.make("hot", f"hot-{k}"))
                    swaps.append(time.perf_counter() - t0)
                    k += 1
                    stop.wait(self.args.swap_interval)

        thread = threading.Thread(target=swapper, daemon=True)
        thread.start()
        proc.wait()
        stop.set()
        thread.join(60)
        result = self.h2load_result("hot-swap")
        swaps.sort()
        result["swaps"] = len(swaps)
        result["swap_p50_ms"] = 1000 * percentile(swaps, 50) if swaps else None
        return result

    def mixed(self) -> list[dict]:
        with self.admin() as admin:
            for k in range(4):
                admin.register(f"mix-{k}", self.factory.make(f"mix-{k}", f"mix-{k}-1"))
        bodies = [self.body_file(f"mix-{k}", self.args.candidates) for k in range(4)]
        self.warm(bodies[0])
        rows = []
        # Interleaved rounds (single, mixed, single, mixed, …): the machine is shared and noisy,
        # so each kind is reported as the median of its rounds.
        for round_ in range(self.args.rounds):
            for kind, chosen in [("single", [bodies[0]] * 4), ("mixed", bodies)]:
                procs = [self.h2load(f"{kind}-{round_}-{k}", body, clients=4, streams=8, duration=self.args.duration,
                                     background=True) for k, body in enumerate(chosen)]
                for p in procs:
                    p.wait()
                parts = [self.h2load_result(p.tag) for p in procs]  # type: ignore[attr-defined]
                rows.append({"kind": kind, "round": round_, "req_per_s": sum(p.get("reported_req_per_s") or 0 for p in parts),
                             "failed": sum((p.get("failed") or 0) + (p.get("errored") or 0) for p in parts),
                             "p99_ms": max(p.get("p99_ms") or 0 for p in parts), "parts": parts})
        medians = []
        for kind in ("single", "mixed"):
            mine = sorted((r for r in rows if r["kind"] == kind), key=lambda r: r["req_per_s"])
            median = dict(mine[len(mine) // 2])
            median["rounds"] = [r["req_per_s"] for r in rows if r["kind"] == kind]
            median["failed"] = sum(r["failed"] for r in mine)
            medians.append(median)
        return medians


def fmt(value, digits=2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def report(args, bench: Bench, registry, latency, mixed) -> dict:
    print()
    print(f"## Scene registry benchmark (server on core {bench.server_cpu}, one event loop; clients on core "
          f"{bench.client_cpu}; {args.candidates} candidate(s) per request)")
    if registry:
        print()
        print("| scenes | register wall s | scenes/s | write p50 / p99 ms | server RSS MiB | RSS per head KiB "
              "| head weights KiB | RSS / weights |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in registry:
            per = r.get("rss_per_head")
            print(f"| {r.get('scenes_total', r['scenes']):,} | {fmt(r.get('seconds'), 1)} | {fmt(r.get('per_s'), 0)} "
                  f"| {fmt(r.get('write_p50_ms'), 1)} / {fmt(r.get('write_p99_ms'), 1)} | {r['rss'] / 2**20:,.0f} "
                  f"| {fmt(per / 1024 if per else None, 1)} | {fmt(r.get('weight_bytes', 0) / 1024 or None, 1)} "
                  f"| {fmt(per / r['weight_bytes'] if per else None)} |")
    if latency:
        print()
        print("| run | req/s | p50 ms | p99 ms | p99.9 ms | failed | swaps |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for r in latency:
            failed = (r.get("failed") or 0) + (r.get("errored") or 0) + (r.get("timeout") or 0)
            print(f"| {r['phase']} | {fmt(r.get('reported_req_per_s'), 0)} | {fmt(r.get('p50_ms'), 3)} "
                  f"| {fmt(r.get('p99_ms'), 3)} | {fmt(r.get('p999_ms'), 3)} | {failed} | {r.get('swaps', '')} |")
        steady = next((r for r in latency if r["tag"] == "hot-steady"), None)
        swap = next((r for r in latency if r["tag"] == "hot-swap"), None)
        if steady and swap and steady.get("p99_ms") and swap.get("p99_ms"):
            print(f"\np99 during swaps / steady: {swap['p99_ms'] / steady['p99_ms']:.2f}x "
                  f"({swap.get('swaps')} swaps, push p50 {fmt(swap.get('swap_p50_ms'), 1)} ms)")
    if mixed:
        print()
        print("| load (4 h2load × -c 4 -m 8) | req/s (median) | rounds | p99 ms | failed |")
        print("|---|---:|---|---:|---:|")
        for r in mixed:
            rounds = ", ".join(fmt(x, 0) for x in r["rounds"])
            print(f"| {r['kind']} ({'4 scenes' if r['kind'] == 'mixed' else '1 scene'}) | {fmt(r['req_per_s'], 0)} "
                  f"| {rounds} | {fmt(r['p99_ms'], 3)} | {r['failed']} |")
        single = next(r for r in mixed if r["kind"] == "single")["req_per_s"]
        mix = next(r for r in mixed if r["kind"] == "mixed")["req_per_s"]
        if single:
            print(f"\nmixed / single req/s: {mix / single:.2f}")
    print("\nCommands:\n```")
    print(f"cd {bench.work} && {bench.commands[0]}")
    for c in dict.fromkeys(c for c in bench.commands[1:] if "warm-up.tsv" not in c):
        print(c)
    print("```")
    return {"registry": registry, "latency": latency, "mixed": mixed, "commands": bench.commands}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", default="1000,10000", help="registry sizes to reach, ascending (default 1000,10000)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per h2load run (default 10)")
    parser.add_argument("--warm-up", type=int, default=2, help="h2load warm-up seconds (default 2)")
    parser.add_argument("--concurrency", type=int, default=64, help="uploads in flight while registering (64)")
    parser.add_argument("--swap-interval", type=float, default=0.1, help="seconds between swaps (default 0.1)")
    parser.add_argument("--candidates", type=int, default=1, help="candidates per scoring request (default 1)")
    parser.add_argument("--mixed", action="store_true", help="also compare 4-scene and 1-scene load")
    parser.add_argument("--mixed-only", action="store_true", help="only the mixed-scene comparison")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the mixed comparison (median reported)")
    parser.add_argument("--model-dir")
    parser.add_argument("--json")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args()
    args.scenes = sorted(int(x) for x in args.scenes.split(",") if x)
    for tool in ("h2load", "taskset", "openssl"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench-scenes: {tool} not found (scripts/setup.sh installs it)")
    work = Path(tempfile.mkdtemp(prefix="scenescore-bench-scenes."))
    bench = Bench(args, work)
    if not bench.binary.is_file():
        raise SystemExit(f"bench-scenes: {bench.binary} not found; build it: swift build -c release")
    try:
        bench.start()
        registry, latency, mixed = [], [], []
        if args.mixed or args.mixed_only:
            mixed = bench.mixed()
        if not args.mixed_only:
            registry, latency = bench.scale()
        summary = report(args, bench, registry, latency, mixed)
        if args.json:
            Path(args.json).write_text(json.dumps(summary, indent=2, default=str) + "\n")
        bad = [r for r in latency if (r.get("failed") or 0) or (r.get("errored") or 0) or not r.get("succeeded")]
        bad += [r for r in mixed if r["failed"]]
        return 1 if bad else 0
    finally:
        bench.stop()
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
