"""Encode/decode round trips over random shapes, plus the decoders' strictness."""

import struct

import numpy as np
import pytest

from scenescore_client import wire


def _random_request(rng, n, n_ci, n_cd, n_ii, n_id, scene="apparel"):
    return dict(
        scene=scene,
        context_ids=rng.integers(0, 2**32, size=n_ci, dtype=np.uint32),
        context_dense=rng.standard_normal(n_cd).astype(np.float32),
        item_ids=rng.integers(0, 2**32, size=(n, n_ii), dtype=np.uint32),
        item_dense=rng.standard_normal((n, n_id)).astype(np.float32),
        request_id=int(rng.integers(0, 2**63)) * 2 + 1,
    )


def _assert_request_equal(decoded: wire.ScoreRequest, fields: dict):
    assert decoded.scene == fields["scene"]
    assert decoded.request_id == fields["request_id"]
    for name in ("context_ids", "context_dense", "item_ids", "item_dense"):
        got = getattr(decoded, name)
        want = np.asarray(fields[name])
        assert got.shape == want.shape, name
        assert got.dtype == (np.uint32 if "ids" in name else np.float32), name
        np.testing.assert_array_equal(got, want, err_msg=name)


SHAPES = [
    # n_candidates, n_context_ids, n_context_dense, n_item_ids, n_item_dense
    (1, 1, 4, 3, 17),
    (1, 0, 0, 0, 0),
    (3, 3, 0, 5, 7),
    (7, 1, 1, 1, 1),
    (5, 9, 0, 3, 0),
    (2, 0, 5, 0, 11),
    (1024, 2, 6, 3, 16),
    (1024, 1, 0, 1, 9),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_request_round_trip(shape):
    rng = np.random.default_rng(sum(shape))
    fields = _random_request(rng, *shape)
    data = wire.encode_request(**fields)
    sections, length = wire.request_layout(
        n_candidates=shape[0], n_context_ids=shape[1], n_context_dense=shape[2],
        n_item_ids=shape[3], n_item_dense=shape[4], scene_len=len(fields["scene"]),
    )
    assert len(data) == length
    assert all(section.offset % 8 == 0 for section in sections)
    _assert_request_equal(wire.decode_request(data), fields)


def test_random_request_shapes_round_trip():
    rng = np.random.default_rng(2024)
    for _ in range(200):
        n = int(rng.integers(1, 40))
        counts = [int(c) for c in rng.integers(0, 20, size=4)]
        scene = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz0123456789_-"), size=int(rng.integers(1, 65))))
        fields = _random_request(rng, n, *counts, scene=scene)
        data = wire.encode_request(**fields)
        assert len(data) % 8 == 0
        _assert_request_equal(wire.decode_request(data), fields)
        assert wire.request_from_json(wire.decode_request(data).to_json()).encode() == data


def test_length_formula_example():
    # scene 7 -> 8, 1 ctx id 4 -> 8, 4 ctx dense 16, 3 item ids 12 -> 16, 17 item dense 68 -> 72
    _, length = wire.request_layout(
        n_candidates=1, n_context_ids=1, n_context_dense=4, n_item_ids=3, n_item_dense=17, scene_len=7
    )
    assert length == 32 + 8 + 8 + 16 + 16 + 72 == 152


def test_candidate_limit():
    fields = _random_request(np.random.default_rng(1), 1025, 1, 1, 1, 1)
    data = wire.encode_request(**fields)
    with pytest.raises(wire.WireError) as caught:
        wire.decode_request(data)
    assert caught.value.status == 413 and caught.value.slug == "too-many-candidates"
    assert "n_candidates 1025 exceeds the limit of 1024" in caught.value.detail
    assert wire.decode_request(data, max_candidates=None).n_candidates == 1025
    with pytest.raises(wire.WireError, match="exceeds the limit of 8"):
        wire.decode_request(wire.encode_request(**_random_request(np.random.default_rng(2), 9, 0, 0, 1, 0)), max_candidates=8)


def _odd_request_bytes() -> bytes:
    return wire.encode_request(**_random_request(np.random.default_rng(5), 3, 3, 1, 5, 7, scene="toys"))


def test_every_truncation_and_extension_is_rejected():
    data = _odd_request_bytes()
    for cut in range(len(data)):
        with pytest.raises(wire.WireError):
            wire.decode_request(data[:cut])
    for extra in (b"\x00", bytes(8)):
        with pytest.raises(wire.WireError, match=f"body is {len(data) + len(extra)} bytes, header implies {len(data)}"):
            wire.decode_request(data + extra)


def test_every_padding_byte_is_checked():
    data = _odd_request_bytes()
    request = wire.decode_request(data)
    sections, _ = wire.request_layout(
        n_candidates=3, n_context_ids=3, n_context_dense=1, n_item_ids=5, n_item_dense=7, scene_len=4
    )
    padding_offsets = [o for s in sections for o in range(s.end, s.padded_end)]
    assert len(padding_offsets) == 4 + 4 + 4 + 4 + 4  # scene, ctx ids, ctx dense, item ids, item dense
    for offset in padding_offsets:
        corrupt = bytearray(data)
        corrupt[offset] = 0x2A
        with pytest.raises(wire.WireError, match=f"non-zero padding byte 0x2a at offset {offset} "):
            wire.decode_request(bytes(corrupt))
    assert request.n_candidates == 3


@pytest.mark.parametrize(
    "bits, name", [(0x7FC00000, "NaN"), (0xFFC00001, "NaN"), (0x7F800000, "+Inf"), (0xFF800000, "-Inf")]
)
def test_non_finite_values_are_named(bits, name):
    data = _odd_request_bytes()
    sections, _ = wire.request_layout(
        n_candidates=3, n_context_ids=3, n_context_dense=1, n_item_ids=5, n_item_dense=7, scene_len=4
    )
    offsets = {s.name: s.offset for s in sections}
    corrupt = bytearray(data)
    struct.pack_into("<I", corrupt, offsets[wire.ITEM_DENSE] + 4 * 9, bits)
    with pytest.raises(wire.WireError) as caught:
        wire.decode_request(bytes(corrupt))
    assert caught.value.detail == f"non-finite value {name} in item dense at index 9 (candidate 1, value 2)"
    corrupt = bytearray(data)
    struct.pack_into("<I", corrupt, offsets[wire.CONTEXT_DENSE], bits)
    with pytest.raises(wire.WireError) as caught:
        wire.decode_request(bytes(corrupt))
    assert caught.value.detail == f"non-finite value {name} in context dense at index 0"


def test_header_field_errors():
    data = _odd_request_bytes()
    cases = [
        (0, "<4s", b"SSQ2", "bad magic: expected 53 53 51 31 (\"SSQ1\"), got 53 53 51 32"),
        (4, "<H", 0, "unsupported version 0, expected 1"),
        (6, "<H", 0x8000, "flags must be 0 in version 1, got 0x8000"),
        (30, "<H", 2, "reserved header field must be 0, got 0x0002"),
        (16, "<I", 0, "n_candidates must be at least 1"),
        (28, "<H", 0, "scene_len must be between 1 and 64, got 0"),
        (28, "<H", 65, "scene_len must be between 1 and 64, got 65"),
        (20, "<H", 0xFFFF, "header implies"),
        (24, "<H", 0xFFFF, "header implies"),
    ]
    for offset, fmt, value, message in cases:
        corrupt = bytearray(data)
        struct.pack_into(fmt, corrupt, offset, value)
        with pytest.raises(wire.WireError) as caught:
            wire.decode_request(bytes(corrupt))
        assert message in caught.value.detail
        assert caught.value.status == 400


def test_checks_run_in_spec_order():
    data = bytearray(_odd_request_bytes())
    data[0:4] = b"XXXX"
    data[4] = 9  # bad version too: magic wins
    with pytest.raises(wire.WireError, match="bad magic"):
        wire.decode_request(bytes(data))
    data = bytearray(_odd_request_bytes())
    struct.pack_into("<I", data, 16, 5000)  # too many candidates and wrong length: the limit wins
    with pytest.raises(wire.WireError, match="exceeds the limit"):
        wire.decode_request(bytes(data))
    data = bytearray(_odd_request_bytes())
    data[32] = ord("T")  # bad scene and a trailing byte: the length wins
    with pytest.raises(wire.WireError, match="header implies"):
        wire.decode_request(bytes(data) + b"\x00")


@pytest.mark.parametrize("scene", ["Apparel", "app arel", "café", "a.b", "a/b", "", "x" * 65])
def test_bad_scene_names_are_rejected_when_encoding(scene):
    with pytest.raises(wire.WireError, match="scene"):
        wire.encode_request(scene, [], [], np.zeros((1, 0)), np.zeros((1, 1)))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(item_ids=np.zeros((0, 2), np.uint32), item_dense=np.zeros((0, 1))), "at least 1"),
        (dict(item_ids=np.zeros((2, 1), np.uint32), item_dense=np.zeros((3, 1))), "2 candidates but item dense has 3"),
        (dict(item_dense=np.array([[np.nan]])), "non-finite value NaN in item dense at index 0"),
        (dict(item_dense=np.array([[1e39]])), r"non-finite value \+Inf in item dense"),
        (dict(context_ids=[-1]), "context ids must be in 0...4294967295, got -1"),
        (dict(context_ids=[2**32]), "got 4294967296"),
        (dict(context_ids=[1.5]), "context ids must be integers"),
        (dict(context_dense=[[1.0]]), "context dense must be a 1-D array"),
        (dict(context_ids=np.zeros(70000, np.uint32)), "n_context_ids is 70000"),
        (dict(request_id=2**64), "request_id must be in"),
        (dict(request_id=True), "request_id must be an integer"),
    ],
)
def test_encoder_rejects_what_the_decoder_would(kwargs, message):
    fields = dict(scene="apparel", context_ids=[1], context_dense=[0.5], item_ids=[[1, 2]], item_dense=[[0.25]])
    fields.update(kwargs)
    with pytest.raises(wire.WireError, match=message):
        wire.encode_request(**fields)


