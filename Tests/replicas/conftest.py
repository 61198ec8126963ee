"""Fixtures for the multi-replica tests: a private PostgreSQL cluster (the shared scene
registry), three replicas of the real server that share it, and HAProxy in front of them with
the committed deploy/haproxy/haproxy.cfg.

- `pg` (session): `initdb` into a fresh directory under /tmp (trust auth, superuser
  `scenescore`, 127.0.0.1 on a free port, unix socket in that directory, fsync off: the tests
  never crash PostgreSQL itself), database `scenescore`; as root, initdb and postgres run as the
  `postgres` user through runuser. `pg.stop()` / `pg.start()` take it away and bring it back
  mid-test; the directory is removed at the end. Skipped when the binaries are missing.
- `deployment` (session): replicas r1, r2, r3 (`scenescore serve --threads 1`, TLS + h2c +
  admin ports of their own, a state directory each, one admin token, the same model directory)
  started through Tests/e2e's Launcher, each waited for on GET /readyz (never a sleep). They get
  the registry as `--registry postgres://scenescore@127.0.0.1:PORT/scenescore` (r1, r2) and as
  SCENESCORE_REGISTRY (r3). Until the binary has `--registry`, they run on their state
  directories alone, and every test marked `registry` is skipped with that reason
  (SCENESCORE_REPLICAS_REQUIRE_REGISTRY=1 turns the skip into a failure). HAProxy runs in the
  foreground (`haproxy -db -f deploy/haproxy/haproxy.cfg`) with SCENESCORE_REPLICA_1..3 naming
  the replicas' h2c ports; it is waited for until the stats page shows r1..r3 UP.
- Before each test every replica is alive (one a previous test left dead is restarted), so a
  failure does not cascade. At the end, replicas get SIGTERM (exit 0 expected), HAProxy is
  stopped, PostgreSQL is stopped and removed, and a finalizer checks that no process this
  session started (replicas, HAProxy, postmaster, load clients) is still running.

The server binary is .build/release/scenescore (SCENESCORE_BIN overrides). The model is
$SCENESCORE_E2E_MODEL_DIR, else var/models/default, else one `scenescore model init` builds.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
E2E = HERE.parents[0] / "e2e"
for extra in (HERE, E2E):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))


def _load_e2e_conftest():
    """Tests/e2e/conftest.py as the module `e2e_conftest` (its Server and Launcher), without
    registering its fixtures here."""
    if "e2e_conftest" in sys.modules:
        return sys.modules["e2e_conftest"]
    spec = importlib.util.spec_from_file_location("e2e_conftest", E2E / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["e2e_conftest"] = module
    spec.loader.exec_module(module)
    return module


e2e = _load_e2e_conftest()
import cluster  # noqa: E402
from h2util import make_certs, use_model  # noqa: E402
from scenes_util import ReferenceHeads  # noqa: E402

BINARY = e2e.BINARY
Launcher = e2e.Launcher
Server = e2e.Server
REQUIRE_REGISTRY = os.environ.get("SCENESCORE_REPLICAS_REQUIRE_REGISTRY") == "1"
REPLICAS = 3

# Every process this session starts: (what, pid). The finalizer checks none is left running.
LEDGER: list[tuple[str, int]] = []


def _wait_for_binary(timeout: float = 180.0) -> None:
    """The binary may be rebuilt while the suite starts: wait for it to exist again."""
    deadline = time.monotonic() + timeout
    while not (BINARY.is_file() and os.access(BINARY, os.X_OK)) and time.monotonic() < deadline:
        time.sleep(1)


def pytest_collection_modifyitems(config, items):
    _wait_for_binary()
    problem = e2e._binary_problem() or cluster.postgres_problem()  # noqa: SLF001
    if problem is not None:
        for item in items:
            item.add_marker(pytest.mark.skip(reason=problem))
        return
    registry = cluster.registry_flag_problem(BINARY)
    haproxy = cluster.haproxy_problem()
    for item in items:
        if registry and item.get_closest_marker("registry") and not REQUIRE_REGISTRY:
            item.add_marker(pytest.mark.skip(reason=registry))
        if haproxy and item.get_closest_marker("haproxy"):
            item.add_marker(pytest.mark.skip(reason=haproxy))


# ---------------------------------------------------------------------------------------------
# Session: certificates, model, PostgreSQL
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def no_leftovers():
    """Runs last at the end of the session: nothing this session started may still run."""
    yield
    left = [f"{what} pid {pid}" for what, pid in LEDGER if cluster.pid_alive(pid)]
    for what, pid in LEDGER:
        if cluster.pid_alive(pid):
            try:
                os.kill(pid, 9)
            except OSError:
                pass
    assert not left, f"processes still running after the session (now SIGKILLed): {left}"


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    target = e2e.existing_model_dir()
    if target is None:
        target = e2e.model_init(tmp_path_factory.mktemp("model") / "default")
    elif not (target / "backbone.safetensors").is_file():
        e2e.model_init(target)
    use_model(target)
    return target


@pytest.fixture(scope="session")
def model(model_dir):
    return use_model(model_dir)


@pytest.fixture(scope="session")
def ref(model_dir) -> ReferenceHeads:
    """Heads made with Tests/e2e/heads.py for the served backbone, remembered for reference scores."""
    return ReferenceHeads(model_dir)


@pytest.fixture(scope="session")
def pg():
    problem = cluster.postgres_problem()
    if problem:
        pytest.skip(problem)
    db = cluster.PgCluster(durable=False)
    try:
        db.start()
        LEDGER.extend(("postgres", pid) for pid in db.postmaster_pids)
        db.createdb()
        yield db
    finally:
        db.destroy()
    leftovers = db.leftovers()
    assert not leftovers, leftovers


# ---------------------------------------------------------------------------------------------
# The deployment: replicas + HAProxy
# ---------------------------------------------------------------------------------------------


class Deployment:
    """Replicas r1..r3 sharing the registry, HAProxy in front, and an h2c probe of each."""

    def __init__(self, tmp_factory, certs, model_dir, model, pg: cluster.PgCluster):
        self.tmp_factory = tmp_factory
        self.certs = certs
        self.model_dir = model_dir
        self.model = model
        self.pg = pg
        self.registry_problem = cluster.registry_flag_problem(BINARY)
        self.registry_url = pg.url() if self.registry_problem is None else None
        self.token = secrets.token_urlsafe(24)
        self.plugin_dir = tmp_factory.mktemp("plugins")
        self.launcher = Launcher(tmp_factory, certs, model_dir)
        self.replicas: list[Server] = []
        self.extra: list[Server] = []  # started by single tests (fresh state directories)
        self.haproxy: cluster.HAProxy | None = None
        self.probe = cluster.Probe(model.schema)

    # -- replicas -----------------------------------------------------------------------------

    def start_replica(self, name: str, *, registry_url: str | None | bool = True, via_env: bool = False,
                      wait: bool = True, extra: list[str] = ()) -> Server:
        """A replica with a fresh state directory. registry_url: True = the shared registry (when
        the binary supports it), a URL = that one, None/False = none."""
        url = self.registry_url if registry_url is True else (registry_url or None)
        args = ["--threads", "1", *extra]
        env = {}
        if url is not None:
            if via_env:
                env["SCENESCORE_REGISTRY"] = url
            else:
                args += ["--registry", url]
        state_dir = self.tmp_factory.mktemp(f"{name}-state")
        server = self.launcher.start(args, env=env, admin=self.token, state_dir=state_dir,
                                     plugin_dir=self.plugin_dir, name=name, wait=False)
        LEDGER.append((f"replica {name}", server.proc.pid))
        if wait:
            server.wait_ready()
        return server

    def restart(self, index: int, *, wait: bool = True) -> Server:
        """Replica `index` again (same flags, ports, state directory) after it exited."""
        old = self.replicas[index]
        server = self.launcher.restart(old, wait=False)
        LEDGER.append((f"replica {server.name}", server.proc.pid))
        self.replicas[index] = server
        if wait:
            server.wait_ready()
        return server

    def start_all(self) -> None:
        for k in range(REPLICAS):
            self.replicas.append(self.start_replica(f"r{k + 1}", via_env=(k == 2), wait=False))
        for server in self.replicas:
            server.wait_ready()

    def start_haproxy(self) -> None:
        if cluster.haproxy_problem():
            return
        self.haproxy = cluster.HAProxy(self.tmp_factory.mktemp("haproxy"), self.certs.server_cert,
                                       self.certs.server_key, [f"127.0.0.1:{r.h2c_port}" for r in self.replicas])
        LEDGER.append(("haproxy", self.haproxy.proc.pid))
        self.haproxy.wait_up(timeout=20)

    def need_haproxy(self) -> cluster.HAProxy:
        if self.haproxy is None:
            pytest.skip(cluster.haproxy_problem() or "haproxy did not start")
        return self.haproxy

    def ensure_healthy(self) -> None:
        """Restart replicas a failed test left dead; HAProxy sees them all UP again."""
        for k, server in enumerate(self.replicas):
            if not server.alive():
                if server.returncode is None:
                    server.kill9()
                self.restart(k)
        if self.haproxy is not None:
            if self.haproxy.proc.poll() is not None:
                pytest.fail(f"haproxy exited with {self.haproxy.proc.returncode}\n{self.haproxy.log()}")
            self.haproxy.wait_up(timeout=20)
        if not self.pg.running():
            self.pg.start()
            LEDGER.extend(("postgres", pid) for pid in self.pg.postmaster_pids)

    def describe(self) -> str:
        parts = [s.describe() for s in self.replicas + self.extra]
        if self.haproxy is not None:
            parts.append("--- haproxy log tail ---\n" + self.haproxy.log(2000))
        parts.append("--- postgres log tail ---\n" + self.pg.log_tail(2000))
        return "\n\n".join(parts)

    def stop(self) -> list[str]:
        self.probe.close()
        problems = []
        if self.haproxy is not None:
            self.haproxy.stop()
        problems += self.launcher.stop_all()
        return problems


@pytest.fixture(scope="session")
def deployment(tmp_path_factory, certs, model_dir, model, pg):
    dep = Deployment(tmp_path_factory, certs, model_dir, model, pg)
    try:
        dep.start_all()
        dep.start_haproxy()
        yield dep
    finally:
        problems = dep.stop()
    assert not problems, "\n".join(problems)


@pytest.fixture(autouse=True)
def _healthy_deployment(request):
    """Every test that uses the deployment starts with all replicas alive and HAProxy seeing them."""
    if REQUIRE_REGISTRY and request.node.get_closest_marker("registry"):
        problem = cluster.registry_flag_problem(BINARY)
        if problem:
            pytest.fail(f"SCENESCORE_REPLICAS_REQUIRE_REGISTRY=1 but {problem}")
    if "deployment" in request.fixturenames:
        request.getfixturevalue("deployment").ensure_healthy()
    yield


# ---------------------------------------------------------------------------------------------
# A scoring load in its own process
# ---------------------------------------------------------------------------------------------


class LoadClient:
    """Tests/replicas/load_client.py against a TLS port (HAProxy's), one scene."""

    def __init__(self, port: int, cafile: Path, scene: str, schema: tuple[int, int, int, int], *,
                 connections: int = 2, streams: int = 4, candidates: int = 4, max_seconds: float = 90):
        cmd = [sys.executable, str(HERE / "load_client.py"), "--port", str(port), "--cacert", str(cafile),
               "--scene", scene, "--schema", ",".join(map(str, schema)), "--connections", str(connections),
               "--streams", str(streams), "--candidates", str(candidates), "--max-seconds", str(max_seconds)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        LEDGER.append(("load client", self.proc.pid))
        self.stats: dict | None = None
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline:
            if select.select([self.proc.stdout], [], [], 0.5)[0]:
                line = self.proc.stdout.readline().strip()
                break
            if self.proc.poll() is not None:
                break
        if line != "ready":
            self.kill()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            pytest.fail(f"the load client did not start: {line!r} {err[-2000:]}")
        self.started = time.monotonic()

    def stop(self) -> dict:
        if self.stats is None:
            out, err = self.proc.communicate("stop\n", timeout=60)
            lines = [l for l in out.splitlines() if l.startswith("{")]
            assert lines, f"the load client printed no statistics: {out!r} {err[-2000:]!r}"
            self.stats = json.loads(lines[-1])
        return self.stats

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def load_client():
    clients: list[LoadClient] = []

    def start(*args, **kw) -> LoadClient:
        client = LoadClient(*args, **kw)
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.kill()
