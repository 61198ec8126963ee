"""Processes of a multi-replica SceneScore deployment on this machine, for the replica tests
(Tests/replicas) and the benchmark (scripts/bench_replicas.py): a private PostgreSQL cluster,
HAProxy from deploy/haproxy/haproxy.cfg, a TCP proxy that can cut one replica off from
PostgreSQL, and small HTTP/2 probes of the replicas. No pytest in here.

Everything listens on and connects to 127.0.0.1 only.
"""

from __future__ import annotations

import csv
import io
import os
import pwd
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
E2E = REPO / "Tests" / "e2e"
if str(E2E) not in sys.path:
    sys.path.insert(0, str(E2E))

from h2util import H2Conn, free_ports, parse_metrics, score_body, wire  # noqa: E402

HAPROXY_CFG = REPO / "deploy" / "haproxy" / "haproxy.cfg"
PG_USER = "scenescore"
PG_DB = "scenescore"


def registry_flag_problem(binary: Path) -> str | None:
    """None when `scenescore serve --help` lists --registry, else why not."""
    try:
        out = subprocess.run([str(binary), "serve", "--help"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{binary} serve --help failed: {error!r}"
    if "--registry" not in out.stdout + out.stderr:
        return f"{binary} has no --registry option yet (serve --help does not list it)"
    return None


# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------


def postgres_bindir() -> Path | None:
    """$SCENESCORE_PG_BINDIR, else Debian's /usr/lib/postgresql/15/bin, else the newest
    /usr/lib/postgresql/*/bin that has initdb, pg_ctl and postgres."""
    candidates = []
    if os.environ.get("SCENESCORE_PG_BINDIR"):
        candidates.append(Path(os.environ["SCENESCORE_PG_BINDIR"]))
    candidates.append(Path("/usr/lib/postgresql/15/bin"))
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        def major(p: Path) -> float:
            try:
                return float(p.name)
            except ValueError:
                return 0.0
        candidates += [d / "bin" for d in sorted(root.iterdir(), key=major, reverse=True)]
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres", "psql")):
            return bindir
    return None


def postgres_problem() -> str | None:
    """None when a private PostgreSQL cluster can be started here, else why not."""
    if postgres_bindir() is None:
        return ("PostgreSQL server binaries not found (/usr/lib/postgresql/15/bin/{initdb,pg_ctl,postgres,psql}; "
                "Debian: apt-get install postgresql-15, or set SCENESCORE_PG_BINDIR)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run initdb/postgres as"
        if shutil.which("runuser") is None:
            return "running as root and runuser(1) is missing"
    return None


class PgCluster:
    """A throwaway PostgreSQL cluster: initdb into a temporary directory (trust auth, superuser
    `scenescore`), listening on 127.0.0.1:<port> with its unix socket in that directory; a
    database `scenescore`. As root, initdb/pg_ctl run as the `postgres` user (runuser), the
    directory chowned to it. stop()/start() keep the data; destroy() removes everything."""

    def __init__(self, *, port: int | None = None, durable: bool = True, prefix: str = "scenescore-replicas-pg-"):
        self.bindir = postgres_bindir()
        assert self.bindir is not None, postgres_problem()
        self.port = port or free_ports(1)[0]
        # Not under pytest's basetemp: that is 0700 root, which the postgres user cannot enter.
        self.base = Path(tempfile.mkdtemp(prefix=prefix))
        self.data = self.base / "data"
        self.socket_dir = self.base / "sock"
        self.log = self.base / "postgres.log"
        self.durable = durable
        self.as_postgres = os.geteuid() == 0
        self.socket_dir.mkdir()
        if self.as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chmod(self.base, 0o700)
            for path in (self.base, self.socket_dir):
                os.chown(path, pw.pw_uid, pw.pw_gid)
        self.postmaster_pids: set[int] = set()
        self._initdb()

    # -- commands -------------------------------------------------------------------------------

    def _cmd(self, tool: str, *args: str) -> list[str]:
        cmd = [str(self.bindir / tool), *args]
        return ["runuser", "-u", "postgres", "--", *cmd] if self.as_postgres else cmd

    def _run(self, tool: str, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(self._cmd(tool, *args), capture_output=True, text=True, timeout=timeout,
                                cwd=self.base, stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} exited {result.returncode}: {result.stdout}{result.stderr}\n"
                               f"--- postgres log ---\n{self.log_tail()}")
        return result

    def _initdb(self) -> None:
        self._run("initdb", "-D", str(self.data), "--auth=trust", "-U", PG_USER, "-E", "UTF8", "--no-sync",
                  "--locale=C", timeout=120)
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "max_connections": "200",
            "logging_collector": "off",
            "log_line_prefix": "'%m [%p] %u@%d '",
        }
        if not self.durable:  # the tests never crash PostgreSQL itself: commit without waiting for disk
            settings.update({"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"})
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("\n# scenescore test cluster\n")
            for key, value in settings.items():
                conf.write(f"{key} = {value}\n")

    def start(self, timeout: float = 60) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", str(int(timeout)), "start",
                  timeout=timeout + 10)
        pid = self.pid()
        if pid:
            self.postmaster_pids.add(pid)

    def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", str(int(timeout)), "stop",
                  timeout=timeout + 10)

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def createdb(self, name: str = PG_DB) -> str:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER, name)
        return self.url(name)

    def url(self, db: str = PG_DB, port: int | None = None) -> str:
        return f"postgres://{PG_USER}@127.0.0.1:{port or self.port}/{db}"

    def psql(self, sql: str, db: str = PG_DB, timeout: float = 30) -> list[list[str]]:
        """Rows of a query (unaligned, tab-separated), run with psql over TCP as `scenescore`."""
        result = subprocess.run([str(self.bindir / "psql"), "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                                 "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER, "-d", db, "-c", sql],
                                capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise RuntimeError(f"psql {sql!r}: {result.stderr.strip()}")
        return [line.split("\t") for line in result.stdout.splitlines() if line]

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def leftovers(self) -> list[str]:
        """Postmasters this cluster ran that are still alive (nothing, after destroy())."""
        out = []
        for pid in sorted(self.postmaster_pids):
            if pid_alive(pid):
                out.append(f"postgres postmaster pid {pid} ({self.data}) is still running")
        return out

    def destroy(self) -> None:
        if self.data.exists() and self.running():
            try:
                self.stop("fast", timeout=30)
            except Exception:  # noqa: BLE001 - then harder
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop", check=False, timeout=40)
        for pid in self.postmaster_pids:
            deadline = time.monotonic() + 10
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        shutil.rmtree(self.base, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not running
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True


# ---------------------------------------------------------------------------------------------
# HAProxy
# ---------------------------------------------------------------------------------------------


def haproxy_problem() -> str | None:
    if shutil.which("haproxy") is None:
        return "haproxy is not installed (Debian 12: apt-get install haproxy)"
    return None


def haproxy_env(bind: str, pem: Path, replicas: list[str], stats: str) -> dict[str, str]:
    """The environment deploy/haproxy/haproxy.cfg reads (SCENESCORE_REPLICA_1..N: h2c host:port)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCENESCORE_")}
    env.update({"SCENESCORE_LB_BIND": bind, "SCENESCORE_LB_PEM": str(pem), "SCENESCORE_LB_STATS": stats})
    for k, address in enumerate(replicas, 1):
        env[f"SCENESCORE_REPLICA_{k}"] = address
    return env


def haproxy_check(env: dict[str, str], cfg: Path = HAPROXY_CFG) -> subprocess.CompletedProcess:
    return subprocess.run(["haproxy", "-c", "-f", str(cfg)], env=env, capture_output=True, text=True, timeout=30)


class HAProxy:
    """haproxy -db (foreground) with deploy/haproxy/haproxy.cfg, its log in `workdir`."""

    def __init__(self, workdir: Path, cert: Path, key: Path, replicas: list[str], *, cfg: Path = HAPROXY_CFG,
                 cpus: str | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pem = self.workdir / "lb.pem"
        self.pem.write_bytes(Path(cert).read_bytes() + Path(key).read_bytes())
        self.pem.chmod(0o600)
        self.port, self.stats_port = free_ports(2)
        self.replicas = list(replicas)
        self.env = haproxy_env(f"127.0.0.1:{self.port}", self.pem, self.replicas, f"127.0.0.1:{self.stats_port}")
        check = haproxy_check(self.env, cfg)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy -c -f {cfg} failed: {check.stdout}{check.stderr}")
        self.log_path = self.workdir / "haproxy.log"
        self._log = open(self.log_path, "wb")
        cmd = ["haproxy", "-db", "-f", str(cfg)]
        if cpus is not None:
            cmd = ["taskset", "-c", cpus] + cmd
        self.command = cmd
        self.proc = subprocess.Popen(cmd, env=self.env, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=self.workdir)

    def log(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stats(self) -> list[dict[str, str]]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.stats_port}/stats;csv", timeout=5) as r:
            text = r.read().decode()
        return list(csv.DictReader(io.StringIO(text.lstrip("# "))))

    def server_states(self) -> dict[str, str]:
        """r1.. -> UP / DOWN / 'DOWN 1/2' / ... as the stats page shows them."""
        return {row["svname"]: row["status"] for row in self.stats()
                if row["pxname"] == "replicas" and row["svname"] not in ("FRONTEND", "BACKEND")}

    def server_sessions(self) -> dict[str, int]:
        """r1.. -> total requests (sessions) HAProxy sent to it."""
        return {row["svname"]: int(row["stot"] or 0) for row in self.stats()
                if row["pxname"] == "replicas" and row["svname"] not in ("FRONTEND", "BACKEND")}

    def wait_states(self, want: dict[str, str], timeout: float = 15) -> dict[str, str]:
        """Until every named server shows the wanted status (e.g. {"r1": "UP"}); raises on timeout."""
        deadline = time.monotonic() + timeout
        last: dict[str, str] | str = {}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited with {self.proc.returncode}\n{self.log()}")
            try:
                last = self.server_states()
                if all(last.get(name) == status for name, status in want.items()):
                    return last
            except OSError as error:
                last = repr(error)
            time.sleep(0.05)
        raise TimeoutError(f"haproxy servers {last} did not reach {want} within {timeout}s\n{self.log()}")

    def wait_up(self, timeout: float = 15) -> None:
        self.wait_states({f"r{k}": "UP" for k in range(1, len(self.replicas) + 1)}, timeout)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # -db: hard stop
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode


# ---------------------------------------------------------------------------------------------
# A TCP proxy that can cut a replica off from PostgreSQL
# ---------------------------------------------------------------------------------------------


class CuttableProxy:
    """127.0.0.1:<port> -> target, in a thread of this process. cut(): every open connection is
    closed and new ones are closed at once (the replica sees PostgreSQL go away); restore():
    connections pass again."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.is_cut = False
        self.stopped = False
        self.accepted = 0
        self.thread = threading.Thread(target=self._accept_loop, name="pg-proxy", daemon=True)
        self.thread.start()

    def _accept_loop(self) -> None:
        while not self.stopped:
            try:
                readable, _, _ = select.select([self.listener], [], [], 0.1)
            except (OSError, ValueError):
                return
            if not readable:
                continue
            try:
                client, _ = self.listener.accept()
            except OSError:
                continue
            with self.lock:
                if self.is_cut or self.stopped:
                    _close(client)
                    continue
                try:
                    upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                except OSError:
                    _close(client)
                    continue
                self.accepted += 1
                pair = (client, upstream)
                self.pairs.append(pair)
            threading.Thread(target=self._pump, args=pair, daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        socks = [a, b]
        try:
            for s in socks:
                s.settimeout(None)
            while not self.stopped:
                readable, _, _ = select.select(socks, [], [], 0.2)
                for s in readable:
                    data = s.recv(1 << 16)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        except (OSError, ValueError):
            return
        finally:
            _close(a)
            _close(b)
            with self.lock:
                if (a, b) in self.pairs:
                    self.pairs.remove((a, b))

    def cut(self) -> None:
        with self.lock:
            self.is_cut = True
            pairs, self.pairs = self.pairs, []
        for a, b in pairs:
            _close(a)
            _close(b)

    def restore(self) -> None:
        with self.lock:
            self.is_cut = False

    def close(self) -> None:
        self.stopped = True
        self.cut()
        _close(self.listener)
        self.thread.join(5)


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


# ---------------------------------------------------------------------------------------------
# Probing replicas over h2c
# ---------------------------------------------------------------------------------------------


class Probe:
    """Persistent h2c connections to replicas' --h2c-port listeners (one per port, reopened after
    a failure): score requests that report which head version answered, /readyz, /metrics."""

    def __init__(self, schema: tuple[int, int, int, int], timeout: float = 5.0):
        self.schema = schema
        self.timeout = timeout
        self.conns: dict[int, H2Conn] = {}
        self.bodies: dict[str, bytes] = {}

    def _conn(self, port: int) -> H2Conn:
        conn = self.conns.get(port)
        if conn is None or conn.closed or conn.goaway is not None:
            if conn is not None:
                conn.close()
            conn = H2Conn.h2c(port, timeout=self.timeout)
            self.conns[port] = conn
        return conn

    def request(self, port: int, method: str, path: str, headers=(), body: bytes | None = None):
        try:
            return self._conn(port).request(method, path, headers, body, timeout=self.timeout)
        except Exception:
            dead = self.conns.pop(port, None)
            if dead is not None:
                dead.close()
            raise

    def body(self, scene: str) -> bytes:
        if scene not in self.bodies:
            self.bodies[scene] = score_body(2, scene, seed=7, request_id=77, schema=self.schema)
        return self.bodies[scene]

    def score(self, port: int, scene: str):
        """The raw response of a 2-candidate binary score request for `scene`."""
        return self.request(port, "POST", "/v1/score", [("content-type", wire.CONTENT_TYPE)], self.body(scene))

    def version(self, port: int, scene: str) -> str | None:
        """The head version that scored a request for `scene` (None: not a 200)."""
        try:
            r = self.score(port, scene)
        except Exception:  # noqa: BLE001 - a replica that does not answer serves nothing
            return None
        if r.status != 200:
            return None
        return r.header(wire.HEAD_VERSION_HEADER)

    def readyz(self, port: int) -> int | None:
        try:
            return self.request(port, "GET", "/readyz").status
        except Exception:  # noqa: BLE001
            return None

    def metrics(self, port: int):
        r = self.request(port, "GET", "/metrics")
        assert r.status == 200, r
        return parse_metrics(bytes(r.body).decode())

    def gauge(self, port: int, name: str) -> float | None:
        """A metric's value summed over its series (None: no such series)."""
        _, samples = self.metrics(port)
        values = [v for n, _, v in samples if n == name]
        return sum(values) if values else None

    def scenes(self, port: int) -> dict[str, dict]:
        r = self.request(port, "GET", "/v1/scenes")
        assert r.status == 200, r
        return {s["scene"]: s for s in r.json()["scenes"]}

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()
        self.conns.clear()
