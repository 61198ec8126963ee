"""A scoring load in a process of its own (so it does not share the test's GIL): binary score
requests for one scene over a few persistent TLS HTTP/2 connections (several streams in flight
on each), typically through HAProxy. Every answer is checked: a 200 whose header and body name
the same head version and carry finite scores in [0, 1]; anything else is a failure.

It prints "ready" once one request succeeded, runs until a line arrives on stdin (or
--max-seconds), finishes what is in flight, and prints one JSON line of statistics:
requests, failures (count + the first 20 described), statuses, versions seen, reconnects,
latency p50/p99/max.

    python3 load_client.py --port 8443 --cacert ca.pem --scene rep-c --schema 1,4,3,17
"""

from __future__ import annotations

import argparse
import json
import select
import struct
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from h2util import H2Conn, score_body, wire  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cacert", required=True)
    parser.add_argument("--scene", required=True)
    parser.add_argument("--schema", required=True, help="context ids, context dense, item ids, item dense")
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--streams", type=int, default=4, help="in flight per connection")
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=10.0, help="per request")
    parser.add_argument("--max-seconds", type=float, default=120.0)
    args = parser.parse_args()
    schema = tuple(int(x) for x in args.schema.split(","))
    assert len(schema) == 4, args.schema

    body = bytearray(score_body(args.candidates, args.scene, seed=11, request_id=1, schema=schema))
    conns: list[H2Conn | None] = [None] * args.connections
    inflight: list[dict[int, tuple[int, float]]] = [{} for _ in range(args.connections)]
    statuses: Counter = Counter()
    versions: Counter = Counter()
    failures: list[str] = []
    n_failures = 0
    latencies: list[float] = []
    reconnects = 0
    next_id = 1
    started = time.monotonic()
    announced = False
    stopping = False
    stop_deadline = None

    def fail(message: str) -> None:
        nonlocal n_failures
        n_failures += 1
        if len(failures) < 20:
            failures.append(f"t={time.monotonic() - started:.2f}s {message}"[:600])

    while True:
        now = time.monotonic()
        if not announced and now - started > 15:
            print(json.dumps({"startup_error": failures[:5] or ["no answer within 15 s"]}), flush=True)
            return 1
        if not stopping and (select.select([sys.stdin], [], [], 0)[0] or now - started > args.max_seconds):
            stopping = True
            stop_deadline = now + 15
        if stopping and (not any(inflight) or now > stop_deadline):
            for k, pending in enumerate(inflight):
                for sid, (rid, t0) in pending.items():
                    fail(f"conn {k} stream {sid}: no answer within 15 s of the end of the run")
            break
        for k in range(args.connections):
            conn = conns[k]
            if conn is None or conn.closed:
                if conn is not None:
                    for sid, (rid, t0) in inflight[k].items():
                        fail(f"conn {k} stream {sid}: connection closed before the answer (goaway={conn.goaway})")
                    inflight[k].clear()
                    reconnects += 1
                if stopping:
                    conns[k] = None
                    continue
                try:
                    conn = conns[k] = H2Conn.tls(args.port, args.cacert, timeout=args.timeout)
                except Exception as error:  # noqa: BLE001
                    fail(f"conn {k}: connect failed: {error!r}")
                    conns[k] = None
                    time.sleep(0.05)
                    continue
            while not stopping and len(inflight[k]) < args.streams and conn.goaway is None:
                rid = next_id
                next_id += 1
                struct.pack_into("<Q", body, 8, rid)
                try:
                    sid = conn.send("POST", "/v1/score", [("content-type", wire.CONTENT_TYPE)], bytes(body))
                except Exception as error:  # noqa: BLE001
                    fail(f"conn {k}: send failed: {error!r}")
                    conn.closed = True
                    break
                inflight[k][sid] = (rid, time.monotonic())
        live = [(k, c) for k, c in enumerate(conns) if c is not None and not c.closed]
        if not live:
            continue
        socks = [c.sock for _, c in live]
        ready = set(select.select(socks, [], [], 0.05)[0])
        for k, conn in live:
            if conn.sock in ready or (hasattr(conn.sock, "pending") and conn.sock.pending()):
                try:
                    conn.poll(0)
                except Exception as error:  # noqa: BLE001
                    fail(f"conn {k}: {error!r}")
                    conn.closed = True
            for sid in [s for s in inflight[k] if conn.responses[s].done]:
                rid, t0 = inflight[k].pop(sid)
                r = conn.responses.pop(sid)
                statuses[str(r.status)] += 1
                if r.reset is not None or r.status != 200:
                    fail(f"conn {k} request {rid}: status {r.status} reset {r.reset} body {bytes(r.body[:200])!r}")
                    continue
                try:
                    decoded = wire.decode_response(bytes(r.body))
                    header = r.header(wire.HEAD_VERSION_HEADER)
                    if decoded.request_id != rid or header != decoded.head_version:
                        raise ValueError(f"request id {decoded.request_id} (sent {rid}), header {header!r} vs body "
                                         f"{decoded.head_version!r}")
                    scores = np.asarray(decoded.scores)
                    if not (np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()):
                        raise ValueError(f"scores out of range: {scores.tolist()}")
                except Exception as error:  # noqa: BLE001
                    fail(f"conn {k} request {rid}: bad 200: {error!r}")
                    continue
                versions[header] += 1
                latencies.append((r.finished or time.monotonic()) - t0)
                if not announced:
                    print("ready", flush=True)
                    announced = True
    for conn in conns:
        if conn is not None:
            conn.close()
    lat = sorted(latencies)
    stats = {
        "requests": len(lat) + n_failures,
        "ok": len(lat),
        "n_failures": n_failures,
        "failures": failures,
        "statuses": dict(statuses),
        "versions": dict(versions),
        "reconnects": reconnects,
        "p50_latency": lat[len(lat) // 2] if lat else None,
        "p99_latency": lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else None,
        "max_latency": lat[-1] if lat else None,
        "seconds": time.monotonic() - started,
    }
    if not announced:
        print(json.dumps({"startup_error": failures[:5]}), flush=True)
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
