"""Helpers for the end-to-end tests: certificates, ports, a small synchronous HTTP/2 client
(`H2Conn`, built on the `h2` package) and a raw frame-level connection (`RawConn`, built on
`hyperframe` + a hand-written HPACK encoder) for protocol-abuse tests.

Everything here talks to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack
import numpy as np
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

REPO = Path(__file__).resolve().parents[2]
PROTO_PY = REPO / "Proto" / "python"
if str(PROTO_PY) not in sys.path:
    sys.path.insert(0, str(PROTO_PY))
INTEROP = REPO / "Tests" / "interop"
if str(INTEROP) not in sys.path:
    sys.path.append(str(INTEROP))

from scenescore_client import wire  # noqa: E402

GOLDEN = REPO / "Proto" / "golden"
HOST = "127.0.0.1"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# HTTP/2 error codes (RFC 9113 §7).
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
SETTINGS_TIMEOUT, STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM = 0x4, 0x5, 0x6, 0x7
CANCEL, COMPRESSION_ERROR, CONNECT_ERROR, ENHANCE_YOUR_CALM = 0x8, 0x9, 0xA, 0xB



# ---------------------------------------------------------------------------
# The served model: every expectation about scenes, head versions, outputs and the input schema
# comes from the model files the server under test loads, never from literals
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadInfo:
    """One head's spec (`scenescore.spec` of heads/<scene>.safetensors)."""

    scene: str
    version: str
    parent: str
    outputs: list[str]
    spec: dict


@dataclass(frozen=True)
class ModelInfo:
    """A model directory as the server sees it: the backbone's input schema and every head."""

    dir: Path
    backbone: dict  # the backbone's `scenescore.spec`
    heads: dict[str, HeadInfo]  # by scene

    @property
    def scenes(self) -> list[str]:
        """The served scenes, sorted (the order of GET /v1/scenes)."""
        return sorted(self.heads)

    @property
    def schema(self) -> tuple[int, int, int, int]:
        """(context ids, context dense, item ids, item dense) of every scene (they share the backbone)."""
        b = self.backbone
        return len(b["context_fields"]), b["context_dense"], len(b["item_fields"]), b["item_dense"]

    def head(self, scene: str) -> HeadInfo:
        if scene not in self.heads:
            raise KeyError(f"the model in {self.dir} has no scene {scene!r} (it has {self.scenes})")
        return self.heads[scene]

    def version(self, scene: str) -> str:
        return self.head(scene).version

    def outputs(self, scene: str) -> list[str]:
        return list(self.head(scene).outputs)

    def other_scene(self, than: str = "apparel") -> str:
        """A served scene other than `than` (the first in sorted order)."""
        others = [s for s in self.scenes if s != than]
        assert others, f"the model in {self.dir} serves no scene besides {than!r}: {self.scenes}"
        return others[0]


def _read_spec(path: Path, kind: str) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        meta = f.metadata() or {}
    if meta.get("scenescore.kind") != kind:
        raise ValueError(f"{path}: scenescore.kind is {meta.get('scenescore.kind')!r}, expected {kind!r}")
    return json.loads(meta["scenescore.spec"])


def read_model(model_dir: Path | str) -> ModelInfo:
    """The facts the tests expect, read from backbone.safetensors and heads/*.safetensors metadata."""
    d = Path(model_dir)
    backbone = _read_spec(d / "backbone.safetensors", "backbone")
    heads: dict[str, HeadInfo] = {}
    for path in sorted((d / "heads").glob("*.safetensors")):
        spec = _read_spec(path, "head")
        scene = spec["scene"]
        if scene in heads:
            raise ValueError(f"{d}: two heads for scene {scene!r}")
        heads[scene] = HeadInfo(scene=scene, version=spec["version"], parent=spec.get("parent", ""),
                                outputs=list(spec["outputs"]), spec=spec)
    if not heads:
        raise ValueError(f"{d}/heads holds no *.safetensors")
    return ModelInfo(dir=d, backbone=backbone, heads=heads)


_served: ModelInfo | None = None


def use_model(model_dir: Path | str) -> ModelInfo:
    """Make `model_dir` the model that default expectations (`served_model()`) refer to."""
    global _served
    _served = read_model(model_dir)
    return _served


