"""Self-checks of the Python reference side of the interop tests.

Run with ``python3 -m pytest -q Tests/interop``. These tests check the numpy reference
(scenescore_model) against independent implementations written here, and check that the
generators (make_interop_case, make_bad_models) produce what they promise.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings

import numpy as np
import pytest
import safetensors
import safetensors.numpy

import make_bad_models
import make_interop_case
import scenescore_model as sm

BACKBONE_SPEC = make_interop_case.BACKBONE_SPEC
HEAD_SPEC = make_interop_case.HEAD_SPEC
# The two-tower interaction, k = 12 (one 8-wide vector and a remainder), on the narrow (2
# outputs) and packed (6 outputs) output paths.
K = 12
BACKBONE_SPEC_K = make_interop_case.backbone_spec(K)
HEAD_SPEC_K = make_interop_case.head_spec(K)
HEAD_SPEC_K_WIDE = make_interop_case.head_spec(K, outputs=6)
_M32 = 0xFFFFFFFF


# ---------------------------------------------------------------------------------------------
# Independent implementations
# ---------------------------------------------------------------------------------------------

def fmix32_int(h: int) -> int:
    """MurmurHash3 fmix32 on Python ints, masking to 32 bits after every multiply."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _M32
    h ^= h >> 16
    return h


def forward_float32(bb: dict, bspec: dict, hd: dict, hspec: dict,
                    context_ids, context_dense, item_ids, item_dense) -> np.ndarray:
    """Scores in float32, one candidate at a time, with the layer-0 context part and the user
    vector u computed once per request (the way the server evaluates them), w_o = A_oᵀ u once per
    request, and ids hashed by :func:`fmix32_int`."""
    f32 = np.float32

    def w(tensors: dict, name: str) -> np.ndarray:
        return np.asarray(tensors[name], dtype=f32)

    ctx_parts = [w(bb, f"embedding.{field['name']}")[fmix32_int(int(i)) % field["vocab"]]
                 for field, i in zip(bspec["context_fields"], context_ids)]
    ctx = np.concatenate(ctx_parts + [np.asarray(context_dense, dtype=f32)])
    w0 = w(bb, "mlp.0.weight")
    ctx_pre = w0[:, :ctx.size] @ ctx + w(bb, "mlp.0.bias")
    k = hspec.get("interaction", 0)
    if k:
        u = w(bb, "user_tower.weight") @ ctx + w(bb, "user_tower.bias")
        wo = np.stack([a.T @ u for a in w(hd, "interaction.weight")])  # [outputs, k]

    rows = []
    for ids, dense in zip(item_ids, item_dense):
        item_parts = [w(bb, f"embedding.{field['name']}")[fmix32_int(int(i)) % field["vocab"]]
                      for field, i in zip(bspec["item_fields"], ids)]
        item = np.concatenate(item_parts + [np.asarray(dense, dtype=f32)])
        z = np.maximum(ctx_pre + w0[:, ctx.size:] @ item, f32(0))
        for i in range(1, len(bspec["hidden"])):
            z = np.maximum(w(bb, f"mlp.{i}.weight") @ z + w(bb, f"mlp.{i}.bias"), f32(0))
        a = np.maximum(w(hd, "adapter.down.weight") @ z + w(hd, "adapter.down.bias"), f32(0))
        t = z + w(hd, "adapter.up.weight") @ a + w(hd, "adapter.up.bias")
        for j in range(len(hspec["tower"])):
            t = np.maximum(w(hd, f"tower.{j}.weight") @ t + w(hd, f"tower.{j}.bias"), f32(0))
        logits = w(hd, "output.weight") @ t + w(hd, "output.bias")
        if k:
            v = w(bb, "item_tower.weight") @ item + w(bb, "item_tower.bias")
            logits = logits + wo @ v
        rows.append(f32(1) / (f32(1) + np.exp(-logits)))
    return np.array(rows, dtype=f32).reshape(len(rows), len(hspec["outputs"]))


def random_request(rng: np.random.Generator, n: int, spec: dict = BACKBONE_SPEC) -> dict:
    return {
        "context_ids": rng.integers(0, 1 << 32, len(spec["context_fields"]), dtype=np.uint64).astype(np.uint32),
        "context_dense": rng.standard_normal(spec["context_dense"]).astype(np.float32),
        "item_ids": rng.integers(0, 1 << 32, (n, len(spec["item_fields"])), dtype=np.uint64).astype(np.uint32),
        "item_dense": rng.standard_normal((n, spec["item_dense"])).astype(np.float32),
    }


