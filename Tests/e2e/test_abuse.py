"""Protocol abuse over raw TLS sockets (ssl + hyperframe + hand-written HPACK).

Each attack runs while a well-behaved client (its own process, its own connection) scores in a
loop; the test asserts that client saw no error and no stall, and that the server is still alive.
Every loop is bounded in count and time, and everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import selectors
import socket
import ssl
import time

import pytest

from h2util import (
    CANCEL,
    PREFACE,
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    H2Conn,
    HeadersFrame,
    PingFrame,
    RawConn,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
    assert_score_ok,
    describe_frames,
    lit,
    lit_incremental,
    open_tcp,
    open_tls,
    raw_frame,
    request_block,
    score_body,
    tls_context,
    wait_closed,
    wire,
)

CT = ("content-type", wire.CONTENT_TYPE)


def closed_or_goaway(c: RawConn) -> bool:
    return c.eof or c.goaway is not None


def stream_refused(c: RawConn, sid: int) -> bool:
    """The server refused the stream: RST_STREAM, a 4xx answer (e.g. 431), or it closed the connection."""
    return sid in c.resets or (sid in c.statuses and 400 <= c.statuses[sid] < 500) or closed_or_goaway(c)


def healthz_on(c: RawConn, sid: int, timeout: float = 5.0) -> int | None:
    c.send_frames(c.request_frames(sid, "GET", "/healthz"))
    c.wait_for(lambda c: sid in c.ended or sid in c.resets or c.eof, timeout)
    return c.statuses.get(sid)


# ---------------------------------------------------------------------------
# Bad prefaces and connection-level protocol errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [
    b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n",
    b"PRI * HTTP/1.1\r\n\r\nSM\r\n\r\n",
    b"\x00" * 64,
    PREFACE + PingFrame(0, opaque_data=b"12345678").serialize(),  # first frame must be SETTINGS
    PREFACE + SettingsFrame(0).serialize() + raw_frame(0x0, 0, 0, b"x"),  # DATA on stream 0
    PREFACE + SettingsFrame(0).serialize() + RawConn.headers_frame(2, b"\x82", end_stream=True).serialize(),
    PREFACE + SettingsFrame(0).serialize() + raw_frame(0x8, 0, 0, bytes(4)),  # WINDOW_UPDATE 0 on the connection
], ids=["http11", "bad-magic", "http11-pri", "zeros", "ping-first", "data-stream0", "even-stream", "window-0"])
def test_bad_client_preface_or_frames_close_connection(server, good_client, payload):
    gc = good_client(server)
    for attempt in ("tls", "h2c"):
        sock = open_tls(server.port, server.cafile) if attempt == "tls" else open_tcp(server.h2c_port)
        try:
            sock.sendall(payload)
            closed, got = wait_closed(sock, 5)
        finally:
            sock.close()
        assert closed, f"{attempt}: connection still open 5 s after {payload[:40]!r}; got {got[:200]!r}"
        assert b"HTTP/1.1" not in got, f"{attempt}: server answered HTTP/1.1 to {payload[:40]!r}: {got[:200]!r}"
    gc.check()
    server.assert_alive()


# ---------------------------------------------------------------------------
# Rapid reset (CVE-2023-44487)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["get", "post"])
def test_rapid_reset(server, good_client, kind):
    gc = good_client(server)
    c = RawConn.tls(server.port, server.cafile)
    body = score_body(16, seed=31)
    sid, pairs = 1, 0
    deadline = time.monotonic() + 15
    try:
        while pairs < 3000 and not closed_or_goaway(c) and time.monotonic() < deadline:
            batch = []
            for _ in range(25):
                if kind == "get":
                    batch += c.request_frames(sid, "GET", "/healthz")
                else:
                    batch += c.request_frames(sid, "POST", "/v1/score", [CT, ("content-length", str(len(body)))],
                                              body)
                batch.append(RstStreamFrame(sid, error_code=CANCEL))
                sid += 2
                pairs += 1
            if kind == "post":
                needed = sum(len(f.data) for f in batch if isinstance(f, DataFrame))
                if not c.wait_window(needed, 5):
                    break
                c.send_window -= needed
            if not c.send_frames(batch):
                break
            c.read(0)
        c.wait_for(closed_or_goaway, 5)
        assert closed_or_goaway(c), (f"no GOAWAY/close after {pairs} HEADERS+RST_STREAM pairs "
                                     f"({describe_frames(c.frames)})")
        if c.goaway is not None:
            assert c.goaway.error_code != 0, f"rapid reset answered with GOAWAY NO_ERROR: {c.goaway!r}"
    finally:
        c.close()
    gc.check()
    server.assert_alive()


# ---------------------------------------------------------------------------
# CONTINUATION
# ---------------------------------------------------------------------------


def split_block(block: bytes, pieces: int) -> list[bytes]:
    size = -(-len(block) // pieces)
    parts = [block[i * size:(i + 1) * size] for i in range(pieces)]
    assert all(parts) and b"".join(parts) == block
    return parts


def continuation_frames(sid: int, block: bytes, n_continuations: int, end_headers_last: bool) -> list:
    parts = split_block(block, n_continuations + 1)
    frames = [RawConn.headers_frame(sid, parts[0], end_stream=True, end_headers=False)]
    for i, part in enumerate(parts[1:]):
        f = ContinuationFrame(sid, data=part)
        if end_headers_last and i == n_continuations - 1:
            f.flags.add("END_HEADERS")
        frames.append(f)
    return frames


def test_continuations_up_to_the_limit_are_fine(server):
    c = RawConn.tls(server.port, server.cafile)
    try:
        block = request_block("GET", "/healthz", c.authority, extra=[("x-pad", "p" * 40)])
        c.send_frames(continuation_frames(1, block, 8, end_headers_last=True))
        c.wait_for(lambda c: 1 in c.ended or 1 in c.resets or c.eof, 5)
        assert c.statuses.get(1) == 200, f"HEADERS + 8 CONTINUATION: {describe_frames(c.frames)}"
    finally:
        c.close()


def test_continuation_over_the_limit_closes_connection(server, good_client):
    gc = good_client(server)
    c = RawConn.tls(server.port, server.cafile)
    try:
        block = request_block("GET", "/healthz", c.authority, extra=[("x-pad", "p" * 40)])
        c.send_frames(continuation_frames(1, block, 9, end_headers_last=True))
        closed = c.wait_for(lambda c: c.eof, 3)
        assert closed and 1 not in c.statuses, \
            f"HEADERS + 9 CONTINUATION (--max-continuations 8) was not refused: {describe_frames(c.frames)}"
    finally:
        c.close()
    gc.check()
    server.assert_alive()


@pytest.mark.parametrize("empty", [True, False], ids=["empty-frames", "one-field-each"])
def test_continuation_flood(server, good_client, empty):
    """Many CONTINUATION frames without END_HEADERS: the connection is closed, the server is unharmed."""
    gc = good_client(server)
    c = RawConn.tls(server.port, server.cafile)
    sent = 0
    try:
        block = request_block("POST", "/v1/score", c.authority, extra=[CT])
        c.send_frames([RawConn.headers_frame(1, block, end_stream=False, end_headers=False)])
        deadline = time.monotonic() + 5
        payload = b"" if empty else lit("x-flood", "v")
        while sent < 20000 and not c.eof and time.monotonic() < deadline:
            if not c.send_frames([ContinuationFrame(1, data=payload) for _ in range(100)]):
                break
            sent += 100
            c.read(0)
        closed = c.wait_for(lambda c: c.eof, 3)
        assert closed, f"connection still open after {sent} CONTINUATION frames: {describe_frames(c.frames)}"
    finally:
        c.close()
    gc.check()
    server.assert_alive()


# ---------------------------------------------------------------------------
# Header lists: too big, too many fields, HPACK bomb
# ---------------------------------------------------------------------------


def send_block(c: RawConn, sid: int, block: bytes, end_stream: bool = True) -> None:
    """A header block as HEADERS + as many CONTINUATION frames as the 16 KiB frame size needs."""
    size = 16384
    parts = [block[i:i + size] for i in range(0, len(block), size)] or [b""]
    frames = [RawConn.headers_frame(sid, parts[0], end_stream=end_stream, end_headers=len(parts) == 1)]
    for i, part in enumerate(parts[1:], start=1):
        f = ContinuationFrame(sid, data=part)
        if i == len(parts) - 1:
            f.flags.add("END_HEADERS")
        frames.append(f)
    assert len(frames) - 1 <= 8
    c.send_frames(frames)


def test_header_list_just_under_the_limit_is_fine(server):
    c = RawConn.tls(server.port, server.cafile)
    try:
        extra = [(f"x-big-{i}", "a" * 3500) for i in range(4)]  # ~14.2 KB of 16 KB
        send_block(c, 1, request_block("GET", "/healthz", c.authority, extra=extra))
        c.wait_for(lambda c: 1 in c.ended or 1 in c.resets or c.eof, 5)
        assert c.statuses.get(1) == 200, describe_frames(c.frames)
    finally:
        c.close()


def assert_refused_then_usable(c: RawConn, sid: int, started: float, what: str, max_seconds: float = 3.0) -> None:
    ok = c.wait_for(lambda c: stream_refused(c, sid), max_seconds)
    elapsed = time.monotonic() - started
    assert ok, f"{what}: stream {sid} neither reset nor answered 4xx within {max_seconds}s: {describe_frames(c.frames)}"
    assert c.statuses.get(sid) != 200, f"{what}: server answered 200: {describe_frames(c.frames)}"
    assert elapsed < max_seconds
    if not closed_or_goaway(c):
        # The connection survived: it must still work (HPACK state intact).
        status = healthz_on(c, sid + 2)
        assert status == 200, f"{what}: connection survived but GET /healthz failed: {describe_frames(c.frames)}"


def test_oversized_header_list(server, good_client):
    gc = good_client(server)
    c = RawConn.tls(server.port, server.cafile)
    try:
        extra = [(f"x-big-{i}", "a" * 4000) for i in range(6)]  # ~24 KB > 16 KB
        t0 = time.monotonic()
        send_block(c, 1, request_block("GET", "/healthz", c.authority, extra=extra))
        assert_refused_then_usable(c, 1, t0, "24 KB header list")
        if 1 in c.statuses:
            assert c.statuses[1] == 431, f"expected 431 or RST_STREAM, got {c.statuses[1]}"
    finally:
        c.close()
    gc.check()
    server.assert_alive()


def test_too_many_header_fields(server, good_client):
    gc = good_client(server)
    c = RawConn.tls(server.port, server.cafile)
    try:
        extra = [(f"x-f{i}", "v") for i in range(130)]  # > --max-header-fields 128, only ~5 KB
        t0 = time.monotonic()
        send_block(c, 1, request_block("GET", "/healthz", c.authority, extra=extra))
        assert_refused_then_usable(c, 1, t0, "130 header fields")
    finally:
        c.close()
    gc.check()
    server.assert_alive()


def test_twenty_thousand_tiny_header_fields(server, good_client):
    gc = good_client(server)
    c = RawConn.tls(server.port, server.cafile)
    try:
        block = request_block("GET", "/healthz", c.authority) + lit("x", "") * 20000  # 80 KB, 5 frames
        t0 = time.monotonic()
        send_block(c, 1, block)
        assert_refused_then_usable(c, 1, t0, "20,000 header fields")
    finally:
        c.close()
    gc.check()
    server.assert_alive()


def test_hpack_bomb(server, good_client):
    """One ~4 KB value inserted into the dynamic table, then referenced 10,000 times (40 MB decoded)."""
    gc = good_client(server)
    c = RawConn.tls(server.port, server.cafile)
    try:
        c.wait_for(lambda c: c.server_settings is not None, 3)
        table = (c.server_settings or {}).get(SettingsFrame.HEADER_TABLE_SIZE, 4096)
        value_len = min(4000, table - 32 - len("x-bomb"))
        assert value_len >= 100, f"server's HPACK table is only {table} bytes; bomb not applicable"
        insert = request_block("GET", "/healthz", c.authority) + lit_incremental("x-bomb", "B" * value_len)
        send_block(c, 1, insert)
        c.wait_for(lambda c: 1 in c.ended or 1 in c.resets or c.eof, 5)
        assert c.statuses.get(1) == 200, f"the inserting request failed: {describe_frames(c.frames)}"
        bomb = request_block("GET", "/healthz", c.authority) + b"\xbe" * 10000  # 0x80|62: newest dynamic entry
        t0 = time.monotonic()
        send_block(c, 3, bomb)
        assert_refused_then_usable(c, 3, t0, "HPACK bomb", max_seconds=2.0)
    finally:
        c.close()
    gc.check()
    server.assert_alive()


# ---------------------------------------------------------------------------
# SETTINGS / PING floods (the flooder never reads)
# ---------------------------------------------------------------------------


def flood(c: RawConn, frame_bytes: bytes, count: int, seconds: float) -> int:
    """Send `frame_bytes` up to `count` times in batches without reading; stop if the server pushes back."""
    sent = 0
    batch = frame_bytes * 200
    deadline = time.monotonic() + seconds
    c.sock.settimeout(1.0)
    while sent < count and time.monotonic() < deadline:
        try:
            c.sock.sendall(batch)
        except (socket.timeout, TimeoutError):
            break  # backpressure: the server stopped reading us
        except (OSError, ssl.SSLError):
            c.eof = True
            break
        sent += 200
    return sent


@pytest.mark.parametrize("kind", ["settings", "ping"])
def test_control_frame_flood(server, good_client, kind):
    gc = good_client(server)
    c = RawConn.tls(server.port, server.cafile)
    try:
        if kind == "settings":
            f = SettingsFrame(0)
            f.settings = {SettingsFrame.INITIAL_WINDOW_SIZE: 65535}
        else:
            f = PingFrame(0, opaque_data=b"floodfld")
        sent = flood(c, f.serialize(), 20000, 8)
        # Either the server closed the flooder or it still serves it; both are fine.
        c.sock.settimeout(5)
        c.drain(2)
    finally:
        c.close()
    gc.check()
    server.assert_alive()
    assert sent > 0


# ---------------------------------------------------------------------------
# Concurrency limit
# ---------------------------------------------------------------------------


def test_max_concurrent_streams_enforced(server, good_client):
    gc = good_client(server)
    c = RawConn.tls(server.port, server.cafile)
    try:
        c.wait_for(lambda c: c.server_settings is not None, 3)
        limit = (c.server_settings or {}).get(SettingsFrame.MAX_CONCURRENT_STREAMS)
        assert limit == 100, f"SETTINGS_MAX_CONCURRENT_STREAMS is {limit}, expected 100 (--max-concurrent-streams)"
        frames = []
        for i in range(limit + 5):  # open streams (request bodies never finished)
            frames.append(RawConn.headers_frame(1 + 2 * i, request_block("POST", "/v1/score", c.authority,
                                                                         extra=[CT]), end_stream=False))
        c.send_frames(frames)
        over = [1 + 2 * i for i in range(limit, limit + 5)]
        ok = c.wait_for(lambda c: all(s in c.resets for s in over) or closed_or_goaway(c), 3)
        assert ok, f"streams over the limit were not refused: {describe_frames(c.frames)}"
        under = [1 + 2 * i for i in range(limit)]
        assert not any(s in c.resets for s in under[:90]), f"streams within the limit were reset: {c.resets}"
    finally:
        c.close()
    gc.check()
    server.assert_alive()


# ---------------------------------------------------------------------------
# Timeouts (a separate server with short limits)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def short_server(tmp_path_factory, certs, model_dir):
    from conftest import Launcher

    launcher = Launcher(tmp_path_factory, certs, model_dir)
    # The idle test opens 330 connections from 127.0.0.1: above the default per-address cap (256),
    # which test_connection_limits.py covers; here the timeouts must be what closes them.
    srv = launcher.start(["--stream-timeout", "2", "--idle-timeout", "3", "--handshake-timeout", "3",
                          "--max-connections-per-address", "1000"],
                         name="short-timeouts")
    yield srv
    problems = launcher.stop_all()
    assert not problems, "\n".join(problems)


def test_stalled_request_body_and_headers_get_reset(short_server, good_client):
    gc = good_client(short_server)
    c = RawConn.tls(short_server.port, short_server.cafile)
    try:
        body = score_body(1)
        t0 = time.monotonic()
        c.send_frames([RawConn.headers_frame(1, request_block("POST", "/v1/score", c.authority,
                                                              extra=[CT, ("content-length", str(len(body)))]),
                                             end_stream=False),
                       DataFrame(1, data=body[:50]),
                       RawConn.headers_frame(3, request_block("POST", "/v1/score", c.authority, extra=[CT]),
                                             end_stream=False)])
        done = c.wait_for(lambda c: {1, 3} <= set(c.resets) | set(c.ended) or c.eof, 6)
        elapsed = time.monotonic() - t0
        assert done and 1 in c.resets and 3 in c.resets, \
            f"stalled streams not reset within 6 s (--stream-timeout 2): {describe_frames(c.frames)}"
        assert 1.5 <= elapsed <= 4.5, f"stalled streams reset after {elapsed:.2f}s, expected ~2 s"
        assert not c.eof, "the server closed the connection instead of resetting the streams"
        assert healthz_on(c, 5) == 200, describe_frames(c.frames)
    finally:
        c.close()
    gc.check()
    short_server.assert_alive()


def test_idle_connections_are_closed(short_server, good_client):
    """300 TLS connections that never send the preface, 30 that send it and then nothing: all closed
    by the server within the handshake/idle timeout (3 s) plus slack, while a good client is fine."""
    gc = good_client(short_server)
    sel = selectors.DefaultSelector()
    opened: dict[int, tuple[socket.socket, float, str]] = {}
    try:
        for i in range(330):
            sock = open_tls(short_server.port, short_server.cafile, timeout=5)
            if i >= 300:
                s = SettingsFrame(0)
                sock.sendall(PREFACE + s.serialize())
            opened[sock.fileno()] = (sock, time.monotonic(), "preface" if i >= 300 else "silent")
            sock.setblocking(False)
            sel.register(sock, selectors.EVENT_READ)
        last_open = time.monotonic()
        closed_after: dict[int, float] = {}
        deadline = last_open + 3 + 4
        while len(closed_after) < len(opened) and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.2):
                sock = key.fileobj
                fd = key.fd
                try:
                    data = sock.recv(65536)
                except (ssl.SSLWantReadError, BlockingIOError):
                    continue
                except (OSError, ssl.SSLError):
                    data = b""
                if not data:
                    closed_after[fd] = time.monotonic() - opened[fd][1]
                    sel.unregister(sock)
        still_open = [(kind, round(time.monotonic() - t0, 1)) for fd, (s, t0, kind) in opened.items()
                      if fd not in closed_after]
        assert not still_open, f"{len(still_open)} idle connections still open 7 s after the last one " \
                               f"was opened (timeouts 3 s): {still_open[:5]}"
        delays = sorted(closed_after.values())
        median = delays[len(delays) // 2]
        assert 2.0 <= median <= 7.0, f"idle connections closed after a median {median:.2f}s (timeout 3 s)"
    finally:
        for sock, _, _ in opened.values():
            try:
                sock.close()
            except OSError:
                pass
        sel.close()
    gc.check()
    short_server.assert_alive()


# ---------------------------------------------------------------------------
# ALPN
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("alpn", [None, ["http/1.1"], ["h2c"], ["spdy/3.1", "http/1.1"]],
                         ids=["no-alpn", "http11", "h2c", "spdy-http11"])
def test_tls_client_without_h2_alpn_is_closed(server, good_client, alpn):
    gc = good_client(server)
    try:
        sock = open_tls(server.port, server.cafile, alpn=alpn, timeout=5)
    except (ssl.SSLError, ConnectionError, OSError):
        pass  # refused during the handshake (e.g. no_application_protocol alert): fine
    else:
        try:
            assert sock.selected_alpn_protocol() in (None,), f"server selected {sock.selected_alpn_protocol()!r}"
            try:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            except (OSError, ssl.SSLError):
                pass
            closed, got = wait_closed(sock, 5)
            assert closed, f"ALPN {alpn}: connection still open after 5 s; got {got[:200]!r}"
            assert b"HTTP/1.1" not in got, f"ALPN {alpn}: server answered HTTP/1.1: {got[:200]!r}"
        finally:
            sock.close()
    gc.check()
    server.assert_alive()


# ---------------------------------------------------------------------------
# Client certificates (--tls-client-ca)
# ---------------------------------------------------------------------------


def test_client_certificates_required_and_verified(launcher, certs):
    srv = launcher.start(["--tls-client-ca", str(certs.ca)], name="mtls")
    with H2Conn.tls(srv.port, certs.ca, client_cert=(certs.client_cert, certs.client_key)) as c:
        assert_score_ok(c.post("/v1/score", score_body(1, request_id=3)), request_id=3, n=1)
    for cert in (None, (certs.rogue_client_cert, certs.rogue_client_key)):
        refused = False
        try:
            sock = open_tls(srv.port, certs.ca, client_cert=cert, timeout=5)
        except (ssl.SSLError, ConnectionError, OSError):
            refused = True
        else:
            # TLS 1.3: the client may finish before the server checked its certificate.
            try:
                c = H2Conn(sock, authority=f"localhost:{srv.port}", scheme="https")
                r = c.get("/healthz", timeout=5)
                refused = False
                detail = repr(r)
            except Exception as error:  # noqa: BLE001
                refused = True
                detail = repr(error)
            finally:
                sock.close()
        assert refused, f"client cert {cert and cert[0].name} was accepted: {detail}"
    srv.assert_alive()


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_slow_reader_is_not_buffered_without_bound(server, good_client):
    """A client that sends requests as fast as it can and never reads its responses. Its HTTP/2
    window is 16 MiB, so flow control never stops the server: only backpressure can. The server
    must stop reading from that connection once its responses back up, so the client's sends stall
    and the server's memory stays bounded, while a well-behaved client is served as usual."""
    gc = good_client(server)
    rss_before = _rss_kib(server.proc.pid)
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # small receive window: fills fast
    raw.settimeout(5)
    raw.connect(("127.0.0.1", server.port))
    sock = tls_context(server.cafile).wrap_socket(raw, server_hostname="localhost")
    c = RawConn(sock, f"localhost:{server.port}", "https")
    body = score_body(64)
    sock.setblocking(False)
    sent_at: list[tuple[float, int]] = []
    sent, sid, pending = 0, 1, b""
    start = time.monotonic()
    try:
        while time.monotonic() - start < 6:
            if not pending:
                pending = b"".join(f.serialize() for f in c.request_frames(sid, "POST", "/v1/score", [CT], body))
                sid += 2
            try:
                n = sock.send(pending)
                pending = pending[n:]
                sent += n
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                time.sleep(0.005)
            except (OSError, ssl.SSLError):
                break  # the server closed us: also bounded
            sent_at.append((time.monotonic() - start, sent))
        rss_during = _rss_kib(server.proc.pid)
    finally:
        sock.close()
    # Bytes the server accepted in the last two seconds of the flood: near nothing once it stopped reading.
    late = [b for t, b in sent_at if t >= 4.0]
    stalled = (late[-1] - late[0]) if late else 0
    assert stalled < 2 * 1024 * 1024, (f"the server kept reading a client that does not read: "
                                        f"{stalled} bytes in the last 2 s ({sent} in all)")
    growth_mib = (rss_during - rss_before) / 1024
    assert growth_mib < 128, f"server RSS grew {growth_mib:.0f} MiB for one non-reading client"
    gc.check()
    server.assert_alive()
