"""The Python reference client (Proto/python/scenescore_client) against the real server over TLS."""

from __future__ import annotations

import ssl

import httpx
import numpy as np
import pytest

from h2util import golden_bytes, golden_json, random_arrays, served_model, wire
from scenescore_client.client import ProblemError, ScoreClient


@pytest.fixture(scope="module")
def client(server):
    with ScoreClient(f"https://127.0.0.1:{server.port}", verify=str(server.cafile), timeout=20) as c:
        yield c


def arrays_of(doc: dict):
    """(context_ids, context_dense, item_ids, item_dense) of a JSON request document."""
    n = len(doc["candidates"])
    ids = np.array([c["ids"] for c in doc["candidates"]], dtype=np.uint32).reshape(n, -1)
    dense = np.array([c["dense"] for c in doc["candidates"]], dtype=np.float32).reshape(n, -1)
    return (np.array(doc["context"]["ids"], dtype=np.uint32), np.array(doc["context"]["dense"], dtype=np.float32),
            ids, dense)


def reshape_to(arrays, schema):
    """Fit a golden vector's values to a schema: cycle its values (zeros if it has none)."""
    def fit(values: np.ndarray, width: int, dtype) -> np.ndarray:
        flat = values.reshape(-1)
        if flat.size == 0:
            return np.zeros(width, dtype=dtype)
        return np.resize(flat, width).astype(dtype)

    cids, cdense, iids, idense = arrays
    n = iids.shape[0]
    return (fit(cids, schema[0], np.uint32), fit(cdense, schema[1], np.float32),
            np.stack([fit(iids[i], schema[2], np.uint32) for i in range(n)]),
            np.stack([fit(idense[i], schema[3], np.float32) for i in range(n)]))


def check(resp: wire.ScoreResponse, *, request_id: int, scene: str, n: int):
    head = served_model().head(scene)
    assert resp.request_id == request_id
    assert resp.scene == scene
    assert resp.head_version == head.version, (resp.head_version, head.version)
    assert resp.outputs == head.outputs, (resp.outputs, head.outputs)
    assert resp.scores.shape == (n, len(head.outputs))
    assert resp.scores.dtype == np.float32
    assert ((resp.scores >= 0) & (resp.scores <= 1)).all()


def test_health_and_scenes(client, model):
    assert isinstance(client.health(), dict)  # the exact document is checked in test_ops
    scenes = {s.scene: s for s in client.scenes()}
    assert sorted(scenes) == model.scenes
    for name, info in scenes.items():
        assert info.head_version == model.version(name)
        assert info.outputs == model.outputs(name)
        assert (info.context_ids, info.context_dense, info.item_ids, info.item_dense) == model.schema


def test_golden_request_1cand_round_trip(client, server, reference, model):
    doc = golden_json("request-1cand.json")
    arrays = arrays_of(doc)
    assert (arrays[0].size, arrays[1].size, arrays[2].shape[1], arrays[3].shape[1]) == model.schema, \
        "request-1cand does not fit the served model's schema"
    first = client.score("apparel", *arrays, request_id=7)
    check(first, request_id=7, scene="apparel", n=1)
    second = client.score("apparel", *arrays, request_id=7)
    assert np.array_equal(first.scores, second.scores), "same request, different scores"
    as_json = client.score_json("apparel", *arrays, request_id=7)
    check(as_json, request_id=7, scene="apparel", n=1)
    np.testing.assert_allclose(as_json.scores, first.scores, rtol=0, atol=1e-6)
    np.testing.assert_allclose(first.scores, reference("apparel", *arrays), rtol=0, atol=1e-4)
    # The golden bytes themselves (not re-encoded) give the same answer.
    with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=str(server.cafile))) as raw:
        r = raw.post(f"https://127.0.0.1:{server.port}/v1/score", content=golden_bytes("request-1cand.bin"),
                     headers={"content-type": wire.CONTENT_TYPE})
    assert r.http_version == "HTTP/2" and r.status_code == 200, r.text
    assert r.headers["x-scenescore-head-version"] == model.version("apparel")
    assert np.array_equal(wire.decode_response(r.content).scores, first.scores)


