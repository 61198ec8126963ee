"""The exported graphs, run in onnxruntime (CPU), score exactly what the real server scores:
every scene of every model, N in {1, 7, 64}, ids over the whole uint32 range (0 and 0xFFFFFFFF
included), within 1e-5 absolute."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import record

TOLERANCE = 1e-5
SPECIAL_IDS = np.array([0, 0xFFFFFFFF, 0x80000000, 0x7FFFFFFF, 1, 0xFFFFFFFE], dtype=np.uint32)
REQUESTS_PER_SIZE = 3


def request_inputs(spec: dict, n: int, seed: int):
    """One request on the canonical schema: random ids over [0, 2³²) with the edge values mixed in,
    dense values of a few units."""
    rng = np.random.default_rng(seed)
    fc, dc, fi, di = len(spec["context_fields"]), spec["context_dense"], len(spec["item_fields"]), spec["item_dense"]
    cid = rng.integers(0, 2**32, size=fc, dtype=np.uint64).astype(np.uint32)
    if fc and seed % 3 < 2:
        cid[0] = SPECIAL_IDS[seed % 3]  # 0, then 0xFFFFFFFF
    iid = rng.integers(0, 2**32, size=(n, fi), dtype=np.uint64).astype(np.uint32)
    flat = iid.reshape(-1)
    specials = np.roll(SPECIAL_IDS, seed)
    flat[:min(flat.size, specials.size)] = specials[:flat.size]
    cd = (rng.standard_normal(dc) * 2).astype(np.float32)
    idn = (rng.standard_normal((n, di)) * 2).astype(np.float32)
    return cid, cd, iid, idn


@pytest.mark.parametrize("n", [1, 7, 64])
def test_every_scene_matches_the_server(served, n):
    failures = []
    for scene in served.scenes:
        session, model = served.sessions[scene], served.models[scene]
        props = {p.key: p.value for p in model.metadata_props}
        outputs = json.loads(props["scenescore.outputs"])
        for r in range(REQUESTS_PER_SIZE):
            cid, cd, iid, idn = request_inputs(served.backbone_spec, n, seed=1000 * n + r)
            response = served.client.score(scene, cid, cd, iid, idn, request_id=1000 * n + r)
            assert response.head_version == props["scenescore.head_version"], \
                f"{scene}: the server scored with head {response.head_version}, the graph is {props}"
            assert response.outputs == outputs, f"{scene}: server outputs {response.outputs}, graph {outputs}"
            got = session.run(None, {"context_ids": cid[None, :], "context_dense": cd[None, :],
                                     "item_ids": iid, "item_dense": idn})[0]
            want = np.asarray(response.scores, dtype=np.float32)
            assert got.shape == want.shape == (n, len(outputs)), f"{scene}: shapes {got.shape} vs {want.shape}"
            assert got.dtype == np.float32
            diff = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
            record(served.name, scene, n, diff, len(outputs))
            if not diff <= TOLERANCE:
                worst = np.unravel_index(np.argmax(np.abs(got - want)), got.shape)
                failures.append(f"{scene} N={n} request {r}: max |onnx - server| = {diff:.3e} at {worst}: "
                                f"onnx {got[worst]:.8f}, server {want[worst]:.8f}")
    assert not failures, "\n".join(failures)


def test_interaction_model_covers_every_head_kind(interaction_model_dir):
    """The interaction model's scenes reach every path of the server's head code: interaction heads
    with narrow (≤ 4) and packed (> 4) output layers, a head without interaction (and without a tower)
    on the towered backbone, and F32 / F16 / BF16 storage."""
    from scenescore_onnx import load_backbone, load_head

    backbone = load_backbone(interaction_model_dir / "backbone.safetensors")
    assert backbone.spec["interaction"] == {"kind": "two_tower", "dim": 16}
    heads = [load_head(p, backbone) for p in sorted((interaction_model_dir / "heads").glob("*.safetensors"))]
    specs = [h.spec for h in heads]
    assert any(s["interaction"] == 16 and len(s["outputs"]) <= 4 for s in specs)
    assert any(s["interaction"] == 16 and len(s["outputs"]) > 4 for s in specs)
    assert any(not s["interaction"] and not s["tower"] for s in specs)
    dtypes = set()
    for h in heads:
        header = json.loads(h.path.read_bytes()[8:8 + int.from_bytes(h.path.read_bytes()[:8], "little")])
        dtypes |= {v["dtype"] for k, v in header.items() if k != "__metadata__"}
    assert dtypes == {"F32", "F16", "BF16"}