@pytest.fixture(scope="module")
def weights() -> tuple[dict, dict]:
    return sm.random_backbone(BACKBONE_SPEC, 11), sm.random_head(HEAD_SPEC, 12)


@pytest.fixture(scope="module")
def weights_k() -> tuple[dict, dict, dict]:
    """Interaction backbone, and heads on its narrow and packed output paths."""
    return (sm.random_backbone(BACKBONE_SPEC_K, 11), sm.random_head(HEAD_SPEC_K, 12),
            sm.random_head(HEAD_SPEC_K_WIDE, 13))


# ---------------------------------------------------------------------------------------------
# fmix32 and row hashing
# ---------------------------------------------------------------------------------------------

def test_fmix32_matches_pure_python():
    ids = [0, 1, 2, 3, 255, 65535, 65536, 12345, 0x7FFFFFFF, 0x80000000, 0xDEADBEEF, 0xFFFFFFFE, 0xFFFFFFFF]
    ids += [int(v) for v in np.random.default_rng(0).integers(0, 1 << 32, 500, dtype=np.uint64)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # wrapping multiplies must not warn
        got = sm.fmix32(np.array(ids, dtype=np.uint32))
    assert got.dtype == np.uint32
    assert [int(v) for v in got] == [fmix32_int(i) for i in ids]


def test_fmix32_known_values():
    assert int(sm.fmix32(np.array([0], dtype=np.uint32))[0]) == 0
    assert int(sm.fmix32(np.array([1], dtype=np.uint32))[0]) == 0x514E28B7  # published fmix32(1)
    assert fmix32_int(1) == 0x514E28B7


def test_fmix32_keeps_shape_accepts_python_ints_and_rejects_out_of_range():
    grid = np.arange(12, dtype=np.uint32).reshape(3, 4) * np.uint32(0x10001)
    out = sm.fmix32(grid)
    assert out.shape == (3, 4)
    assert int(out[2, 3]) == fmix32_int(int(grid[2, 3]))
    assert int(sm.fmix32(0xFFFFFFFF)) == fmix32_int(0xFFFFFFFF)
    assert [int(v) for v in sm.fmix32([0xFFFFFFFF, 7])] == [fmix32_int(0xFFFFFFFF), fmix32_int(7)]
    with pytest.raises(ValueError):
        sm.fmix32([1 << 32])
    with pytest.raises(ValueError):
        sm.fmix32([-1])


def test_hash_rows_is_fmix32_mod_vocab():
    ids = [0, 1, 0xFFFFFFFF, 0x9E3779B9]
    assert [int(r) for r in sm.hash_rows(ids, 97)] == [fmix32_int(i) % 97 for i in ids]


# ---------------------------------------------------------------------------------------------
# sha256
# ---------------------------------------------------------------------------------------------

def test_tensor_sha256_uses_bytewise_name_order_not_insertion_order():
    rng = np.random.default_rng(1)
    # Byte-wise order: "B" < "a" < "mlp.10.weight" < "mlp.2.weight" (not natural/numeric order).
    names = ["mlp.2.weight", "a", "mlp.10.weight", "B"]
    tensors = {name: rng.standard_normal((i + 1, 3)).astype(np.float32) for i, name in enumerate(names)}
    reordered = {name: tensors[name] for name in reversed(names)}
    expected = hashlib.sha256(b"".join(tensors[n].tobytes() for n in ["B", "a", "mlp.10.weight", "mlp.2.weight"]))
    assert sm.tensor_sha256(tensors) == sm.tensor_sha256(reordered) == expected.hexdigest()
    # Raw bytes hash identically to the arrays they hold.
    assert sm.tensor_sha256({n: t.tobytes() for n, t in tensors.items()}) == expected.hexdigest()


def test_tensor_sha256_covers_stored_bytes():
    tensors = {"x": np.arange(6, dtype=np.float32).reshape(2, 3)}
    base = sm.tensor_sha256(tensors)
    assert sm.tensor_sha256(sm.to_storage(tensors, "F32")) == base
    assert sm.tensor_sha256(sm.to_storage(tensors, "F16")) != base
    flipped = bytearray(tensors["x"].tobytes())
    flipped[5] ^= 1
    assert sm.tensor_sha256({"x": bytes(flipped)}) != base
    big_endian = tensors["x"].astype(">f4")
    assert sm.tensor_sha256({"x": big_endian}) == base  # hashed as stored: little-endian


# ---------------------------------------------------------------------------------------------
# dtype conversion and files
# ---------------------------------------------------------------------------------------------

def test_bf16_rounds_to_nearest_even():
    one_ulp = 2.0 ** -7
    values = np.array([1.0, 1.0 + one_ulp / 2, 1.0 + 1.5 * one_ulp, -2.0, 0.0, 3.0e38], dtype=np.float32)
    bits = sm.float32_to_bf16_bits(values)
    assert [hex(int(b)) for b in bits[:5]] == ["0x3f80", "0x3f80", "0x3f82", "0xc000", "0x0"]
    assert np.isfinite(sm.bf16_bits_to_float32(bits[5]))
    assert np.isnan(sm.bf16_bits_to_float32(sm.float32_to_bf16_bits(np.array([np.nan], np.float32))))[0]


@pytest.mark.parametrize("dtype,rel", [("F32", 0.0), ("F16", 2.0 ** -11), ("BF16", 2.0 ** -8)])
def test_quantize_error_bound(weights, dtype, rel):
    values = weights[1]["adapter.down.weight"]
    widened = sm.quantize({"w": values}, dtype)["w"]
    assert widened.dtype == np.float32
    assert np.all(np.abs(widened - values) <= rel * np.abs(values) + 1e-7)


@pytest.mark.parametrize("dtype", ["F32", "F16"])
def test_save_model_round_trips_through_safetensors_numpy(tmp_path, weights, dtype):
    path = tmp_path / "backbone.safetensors"
    stored = sm.save_model(path, "backbone", BACKBONE_SPEC, weights[0], dtype=dtype, training={"seed": 11})
    loaded = safetensors.numpy.load_file(str(path))
    assert set(loaded) == set(sm.backbone_tensor_shapes(BACKBONE_SPEC))
    for name, value in loaded.items():
        assert value.dtype == stored[name].dtype == (np.float32 if dtype == "F32" else np.float16)
        np.testing.assert_array_equal(value, stored[name])
        np.testing.assert_array_equal(value.astype(np.float32), sm.quantize({name: weights[0][name]}, dtype)[name])
    with safetensors.safe_open(str(path), framework="np") as f:
        metadata = f.metadata()
    assert metadata[sm.META_FORMAT] == "1"
    assert metadata[sm.META_KIND] == "backbone"
    assert json.loads(metadata[sm.META_SPEC]) == BACKBONE_SPEC
    assert json.loads(metadata[sm.META_TRAINING]) == {"seed": 11}
    assert metadata[sm.META_SHA256] == sm.tensor_sha256(loaded)
    model = sm.load_model(path, "backbone")
    assert all(np.array_equal(model.tensors[n], loaded[n].astype(np.float32)) for n in loaded)


def test_save_model_bf16_round_trips(tmp_path, weights):
    path = tmp_path / "head.safetensors"
    stored = sm.save_model(path, "head", HEAD_SPEC, weights[1], dtype="BF16")
    entries = dict(safetensors.deserialize(path.read_bytes()))
    assert set(entries) == set(sm.head_tensor_shapes(HEAD_SPEC))
    raw = {}
    for name, entry in entries.items():
        assert entry["dtype"] == "BF16"
        assert tuple(entry["shape"]) == stored[name].shape
        assert bytes(entry["data"]) == stored[name].tobytes()
        raw[name] = bytes(entry["data"])
    with safetensors.safe_open(str(path), framework="np") as f:
        assert f.metadata()[sm.META_SHA256] == sm.tensor_sha256(raw)
    model = sm.load_model(path, "head")
    assert model.dtypes == {name: "BF16" for name in entries}
    for name, value in sm.quantize(weights[1], "BF16").items():
        np.testing.assert_array_equal(model.tensors[name], value)


def test_hand_encoded_file_reads_back_with_safetensors(tmp_path):
    entries = {"b": ("F32", (2,), np.array([1, 2], "<f4").tobytes()),
               "a": ("F16", (3,), np.array([1, 2, 3], "<f2").tobytes())}
    path = tmp_path / "hand.safetensors"
    path.write_bytes(sm.encode_safetensors(entries, {"k": "v"}))
    loaded = safetensors.numpy.load_file(str(path))
    np.testing.assert_array_equal(loaded["b"], [1, 2])
    np.testing.assert_array_equal(loaded["a"], [1, 2, 3])
    metadata, raw = sm.read_safetensors(path)
    assert metadata == {"k": "v"} and raw["a"].dtype == "F16" and raw["b"].shape == (2,)


# ---------------------------------------------------------------------------------------------
# Forward pass
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 3, 16, 17, 64])
def test_forward_matches_independent_float32(weights, n):
    bb, hd = weights
    req = random_request(np.random.default_rng(n), n)
    ref = sm.forward(bb, BACKBONE_SPEC, hd, HEAD_SPEC, **req)
    alt = forward_float32(bb, BACKBONE_SPEC, hd, HEAD_SPEC, **req)
    assert ref.shape == alt.shape == (n, len(HEAD_SPEC["outputs"]))
    assert ref.dtype == np.float64
    np.testing.assert_allclose(ref, alt, rtol=0, atol=1e-5)


