"""Cross-connection batching (`--max-queue-delay-us`): requests from different connections on
one event loop, for different scenes, wait for each other and share one forward pass, and each
still gets exactly its own scene's scores."""

from __future__ import annotations

import threading

import numpy as np

from h2util import random_arrays, wire
from scenes_util import h2_client, parse_metrics


def batch_histogram(scoring_base: str, client) -> tuple[float, float]:
    """(forward passes, passes that scored exactly one request) from scenescore_batch_requests."""
    _, samples = parse_metrics(client.get(scoring_base + "/metrics").text)
    passes = sum(v for n, labels, v in samples if n == "scenescore_batch_requests_count")
    single = sum(v for n, labels, v in samples if n == "scenescore_batch_requests_bucket" and labels.get("le") == "1.0")
    return passes, single


def test_requests_from_many_connections_are_scored_together(launcher, model, reference):
    server = launcher.start(["--threads", "1", "--max-queue-delay-us", "20000"], name="batching")
    base = f"https://127.0.0.1:{server.port}"
    scenes = model.scenes
    connections, per_connection = 8, 6
    results: list[tuple[str, int, tuple, object]] = []
    errors: list[str] = []
    barrier = threading.Barrier(connections)

    def client(k: int) -> None:
        with h2_client(server.cafile) as http:
            http.get(base + "/readyz")  # connect before the barrier, so the bursts overlap
            barrier.wait()
            for i in range(per_connection):
                scene = scenes[(k + i) % len(scenes)]
                request_id = 1000 * k + i
                arrays = random_arrays(1 + (i % 3), seed=request_id, schema=model.schema)
                r = http.post(base + "/v1/score", content=wire.encode_request(scene, *arrays, request_id=request_id),
                              headers={"content-type": wire.CONTENT_TYPE})
                if r.status_code != 200:
                    errors.append(f"{scene} {request_id}: {r.status_code} {r.text[:200]}")
                    continue
                results.append((scene, request_id, arrays, wire.decode_response(r.content)))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(results) == connections * per_connection
    for scene, request_id, arrays, decoded in results:
        assert decoded.request_id == request_id and decoded.scene == scene
        assert decoded.head_version == model.version(scene)
        np.testing.assert_allclose(decoded.scores, reference(scene, *arrays), rtol=0, atol=1e-4,
                                   err_msg=f"{scene} request {request_id}")

    with h2_client(server.cafile) as http:
        passes, single = batch_histogram(base, http)
    # Each connection sends one request at a time, so only the queue delay can put several
    # requests into one forward pass.
    assert passes < len(results), (passes, single, len(results))
    assert passes - single > 0, "no forward pass scored more than one request"
