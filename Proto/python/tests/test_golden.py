"""The committed golden vectors decode to their JSON twins and re-encode byte for byte."""

import json

import numpy as np
import pytest

from conftest import GOLDEN_DIR
from scenescore_client import wire

REQUESTS = sorted(p.stem for p in GOLDEN_DIR.glob("request-*.bin"))
RESPONSES = sorted(p.stem for p in GOLDEN_DIR.glob("response-*.bin"))
INVALID_INDEX = json.loads((GOLDEN_DIR / "invalid" / "invalid.json").read_text())


def _load(name: str) -> tuple[bytes, dict]:
    return (GOLDEN_DIR / f"{name}.bin").read_bytes(), json.loads((GOLDEN_DIR / f"{name}.json").read_text())


def test_expected_vectors_exist():
    assert {"request-1cand", "request-4cand", "request-odd"} <= set(REQUESTS)
    assert {"response-1cand", "response-3cand"} <= set(RESPONSES)
    for name in REQUESTS + RESPONSES:
        assert (GOLDEN_DIR / f"{name}.json").is_file()


@pytest.mark.parametrize("name", REQUESTS)
def test_request_decodes_to_its_json(name):
    data, document = _load(name)
    decoded = wire.decode_request(data)
    expected = wire.request_from_json(document)
    assert decoded.scene == expected.scene == document["scene"]
    assert decoded.request_id == document["request_id"]
    for field in ("context_ids", "context_dense", "item_ids", "item_dense"):
        got, want = getattr(decoded, field), getattr(expected, field)
        assert got.dtype == want.dtype and got.shape == want.shape, field
        np.testing.assert_array_equal(got, want, err_msg=field)
    assert decoded.to_json() == document


@pytest.mark.parametrize("name", REQUESTS)
def test_request_json_encodes_to_its_bytes(name):
    data, document = _load(name)
    assert wire.request_from_json(document).encode() == data


@pytest.mark.parametrize("name", REQUESTS)
def test_request_sections_are_aligned_and_zero_padded(name):
    data, _ = _load(name)
    request = wire.decode_request(data)
    sections, length = wire.request_layout(
        n_candidates=request.n_candidates,
        n_context_ids=request.context_ids.size,
        n_context_dense=request.context_dense.size,
        n_item_ids=request.item_ids.shape[1],
        n_item_dense=request.item_dense.shape[1],
        scene_len=len(request.scene),
    )
    assert length == len(data)
    for section in sections:
        assert section.offset % 8 == 0
        assert data[section.end : section.padded_end] == bytes(section.padded_end - section.end)


@pytest.mark.parametrize("name", RESPONSES)
def test_response_decodes_to_its_json(name):
    data, document = _load(name)
    decoded = wire.decode_response(data)
    assert decoded.to_json() == document
    assert decoded.scores.dtype == np.float32
    assert decoded.scores.shape == (len(document["scores"]), len(document["outputs"]))


@pytest.mark.parametrize("name", RESPONSES)
def test_response_json_encodes_to_its_bytes(name):
    data, document = _load(name)
    assert wire.response_from_json(document).encode() == data


def test_golden_request_header_bytes():
    data, _ = _load("request-4cand")
    assert data[:4] == b"SSQ1"
    assert data[8:16] == bytes.fromhex("efcdab8967452301")  # request_id is little-endian


def test_invalid_index_matches_directory():
    on_disk = {p.name for p in (GOLDEN_DIR / "invalid").glob("*.bin")}
    assert on_disk == set(INVALID_INDEX)
    required = {
        "bad-magic.bin", "version-2.bin", "nonzero-flags.bin", "truncated.bin", "trailing-byte.bin",
        "n-candidates-overflow.bin", "nonzero-padding.bin", "nan-item-dense.bin", "uppercase-scene.bin",
    }
    assert required <= on_disk


@pytest.mark.parametrize("file_name", sorted(INVALID_INDEX))
def test_invalid_request_is_rejected(file_name):
    expected = INVALID_INDEX[file_name]
    data = (GOLDEN_DIR / "invalid" / file_name).read_bytes()
    with pytest.raises(wire.WireError) as caught:
        wire.decode_request(data)
    assert caught.value.status == expected["status"]
    assert caught.value.problem_type == expected["type"]
    assert expected["detail_contains"] in caught.value.detail