def served_model() -> ModelInfo:
    """The model the shared test server loads (set by conftest's `model_dir` fixture, or by
    good_client.py --model-dir)."""
    if _served is None:
        raise RuntimeError("no served model yet: use the model_dir/model fixture (or call use_model)")
    return _served


# ---------------------------------------------------------------------------
# Certificates and ports
# ---------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {result.stderr}")


@dataclass
class Certs:
    dir: Path
    ca: Path  # the CA that signed the server and the good client cert
    server_cert: Path
    server_key: Path
    client_cert: Path  # signed by `ca`, extendedKeyUsage clientAuth
    client_key: Path
    rogue_client_cert: Path  # signed by a different CA
    rogue_client_key: Path


def make_certs(directory: Path) -> Certs:
    """A throwaway CA, a server cert for localhost/127.0.0.1 and client certs, with the openssl CLI."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)

    def ca(name: str) -> None:
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
                 "-subj", f"/CN=SceneScore e2e {name}",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)

    def leaf(name: str, ca_name: str, cn: str, ext: str) -> None:
        (d / f"{name}.ext").write_text(ext)
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca_name}.pem", "-CAkey", f"{ca_name}.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)

    ca("ca")
    ca("rogue-ca")
    leaf("server", "ca", "localhost",
         "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
         "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    leaf("client", "ca", "e2e-client",
         "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n")
    leaf("rogue-client", "rogue-ca", "rogue-client",
         "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n")
    return Certs(d, d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key",
                 d / "rogue-client.pem", d / "rogue-client.key")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# ---------------------------------------------------------------------------
# Sockets
# ---------------------------------------------------------------------------


def tls_context(cafile: str | os.PathLike | None, alpn: Iterable[str] | None = ("h2",),
                client_cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    if cafile is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=os.fspath(cafile))
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if client_cert is not None:
        ctx.load_cert_chain(os.fspath(client_cert[0]), os.fspath(client_cert[1]))
    return ctx


def open_tls(port: int, cafile, *, alpn: Iterable[str] | None = ("h2",), timeout: float = 5.0,
             server_hostname: str = "localhost", client_cert=None) -> ssl.SSLSocket:
    """A TLS connection to 127.0.0.1:port that finished its handshake."""
    ctx = tls_context(cafile, alpn, client_cert)
    raw = socket.create_connection((HOST, port), timeout=timeout)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock = ctx.wrap_socket(raw, server_hostname=server_hostname)
    except BaseException:
        raw.close()
        raise
    return sock


def open_tcp(port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_some(sock: socket.socket, timeout: float) -> bytes | None:
    """Bytes that arrive within `timeout` (b"" on EOF/reset, None if nothing came)."""
    if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
        try:
            readable, _, _ = select.select([sock], [], [], max(timeout, 0))
        except (OSError, ValueError):
            return b""
        if not readable:
            return None
    sock.settimeout(max(timeout, 0.05))
    try:
        return sock.recv(65536)
    except (socket.timeout, TimeoutError, ssl.SSLWantReadError, BlockingIOError):
        return None
    except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
        return b""


def wait_closed(sock: socket.socket, timeout: float) -> tuple[bool, bytes]:
    """Read until EOF/reset or `timeout`. Returns (closed, everything received)."""
    deadline = time.monotonic() + timeout
    got = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False, bytes(got)
        data = recv_some(sock, left)
        if data is None:
            return False, bytes(got)
        if data == b"":
            return True, bytes(got)
        got += data


# ---------------------------------------------------------------------------
# Request bodies
# ---------------------------------------------------------------------------


def golden_bytes(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


def golden_json(name: str) -> dict:
    return json.loads((GOLDEN / name).read_text())


def random_arrays(n: int, seed: int = 1, schema: tuple[int, int, int, int] | None = None):
    """Random request arrays; `schema` defaults to the served model's (`served_model().schema`)."""
    rng = np.random.default_rng(seed)
    cids, cdense, iids, idense = schema if schema is not None else served_model().schema
    return (
        rng.integers(0, 2**32, size=cids, dtype=np.uint32),
        rng.standard_normal(cdense).astype(np.float32),
        rng.integers(0, 2**32, size=(n, iids), dtype=np.uint32),
        rng.standard_normal((n, idense)).astype(np.float32),
    )


