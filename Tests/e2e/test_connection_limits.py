"""Connection caps: per listener set (--max-connections) and per client address
(--max-connections-per-address). Above a cap a new connection is closed as soon as it is accepted
(no TLS handshake), it is counted in scenescore_connections_rejected_total{reason}, and the
connections already open keep working. A closed connection frees its slot.

Loopback is all of 127.0.0.0/8 on Linux, so binding the client socket to 127.0.0.2 or 127.0.0.3
gives a second and third client address against the server on 127.0.0.1.
"""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from h2util import H2Conn, assert_score_ok, parse_metrics, score_body, tls_context, wait_closed
from test_ops import total


def connect_from(source: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(5.0)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def tls_from(source: str, port: int, cafile) -> ssl.SSLSocket:
    return tls_context(cafile).wrap_socket(connect_from(source, port), server_hostname="localhost")


def refused_at_once(source: str, port: int, cafile) -> bool:
    """True when the server closes a new connection from `source` without completing TLS."""
    sock = connect_from(source, port)
    try:
        closed, got = wait_closed(sock, 3.0)
        if closed:
            return got == b""
        # Still open after 3 s: it was admitted (the server waits for our ClientHello).
        return False
    finally:
        sock.close()


def rejected(conn: H2Conn, reason: str) -> float:
    r = conn.get("/metrics", timeout=10)
    assert r.status == 200, r
    return total(parse_metrics(bytes(r.body).decode())[1], "scenescore_connections_rejected_total", reason=reason)


def wait_until(predicate, timeout: float = 5.0, what: str = "") -> None:
    """Polls a condition the server reaches asynchronously (a closed connection's slot is freed
    when the server's event loop sees the close)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_connections_above_the_caps_are_closed_at_once_and_counted(launcher):
    server = launcher.start(["--max-connections", "4", "--max-connections-per-address", "2"], name="caps")
    held: list[H2Conn] = []
    try:
        # Two from 127.0.0.1 (the per-address cap); the third from it is refused.
        held += [H2Conn(tls_from("127.0.0.1", server.port, server.cafile), authority=f"localhost:{server.port}", scheme="https")
                 for _ in range(2)]
        assert refused_at_once("127.0.0.1", server.port, server.cafile), \
            "a third connection from 127.0.0.1 was admitted over --max-connections-per-address 2"
        assert rejected(held[0], "address_limit") == 1

        # Two more from 127.0.0.2 fill the server cap of 4; 127.0.0.3 has none yet but is refused.
        held += [H2Conn(tls_from("127.0.0.2", server.port, server.cafile), authority=f"localhost:{server.port}", scheme="https")
                 for _ in range(2)]
        assert refused_at_once("127.0.0.3", server.port, server.cafile), \
            "a fifth connection was admitted over --max-connections 4"
        # The h2c listener shares the cap: it belongs to the same server.
        assert refused_at_once("127.0.0.3", server.h2c_port, server.cafile)
        assert rejected(held[0], "server_limit") == 2

        # The admitted connections still score.
        for i, conn in enumerate(held):
            r = conn.post("/v1/score", score_body(3, request_id=100 + i), timeout=10)
            assert_score_ok(r, request_id=100 + i, n=3)

        # Closing one frees its slot: a new connection from that address is served.
        held.pop().close()

        def admitted() -> bool:
            try:
                conn = H2Conn(tls_from("127.0.0.2", server.port, server.cafile), authority=f"localhost:{server.port}", scheme="https")
            except (ssl.SSLError, OSError):
                return False
            held.append(conn)
            return True

        wait_until(admitted, what="a freed slot to admit a new connection from 127.0.0.2")
        r = held[-1].post("/v1/score", score_body(1, request_id=7), timeout=10)
        assert_score_ok(r, request_id=7, n=1)
    finally:
        for conn in held:
            conn.close()
    # With the slots free again, a fresh connection (the liveness check's own) is admitted.
    wait_until(lambda: server.alive() and _healthz_ok(server), what="a fresh connection after closing the held ones")


def _healthz_ok(server) -> bool:
    try:
        conn = H2Conn.tls(server.port, server.cafile)
    except (ssl.SSLError, OSError):
        return False
    try:
        return conn.get("/healthz", timeout=5).status == 200
    finally:
        conn.close()


def test_cap_values_are_validated(launcher):
    server = launcher.start(["--max-connections", "0"], name="caps-bad", wait=False)
    rc = server.wait_exit(30)
    assert rc not in (None, 0), f"the server accepted --max-connections 0 (exit {rc})"
    assert "maxConnections must be an integer ≥ 1" in server.log(), server.describe()
