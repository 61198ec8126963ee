#!/usr/bin/env python3
"""Request-path benchmark: how close POST /v1/score comes to what one core can do, and how the
server scales from --threads 1 to --threads 2.

    scripts/bench-request-path.sh [--rounds 3] [--duration 10] [--warm-up 2] [--clients 16] [--streams 32]
                                  [--model-dir DIR] [--json OUT.json] [--keep]

(1) Combined bound. `scenescore serve --threads 1` on core 0, every client on core 1, TLS (ALPN h2),
identical flags for every run (-c 16 -m 32 -t 1, warm-up + fixed duration). Per round, in this order:
h2load GET /healthz (no inference: transport-only req/s, T), h2load POST /v1/score at 1 and 16
candidates (binary body), h2load POSTing the same bodies to /healthz (a 405 at the headers; the
body still crosses TLS and nghttp2, discarded: the request bytes' own transport cost, T_body(N),
a diagnosis reported beside the target),
`scenescore load` at 1 and 16 candidates (scene apparel), then
`scenescore bench model` on core 0 for the forward pass's own cost f(N) in µs per request. One core
does both the transport work and the forward pass, so the bound is B(N) = 1 / (1/T + f(N));
reported: measured / B(N) per tool and N, median of the per-round ratios (each round's T and f).
Target: >= 0.9. `scenescore load` only POSTs to the scoring path, so T is h2load's for both tools.

(2) Scaling. `serve --threads 1` and `serve --threads 2`, neither pinned (both cores available),
h2load (unpinned too) POSTing 1 candidate, rounds alternating the order. Besides req/s, the CPU
seconds per second of the server and of h2load over the measured window (utime + stime from
/proc/PID/stat, sampled after the warm-up and just before the end), and req/s per server
CPU-second. With a third core for the load generator, --threads 2 would reach about
(req/s per server CPU-second at --threads 2) x 2 cores: an estimate, since this machine has no
third core; the output says so.

Default runtime about 5 minutes. Needs h2load, curl, taskset, openssl, python3 with numpy
(scripts/setup.sh installs them) and the release binary (SCENESCORE_BIN, default
.build/release/scenescore). Everything listens on and connects to 127.0.0.1 only; every process
it starts is stopped on exit (SIGTERM, then SIGKILL after 15 s).
"""

from __future__ import annotations

import argparse
import json
import os
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
sys.path.insert(0, str(REPO / "scripts" / "bench"))

from procfs import allowed_cpus  # noqa: E402
from report import parse_stdout  # noqa: E402  (h2load's summary lines)

BINARY = Path(os.environ.get("SCENESCORE_BIN", REPO / ".build" / "release" / "scenescore"))
CONTENT_TYPE = "content-type: application/vnd.scenescore.v1"
SCENE = "apparel"  # scripts/bench/make_bodies.py encodes apparel requests
CANDIDATES = (1, 16)
TARGET_FRACTION_OF_BOUND = 0.9
TARGET_SCALING = 1.8
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"bench-request-path: {message}", file=sys.stderr, flush=True)


def fail(message: str) -> SystemExit:
    return SystemExit(f"bench-request-path: {message}")


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, digits=0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def shown(cmd: list[str]) -> str:
    return shlex.join(str(c) for c in cmd)


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads), from /proc/PID/stat; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # fields from 3 (state) on; utime is 14, stime 15
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def core_ticks() -> dict[str, tuple[int, int, int]]:
    """Per core, from /proc/stat: (busy, steal, total) clock ticks since boot."""
    ticks = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            user, nice, system, idle, iowait, irq, softirq, steal = map(int, values[:8])
            ticks[name[3:]] = (user + nice + system + irq + softirq, steal,
                               user + nice + system + idle + iowait + irq + softirq + steal)
    return ticks