def score_body(n: int, scene: str = "apparel", seed: int = 1, request_id: int = 1,
               schema: tuple[int, int, int, int] | None = None) -> bytes:
    return wire.encode_request(scene, *random_arrays(n, seed, schema), request_id=request_id)


def score_json_body(n: int, scene: str = "apparel", seed: int = 1, request_id: int = 1) -> bytes:
    doc = wire.request_to_json(scene, *random_arrays(n, seed), request_id=request_id)
    return json.dumps(doc, separators=(",", ":")).encode()


# ---------------------------------------------------------------------------
# H2Conn: a small synchronous HTTP/2 client on the h2 package
# ---------------------------------------------------------------------------


@dataclass
class Response:
    stream_id: int
    status: int | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False  # END_STREAM received (complete response)
    reset: int | None = None  # RST_STREAM error code, if the stream was reset
    started: float = 0.0
    finished: float | None = None

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def json(self):
        return json.loads(bytes(self.body))

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None

    def __repr__(self) -> str:
        body = bytes(self.body[:300])
        return (f"Response(stream={self.stream_id}, status={self.status}, ended={self.ended}, "
                f"reset={self.reset}, headers={self.headers}, body={body!r}{'...' if len(self.body) > 300 else ''})")


class ConnectionClosed(Exception):
    pass


class _GracefulH2Connection(h2.connection.H2Connection):
    """h2 moves to CLOSED on GOAWAY and then rejects every later frame, including the responses to
    streams at or below the GOAWAY's last-stream-id that a draining server still sends. This
    subclass reports the GOAWAY (ConnectionTerminated) but keeps processing frames."""

    def _receive_goaway_frame(self, frame):
        event = h2.events.ConnectionTerminated()
        event.error_code = h2.errors._error_code_from_int(frame.error_code)  # noqa: SLF001
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]


