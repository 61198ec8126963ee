"""Fixtures for the SceneScore end-to-end tests: certificates, the real server process, and a
well-behaved background client.

The server binary is `.build/release/scenescore` (override with SCENESCORE_BIN). Every test is
skipped, with the reason, when it does not exist or has no `serve` command.

The shared server loads $SCENESCORE_E2E_MODEL_DIR if set (built there with `scenescore model init`
when it holds no model yet), else var/models/default if it exists, else a model built with
`scenescore model init` into a temporary directory. What the tests expect of the model (scenes,
head versions, outputs, input schema) is read from that directory's files (`model` fixture).

A server is ready for scoring when GET /readyz answers 200 (/healthz is liveness only: it answers
while the models are still loading), so `Server.wait_ready` polls /readyz. `launcher.start(admin=True)`
also turns on the admin API (Proto/ADMIN.md) on its own port with a fresh bearer token
(`server.admin_url`, `server.admin_token`, `server.admin()`); `plugin_dir` (fixture) is a plugin
directory populated by scripts/install-plugins.sh from the server binary's build directory.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from h2util import REPO, H2Conn, ModelInfo, free_ports, make_certs, use_model  # noqa: E402
from scenescore_client.admin import AdminClient  # noqa: E402

BINARY = Path(os.environ.get("SCENESCORE_BIN", REPO / ".build" / "release" / "scenescore"))
STARTUP_TIMEOUT = 60.0
MODEL_DIR_ENV = "SCENESCORE_E2E_MODEL_DIR"
DEFAULT_MODEL_DIR = REPO / "var" / "models" / "default"
INSTALL_PLUGINS = REPO / "scripts" / "install-plugins.sh"


def _binary_problem() -> str | None:
    if not BINARY.is_file() or not os.access(BINARY, os.X_OK):
        return f"server binary {BINARY} does not exist (build it: swift build -c release --product scenescore)"
    try:
        result = subprocess.run([str(BINARY), "serve", "--help"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{BINARY} serve --help failed: {error!r}"
    if result.returncode != 0:
        return f"{BINARY} has no working 'serve' command (serve --help exited {result.returncode}: " \
               f"{(result.stderr or result.stdout).strip()[:300]})"
    return None


def pytest_collection_modifyitems(config, items):
    problem = _binary_problem()
    if problem is None:
        return
    marker = pytest.mark.skip(reason=problem)
    for item in items:
        item.add_marker(marker)


# ---------------------------------------------------------------------------
# The server process
# ---------------------------------------------------------------------------


class Server:
    """One `scenescore serve` process with its ports, working directory and log file."""

    def __init__(self, workdir: Path, args: list[str], *, port: int | None, h2c_port: int | None,
                 env: dict[str, str] | None = None, cafile: Path | None = None, drain_timeout: float = 10.0,
                 name: str = "server", model_dir: Path | None = None, admin_port: int | None = None,
                 admin_token: str | None = None, state_dir: Path | None = None, plugin_dir: Path | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.args = [str(BINARY), "serve", *args]
        self.serve_args = list(args)
        self.env = dict(env or {})
        self.model_dir = model_dir  # the model directory it loads (None: unknown, e.g. set by --config)
        self.port = port
        self.h2c_port = h2c_port
        self.admin_port = admin_port  # None: no admin listener expected
        self.admin_token = admin_token
        self.state_dir = state_dir if state_dir is not None else self.workdir / "var" / "state"
        self.plugin_dir = plugin_dir if plugin_dir is not None else self.workdir / "var" / "plugins"
        self.cafile = cafile
        self.drain_timeout = drain_timeout
        self.name = name
        self.stderr_path = self.workdir / f"{name}.stderr.log"
        self.stdout_path = self.workdir / f"{name}.stdout.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("SCENESCORE_")}
        full_env.update(env or {})
        self._stderr = open(self.stderr_path, "wb")
        self._stdout = open(self.stdout_path, "wb")
        self.proc = subprocess.Popen(self.args, cwd=self.workdir, stdin=subprocess.DEVNULL,
                                     stdout=self._stdout, stderr=self._stderr, env=full_env)
        self.returncode: int | None = None

    def log(self, tail: int = 6000) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            text = ""
        return text[-tail:]

    def describe(self) -> str:
        return f"{self.name} (pid {self.proc.pid}, {' '.join(self.args)})\n--- stderr tail ---\n{self.log()}"

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Wait until GET /readyz answers 200 — models loaded and warmed, so scoring works — over
        h2c when there is an h2c port, else TLS; then, with an admin port, until it accepts
        connections. (/healthz is liveness: it answers 200 while models still load.)"""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.proc.returncode} during startup\n{self.describe()}")
            try:
                conn = H2Conn.h2c(self.h2c_port, timeout=2) if self.h2c_port else \
                    H2Conn.tls(self.port, self.cafile, timeout=2)
                with conn:
                    r = conn.get("/readyz", timeout=2)
                if r.status == 200:
                    break
                last = repr(r)
            except Exception as error:  # noqa: BLE001 - retried until the deadline
                last = repr(error)
            time.sleep(0.1)
        else:
            pytest.fail(f"{self.name} did not answer GET /readyz with 200 within {timeout}s (last: {last})\n"
                        f"{self.describe()}")
        if self.admin_port is None:
            return
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.admin_port), timeout=2).close()
                return
            except OSError as error:
                last = repr(error)
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.proc.returncode} during startup\n{self.describe()}")
            time.sleep(0.1)
        pytest.fail(f"{self.name}: admin port {self.admin_port} not listening within {timeout}s ({last})\n"
                    f"{self.describe()}")

    @property
    def admin_url(self) -> str:
        assert self.admin_port is not None, f"{self.name} has no admin port"
        return f"https://127.0.0.1:{self.admin_port}"

    def admin(self, token: str | None | bool = True, **kw) -> AdminClient:
        """An admin client (HTTP/2 + TLS, verifying with the test CA). token: True = the server's
        token, None = send none, or a token string."""
        return AdminClient(self.admin_url, self.admin_token if token is True else token,
                           verify=str(self.cafile), **kw)

    def kill9(self) -> int:
        """SIGKILL and reap: what a crash looks like (no drain, no cleanup)."""
        if self.alive():
            self.proc.kill()
        self.returncode = self.proc.wait(timeout=10)
        for f in (self._stderr, self._stdout):
            try:
                f.close()
            except OSError:
                pass
        return self.returncode

    def alive(self) -> bool:
        return self.proc.poll() is None

    def assert_alive(self) -> None:
        assert self.alive(), f"server died (exit {self.proc.returncode})\n{self.describe()}"
        conn = H2Conn.h2c(self.h2c_port) if self.h2c_port else H2Conn.tls(self.port, self.cafile)
        with conn:
            r = conn.get("/healthz", timeout=5)
        assert r.status == 200, f"/healthz after the test: {r!r}\n{self.describe()}"

    def signal(self, sig: int) -> None:
        if self.alive():
            self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int | None:
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self, timeout: float | None = None) -> tuple[int, bool]:
        """SIGTERM, wait, SIGKILL if needed. Returns (exit code, whether SIGKILL was needed)."""
        killed = False
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            if self.wait_exit(timeout if timeout is not None else self.drain_timeout + 5) is None:
                killed = True
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.returncode = self.proc.returncode
        for f in (self._stderr, self._stdout):
            try:
                f.close()
            except OSError:
                pass
        assert self.proc.poll() is not None, f"{self.name} pid {self.proc.pid} is still running"
        return self.returncode, killed


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