def test_forward_scores_are_not_saturated(weights):
    bb, hd = weights
    scores = sm.forward(bb, BACKBONE_SPEC, hd, HEAD_SPEC, **random_request(np.random.default_rng(5), 256))
    assert 0.01 < scores.mean() < 0.5
    assert scores.min() > 1e-4 and scores.max() < 0.99
    assert scores.std() > 0.01  # candidates are actually distinguished


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("n", [1, 3, 16, 17, 64])
def test_forward_with_interaction_matches_independent_float32(weights_k, n, wide):
    bb, narrow, packed = weights_k
    hspec, hd = (HEAD_SPEC_K_WIDE, packed) if wide else (HEAD_SPEC_K, narrow)
    req = random_request(np.random.default_rng(n), n)
    ref = sm.forward(bb, BACKBONE_SPEC_K, hd, hspec, **req)
    alt = forward_float32(bb, BACKBONE_SPEC_K, hd, hspec, **req)
    assert ref.shape == alt.shape == (n, len(hspec["outputs"]))
    np.testing.assert_allclose(ref, alt, rtol=0, atol=1e-5)


def test_interaction_term_matters_and_stays_modest(weights_k):
    bb, hd, _ = weights_k
    req = random_request(np.random.default_rng(5), 256)
    with_term = sm.forward(bb, BACKBONE_SPEC_K, hd, HEAD_SPEC_K, **req)
    assert 0.01 < with_term.mean() < 0.5 and with_term.min() > 1e-4 and with_term.max() < 0.99
    # The same head without its matrices: a different score for every candidate.
    plain_spec = {k: v for k, v in HEAD_SPEC_K.items() if k != "interaction"}
    plain = {k: v for k, v in hd.items() if k != "interaction.weight"}
    without = sm.forward(bb, BACKBONE_SPEC_K, plain, plain_spec, **req)
    assert np.all(np.abs(with_term - without) > 1e-7)
    # A transposed A (u and v swapped) is told apart.
    swapped = dict(hd, **{"interaction.weight": np.transpose(hd["interaction.weight"], (0, 2, 1))})
    assert np.abs(sm.forward(bb, BACKBONE_SPEC_K, swapped, HEAD_SPEC_K, **req) - with_term).max() > 1e-3