class H2Conn:
    """One HTTP/2 connection (TLS with ALPN h2, or h2c prior knowledge) driven synchronously."""

    def __init__(self, sock: socket.socket, *, authority: str, scheme: str):
        self.sock = sock
        self.authority = authority
        self.scheme = scheme
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                           validate_inbound_headers=False)
        self.conn = _GracefulH2Connection(config=config)
        self.conn.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 24,
                                         h2.settings.SettingCodes.ENABLE_PUSH: 0})
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(1 << 24)
        self.responses: dict[int, Response] = {}
        self.pending: dict[int, tuple[memoryview, bool]] = {}  # stream -> (unsent body, end_stream)
        self.goaway: tuple[int, int] | None = None  # (error_code, last_stream_id)
        self.cancelled: set[int] = set()  # streams this client reset itself
        self.closed = False
        self.remote_settings_seen = False
        self._flush()

    @classmethod
    def tls(cls, port: int, cafile, *, timeout: float = 5.0, client_cert=None) -> "H2Conn":
        sock = open_tls(port, cafile, timeout=timeout, client_cert=client_cert)
        if sock.selected_alpn_protocol() != "h2":
            sock.close()
            raise AssertionError(f"server selected ALPN {sock.selected_alpn_protocol()!r}, expected 'h2'")
        return cls(sock, authority=f"localhost:{port}", scheme="https")

    @classmethod
    def h2c(cls, port: int, *, timeout: float = 5.0) -> "H2Conn":
        return cls(open_tcp(port, timeout), authority=f"127.0.0.1:{port}", scheme="http")

    # -- plumbing -----------------------------------------------------------

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.closed:
            try:
                self.sock.sendall(data)
            except (OSError, ssl.SSLError) as error:
                self.closed = True
                raise ConnectionClosed(f"send failed: {error!r}") from error

    def _pump(self) -> None:
        for sid in list(self.pending):
            view, end = self.pending[sid]
            try:
                while len(view) > 0:
                    window = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
                    if window <= 0:
                        break
                    chunk = view[:window]
                    self.conn.send_data(sid, bytes(chunk))
                    view = view[window:]
                if len(view) == 0:
                    if end:
                        self.conn.end_stream(sid)
                    del self.pending[sid]
                else:
                    self.pending[sid] = (view, end)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
                self.pending.pop(sid, None)
        self._flush()

    def _handle(self, events) -> None:
        for ev in events:
            if isinstance(ev, h2.events.ResponseReceived):
                r = self.responses.get(ev.stream_id)
                if r is not None:
                    r.headers = list(ev.headers)
                    r.status = int(dict(ev.headers).get(":status", 0))
            elif isinstance(ev, h2.events.TrailersReceived):
                pass
            elif isinstance(ev, h2.events.DataReceived):
                r = self.responses.get(ev.stream_id)
                if r is not None:
                    r.body += ev.data
                if ev.flow_controlled_length:
                    try:
                        self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
                        pass
            elif isinstance(ev, h2.events.StreamEnded):
                r = self.responses.get(ev.stream_id)
                if r is not None:
                    r.ended = True
                    r.finished = time.monotonic()
            elif isinstance(ev, h2.events.StreamReset):
                r = self.responses.get(ev.stream_id)
                self.pending.pop(ev.stream_id, None)
                if r is not None and not r.ended:
                    r.reset = int(ev.error_code)
                    r.finished = time.monotonic()
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = (int(ev.error_code), int(ev.last_stream_id))
            elif isinstance(ev, h2.events.RemoteSettingsChanged):
                self.remote_settings_seen = True
            elif isinstance(ev, h2.events.WindowUpdated):
                pass
        self._pump()

    def poll(self, timeout: float) -> bool:
        """Read and process whatever arrives within `timeout`. False once the connection is closed."""
        if self.closed:
            return False
        if timeout > 0:
            if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
                pass
            else:
                readable, _, _ = select.select([self.sock], [], [], timeout)
                if not readable:
                    return True
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(1 << 16)
        except (socket.timeout, TimeoutError, ssl.SSLWantReadError):
            return True
        except (OSError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            return False
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as error:
            self.closed = True
            raise ConnectionClosed(f"protocol error from server data: {error!r}") from error
        self._handle(events)
        return True

    # -- requests -----------------------------------------------------------

    def send(self, method: str, path: str, headers: Iterable[tuple[str, str]] = (), body: bytes | None = None,
             *, end_stream: bool = True, content_length: bool = True) -> int:
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", self.scheme), (":authority", self.authority), (":path", path)]
        extra = list(headers)
        if body is not None and content_length and not any(k == "content-length" for k, _ in extra):
            extra.append(("content-length", str(len(body))))
        hdrs += extra
        self.responses[sid] = Response(sid, started=time.monotonic())
        no_body = body is None or len(body) == 0
        self.conn.send_headers(sid, hdrs, end_stream=end_stream and no_body)
        if not no_body:
            self.pending[sid] = (memoryview(body), end_stream)
        elif end_stream is False:
            pass
        self._pump()
        return sid

    def send_data(self, sid: int, data: bytes, end_stream: bool = False) -> None:
        self.pending[sid] = (memoryview(data), end_stream)
        self._pump()

    def reset(self, sid: int, error_code: int = CANCEL) -> None:
        """RST_STREAM our side of a stream (ignored if it is already closed)."""
        self.pending.pop(sid, None)
        self.cancelled.add(sid)
        try:
            self.conn.reset_stream(sid, error_code=error_code)
            self._flush()
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError, ConnectionClosed):
            pass

    def wait(self, sids: Iterable[int], timeout: float) -> dict[int, Response]:
        sids = list(sids)
        deadline = time.monotonic() + timeout
        while not all(self.responses[s].done for s in sids):
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                break
            if not self.poll(min(left, 0.5)):
                break
        return {s: self.responses[s] for s in sids}

    def request(self, method: str, path: str, headers: Iterable[tuple[str, str]] = (), body: bytes | None = None,
                *, timeout: float = 10.0) -> Response:
        sid = self.send(method, path, headers, body)
        r = self.wait([sid], timeout)[sid]
        if not r.done:
            if self.closed:
                raise ConnectionClosed(f"connection closed before the response to {method} {path}: {r!r}; "
                                       f"goaway={self.goaway}")
            raise TimeoutError(f"no complete response to {method} {path} within {timeout}s: {r!r}")
        return r

    def get(self, path: str, **kw) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: bytes, content_type: str = wire.CONTENT_TYPE, **kw) -> Response:
        return self.request("POST", path, [("content-type", content_type)], body, **kw)

    def ping(self, timeout: float = 5.0) -> bool:
        """True if the server answers a PING within `timeout`."""
        payload = os.urandom(8)
        self.conn.ping(payload)
        self._flush()
        deadline = time.monotonic() + timeout
        acked = False
        orig = self._handle

        def handle(events):
            nonlocal acked
            for ev in events:
                if isinstance(ev, h2.events.PingAckReceived) and ev.ping_data == payload:
                    acked = True
            orig(events)

        self._handle = handle  # type: ignore[assignment]
        try:
            while not acked and time.monotonic() < deadline and not self.closed:
                self.poll(0.2)
        finally:
            self._handle = orig  # type: ignore[assignment]
        return acked

    def close(self) -> None:
        if not self.closed:
            try:
                self.conn.close_connection()
                self._flush()
            except Exception:
                pass
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "H2Conn":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------
# Problem documents
# ---------------------------------------------------------------------------