def model_init(target: Path) -> Path:
    """`scenescore model init --dir target`: the server's default model (what a first run builds)."""
    result = subprocess.run([str(BINARY), "model", "init", "--dir", str(target)], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, f"scenescore model init --dir {target} failed: {result.stderr}"
    return target


def existing_model_dir() -> Path | None:
    """The model directory the shared server loads when one already exists (else None: one is built).

    $SCENESCORE_E2E_MODEL_DIR wins (even when it is still empty); then var/models/default."""
    override = os.environ.get(MODEL_DIR_ENV)
    if override:
        return Path(override).resolve()
    if (DEFAULT_MODEL_DIR / "backbone.safetensors").is_file():
        return DEFAULT_MODEL_DIR
    return None


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """The shared server's model directory; building it when needed. It also becomes the model the
    h2util helpers' default expectations refer to (`h2util.served_model()`)."""
    target = existing_model_dir()
    if target is None:
        target = model_init(tmp_path_factory.mktemp("model") / "default")
    elif not (target / "backbone.safetensors").is_file():
        model_init(target)  # $SCENESCORE_E2E_MODEL_DIR without a model yet
    use_model(target)
    return target


@pytest.fixture(scope="session")
def model(model_dir) -> ModelInfo:
    """What the shared server serves: scenes, head versions and outputs, input schema."""
    return use_model(model_dir)


@pytest.fixture(scope="session")
def trained_default_model_dir(tmp_path_factory) -> Path:
    """A fresh `scenescore model init` (built on first use: about a minute)."""
    return model_init(tmp_path_factory.mktemp("trained-model") / "default")


class Launcher:
    """Starts servers with the test certificates and fresh ports; stops them all at the end."""

    def __init__(self, tmp_factory, certs, model_dir):
        self.tmp_factory = tmp_factory
        self.certs = certs
        self.model_dir = model_dir
        self.servers: list[Server] = []

    def start(self, extra: list[str] = (), *, env: dict[str, str] | None = None, tls_flags: bool = True,
              port_flags: bool = True, h2c: bool = True, config: dict | None = None,
              ports: tuple[int | None, int | None] | None = None, name: str = "server",
              drain_timeout: float = 10.0, wait: bool = True, cafile: Path | None = None,
              model_dir: Path | None | bool = None, admin: bool | str = False, admin_token_env: bool = False,
              admin_port: int | None = None, state_dir: Path | None = None,
              plugin_dir: Path | None = None) -> Server:
        """model_dir: None = the shared model, False = no --model-dir flag (server default).

        admin: True = the admin API on a fresh port with a fresh random token (a string: that
        token), given with --admin-token-file (or, with admin_token_env, SCENESCORE_ADMIN_TOKEN);
        False = no admin flags. admin_port alone (admin False) passes --admin-port without a
        token. state_dir / plugin_dir: --state-dir / --plugin-dir (None: the server's defaults
        under its working directory)."""
        workdir = self.tmp_factory.mktemp(name)
        port, h2c_port = ports if ports is not None else free_ports(2)
        if not h2c:
            h2c_port = None
        args: list[str] = ["--host", "127.0.0.1"]
        if port_flags:
            args += ["--port", str(port)]
            if h2c_port:
                args += ["--h2c-port", str(h2c_port)]
        if tls_flags:
            args += ["--tls-cert", str(self.certs.server_cert), "--tls-key", str(self.certs.server_key)]
        served_dir = None
        if model_dir is not False:
            served_dir = Path(model_dir or self.model_dir)
            args += ["--model-dir", str(served_dir)]
        elif config is None or "modelDir" not in config:
            served_dir = workdir / "var" / "models" / "default"  # the server's default, relative to its cwd
        token = None
        env = dict(env or {})
        if admin:
            admin_port = admin_port or free_ports(1)[0]
            token = admin if isinstance(admin, str) else secrets.token_urlsafe(24)
            if admin_token_env:
                env["SCENESCORE_ADMIN_TOKEN"] = token
            else:
                token_file = workdir / "admin-token"
                token_file.write_text(token)
                token_file.chmod(0o600)
                args += ["--admin-token-file", str(token_file)]
        if admin_port is not None:
            args += ["--admin-port", str(admin_port)]
        if state_dir is not None:
            args += ["--state-dir", str(state_dir)]
        if plugin_dir is not None:
            args += ["--plugin-dir", str(plugin_dir)]
        args += list(extra)
        if config is not None:
            path = workdir / "config.json"
            path.write_text(json.dumps(config))
            args += ["--config", str(path)]
        if model_dir is False and env and "SCENESCORE_MODEL_DIR" in env:
            served_dir = None  # set by the environment (which a --model-dir flag would override)
        server = Server(workdir, args, port=port, h2c_port=h2c_port, env=env,
                        cafile=cafile or self.certs.ca, drain_timeout=drain_timeout, name=name,
                        model_dir=served_dir, admin_port=admin_port if admin else None, admin_token=token,
                        state_dir=state_dir, plugin_dir=plugin_dir)
        self.servers.append(server)
        if wait:
            server.wait_ready()
        return server

    def restart(self, old: Server, *, wait: bool = True, timeout: float = STARTUP_TIMEOUT) -> Server:
        """The same command line, working directory (so state directory), ports and token, after
        `old` has exited (stop() or kill9()); a new log file name."""
        assert not old.alive(), f"{old.name} is still running"
        base = old.name.split("~")[0]
        n = sum(1 for s in self.servers if s.name.split("~")[0] == base)
        server = Server(old.workdir, old.serve_args, port=old.port, h2c_port=old.h2c_port, env=old.env,
                        cafile=old.cafile, drain_timeout=old.drain_timeout, name=f"{base}~{n}",
                        model_dir=old.model_dir, admin_port=old.admin_port, admin_token=old.admin_token,
                        state_dir=old.state_dir, plugin_dir=old.plugin_dir)
        self.servers.append(server)
        if wait:
            server.wait_ready(timeout)
        return server

    def stop_all(self) -> list[str]:
        problems = []
        for server in self.servers:
            if server.proc.poll() is not None and server.returncode is not None:
                continue
            was_alive = server.alive()
            rc, killed = server.stop()
            if killed:
                problems.append(f"{server.name} did not exit within {server.drain_timeout + 5}s of SIGTERM "
                                f"(SIGKILLed)\n{server.describe()}")
            elif not was_alive:
                problems.append(f"{server.name} had exited on its own (exit {rc}) before teardown\n"
                                f"{server.describe()}")
            elif rc != 0:
                problems.append(f"{server.name} exited with {rc} after SIGTERM (expected 0)\n{server.describe()}")
        self.servers.clear()
        return problems


@pytest.fixture(scope="session")
def server(tmp_path_factory, certs, model_dir):
    """The shared server: TLS + h2c, default limits."""
    launcher = Launcher(tmp_path_factory, certs, model_dir)
    srv = launcher.start(name="main")
    yield srv
    problems = launcher.stop_all()
    assert not problems, "\n".join(problems)


@pytest.fixture
def launcher(tmp_path_factory, certs, model_dir):
    """Start extra servers (different flags) in one test; all are stopped at the end of it."""
    lc = Launcher(tmp_path_factory, certs, model_dir)
    yield lc
    problems = lc.stop_all()
    assert not problems, "\n".join(problems)


def install_plugins(dest: Path) -> Path:
    """scripts/install-plugins.sh BUILD_BIN_DIR DEST: the bundled scene plugins (<name>.so) built
    next to the server binary, installed into `dest`."""
    if not INSTALL_PLUGINS.is_file():
        pytest.skip(f"{INSTALL_PLUGINS.relative_to(REPO)} does not exist yet: no plugins to install")
    dest.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["bash", str(INSTALL_PLUGINS), str(BINARY.parent), str(dest)], capture_output=True,
                            text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, \
        f"install-plugins.sh {BINARY.parent} {dest} exited {result.returncode}: {result.stdout}{result.stderr}"
    plugins = sorted(p.name for p in dest.glob("*.so"))
    assert plugins, f"install-plugins.sh installed no <name>.so into {dest}: {result.stdout}{result.stderr}"
    return dest


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory) -> Path:
    """A plugin directory with the bundled plugins (apparel, electronics, beauty), shared read-only."""
    return install_plugins(tmp_path_factory.mktemp("plugins"))