def test_encoder_accepts_python_lists_and_float64():
    data = wire.encode_request("apparel", [1, 2], [0.1], [[3], [4]], [[0.5, 1e-3], [2.0, -3.0]], request_id=9)
    decoded = wire.decode_request(data)
    assert decoded.context_dense[0] == np.float32(0.1)
    assert decoded.item_dense[0, 1] == np.float32(1e-3)


# -- responses ---------------------------------------------------------------


@pytest.mark.parametrize("n, k", [(1, 1), (1, 2), (3, 3), (5, 7), (1024, 2), (1024, 5)])
def test_response_round_trip(n, k):
    rng = np.random.default_rng(n * 31 + k)
    outputs = [f"out_{i}" * (i + 1) for i in range(k)]
    scores = rng.random((n, k), dtype=np.float32)
    scores[0, 0] = 0.0
    scores[-1, -1] = 1.0
    data = wire.encode_response(12345, "shoes-eu", "shoes-eu-3", outputs, scores)
    assert len(data) % 8 == 0
    decoded = wire.decode_response(data)
    assert (decoded.request_id, decoded.scene, decoded.head_version, decoded.outputs) == (
        12345, "shoes-eu", "shoes-eu-3", outputs
    )
    assert decoded.scores.dtype == np.float32
    np.testing.assert_array_equal(decoded.scores, scores)
    assert wire.response_from_json(decoded.to_json()).encode() == data