@pytest.mark.parametrize("name", ["request-4cand", "request-odd", "request-minimal"])
def test_golden_requests_for_unserved_scenes(client, model, name):
    """These vectors name scenes the served model does not have: 404 unknown-scene, both encodings."""
    doc = golden_json(f"{name}.json")
    assert doc["scene"] not in model.scenes, f"{name} names a served scene: {model.scenes}"
    arrays = arrays_of(doc)
    for send in (client.score, client.score_json):
        with pytest.raises(ProblemError) as info:
            send(doc["scene"], *arrays, request_id=doc["request_id"])
        assert info.value.status == 404, info.value
        assert info.value.slug == "unknown-scene", info.value
        assert info.value.detail == f"unknown scene '{doc['scene']}'", info.value


@pytest.mark.parametrize("name", ["request-1cand", "request-4cand", "request-odd", "request-minimal"])
def test_golden_values_reshaped_round_trip(client, reference, model, name):
    """Each golden vector's values (incl. ids 0/0xFFFFFFFF and request ids up to 2^64-1), fitted to the
    served model's schema, round-trip through every scene: echo, determinism, binary == JSON,
    reference scores."""
    doc = golden_json(f"{name}.json")
    arrays = reshape_to(arrays_of(doc), model.schema)
    n = arrays[2].shape[0]
    rid = doc["request_id"]
    assert model.scenes
    for scene in model.scenes:
        a = client.score(scene, *arrays, request_id=rid)
        check(a, request_id=rid, scene=scene, n=n)
        b = client.score(scene, *arrays, request_id=rid)
        assert np.array_equal(a.scores, b.scores), scene
        j = client.score_json(scene, *arrays, request_id=rid)
        check(j, request_id=rid, scene=scene, n=n)
        np.testing.assert_allclose(j.scores, a.scores, rtol=0, atol=1e-6, err_msg=scene)
        np.testing.assert_allclose(a.scores, reference(scene, *arrays), rtol=0, atol=1e-4, err_msg=scene)


def test_scenes_have_different_heads(client, model):
    assert len(model.scenes) >= 2, model.scenes
    arrays = random_arrays(8, seed=11)
    scores = {scene: client.score(scene, *arrays).scores for scene in model.scenes}
    for other in model.scenes:
        if other != "apparel":
            assert not np.array_equal(scores["apparel"], scores[other]), f"apparel and {other} score alike"


def test_candidate_order_and_batch_independence(client):
    """Scores of a candidate don't depend on its batch neighbours or position."""
    arrays = random_arrays(32, seed=12)
    full = client.score("apparel", *arrays).scores
    perm = np.random.default_rng(3).permutation(32)
    shuffled = client.score("apparel", arrays[0], arrays[1], arrays[2][perm], arrays[3][perm]).scores
    np.testing.assert_allclose(shuffled, full[perm], rtol=0, atol=1e-6)
    single = client.score("apparel", arrays[0], arrays[1], arrays[2][5:6], arrays[3][5:6]).scores
    np.testing.assert_allclose(single[0], full[5], rtol=0, atol=1e-6)


def test_max_candidates_1024(client, reference, model):
    arrays = random_arrays(1024, seed=13)
    for scene in model.scenes:
        resp = client.score(scene, *arrays, request_id=2**64 - 1)
        check(resp, request_id=2**64 - 1, scene=scene, n=1024)
        np.testing.assert_allclose(resp.scores, reference(scene, *arrays), rtol=0, atol=1e-4, err_msg=scene)
        j = client.score_json(scene, *arrays, request_id=0)
        np.testing.assert_allclose(j.scores, resp.scores, rtol=0, atol=1e-6, err_msg=scene)


def test_many_candidates_many_times_deterministic(client, model):
    arrays = random_arrays(256, seed=14)
    for scene in model.scenes:
        first = client.score(scene, *arrays, request_id=99).scores
        for _ in range(5):
            assert np.array_equal(client.score(scene, *arrays, request_id=99).scores, first), scene