def test_head_without_interaction_ignores_the_towers(weights):
    # Towers are drawn after the MLP, so the interaction backbone shares the plain one's weights.
    bb, hd = weights
    bb_k = sm.random_backbone(BACKBONE_SPEC_K, 11)
    assert all(np.array_equal(bb[name], bb_k[name]) for name in bb)
    req = random_request(np.random.default_rng(2), 9)
    np.testing.assert_array_equal(sm.forward(bb_k, BACKBONE_SPEC_K, hd, HEAD_SPEC, **req),
                                  sm.forward(bb, BACKBONE_SPEC, hd, HEAD_SPEC, **req))


def test_interaction_pairing_is_checked():
    sm.check_pair(BACKBONE_SPEC_K, HEAD_SPEC)  # a plain head on a backbone with towers is fine
    with pytest.raises(sm.ModelFormatError, match="needs a backbone with interaction towers"):
        sm.check_pair(BACKBONE_SPEC, HEAD_SPEC_K)
    with pytest.raises(sm.ModelFormatError, match=f"interaction {K + 1} does not match the backbone's interaction dim {K}"):
        sm.check_pair(BACKBONE_SPEC_K, dict(HEAD_SPEC_K, interaction=K + 1))


@pytest.mark.parametrize("interaction,problem", [
    ({"kind": "dot", "dim": 4}, "interaction kind"),
    ({"kind": "two_tower", "dim": 0}, "interaction dim"),
    ({"kind": "two_tower", "dim": 257}, "interaction dim"),
    ({"kind": "two_tower"}, "interaction dim"),
    (4, "interaction must be an object"),
])
def test_backbone_interaction_spec_is_validated(interaction, problem):
    problems = sm.validate_backbone_spec(dict(BACKBONE_SPEC, interaction=interaction))
    assert len(problems) == 1 and problem in problems[0], problems