def test_response_with_unicode_head_version_and_output():
    data = wire.encode_response(1, "apparel", "ápparel-β", ["klick-ü"], [[0.5]])
    decoded = wire.decode_response(data)
    assert decoded.head_version == "ápparel-β" and decoded.outputs == ["klick-ü"]


def _response_bytes() -> bytes:
    return wire.encode_response(7, "apparel", "apparel-1", ["click", "purchase"], [[0.25, 0.5], [0.75, 1.0]])


def test_response_decoder_rejections():
    data = _response_bytes()  # head version at 40, names block (15 bytes) at 56, scores at 72
    def corrupt(offset, fmt, value):
        out = bytearray(data)
        struct.pack_into(fmt, out, offset, value)
        return bytes(out)
    cases = [
        (b"SSQ1" + data[4:], "bad magic"),
        (corrupt(4, "<H", 2), "unsupported version 2"),
        (corrupt(6, "<H", 1), "flags must be 0"),
        (corrupt(28, "<I", 1), "reserved header field must be 0"),
        (corrupt(16, "<I", 0), "n_candidates must be at least 1"),
        (corrupt(20, "<H", 0), "n_outputs must be at least 1"),
        (corrupt(24, "<H", 0), "head_version_len must be at least 1"),
        (data + bytes(8), "header implies"),
        (corrupt(39, "<B", 1), "non-zero padding byte 0x01 at offset 39 (after scene name)"),
        (corrupt(40, "<2s", b"\xff\xfe"), "head version \"\\xff\\xfeparel-1\" is not valid UTF-8"),
        (corrupt(56, "<B", 0), "output 0 has an empty name"),
        (corrupt(56, "<B", 14), "output names block ends before output 1"),
        (corrupt(62, "<B", 9), "output names block ends inside output 1"),
        (corrupt(62, "<B", 6), "output names block has 2 bytes after 2 names"),
        (corrupt(62, "<6s", b"\x05click"), "duplicate output name \"click\""),
        (corrupt(71, "<B", 1), "non-zero padding byte 0x01 at offset 71 (after output names)"),
        (corrupt(76, "<f", 1.5), "score 1.5 at index 1 (candidate 0, output 1) is outside [0, 1]"),
        (corrupt(80, "<f", -0.25), "score -0.25 at index 2 (candidate 1, output 0) is outside [0, 1]"),
        (corrupt(84, "<I", 0x7FC00000), "non-finite value NaN in scores at index 3 (candidate 1, output 1)"),
    ]
    for body, message in cases:
        with pytest.raises(wire.WireError) as caught:
            wire.decode_response(body)
        assert message in caught.value.detail, (message, caught.value.detail)