TITLES = {
    "malformed-request": "Malformed request",
    "not-found": "Not found",
    "unknown-scene": "Unknown scene",
    "method-not-allowed": "Method not allowed",
    "body-too-large": "Request body too large",
    "too-many-candidates": "Too many candidates",
    "unsupported-media-type": "Unsupported media type",
    "schema-mismatch": "Request does not match the scene's schema",
    "unscorable-values": "The request's values are out of the model's range",
    "internal": "Internal error",
    "not-ready": "Not ready",
}


def assert_problem(r: Response, status: int, slug: str, detail: str | None = None,
                   detail_contains: str | None = None, what: str = "") -> dict:
    """Check an RFC 9457 problem response exactly as WIRE.md §7 describes it."""
    ctx = f"{what}: {r!r}"
    assert r.ended and r.reset is None, f"expected a complete {status} response; {ctx}"
    assert r.status == status, f"status {r.status}, expected {status} ({slug}); {ctx}"
    ctype = (r.header("content-type") or "").split(";")[0].strip().lower()
    assert ctype == wire.PROBLEM_CONTENT_TYPE, f"content-type {r.header('content-type')!r}; {ctx}"
    doc = r.json()
    assert isinstance(doc, dict), ctx
    assert doc.get("type") == wire.PROBLEM_TYPE_BASE + slug, f"type {doc.get('type')!r}; {ctx}"
    assert doc.get("status") == status, f"problem status {doc.get('status')!r}; {ctx}"
    assert doc.get("title") == TITLES[slug], f"title {doc.get('title')!r}; {ctx}"
    assert isinstance(doc.get("detail"), str), ctx
    if detail is not None:
        assert doc["detail"] == detail, f"detail {doc['detail']!r}, expected {detail!r}; {ctx}"
    if detail_contains is not None:
        assert detail_contains in doc["detail"], f"detail {doc['detail']!r} lacks {detail_contains!r}; {ctx}"
    return doc


def assert_score_ok(r: Response, *, request_id: int, n: int, scene: str = "apparel",
                    model: ModelInfo | None = None) -> wire.ScoreResponse:
    """A 200 binary score response for `scene` of `model` (default: the served model)."""
    head = (model or served_model()).head(scene)
    assert r.ended and r.reset is None and r.status == 200, f"expected 200: {r!r}"
    assert (r.header("content-type") or "").split(";")[0].strip().lower() == wire.CONTENT_TYPE, r
    resp = wire.decode_response(bytes(r.body))
    assert resp.request_id == request_id, (resp.request_id, request_id)
    assert resp.scene == scene
    assert resp.n_candidates == n
    assert resp.head_version == head.version, (resp.head_version, head.version)
    assert r.header(wire.HEAD_VERSION_HEADER) == resp.head_version, r.headers
    assert resp.outputs == head.outputs, (resp.outputs, head.outputs)
    return resp