def test_two_tower_needs_context_features():
    spec = dict(BACKBONE_SPEC_K, context_fields=[], context_dense=0)
    assert sm.validate_backbone_spec(spec) == ["spec: interaction two_tower needs context features for its user tower"]


@pytest.mark.parametrize("interaction", [-1, 257, 2.5, True])
def test_head_interaction_spec_is_validated(interaction):
    problems = sm.validate_head_spec(dict(HEAD_SPEC, interaction=interaction))
    assert len(problems) == 1 and "interaction" in problems[0], problems


def test_interaction_tensor_shapes():
    shapes = sm.backbone_tensor_shapes(BACKBONE_SPEC_K)
    assert shapes["user_tower.weight"] == (K, 8 + 4 + 3) and shapes["user_tower.bias"] == (K,)
    assert shapes["item_tower.weight"] == (K, 8 + 4 + 4 + 5) and shapes["item_tower.bias"] == (K,)
    assert sm.head_tensor_shapes(HEAD_SPEC_K_WIDE)["interaction.weight"] == (6, K, K)
    assert "interaction.weight" not in sm.head_tensor_shapes(dict(HEAD_SPEC, interaction=0))
    assert not {"user_tower.weight", "item_tower.weight"} & set(sm.backbone_tensor_shapes(BACKBONE_SPEC))


def test_forward_rejects_mismatched_head(weights):
    bb, _ = weights
    spec = dict(HEAD_SPEC, input=HEAD_SPEC["input"] + 1)
    with pytest.raises(sm.ModelFormatError, match="input"):
        sm.forward(bb, BACKBONE_SPEC, sm.random_head(spec, 0), spec, **random_request(np.random.default_rng(0), 2))


# ---------------------------------------------------------------------------------------------
# make_interop_case
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype,extra", [("F32", []), ("F16", []), ("BF16", []),
                                         ("F32", ["--interaction", "12"]),
                                         ("BF16", ["--interaction", "12", "--outputs", "6"])])
def test_make_interop_case(tmp_path, dtype, extra):
    assert make_interop_case.main([str(tmp_path), "--seed", "7", "--dtype", dtype] + extra) == 0
    cases = json.loads((tmp_path / "cases.json").read_text())
    assert isinstance(cases, list) and len(cases) >= 5
    assert {1, 3, 16, 17, 64} <= {len(c["item_ids"]) for c in cases}
    all_ids = [i for c in cases for row in c["item_ids"] for i in row] + [i for c in cases for i in c["context_ids"]]
    assert 0 <= min(all_ids) and max(all_ids) <= _M32 and max(all_ids) > 1 << 31

    backbone = sm.load_model(tmp_path / "backbone.safetensors", "backbone")
    head = sm.load_model(tmp_path / "head.safetensors", "head")
    assert head.spec["scene"] == "apparel"
    assert set(backbone.dtypes.values()) == set(head.dtypes.values()) == {dtype}
    k = int(extra[1]) if extra else 0
    assert sm.backbone_interaction_dim(backbone.spec) == sm.head_interaction_dim(head.spec) == k
    assert ("interaction" in head.spec) == bool(k)  # old-style specs stay as they were
    assert len(head.spec["outputs"]) == (int(extra[3]) if len(extra) > 2 else 2)
    for case in cases:
        n, k = len(case["item_ids"]), len(head.spec["outputs"])
        scores = np.array(case["scores"])
        assert scores.shape == (n, k)
        assert np.all((scores > 1e-4) & (scores < 0.9999))
        # Dense values survive a float32 parse unchanged.
        dense = np.array(case["item_dense"], dtype=np.float64).reshape(n, -1)
        assert np.array_equal(dense.astype(np.float32).astype(np.float64), dense)
        alt = forward_float32(backbone.tensors, backbone.spec, head.tensors, head.spec,
                              case["context_ids"], case["context_dense"], case["item_ids"], case["item_dense"])
        np.testing.assert_allclose(scores, alt, rtol=0, atol=1e-5)