def test_response_encoder_validation():
    with pytest.raises(wire.WireError, match="outside"):
        wire.encode_response(1, "a", "v", ["x"], [[1.01]])
    with pytest.raises(wire.WireError, match="2 columns but there are 1 outputs"):
        wire.encode_response(1, "a", "v", ["x"], [[0.1, 0.2]])
    with pytest.raises(wire.WireError, match="duplicate output name"):
        wire.encode_response(1, "a", "v", ["x", "x"], [[0.1, 0.2]])
    with pytest.raises(wire.WireError, match="output 0 name must be 1...255 bytes"):
        wire.encode_response(1, "a", "v", ["y" * 256], [[0.1]])
    with pytest.raises(wire.WireError, match="head version must be"):
        wire.encode_response(1, "a", "", ["x"], [[0.1]])


# -- JSON variant ------------------------------------------------------------


def test_request_json_defaults_and_round_trip():
    request = wire.request_from_json({"scene": "apparel", "candidates": [{"dense": [0.5]}, {"dense": [1]}]})
    assert request.request_id == 0
    assert request.context_ids.shape == (0,) and request.context_dense.shape == (0,)
    assert request.item_ids.shape == (2, 0) and request.item_dense.shape == (2, 1)


@pytest.mark.parametrize(
    "document, status, message",
    [
        ([], 400, "request: expected an object"),
        ({"scene": "a"}, 400, "missing member 'candidates'"),
        ({"scene": "a", "candidates": [], "extra": 1}, 400, "unknown member 'extra'"),
        ({"scene": "a", "candidates": []}, 400, "n_candidates must be at least 1"),
        ({"scene": "A", "candidates": [{}]}, 400, "bad scene name"),
        ({"scene": "a", "request_id": -1, "candidates": [{}]}, 400, "request.request_id"),
        ({"scene": "a", "candidates": [{"ids": [1.5]}]}, 400, r"request.candidates\[0\].ids\[0\]: expected an integer"),
        ({"scene": "a", "candidates": [{"ids": [True]}]}, 400, "expected an integer"),
        ({"scene": "a", "candidates": [{"dense": ["1"]}]}, 400, "expected a number"),
        ({"scene": "a", "candidates": [{"dense": [1e39]}]}, 400, "not a finite float32"),
        ({"scene": "a", "context": {"dense": [float("nan")]}, "candidates": [{}]}, 400, "not a finite float32"),
        ({"scene": "a", "candidates": [{"ids": [1]}, {"ids": [1, 2]}]}, 422, "candidate 1: 2 ids, candidate 0 has 1"),
        ({"scene": "a", "candidates": [{}] * 1025}, 413, "exceeds the limit of 1024"),
    ],
)
def test_request_json_validation(document, status, message):
    with pytest.raises(wire.WireError, match=message) as caught:
        wire.request_from_json(document)
    assert caught.value.status == status


def test_response_json_validation():
    good = {"request_id": 1, "scene": "a", "head_version": "a-1", "outputs": ["c"], "scores": [[0.5]]}
    assert wire.response_from_json(good).scores.dtype == np.float32
    for change, message in [
        ({"scores": [[0.5, 0.5]]}, "expected an array of 1 numbers"),
        ({"scores": [[2.0]]}, "outside"),
        ({"outputs": []}, "non-empty array of strings"),
        ({"head_version": ""}, "non-empty string"),
    ]:
        with pytest.raises(wire.WireError, match=message):
            wire.response_from_json({**good, **change})