# ---------------------------------------------------------------------------
# Hand-written HPACK (stateless unless a test inserts into the dynamic table on purpose)
# ---------------------------------------------------------------------------


def hpack_int(value: int, prefix_bits: int, first_byte_flags: int = 0) -> bytes:
    """RFC 7541 §5.1 integer with an N-bit prefix; `first_byte_flags` fills the high bits."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte_flags | value])
    out = bytearray([first_byte_flags | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_str(s: bytes) -> bytes:
    return hpack_int(len(s), 7) + s  # no Huffman


def lit(name: bytes | str, value: bytes | str) -> bytes:
    """Literal header field without indexing, new name (never touches the dynamic table)."""
    n = name.encode() if isinstance(name, str) else name
    v = value.encode() if isinstance(value, str) else value
    return b"\x00" + hpack_str(n) + hpack_str(v)


def lit_indexed_name(index: int, value: bytes | str) -> bytes:
    """Literal without indexing, name from the static table."""
    v = value.encode() if isinstance(value, str) else value
    return hpack_int(index, 4, 0x00) + hpack_str(v)


def lit_incremental(name: bytes | str, value: bytes | str) -> bytes:
    """Literal WITH incremental indexing, new name: inserts (name, value) into the dynamic table."""
    n = name.encode() if isinstance(name, str) else name
    v = value.encode() if isinstance(value, str) else value
    return b"\x40" + hpack_str(n) + hpack_str(v)


def request_block(method: str, path: str, authority: str, scheme: str = "https",
                  extra: Iterable[tuple[str, str]] = ()) -> bytes:
    block = bytearray()
    block += {"GET": b"\x82", "POST": b"\x83"}.get(method) or lit_indexed_name(2, method)
    block += b"\x87" if scheme == "https" else b"\x86"
    block += lit_indexed_name(4, path)
    block += lit_indexed_name(1, authority)
    for k, v in extra:
        block += lit(k, v)
    return bytes(block)


# ---------------------------------------------------------------------------
# RawConn: frames by hand
# ---------------------------------------------------------------------------


class RawConn:
    """A raw HTTP/2 connection: sends hand-built frames, parses what comes back."""

    def __init__(self, sock: socket.socket, authority: str, scheme: str = "https", *, preface: bool = True):
        self.sock = sock
        self.authority = authority
        self.scheme = scheme
        self.buf = bytearray()
        self.frames: list[Frame] = []
        self.goaway: GoAwayFrame | None = None
        self.resets: dict[int, int] = {}
        self.statuses: dict[int, int] = {}
        self.ended: set[int] = set()
        self.eof = False
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 20
        self._cont_block: tuple[int, bytearray] | None = None
        self.server_settings: dict[int, int] | None = None
        self.send_window = 65535  # connection-level flow-control window for our DATA
        if preface:
            s = SettingsFrame(0)
            s.settings = {SettingsFrame.ENABLE_PUSH: 0, SettingsFrame.INITIAL_WINDOW_SIZE: 1 << 24}
            self.send_raw(PREFACE + s.serialize() + WindowUpdateFrame(0, window_increment=1 << 24).serialize())

    @classmethod
    def tls(cls, port: int, cafile, **kw) -> "RawConn":
        sock = open_tls(port, cafile)
        assert sock.selected_alpn_protocol() == "h2"
        return cls(sock, f"localhost:{port}", "https", **kw)

    def send_raw(self, data: bytes) -> bool:
        """Send bytes; False if the peer already closed the connection."""
        try:
            self.sock.settimeout(10)
            self.sock.sendall(data)
            return True
        except (OSError, ssl.SSLError):
            self.eof = True
            return False

    def send_frames(self, frames: Iterable[Frame]) -> bool:
        return self.send_raw(b"".join(f.serialize() for f in frames))

    @staticmethod
    def headers_frame(sid: int, block: bytes, *, end_stream: bool, end_headers: bool = True) -> HeadersFrame:
        f = HeadersFrame(sid, data=block)
        if end_stream:
            f.flags.add("END_STREAM")
        if end_headers:
            f.flags.add("END_HEADERS")
        return f

    def request_frames(self, sid: int, method: str, path: str, extra=(), body: bytes | None = None) -> list[Frame]:
        block = request_block(method, path, self.authority, self.scheme, extra)
        frames: list[Frame] = [self.headers_frame(sid, block, end_stream=body is None)]
        if body is not None:
            d = DataFrame(sid, data=body)
            d.flags.add("END_STREAM")
            frames.append(d)
        return frames

    def _parse(self) -> None:
        while len(self.buf) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
            if len(self.buf) < 9 + length:
                return
            frame.parse_body(memoryview(bytes(self.buf[9:9 + length])))
            del self.buf[:9 + length]
            self.frames.append(frame)
            self._on_frame(frame)

    def _on_frame(self, frame: Frame) -> None:
        if isinstance(frame, WindowUpdateFrame) and frame.stream_id == 0:
            self.send_window += frame.window_increment
        if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
            if self.server_settings is None:
                self.server_settings = dict(frame.settings)
            ack = SettingsFrame(0)
            ack.flags.add("ACK")
            self.send_frames([ack])
        elif isinstance(frame, PingFrame) and "ACK" not in frame.flags:
            pong = PingFrame(0, opaque_data=frame.opaque_data)
            pong.flags.add("ACK")
            self.send_frames([pong])
        elif isinstance(frame, GoAwayFrame):
            self.goaway = frame
        elif isinstance(frame, RstStreamFrame):
            self.resets[frame.stream_id] = frame.error_code
        elif isinstance(frame, (HeadersFrame, ContinuationFrame)):
            if isinstance(frame, HeadersFrame):
                self._cont_block = (frame.stream_id, bytearray(frame.data))
            elif self._cont_block is not None:
                self._cont_block[1].extend(frame.data)
            if "END_HEADERS" in frame.flags and self._cont_block is not None:
                sid, block = self._cont_block
                self._cont_block = None
                for k, v in self.decoder.decode(bytes(block), raw=True):
                    if k == b":status":
                        self.statuses[sid] = int(v)
            if "END_STREAM" in frame.flags:
                self.ended.add(frame.stream_id)
        elif isinstance(frame, DataFrame):
            if frame.flow_controlled_length:
                self.send_frames([WindowUpdateFrame(0, window_increment=frame.flow_controlled_length)])
            if "END_STREAM" in frame.flags:
                self.ended.add(frame.stream_id)

    def read(self, timeout: float) -> bool:
        """Read what arrives within `timeout`; False on EOF."""
        if self.eof:
            return False
        data = recv_some(self.sock, timeout)
        if data is None:
            return True
        if data == b"":
            self.eof = True
            return False
        self.buf += data
        self._parse()
        return True

    def drain(self, duration: float) -> None:
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline and self.read(max(0.01, deadline - time.monotonic())):
            pass

    def wait_for(self, predicate: Callable[["RawConn"], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if not self.read(min(left, 0.25)):
                return predicate(self)
        return True

    def wait_window(self, needed: int, timeout: float) -> bool:
        """Wait until the connection window allows `needed` more DATA bytes."""
        return self.wait_for(lambda c: c.send_window >= needed, timeout)

    def send_data(self, sid: int, data: bytes, end_stream: bool = True) -> bool:
        frame = DataFrame(sid, data=data)
        if end_stream:
            frame.flags.add("END_STREAM")
        self.send_window -= len(data)
        return self.send_frames([frame])

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def raw_frame(frame_type: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """Frame bytes built by hand (hyperframe refuses some invalid frames we want to send)."""
    return len(payload).to_bytes(3, "big") + bytes([frame_type, flags]) + stream_id.to_bytes(4, "big") + payload


def describe_frames(frames: list[Frame], limit: int = 12) -> str:
    out = [repr(f)[:160] for f in frames[-limit:]]
    return f"{len(frames)} frames, last: " + "; ".join(out)


METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> tuple[dict[str, str], list[tuple[str, dict[str, str], float]]]:
    types: dict[str, str] = {}
    samples = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            types[name] = kind.strip()
            continue
        if line.startswith("#"):
            continue
        m = METRIC_LINE.match(line)
        assert m, f"unparsable metrics line: {line!r}"
        samples.append((m.group(1), dict(LABEL.findall(m.group(3) or "")), float(m.group(4))))
    return types, samples
