"""A well-behaved SceneScore client, run as a separate process during protocol-abuse tests.

It scores the same small request in a loop over its own TLS HTTP/2 connection (a pause of
`--interval` seconds between requests, a per-request timeout of `--timeout` seconds), checks
every answer (200, decodable, same scores every time) and records latencies. It prints
"ready" once the first request succeeded, stops when a line arrives on stdin (or after
`--max-seconds`), and then prints one JSON line with its statistics.

    python3 good_client.py --port 8443 --cacert ca.pem --model-dir var/models/default

--model-dir is the model the server loads: the expected head version and outputs come from it.
"""

from __future__ import annotations

import argparse
import json
import select
import sys
import time
import traceback

import numpy as np

from h2util import H2Conn, assert_score_ok, score_body, use_model


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cacert", required=True)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--max-seconds", type=float, default=90.0)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--model-dir", required=True, help="the model directory the server loads")
    args = parser.parse_args()
    use_model(args.model_dir)

    body = score_body(args.candidates, seed=42, request_id=4242)
    conn: H2Conn | None = None
    latencies: list[float] = []
    errors: list[str] = []
    reconnects = 0
    expected = None
    announced = False
    started = time.monotonic()
    while time.monotonic() - started < args.max_seconds:
        if select.select([sys.stdin], [], [], 0)[0]:
            break
        t0 = time.monotonic()
        try:
            if conn is None:
                conn = H2Conn.tls(args.port, args.cacert, timeout=args.timeout)
                if announced:
                    reconnects += 1
            r = conn.post("/v1/score", body, timeout=args.timeout)
            resp = assert_score_ok(r, request_id=4242, n=args.candidates)
            if expected is None:
                expected = resp.scores.copy()
            elif not np.array_equal(expected, resp.scores):
                raise AssertionError(f"scores changed: {resp.scores.tolist()} != {expected.tolist()}")
        except Exception as error:  # noqa: BLE001 - every failure is recorded
            elapsed = time.monotonic() - t0
            errors.append(f"t={t0 - started:.2f}s after {elapsed:.2f}s: {error!r}"[:500])
            if conn is not None:
                conn.close()
                conn = None
            if not announced:
                print(json.dumps({"startup_error": errors[-1], "trace": traceback.format_exc()}), flush=True)
                return 1
            time.sleep(args.interval)
            continue
        latencies.append(time.monotonic() - t0)
        if not announced:
            print("ready", flush=True)
            announced = True
        time.sleep(args.interval)
    if conn is not None:
        conn.close()
    lat = sorted(latencies)
    stats = {
        "requests": len(lat),
        "errors": errors,
        "reconnects": reconnects,
        "max_latency": lat[-1] if lat else None,
        "p50_latency": lat[len(lat) // 2] if lat else None,
        "seconds": time.monotonic() - started,
    }
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