def test_make_interop_case_is_deterministic(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    make_interop_case.write_case(str(first), seed=3, dtype="F16")
    make_interop_case.write_case(str(second), seed=3, dtype="F16")
    assert (first / "cases.json").read_bytes() == (second / "cases.json").read_bytes()
    # The safetensors writer may order __metadata__ keys differently, so compare contents.
    for name in ("backbone.safetensors", "head.safetensors"):
        meta_a, raw_a = sm.read_safetensors(first / name)
        meta_b, raw_b = sm.read_safetensors(second / name)
        assert meta_a == meta_b and raw_a == raw_b


# ---------------------------------------------------------------------------------------------
# make_bad_models
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("bad")
    assert make_bad_models.main([str(out)]) == 0
    return out


# Defects in the safetensors container itself; all other files are valid safetensors.
CONTAINER_DEFECTS = {"truncated.safetensors", "header_length_beyond_file.safetensors",
                     "header_length_oversized.safetensors", "header_not_json.safetensors",
                     "overlapping_offsets.safetensors"}


def test_bad_models_directory_contents(bad_dir):
    expected = json.loads((bad_dir / "expected.json").read_text())
    assert set(expected) == set(make_bad_models.BAD_MODELS)
    files = {p.name for p in bad_dir.iterdir()}
    assert files == set(expected) | {"backbone.safetensors", "head.safetensors", "backbone_interaction.safetensors",
                                     "head_interaction.safetensors", "expected.json"}
    for entry in expected.values():
        assert entry["kind"] in sm.KINDS
        assert entry["backbone"] in files
        assert entry["any_of"] and all(s == s.lower() for s in entry["any_of"])
    assert CONTAINER_DEFECTS <= set(expected)


@pytest.mark.parametrize("suffix", ["", "_interaction"])
def test_bad_models_good_pair_loads(bad_dir, suffix):
    backbone = sm.load_model(bad_dir / f"backbone{suffix}.safetensors", "backbone")
    head = sm.load_model(bad_dir / f"head{suffix}.safetensors", "head")
    sm.check_pair(backbone.spec, head.spec)
    safetensors.numpy.load_file(str(bad_dir / f"backbone{suffix}.safetensors"))


@pytest.mark.parametrize("file_name", sorted(make_bad_models.BAD_MODELS))
def test_bad_model_is_rejected_for_its_one_defect(bad_dir, file_name):
    entry = json.loads((bad_dir / "expected.json").read_text())[file_name]
    path = bad_dir / file_name
    good_backbone = sm.load_model(bad_dir / entry["backbone"], "backbone")
    with pytest.raises(sm.ModelFormatError) as info:
        model = sm.load_model(path, entry["kind"])
        sm.check_pair(good_backbone.spec if entry["kind"] == "head" else model.spec,
                      model.spec if entry["kind"] == "head" else
                      sm.load_model(bad_dir / "head.safetensors", "head").spec)
    assert len(info.value.problems) == 1, info.value.problems
    message = str(info.value).lower()
    assert any(s in message for s in entry["any_of"]), message
    if entry["tensor"] is not None:
        assert entry["tensor"] in message

    # Independent check with the safetensors package: only container defects break the container.
    if file_name in CONTAINER_DEFECTS:
        with pytest.raises(Exception):
            safetensors.deserialize(path.read_bytes())
    else:
        entries = dict(safetensors.deserialize(path.read_bytes()))
        assert entries