# ---------------------------------------------------------------------------
# A well-behaved client in its own process
# ---------------------------------------------------------------------------


class GoodClient:
    def __init__(self, server: Server, timeout: float = 2.0, interval: float = 0.02):
        assert server.model_dir is not None, f"{server.name}: which model it serves is unknown"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "good_client.py"), "--port", str(server.port), "--cacert",
             str(server.cafile), "--timeout", str(timeout), "--interval", str(interval),
             "--model-dir", str(server.model_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
            pytest.fail(f"the well-behaved client could not start: {line} {err}\n{server.describe()}")
        self.stats: dict | None = None
        self.ready_at = time.monotonic()

    def stop(self, min_seconds: float = 0.5) -> dict:
        """Stop the client (after it ran at least `min_seconds`) and return its statistics."""
        if self.stats is None:
            time.sleep(max(0.0, self.ready_at + min_seconds - time.monotonic()))
            out, err = self.proc.communicate("stop\n", timeout=30)
            lines = [l for l in out.splitlines() if l.startswith("{")]
            assert lines, f"well-behaved client printed no stats: {out!r} {err!r}"
            self.stats = json.loads(lines[-1])
        return self.stats

    def check(self, max_latency: float = 1.5, min_requests: int = 3) -> dict:
        stats = self.stop()
        assert not stats["errors"], f"the well-behaved client saw errors during the attack: {stats}"
        assert stats["requests"] >= min_requests, f"the well-behaved client made too few requests: {stats}"
        assert stats["max_latency"] < max_latency, \
            f"the well-behaved client stalled: max latency {stats['max_latency']:.3f}s >= {max_latency}s: {stats}"
        return stats

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def good_client():
    clients: list[GoodClient] = []

    def start(server: Server, **kw) -> GoodClient:
        client = GoodClient(server, **kw)
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.kill()


# ---------------------------------------------------------------------------
# Expected scores from the numpy reference forward pass (Tests/interop/scenescore_model.py)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def reference(model_dir):
    """reference(scene, context_ids, context_dense, item_ids, item_dense) -> float64 [N, K] scores."""
    import scenescore_model as sm

    backbone = sm.load_model(model_dir / "backbone.safetensors", "backbone")
    heads = {}
    for path in sorted((model_dir / "heads").glob("*.safetensors")):
        head = sm.load_model(path, "head")
        heads[head.spec["scene"]] = head

    def expected(scene, context_ids, context_dense, item_ids, item_dense):
        head = heads[scene]
        return sm.forward(backbone.tensors, backbone.spec, head.tensors, head.spec,
                          context_ids, context_dense, item_ids, item_dense)

    expected.heads = heads
    expected.backbone = backbone
    return expected
