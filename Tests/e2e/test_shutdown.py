"""Graceful shutdown: SIGTERM/SIGINT send GOAWAY, in-flight streams finish, exit code 0."""

from __future__ import annotations

import signal
import threading
from collections import Counter
import time

import pytest

from h2util import REFUSED_STREAM, H2Conn, score_body, wire

CT = ("content-type", wire.CONTENT_TYPE)


def classify(conn: H2Conn, r, n: int) -> tuple[str, str]:
    """'ok' (complete 200), 'refused' (not processed per GOAWAY/REFUSED_STREAM) or 'bad' (anything else)."""
    last = conn.goaway[1] if conn.goaway else None
    if r.ended and r.status == 200:
        try:
            resp = wire.decode_response(bytes(r.body))
        except wire.WireError as error:
            return "bad", f"stream {r.stream_id}: undecodable 200 body ({len(r.body)} bytes): {error.detail}"
        if resp.n_candidates != n:
            return "bad", f"stream {r.stream_id}: {resp.n_candidates} candidates"
        return "ok", ""
    if r.reset == REFUSED_STREAM and r.status is None:
        return "refused", ""
    if not r.done and r.status is None and last is not None and r.stream_id > last:
        return "refused", ""
    if r.status is not None and not r.ended:
        why = f"truncated {r.status} response ({len(r.body)} body bytes)"
    elif r.status is not None:
        why = f"complete {r.status} response: {bytes(r.body[:120])!r}"
    elif r.reset is not None:
        why = f"RST_STREAM code {r.reset}"
    elif last is None:
        why = "no response; connection closed without a GOAWAY"
    else:
        why = f"no response although stream id <= GOAWAY last-stream-id {last}"
    return "bad", why


def test_sigterm_with_requests_in_flight(launcher):
    drain = 5
    srv = launcher.start(["--drain-timeout", str(drain), "--threads", "1"], name="drain", drain_timeout=drain)
    n = 1024
    body = score_body(n, seed=41, request_id=77)
    lock = threading.Lock()
    outcomes: list[tuple[str, str, float, float | None]] = []
    batches = [0] * 4
    errors: list[str] = []
    deadline = time.monotonic() + 30

    def worker(idx: int) -> None:
        try:
            conn = H2Conn.tls(srv.port, srv.cafile, timeout=15) if idx % 2 == 0 else H2Conn.h2c(srv.h2c_port, timeout=15)
        except Exception as error:  # noqa: BLE001
            errors.append(f"worker {idx} connect: {error!r}")
            return
        try:
            while conn.goaway is None and not conn.closed and time.monotonic() < deadline:
                try:
                    sids = [conn.send("POST", "/v1/score", [CT], body) for _ in range(4)]
                except Exception:  # noqa: BLE001 - the connection went away between batches
                    break
                conn.wait(sids, 20)
                batches[idx] += 1
            # Let the server finish what it accepted (it closes the connection afterwards).
            conn.wait([s for s in conn.responses], 15)
        except Exception as error:  # noqa: BLE001
            errors.append(f"worker {idx}: {error!r}")
        finally:
            with lock:
                for r in conn.responses.values():
                    kind, detail = classify(conn, r, n)
                    outcomes.append((kind, detail, r.started, r.finished))
            conn.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    while min(batches) < 2 and time.monotonic() < deadline and not errors:
        time.sleep(0.05)
    assert not errors, errors
    assert min(batches) >= 2, f"load did not start: {batches}\n{srv.describe()}"
    t_term = time.monotonic()
    srv.signal(signal.SIGTERM)
    rc = srv.wait_exit(drain + 3)
    exit_after = time.monotonic() - t_term
    for t in threads:
        t.join(30)
    assert rc is not None, f"server still running {drain + 3}s after SIGTERM (--drain-timeout {drain})\n{srv.describe()}"
    assert rc == 0, f"exit code {rc} after SIGTERM\n{srv.describe()}"
    assert not errors, errors
    bad = Counter(d for k, d, _, _ in outcomes if k == "bad")
    kinds = Counter(k for k, *_ in outcomes)
    assert not bad, (f"{sum(bad.values())} of {len(outcomes)} streams neither completed (200) nor were cleanly "
                     f"refused ({dict(kinds)}): {dict(bad)}\n{srv.describe()}")
    in_flight_done = [1 for k, _, started, finished in outcomes
                      if k == "ok" and started < t_term and finished is not None and finished > t_term]
    assert in_flight_done, (f"no request was in flight at SIGTERM and completed afterwards "
                            f"(outcomes: {[k for k, *_ in outcomes].count('ok')} ok) - test did not exercise draining")
    assert exit_after <= drain + 2, f"exit took {exit_after:.2f}s"


def test_sigterm_idle_connection_gets_goaway_and_prompt_exit(launcher):
    srv = launcher.start(["--drain-timeout", "10"], name="idle-term", drain_timeout=10)
    conn = H2Conn.tls(srv.port, srv.cafile)
    try:
        assert conn.get("/healthz").status == 200
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while conn.goaway is None and not conn.closed and time.monotonic() < deadline:
            conn.poll(0.1)
        assert conn.goaway is not None, f"no GOAWAY after SIGTERM (closed={conn.closed})\n{srv.describe()}"
        assert conn.goaway[0] == 0, f"GOAWAY error code {conn.goaway[0]} on graceful shutdown"
        rc = srv.wait_exit(5)
        assert rc == 0, f"exit {rc} {time.monotonic() - t0:.2f}s after SIGTERM with nothing in flight\n{srv.describe()}"
    finally:
        conn.close()


def test_sigint_exits_zero(launcher):
    srv = launcher.start(name="sigint")
    srv.signal(signal.SIGINT)
    rc = srv.wait_exit(5)
    assert rc == 0, f"exit {rc} after SIGINT\n{srv.describe()}"


def test_drain_timeout_bounds_a_stuck_stream(launcher):
    """A request body that never completes does not hold shutdown beyond --drain-timeout."""
    srv = launcher.start(["--drain-timeout", "2", "--stream-timeout", "30"], name="stuck", drain_timeout=2)
    conn = H2Conn.tls(srv.port, srv.cafile)
    try:
        sid = conn.send("POST", "/v1/score", [CT, ("content-length", "152")], None, end_stream=False)
        conn.send_data(sid, score_body(1)[:40], end_stream=False)
        conn.poll(0.3)
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        rc = srv.wait_exit(2 + 4)
        took = time.monotonic() - t0
        assert rc is not None, f"server still running {took:.1f}s after SIGTERM (--drain-timeout 2)\n{srv.describe()}"
        assert rc == 0, f"exit {rc}\n{srv.describe()}"
        assert took >= 1.0, f"server exited after {took:.2f}s without waiting for the in-flight stream"
    finally:
        conn.close()
