#!/usr/bin/env python3
"""Replica benchmark: SceneScore replicas sharing one PostgreSQL scene registry (--registry).

    scripts/bench_replicas.py [--replicas 2,8] [--pushes 40] [--duration 10] [--warm-up 2]
                              [--rounds 3] [--clients 16] [--streams 32] [--candidates 1]
                              [--pin] [--skip-propagation] [--skip-throughput] [--json OUT.json] [--keep]

(i) Propagation. For each replica count N (2 and 8 processes on this machine, `--threads 1`
each, one private PostgreSQL cluster, a fresh database per N), one scene; K heads (--pushes,
made with Tests/e2e/heads.py) are pushed one at a time through replica 1's admin API. For each
push: the time from the push's 200 (as the admin client receives it) to every replica serving
the new version, observed by polling each replica with binary score requests (1 candidate) over
one persistent h2c connection per replica, one request in flight per replica, a new one sent as
soon as the previous answered (so a switch is seen within about one round trip). The next push
starts once every replica serves the last. Reported: p50 / p90 / p99 / max per N. Target: p99
<= 100 ms at 8 replicas. (With K = 40, p99 is the largest sample but one.)

(ii) Throughput. h2load (TLS, ALPN h2, binary body, identical flags) against HAProxy
(deploy/haproxy/haproxy.cfg, 2 server lines) in front of the N = 2 replicas, and directly
against replica 1's TLS port, in interleaved rounds (A B A B ...); the median req/s of each and
their ratio. This is a 2-core machine: every process shares the same two cores, so HAProxy in
front of two replicas competes with them and with h2load for CPU; the output says where each
process may run (--pin: replicas on core 0, HAProxy and h2load on core 1).

Needs: the release binary with --registry, PostgreSQL server binaries (Debian's postgresql),
haproxy, h2load, openssl, and the Python packages of scripts/setup.sh. Everything listens on and
connects to 127.0.0.1 only, and every process it starts is stopped on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for extra in (REPO / "Proto" / "python", REPO / "Tests" / "e2e", REPO / "Tests" / "interop",
              REPO / "Tests" / "replicas", REPO / "scripts" / "bench"):
    sys.path.insert(0, str(extra))

import cluster  # noqa: E402
import heads  # noqa: E402
from h2util import H2Conn, free_ports, make_certs, read_model, score_body, wire  # noqa: E402
from procfs import allowed_cpus  # noqa: E402
from report import parse_log, parse_stdout, percentile  # noqa: E402
from scenescore_client.admin import AdminClient  # noqa: E402

BINARY = Path(os.environ.get("SCENESCORE_BIN", REPO / ".build" / "release" / "scenescore"))
CT = "content-type: application/vnd.scenescore.v1"
SCENE = "bench"


def log(message: str) -> None:
    print(f"bench-replicas: {message}", file=sys.stderr, flush=True)


class Replica:
    """One `scenescore serve` process: TLS, h2c and admin ports of its own, a state directory."""

    def __init__(self, name: str, workdir: Path, certs, model_dir: Path, registry: str | None, token_file: Path,
                 cpus: str | None):
        self.name = name
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port, self.h2c_port, self.admin_port = free_ports(3)
        args = [str(BINARY), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--h2c-port", str(self.h2c_port),
                "--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key), "--model-dir", str(model_dir),
                "--threads", "1", "--state-dir", str(workdir / "state"), "--plugin-dir", str(workdir / "plugins"),
                "--admin-port", str(self.admin_port), "--admin-token-file", str(token_file), "--log-level", "warning"]
        if registry:
            args += ["--registry", registry]
        if cpus is not None:
            args = ["taskset", "-c", cpus] + args
        self.command = args
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCENESCORE_")}
        self.log_path = workdir / "stderr.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"bench-replicas: {self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with H2Conn.h2c(self.h2c_port, timeout=2) as conn:
                    r = conn.get("/readyz", timeout=2)
                if r.status == 200:
                    return
                last = r.status
            except Exception as error:  # noqa: BLE001 - retried until the deadline
                last = repr(error)
            time.sleep(0.05)
        raise SystemExit(f"bench-replicas: {self.name} not ready within {timeout}s ({last}):\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


class Poller:
    """One persistent h2c connection per replica; `until(version)` keeps one score request in
    flight on each replica that does not serve `version` yet, until all do."""

    def __init__(self, replicas: list[Replica], body: bytes):
        self.conns = [H2Conn.h2c(r.h2c_port, timeout=5) for r in replicas]
        self.body = body
        self.requests = 0
        self.rtts: list[float] = []

    def until(self, version: str, t0: float, timeout: float = 30.0) -> list[float]:
        n = len(self.conns)
        done: list[float | None] = [None] * n
        inflight: dict[int, int] = {}
        sent: dict[int, float] = {}
        while True:
            for i, conn in enumerate(self.conns):
                if done[i] is None and i not in inflight:
                    inflight[i] = conn.send("POST", "/v1/score", [("content-type", wire.CONTENT_TYPE)], self.body)
                    sent[i] = time.monotonic()
            socks = {self.conns[i].sock: i for i in inflight}
            readable, _, _ = select.select(list(socks), [], [], 0.05)
            for sock in readable:
                i = socks[sock]
                conn = self.conns[i]
                if not conn.poll(0):
                    raise RuntimeError(f"replica {i + 1} closed the probe connection (goaway={conn.goaway})")
                sid = inflight[i]
                r = conn.responses[sid]
                if not r.done:
                    continue
                now = time.monotonic()
                del conn.responses[sid]
                del inflight[i]
                self.requests += 1
                self.rtts.append(now - sent[i])
                if r.status == 200 and r.header(wire.HEAD_VERSION_HEADER) == version:
                    done[i] = now - t0
            if all(d is not None for d in done):
                return [float(d) for d in done]
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"{version} not served by every replica within {timeout}s: {done}")

    def close(self) -> None:
        for conn in self.conns:
            conn.close()


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="scenescore-bench-replicas."))
        self.certs = make_certs(self.work / "certs")
        self.token = secrets.token_urlsafe(24)
        self.token_file = self.work / "admin.token"
        self.token_file.write_text(self.token)
        self.token_file.chmod(0o600)
        self.model_dir = Path(args.model_dir)
        self.model = read_model(self.model_dir)
        self.backbone = heads.backbone_spec(self.model_dir)
        self.pg: cluster.PgCluster | None = None
        self.replicas: list[Replica] = []
        self.haproxy: cluster.HAProxy | None = None
        self.results: dict = {"propagation": [], "throughput": None}
        self.placement: list[str] = []

    # -- processes -----------------------------------------------------------------------------

    def start_replicas(self, n: int, registry: str | None, tag: str) -> list[Replica]:
        cpus = "0" if self.args.pin else None
        reps = [Replica(f"replica {k + 1}", self.work / f"{tag}-r{k + 1}", self.certs, self.model_dir, registry,
                        self.token_file, cpus) for k in range(n)]
        self.replicas += reps
        for r in reps:
            r.wait_ready()
        return reps

    def stop_replicas(self, reps: list[Replica]) -> None:
        for r in reps:
            r.stop()
            self.replicas.remove(r)

    def cleanup(self) -> None:
        if self.haproxy is not None:
            self.haproxy.stop()
        for r in list(self.replicas):
            r.stop()
        if self.pg is not None:
            self.pg.destroy()
        if self.args.keep:
            log(f"kept {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    # -- (i) propagation -----------------------------------------------------------------------

    def deploy(self, n: int) -> list[Replica]:
        """n replicas on a fresh database of their own."""
        db = f"bench_n{n}"
        self.pg.createdb(db)
        reps = self.start_replicas(n, self.pg.url(db), f"n{n}")
        log(f"{n} replicas ready (registry {self.pg.url(db)})")
        return reps

    def propagation(self, reps: list[Replica]) -> None:
        n = len(reps)
        log(f"{n} replicas: pushing {self.args.pushes} heads through replica 1")
        bodies = [heads.head_bytes(self.backbone, SCENE, f"{SCENE}-{k}", seed=1000 + k)
                  for k in range(self.args.pushes + 1)]
        admin = AdminClient(f"https://127.0.0.1:{reps[0].admin_port}", self.token, verify=str(self.certs.ca))
        poller = None
        try:
            r = admin.request("PUT", f"/admin/v1/scenes/{SCENE}", content=bodies[0],
                              headers={"content-type": "application/octet-stream"})
            assert r.status_code == 201, f"register: {r.status_code} {r.text[:300]}"
            schema = self.model.schema
            poller = Poller(reps, score_body(1, SCENE, seed=3, request_id=3, schema=schema))
            poller.until(f"{SCENE}-0", time.monotonic())
            all_served: list[float] = []
            per_replica: list[list[float]] = []
            push_ms: list[float] = []
            for k in range(1, self.args.pushes + 1):
                version = f"{SCENE}-{k}"
                sent = time.monotonic()
                r = admin.request("POST", f"/admin/v1/scenes/{SCENE}/versions", content=bodies[k],
                                  headers={"content-type": "application/octet-stream"})
                t0 = time.monotonic()
                assert r.status_code == 200, f"push {version}: {r.status_code} {r.text[:300]}"
                push_ms.append((t0 - sent) * 1000)
                times = poller.until(version, t0)
                per_replica.append(times)
                all_served.append(max(times))
                time.sleep(0.02)
            ms = sorted(t * 1000 for t in all_served)
            row = {"replicas": n, "pushes": len(ms), "p50_ms": percentile(ms, 50), "p90_ms": percentile(ms, 90),
                   "p99_ms": percentile(ms, 99), "max_ms": ms[-1], "push_p50_ms": statistics.median(push_ms),
                   "poll_requests": poller.requests, "poll_rtt_p50_ms": statistics.median(poller.rtts) * 1000,
                   "samples_ms": [round(x, 3) for x in ms],
                   "slowest_replica_counts": _slowest(per_replica)}
            self.results["propagation"].append(row)
            log(f"{n} replicas: p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms, max {row['max_ms']:.1f} ms")
        finally:
            admin.close()
            if poller is not None:
                poller.close()
        self.placement.append(f"propagation, {n} replicas: " + _grouped(
            [(f"replica {k + 1}", r.proc.pid) for k, r in enumerate(reps)]
            + [("PostgreSQL", self.pg.pid() or 0), ("the poller and admin client (this script)", os.getpid())]))
        return reps

    # -- (ii) throughput -----------------------------------------------------------------------

    def h2load(self, tag: str, port: int, body: Path) -> dict:
        a = self.args
        cmd = ["h2load", "-c", str(a.clients), "-m", str(a.streams), "-t", "1", "-D", str(a.duration),
               "--warm-up-time", str(a.warm_up), "-d", str(body), "-H", CT,
               "--log-file", str(self.work / f"{tag}.tsv"), f"https://127.0.0.1:{port}/v1/score"]
        if a.pin:
            cmd = ["taskset", "-c", "1"] + cmd
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=a.duration + a.warm_up + 120)
        (self.work / f"{tag}.out").write_text(out.stdout + out.stderr)
        if out.returncode != 0:
            raise SystemExit(f"bench-replicas: h2load failed ({out.returncode}):\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
        parsed = parse_stdout(out.stdout)
        parsed.update(parse_log(self.work / f"{tag}.tsv"))
        parsed["command"] = " ".join(shlex.quote(c) for c in cmd)
        if parsed.get("failed") or parsed.get("errored") or parsed.get("2xx") != parsed.get("succeeded") \
                or parsed.get("5xx") or parsed.get("4xx"):
            raise SystemExit(f"bench-replicas: h2load saw failures against {tag}:\n{out.stdout[-3000:]}")
        return parsed

    def throughput(self, reps: list[Replica]) -> None:
        a = self.args
        body = self.work / "body.bin"
        scene = "apparel" if "apparel" in self.model.scenes else self.model.scenes[0]
        body.write_bytes(score_body(a.candidates, scene, seed=9, request_id=9, schema=self.model.schema))
        self.haproxy = cluster.HAProxy(self.work / "haproxy", self.certs.server_cert, self.certs.server_key,
                                       [f"127.0.0.1:{r.h2c_port}" for r in reps[:2]], cpus="1" if a.pin else None)
        self.haproxy.wait_up(timeout=20)
        targets = {"haproxy + 2 replicas": self.haproxy.port, "1 replica direct": reps[0].port}
        runs: dict[str, list[dict]] = {k: [] for k in targets}
        for rnd in range(a.rounds):
            order = list(targets) if rnd % 2 == 0 else list(reversed(targets))
            for name in order:
                log(f"throughput round {rnd + 1}/{a.rounds}: {name}")
                runs[name].append(self.h2load(f"{name.replace(' ', '_').replace('+', 'and')}-{rnd}", targets[name], body))
        sessions = self.haproxy.server_sessions()
        self.placement.append(
            "throughput: " + _grouped([(f"replica {k + 1}", r.proc.pid) for k, r in enumerate(reps[:2])]
                                      + [("HAProxy", self.haproxy.proc.pid)])
            + "; h2load: " + ("cpu 1 (taskset -c 1)" if a.pin else f"cpus {allowed_cpus(os.getpid())} (unpinned)")
            + "; PostgreSQL idle (no registry traffic while scoring)")
        summary = {}
        for name, rs in runs.items():
            rps = [r["reported_req_per_s"] for r in rs]
            summary[name] = {"median_req_per_s": statistics.median(rps), "req_per_s": rps,
                             "median_p50_ms": statistics.median(r["p50_ms"] for r in rs),
                             "median_p99_ms": statistics.median(r["p99_ms"] for r in rs),
                             "command": rs[0]["command"]}
        self.results["throughput"] = {"runs": summary, "haproxy_requests_per_server": sessions,
                                      "haproxy_command": " ".join(shlex.quote(c) for c in self.haproxy.command),
                                      "haproxy_env": {k: v for k, v in self.haproxy.env.items()
                                                      if k.startswith("SCENESCORE_")},
                                      "replica_command": " ".join(shlex.quote(c) for c in reps[0].command)}
        self.haproxy.stop()
        self.haproxy = None

    # -- report --------------------------------------------------------------------------------

    def report(self) -> None:
        a = self.args
        print()
        print(f"## Replica benchmark ({os.cpu_count()} cores, scenescore --threads 1 per replica)")
        if self.results["propagation"]:
            print()
            print(f"### Propagation: push through replica 1 -> every replica serves it ({a.pushes} pushes each)")
            print()
            print("| replicas | pushes | p50 ms | p90 ms | p99 ms | max ms | push 200 p50 ms | poll RTT p50 ms |")
            print("|---:|---:|---:|---:|---:|---:|---:|---:|")
            for row in self.results["propagation"]:
                print(f"| {row['replicas']} | {row['pushes']} | {row['p50_ms']:.1f} | {row['p90_ms']:.1f} | "
                      f"{row['p99_ms']:.1f} | {row['max_ms']:.1f} | {row['push_p50_ms']:.1f} | "
                      f"{row['poll_rtt_p50_ms']:.2f} |")
            print()
            print("Time from the push's 200 at the admin client to the first score answer naming the new version "
                  "on the last replica; each replica polled over its own h2c connection, one request in flight "
                  "per replica (1 candidate). \"push 200\": the push itself (upload, validation, warm-up, "
                  "commit, local publish). \"poll RTT\": a probe request's round trip, the resolution "
                  "of the measurement.")
            eight = [r for r in self.results["propagation"] if r["replicas"] == 8]
            if eight:
                verdict = "met" if eight[0]["p99_ms"] <= 100 else "NOT met"
                print(f"Target p99 <= 100 ms at 8 replicas: {verdict} ({eight[0]['p99_ms']:.1f} ms).")
        t = self.results["throughput"]
        if t:
            print()
            print(f"### Throughput: h2load, TLS, -c {a.clients} -m {a.streams} -t 1, {a.warm_up}s warm-up + "
                  f"{a.duration}s, {a.candidates} candidate(s), {a.rounds} interleaved rounds each")
            print()
            print("| target | median req/s | rounds req/s | p50 ms | p99 ms |")
            print("|---|---:|---|---:|---:|")
            for name, s in t["runs"].items():
                print(f"| {name} | {s['median_req_per_s']:,.0f} | {', '.join(f'{x:,.0f}' for x in s['req_per_s'])} | "
                      f"{s['median_p50_ms']:.2f} | {s['median_p99_ms']:.2f} |")
            names = list(t["runs"])
            ratio = t["runs"][names[0]]["median_req_per_s"] / t["runs"][names[1]]["median_req_per_s"]
            print()
            print(f"{names[0]} / {names[1]}: {ratio:.2f}x. Requests HAProxy sent to each replica: "
                  f"{t['haproxy_requests_per_server']}.")
            print()
            print("Commands:")
            for name, s in t["runs"].items():
                print(f"    {s['command']}    # {name}")
            env = " ".join(f"{k}={v}" for k, v in t["haproxy_env"].items())
            print(f"    {env} {t['haproxy_command']}")
            print(f"    {t['replica_command']}    # each replica (own ports and directories)")
        print()
        print(f"Where each process ran ({os.cpu_count()} cores; \"cpus\" is each process's allowed CPU list):")
        for line in self.placement:
            print(f"- {line}")
        if a.json:
            Path(a.json).write_text(json.dumps(self.results, indent=2))
            log(f"wrote {a.json}")


def _grouped(processes: list[tuple[str, int]]) -> str:
    """"replica 1, replica 2: cpus 0-1; HAProxy: cpus 1" from (name, pid) pairs."""
    groups: dict[str, list[str]] = {}
    for name, pid in processes:
        groups.setdefault(allowed_cpus(pid), []).append(name)
    return "; ".join(f"{', '.join(names)}: cpus {cpus}" for cpus, names in groups.items())


def _slowest(per_replica: list[list[float]]) -> dict[str, int]:
    """How often each replica was the last to serve a push."""
    counts: dict[str, int] = {}
    for times in per_replica:
        name = f"replica {times.index(max(times)) + 1}"
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", default="2,8", help="replica counts for the propagation runs")
    parser.add_argument("--pushes", type=int, default=40)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--warm-up", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--streams", type=int, default=32)
    parser.add_argument("--candidates", type=int, default=1)
    parser.add_argument("--model-dir", default=str(REPO / "var" / "models" / "default"))
    parser.add_argument("--pin", action="store_true", help="replicas on core 0, HAProxy and h2load on core 1")
    parser.add_argument("--skip-propagation", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--json")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs, h2load output)")
    args = parser.parse_args()

    if not BINARY.is_file():
        raise SystemExit(f"bench-replicas: {BINARY} not found; build it: swift build -c release --product scenescore")
    for problem in (cluster.registry_flag_problem(BINARY), cluster.postgres_problem(),
                    None if args.skip_throughput else cluster.haproxy_problem(),
                    None if args.skip_throughput or shutil.which("h2load") else "h2load not found (nghttp2-client)"):
        if problem:
            raise SystemExit(f"bench-replicas: {problem}")
    if not (Path(args.model_dir) / "backbone.safetensors").is_file():
        raise SystemExit(f"bench-replicas: no model in {args.model_dir} (scenescore model init --dir {args.model_dir})")
    measured = set() if args.skip_propagation else {int(x) for x in args.replicas.split(",") if x.strip()}
    counts = sorted(measured | (set() if args.skip_throughput else {2}))

    bench = Bench(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        bench.pg = cluster.PgCluster(durable=True, prefix="scenescore-bench-pg-")
        bench.pg.start()
        for n in counts:
            reps = bench.deploy(n)
            if n in measured:
                bench.propagation(reps)
            if n == 2 and not args.skip_throughput:
                bench.throughput(reps)
            bench.stop_replicas(reps)
        bench.report()
    finally:
        bench.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