def core_busy(before: dict, after: dict) -> dict[str, dict[str, float]]:
    """Each core's busy and stolen (hypervisor) fraction between two core_ticks() samples."""
    out = {}
    for core in before:
        busy, steal, total = (a - b for a, b in zip(after[core], before[core]))
        out[core] = {"busy": busy / total if total else None, "steal": steal / total if total else None}
    return out


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, wait up to 15 s, then SIGKILL (scripts/bench/lib.sh's stop_pid)."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        log(f"pid {proc.pid} ignored SIGTERM for 15 s; killing it")
        proc.kill()
        proc.wait(timeout=10)


class Server:
    """One `scenescore serve` on 127.0.0.1 with the throwaway certificate, in a directory of its own."""

    def __init__(self, name: str, work: Path, certs: Path, model_dir: Path, threads: int, cpus: str | None):
        self.name = name
        self.certs = certs
        self.port = free_port()
        self.workdir = work / name
        self.workdir.mkdir(parents=True)
        args = [str(BINARY), "serve", "--host", "127.0.0.1", "--port", str(self.port),
                "--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server.key"),
                "--model-dir", str(model_dir), "--threads", str(threads), "--log-level", "warning"]
        self.command = (["taskset", "-c", cpus] if cpus is not None else []) + args
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCENESCORE_")}
        self.log_path = self.workdir / "server.log"
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(self.command, cwd=self.workdir, env=env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def curl(self, path: str, body: Path | None = None) -> int:
        cmd = ["curl", "-s", "--http2", "--cacert", str(self.certs / "ca.pem"), "-o", "/dev/null", "--max-time", "5",
               "-w", "%{http_code}"]
        if body is not None:
            cmd += ["-H", CONTENT_TYPE, "--data-binary", f"@{body}"]
        out = subprocess.run(cmd + [self.url + path], capture_output=True, text=True)
        return int(out.stdout or 0)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise fail(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            if self.curl("/readyz") == 200:  # ready = models loaded and warmed
                return
            time.sleep(0.1)
        raise fail(f"{self.name}: /readyz not 200 after {timeout:.0f} s:\n{self.tail()}")

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="scenescore-bench-request-path."))
        self.certs = self.work / "certs"
        self.bodies = self.work / "bodies"
        self.servers: list[Server] = []
        self.commands: list[str] = []
        self.run_counter = 0
        self.server_cpu, self.client_cpu = ("0", "1") if (os.cpu_count() or 1) >= 2 else ("0", "0")
        self.results: dict = {
            "machine": {"cores": os.cpu_count(), "cpu": cpu_model(), "load_average_before": load_average()},
            "settings": {"rounds": args.rounds, "duration_s": args.duration, "warm_up_s": args.warm_up,
                         "clients": args.clients, "streams": args.streams, "threads": 1,
                         "candidates": list(CANDIDATES), "scene": SCENE, "binary": str(BINARY),
                         "model_dir": str(args.model_dir)},
            "bound": None, "scaling": None}

    # -- setup and teardown --------------------------------------------------------------------

    def prepare(self) -> None:
        subprocess.run(["bash", "-c", 'source scripts/bench/lib.sh && make_certs "$1"', "make_certs", str(self.certs)],
                       cwd=REPO, check=True)
        subprocess.run([sys.executable, str(REPO / "scripts" / "bench" / "make_bodies.py"), str(self.bodies),
                        *map(str, CANDIDATES)], check=True)

    def start_server(self, name: str, threads: int, cpus: str | None) -> Server:
        server = Server(name, self.work, self.certs, Path(self.args.model_dir), threads, cpus)
        self.servers.append(server)
        server.wait_ready()
        for n in CANDIDATES:
            code = server.curl("/v1/score", self.body(n))
            if code != 200:
                raise fail(f"{name} answered {code} to a {n}-candidate request:\n{server.tail()}")
        self.remember(f"(cd {shlex.quote(str(server.workdir))} && {shown(server.command)})")
        log(f"{name} ready on {server.url} (pid {server.proc.pid}, cpus {allowed_cpus(server.proc.pid)})")
        return server

    def stop_server(self, server: Server) -> None:
        stop_process(server.proc)
        self.servers.remove(server)

    def cleanup(self) -> None:
        for server in list(self.servers):
            stop_process(server.proc)
        if self.args.keep:
            log(f"kept {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    def body(self, candidates: int) -> Path:
        return self.bodies / f"req-{candidates}.bin"

    def remember(self, command: str) -> None:
        if command not in self.commands:
            self.commands.append(command)

    # -- one measured run ----------------------------------------------------------------------

    def measure(self, cmd: list[str], server: Server) -> dict:
        """Runs a load generator to completion; returns its output and the CPU seconds per second
        that it and the server used between the end of the warm-up and just before the end."""
        a = self.args
        self.run_counter += 1
        out_path = self.work / f"run-{self.run_counter}.out"
        err_path = self.work / f"run-{self.run_counter}.err"
        self.remember(shown(cmd))
        log(shown(cmd))
        margin = min(0.5, a.duration / 10)
        window = []
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            started = time.monotonic()
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
            try:
                for offset in (a.warm_up + margin, a.warm_up + a.duration - margin):
                    try:
                        proc.wait(timeout=max(0.0, started + offset - time.monotonic()))
                        break  # it ended early: a failure, reported below
                    except subprocess.TimeoutExpired:
                        window.append((time.monotonic(), cpu_seconds(server.proc.pid), cpu_seconds(proc.pid),
                                       core_ticks()))
                proc.wait(timeout=a.warm_up + a.duration + 120)
            finally:
                stop_process(proc)
        text = out_path.read_text(errors="replace")
        if proc.returncode != 0 or len(window) < 2:
            tool = Path(cmd[3] if cmd[0] == "taskset" else cmd[0]).name
            how = (f"was killed by {signal.Signals(-proc.returncode).name} (from outside this script)"
                   if proc.returncode < 0 else f"exited with {proc.returncode}")
            raise fail(f"{tool} {how}:\n{text[-2000:]}{err_path.read_text(errors='replace')[-2000:]}")
        (t0, server0, client0, cores0), (t1, server1, client1, cores1) = window
        usage = {"server_cores": None, "client_cores": None, "machine_cores": core_busy(cores0, cores1)}
        if None not in (server0, server1):
            usage["server_cores"] = (server1 - server0) / (t1 - t0)
        if None not in (client0, client1):
            usage["client_cores"] = (client1 - client0) / (t1 - t0)
        if usage["server_cores"] is not None and usage["client_cores"] is not None:
            busy = sum(c["busy"] or 0 for c in usage["machine_cores"].values())
            usage["other_cores"] = max(0.0, busy - usage["server_cores"] - usage["client_cores"])
        return {"command": shown(cmd), "output": text, **usage}

    def h2load(self, server: Server, path: str, body: Path | None, cpus: str | None, answers: str = "2xx") -> dict:
        """One h2load run; every request must succeed with an `answers` status class."""
        a = self.args
        cmd = ["h2load", "-c", str(a.clients), "-m", str(a.streams), "-t", "1", "-D", str(a.duration),
               "--warm-up-time", str(a.warm_up)]
        if body is not None:
            cmd += ["-d", str(body), "-H", CONTENT_TYPE]
        cmd.append(server.url + path)
        if cpus is not None:
            cmd = ["taskset", "-c", cpus] + cmd
        run = self.measure(cmd, server)
        parsed = parse_stdout(run.pop("output"))
        # h2load counts a 4xx answer as "failed": what must hold is that every request was answered
        # and every answer is of the expected class.
        failures = sum(parsed.get(k) or 0 for k in ("errored", "timeout"))
        if not parsed.get("reported_req_per_s") or failures or not parsed.get("done") or parsed.get(answers) != parsed.get("done"):
            raise fail(f"h2load saw failures against {server.url + path}: {parsed}")
        run.update(tool="h2load", req_per_s=parsed["reported_req_per_s"], succeeded=parsed["succeeded"])
        return run

    def load_tool(self, server: Server, candidates: int, cpus: str) -> dict:
        a = self.args
        cmd = ["taskset", "-c", cpus, str(BINARY), "load", server.url, "--cacert", str(self.certs / "ca.pem"),
               "-c", str(a.clients), "-m", str(a.streams), "-t", "1", "--candidates", str(candidates),
               "--scene", SCENE, "--warm-up", f"{a.warm_up}s", "-D", f"{a.duration}s", "--json", "-q"]
        run = self.measure(cmd, server)
        text = run.pop("output")
        try:
            report = json.loads(text[text.index("{"):])
        except ValueError:
            raise fail(f"scenescore load printed no JSON report:\n{text[-3000:]}") from None
        if report["errors"] or not report["ok"]:
            raise fail(f"scenescore load saw errors: {report.get('errorKinds')} {report.get('statuses')}")
        run.update(tool="scenescore load", req_per_s=report["throughput"], succeeded=report["ok"],
                   warnings=report.get("warnings", []))
        return run

    def forward_pass_us(self) -> dict[int, float]:
        cmd = ["taskset", "-c", self.server_cpu, str(BINARY), "bench", "model", "--model-dir", str(self.args.model_dir),
               "--scene", SCENE, "--candidates", ",".join(map(str, CANDIDATES)), "--json"]
        self.remember(shown(cmd))
        log(shown(cmd))
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            raise fail(f"bench model failed ({out.returncode}):\n{out.stderr[-3000:]}")
        rows = json.loads(out.stdout)["rows"]
        return {row["candidates"]: row["microsecondsPerRequest"] for row in rows}

    # -- (1) the combined bound ------------------------------------------------------------------

    def bound(self) -> None:
        a = self.args
        server = self.start_server("serve-threads-1-core-0", threads=1, cpus=self.server_cpu)
        rounds = []
        for r in range(a.rounds):
            log(f"bound: round {r + 1}/{a.rounds}")
            runs = {"transport": self.h2load(server, "/healthz", None, self.client_cpu)}
            for n in CANDIDATES:
                runs[f"h2load-{n}"] = self.h2load(server, "/v1/score", self.body(n), self.client_cpu)
            # The same request bytes without scoring (POST /healthz: a 405 at the headers; the body
            # still crosses TLS and nghttp2 and is discarded).
            for n in CANDIDATES:
                runs[f"transport-{n}"] = self.h2load(server, "/healthz", self.body(n), self.client_cpu, answers="4xx")
            for n in CANDIDATES:
                runs[f"load-{n}"] = self.load_tool(server, n, self.client_cpu)
            forward_us = self.forward_pass_us()
            transport = runs["transport"]["req_per_s"]
            bounds = {n: 1 / (1 / transport + forward_us[n] * 1e-6) for n in CANDIDATES}
            ratios = {f"{tool}-{n}": runs[f"{tool}-{n}"]["req_per_s"] / bounds[n]
                      for tool in ("h2load", "load") for n in CANDIDATES}
            body_bounds = {n: 1 / (1 / runs[f"transport-{n}"]["req_per_s"] + forward_us[n] * 1e-6) for n in CANDIDATES}
            body_ratios = {n: runs[f"h2load-{n}"]["req_per_s"] / body_bounds[n] for n in CANDIDATES}
            rounds.append({"runs": runs, "forward_pass_us": forward_us, "bound_req_per_s": bounds,
                           "fraction_of_bound": ratios, "body_bound_req_per_s": body_bounds,
                           "fraction_of_body_bound": body_ratios})
        self.stop_server(server)
        summary = {"transport_req_per_s": median(r["runs"]["transport"]["req_per_s"] for r in rounds)}
        for n in CANDIDATES:
            summary[f"forward_pass_us_{n}"] = median(r["forward_pass_us"][n] for r in rounds)
            summary[f"bound_req_per_s_{n}"] = median(r["bound_req_per_s"][n] for r in rounds)
            summary[f"transport_req_per_s_{n}"] = median(r["runs"][f"transport-{n}"]["req_per_s"] for r in rounds)
            summary[f"body_bound_req_per_s_{n}"] = median(r["body_bound_req_per_s"][n] for r in rounds)
            summary[f"h2load_fraction_of_body_bound_{n}"] = median(r["fraction_of_body_bound"][n] for r in rounds)
            for tool in ("h2load", "load"):
                summary[f"{tool}_req_per_s_{n}"] = median(r["runs"][f"{tool}-{n}"]["req_per_s"] for r in rounds)
                summary[f"{tool}_fraction_of_bound_{n}"] = median(r["fraction_of_bound"][f"{tool}-{n}"] for r in rounds)
        self.results["bound"] = {"server_cpus": self.server_cpu, "client_cpus": self.client_cpu,
                                 "load_tool_transport": "h2load GET /healthz (scenescore load only POSTs)",
                                 "rounds": rounds, "median": summary}

    # -- (2) --threads 2 against --threads 1 -------------------------------------------------------

    def scaling(self) -> None:
        a = self.args
        servers = {threads: self.start_server(f"serve-threads-{threads}-unpinned", threads=threads, cpus=None)
                   for threads in (1, 2)}
        rounds = []
        for r in range(a.rounds):
            order = (1, 2) if r % 2 == 0 else (2, 1)
            runs = {}
            for threads in order:
                log(f"scaling: round {r + 1}/{a.rounds}, --threads {threads}")
                run = self.h2load(servers[threads], "/v1/score", self.body(1), None)
                run["req_per_server_cpu_second"] = (run["req_per_s"] / run["server_cores"]
                                                    if run["server_cores"] else None)
                runs[threads] = run
            rounds.append({"order": list(order), "runs": runs})
        placement = {threads: allowed_cpus(s.proc.pid) for threads, s in servers.items()}
        for server in servers.values():
            self.stop_server(server)
        summary = {}
        for threads in (1, 2):
            for key in ("req_per_s", "server_cores", "client_cores", "req_per_server_cpu_second"):
                summary[f"{key}_threads_{threads}"] = median(r["runs"][threads][key] for r in rounds)
        summary["measured_ratio"] = median(r["runs"][2]["req_per_s"] / r["runs"][1]["req_per_s"] for r in rounds)
        summary["efficiency_ratio"] = median(
            r["runs"][2]["req_per_server_cpu_second"] / r["runs"][1]["req_per_server_cpu_second"] for r in rounds
            if r["runs"][1]["req_per_server_cpu_second"] and r["runs"][2]["req_per_server_cpu_second"])
        eff1, eff2 = summary["req_per_server_cpu_second_threads_1"], summary["req_per_server_cpu_second_threads_2"]
        summary["estimated_threads_2_req_per_s"] = eff2 * 2 if eff2 else None
        summary["estimated_threads_1_req_per_s"] = eff1 * 1 if eff1 else None
        summary["estimated_ratio"] = 2 * eff2 / eff1 if (eff1 and eff2) else None
        pinned_threads_1 = self.results["bound"]["median"]["h2load_req_per_s_1"] if self.results["bound"] else None
        summary["pinned_threads_1_req_per_s"] = pinned_threads_1
        summary["estimated_ratio_vs_pinned_threads_1"] = (summary["estimated_threads_2_req_per_s"] / pinned_threads_1
                                                          if (pinned_threads_1 and eff2) else None)
        self.results["scaling"] = {"server_cpus": placement, "client_cpus": "unpinned", "candidates": 1,
                                   "rounds": rounds, "median": summary}

    # -- report -----------------------------------------------------------------------------------

    def report(self) -> None:
        a = self.args
        machine = self.results["machine"]
        machine["load_average_after"] = load_average()
        print()
        print(f"## Request path benchmark: TLS (ALPN h2), -c {a.clients} -m {a.streams} -t 1, {a.warm_up}s warm-up + "
              f"{a.duration}s, {a.rounds} interleaved round(s)")
        print()
        print(f"{machine['cores']} cores, {machine['cpu']}; load average before: {machine['load_average_before']}, "
              f"after: {machine['load_average_after']}. Medians over rounds; \"cores\" is a process's CPU seconds per "
              "second (utime + stime from /proc/PID/stat) over the measured window, \"core 0 / 1 busy\" each core's "
              "non-idle fraction (/proc/stat) over the same window, \"other cores\" the busy core-seconds per "
              "second not charged to the server or the client.")
        other = [run.get("other_cores") or 0 for part in ("bound", "scaling") if self.results[part]
                 for r in self.results[part]["rounds"] for run in r["runs"].values()]
        machine["max_other_cores"] = max(other, default=0)
        if machine["max_other_cores"] >= 0.15:
            print()
            print(f"**Warning: something besides the server and the client kept up to "
                  f"{machine['max_other_cores']:.2f} cores busy during the measured windows** (\"other cores\": "
                  "other processes, and interrupt work not charged to either); those runs are not a quiet "
                  "measurement.")
        if self.results["bound"]:
            self.report_bound()
        if self.results["scaling"]:
            self.report_scaling()
        print()
        print("Commands:")
        print("```")
        for command in self.commands:
            print(command)
        print("```")
        if a.json:
            self.results["commands"] = self.commands
            Path(a.json).write_text(json.dumps(self.results, indent=2, default=str) + "\n")
            print(f"\nJSON: {a.json}")

    def report_bound(self) -> None:
        bound = self.results["bound"]
        rounds, m = bound["rounds"], bound["median"]
        print()
        print(f"### 1. `/v1/score` against the combined bound (serve --threads 1 on core {bound['server_cpus']}, "
              f"clients on core {bound['client_cpus']})")
        print()
        print("| measurement | tool | median req/s | rounds req/s | server cores | client cores | other cores "
              "| core 0 / 1 busy |")
        print("|---|---|---:|---|---:|---:|---:|---|")
        rows = [("transport", "transport only, `GET /healthz` (T)")]
        rows += [(f"transport-{n}", f"`POST /healthz` with the {n}-candidate body (405; T_body)") for n in CANDIDATES]
        rows += [(f"h2load-{n}", f"`POST /v1/score`, {n} candidate{'s' if n > 1 else ''}") for n in CANDIDATES]
        rows += [(f"load-{n}", f"`POST /v1/score`, {n} candidate{'s' if n > 1 else ''}") for n in CANDIDATES]
        for key, label in rows:
            runs = [r["runs"][key] for r in rounds]
            print(f"| {label} | {runs[0]['tool']} | {fmt(median(x['req_per_s'] for x in runs))} "
                  f"| {', '.join(fmt(x['req_per_s']) for x in runs)} "
                  f"| {fmt(median(x['server_cores'] for x in runs), 2)} "
                  f"| {fmt(median(x['client_cores'] for x in runs), 2)} "
                  f"| {fmt(median(x.get('other_cores') for x in runs), 2)} | {cores_column(runs)} |")
        print()
        print("| candidates | f(N) µs/request (rounds) | T req/s | B(N) = 1/(1/T + f(N)) req/s | tool | measured req/s "
              "| measured / B(N) | rounds | target ≥ 0.9 |")
        print("|---:|---|---:|---:|---|---:|---:|---|---|")
        for n in CANDIDATES:
            for tool, name in (("h2load", "h2load"), ("load", "scenescore load")):
                fraction = m[f"{tool}_fraction_of_bound_{n}"]
                per_round = ", ".join(f"{r['fraction_of_bound'][f'{tool}-{n}']:.2f}" for r in rounds)
                print(f"| {n} | {fmt(m[f'forward_pass_us_{n}'], 2)} "
                      f"({', '.join(fmt(r['forward_pass_us'][n], 2) for r in rounds)}) "
                      f"| {fmt(m['transport_req_per_s'])} | {fmt(m[f'bound_req_per_s_{n}'])} | {name} "
                      f"| {fmt(m[f'{tool}_req_per_s_{n}'])} | {fraction:.2f} | {per_round} "
                      f"| {'met' if fraction >= TARGET_FRACTION_OF_BOUND else 'NOT met'} |")
        print()
        print("f(N): `scenescore bench model` (forward pass alone, same core, server idle), each round. B(N) and "
              "measured / B(N) are medians of the per-round values (each round's own T and f(N)). "
              "`scenescore load` cannot GET (it always POSTs to the scoring path), so T is h2load's "
              "`GET /healthz` for both tools.")
        print()
        print("Where the rest goes: the same request bytes without scoring. T counts a header-only GET; a scoring "
              "request also carries its body in (TLS, HTTP/2 DATA frames, the copy into the request) and a body "
              "out. T_body(N) is h2load POSTing the N-candidate body to /healthz: the server answers 405 at the "
              "headers and the body still crosses TLS and nghttp2, discarded rather than collected (optimistic), "
              "while the answer is a problem document encoded per request (pessimistic: about a tenth of that "
              "run's server time by perf); B_body(N) = 1 / (1/T_body(N) + f(N)) is what one core could do if scoring added nothing but "
              "the forward pass to moving those bytes (a diagnosis, not the issue's target).")
        print()
        print("| candidates | body bytes | T_body(N) req/s | B_body(N) req/s | h2load measured req/s | measured / B_body(N) | rounds |")
        print("|---:|---:|---:|---:|---:|---:|---|")
        for n in CANDIDATES:
            per_round = ", ".join(f"{r['fraction_of_body_bound'][n]:.2f}" for r in rounds)
            print(f"| {n} | {self.body(n).stat().st_size:,} | {fmt(m[f'transport_req_per_s_{n}'])} "
                  f"| {fmt(m[f'body_bound_req_per_s_{n}'])} | {fmt(m[f'h2load_req_per_s_{n}'])} "
                  f"| {m[f'h2load_fraction_of_body_bound_{n}']:.2f} | {per_round} |")
        busy = [f"{key} ({fmt(median(r['runs'][key]['client_cores'] for r in rounds), 2)})"
                for key in rounds[0]["runs"]
                if (median(r["runs"][key]["client_cores"] for r in rounds) or 0) >= 0.95]
        if busy:
            print(f"Client at ≥ 0.95 of its core in: {', '.join(busy)} — there the client, not the server, "
                  "may be the limit.")
        warnings = sorted({w for r in rounds for k, run in r["runs"].items() for w in run.get("warnings", [])})
        for warning in warnings:
            print(f"scenescore load warned: {warning}")

    def report_scaling(self) -> None:
        scaling = self.results["scaling"]
        rounds, m = scaling["rounds"], scaling["median"]
        print()
        print("### 2. `--threads 2` against `--threads 1` (1 candidate; servers and h2load unpinned, "
              f"servers' cpus: {scaling['server_cpus'][1]} / {scaling['server_cpus'][2]})")
        print()
        print("| server | median req/s | rounds req/s | server cores | h2load cores | other cores | core 0 / 1 busy "
              "| req/s per server CPU-second |")
        print("|---|---:|---|---:|---:|---:|---|---:|")
        for threads in (1, 2):
            runs = [r["runs"][threads] for r in rounds]
            print(f"| `--threads {threads}` | {fmt(m[f'req_per_s_threads_{threads}'])} "
                  f"| {', '.join(fmt(x['req_per_s']) for x in runs)} | {fmt(m[f'server_cores_threads_{threads}'], 2)} "
                  f"| {fmt(m[f'client_cores_threads_{threads}'], 2)} "
                  f"| {fmt(median(x.get('other_cores') for x in runs), 2)} | {cores_column(runs)} "
                  f"| {fmt(m[f'req_per_server_cpu_second_threads_{threads}'])} |")
        print()
        print(f"Measured here (server and h2load share the 2 cores): --threads 2 / --threads 1 = "
              f"{fmt(m['measured_ratio'], 2)}x. Throughput per server CPU-second, --threads 2 / --threads 1: "
              f"{fmt(m['efficiency_ratio'], 2)}x (1.0 = the server does the same work per request on 2 threads "
              "as on 1, i.e. it scales with the cores it gets).")
        print()
        print("**Estimate, not a measurement** (this machine has 2 cores and no third one for the load generator): "
              "with its own client core, --threads 2 would reach about (req/s per server CPU-second at "
              "--threads 2) × 2 cores, and --threads 1 about (req/s per server CPU-second at --threads 1) × 1 core; "
              "assumes the server would keep both cores busy at the efficiency measured here.")
        print()
        print("| estimate | req/s | ratio | target |")
        print("|---|---:|---:|---|")
        print(f"| `--threads 2`, dedicated client core: 2 × {fmt(m['req_per_server_cpu_second_threads_2'])} "
              f"| {fmt(m['estimated_threads_2_req_per_s'])} | | |")
        print(f"| `--threads 1`, dedicated client core: 1 × {fmt(m['req_per_server_cpu_second_threads_1'])} "
              f"| {fmt(m['estimated_threads_1_req_per_s'])} | {fmt(m['estimated_ratio'], 2)}x "
              f"| ≥ {TARGET_SCALING}x: {verdict(m['estimated_ratio'], TARGET_SCALING)} (estimate) |")
        if m["pinned_threads_1_req_per_s"]:
            ratio = m["estimated_ratio_vs_pinned_threads_1"]
            print(f"| `--threads 1` measured in part 1 (core 0, h2load on core 1: it had its own client core) "
                  f"| {fmt(m['pinned_threads_1_req_per_s'])} | {fmt(ratio, 2)}x "
                  f"| ≥ {TARGET_SCALING}x: {verdict(ratio, TARGET_SCALING)} (estimate) |")


def cores_column(runs: list[dict]) -> str:
    """Median busy fraction of each core over the runs' measured windows, "0.99 / 0.45", with the
    fraction the hypervisor stole when there was any."""
    cores = sorted(runs[0]["machine_cores"], key=int)
    busy = " / ".join(fmt(median(r["machine_cores"][c]["busy"] for r in runs), 2) for c in cores)
    steal = [median(r["machine_cores"][c]["steal"] for r in runs) or 0 for c in cores]
    return busy + (f" (stolen {' / '.join(f'{x:.2f}' for x in steal)})" if max(steal) >= 0.01 else "")


def verdict(value, target) -> str:
    return "n/a" if value is None else ("met" if value >= target else "NOT met")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[2:]))
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--duration", type=int, default=10, help="seconds measured per run (default 10)")
    parser.add_argument("--warm-up", type=int, default=2, help="seconds of load before measuring (default 2)")
    parser.add_argument("--clients", "-c", type=int, default=16, help="connections (default 16)")
    parser.add_argument("--streams", "-m", type=int, default=32, help="streams per connection (default 32)")
    parser.add_argument("--model-dir", default=str(REPO / "var" / "models" / "default"), help="default var/models/default")
    parser.add_argument("--json", help="write every number here")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (server logs, outputs)")
    args = parser.parse_args()
    if args.rounds < 1 or args.duration < 1 or args.warm_up < 0:
        parser.error("--rounds and --duration must be >= 1, --warm-up >= 0")

    missing = [tool for tool in ("h2load", "curl", "taskset", "openssl") if shutil.which(tool) is None]
    if missing:
        raise fail(f"{', '.join(missing)} not found (scripts/setup.sh installs them)")
    if not BINARY.is_file():
        raise fail(f"{BINARY} not found; build it: swift build -c release --product scenescore")
    if not (Path(args.model_dir) / "backbone.safetensors").is_file():
        raise fail(f"no model in {args.model_dir} (scenescore model init --dir {args.model_dir})")
    if (os.cpu_count() or 1) < 2:
        log("only one core: server and clients share core 0")

    bench = Bench(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        bench.prepare()
        bench.bound()
        bench.scaling()
        bench.report()
    finally:
        bench.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
