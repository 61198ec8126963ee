#!/usr/bin/env python3
"""Write deliberately broken model files, one defect per file, next to a good pair.

Usage:
    python3 Tests/interop/make_bad_models.py OUTDIR [--seed S]

Writes OUTDIR/backbone.safetensors and OUTDIR/head.safetensors (a valid F32 pair), the same
with the two-tower interaction (backbone_interaction.safetensors, head_interaction.safetensors),
one broken file per failure (see BAD_MODELS) and OUTDIR/expected.json:

    {"<file>": {"kind": "backbone" | "head",   # load the file as this kind ...
                "backbone": "<file>",          # ... a head against this backbone, a backbone
                                               # with the good head;
                "any_of": ["substring", ...],  # loading must fail and the lower-cased error
                "tensor": "<name>" | null,     # message must contain one of any_of and,
                "defect": "<description>"}}    # if not null, the tensor name.

Each broken file differs from a valid file in exactly one way: where a defect leaves the
container well-formed, ``scenescore.sha256`` is computed over the broken data, so a loader
cannot reject it for the wrong reason (except in bad_sha256, where the hash is the defect).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys
from typing import Any, Callable

import numpy as np

import scenescore_model as sm

# A tiny pair: these files only exercise the loader's error paths.
BACKBONE_SPEC = {
    "context_fields": [{"name": "user", "vocab": 101, "dim": 4}],
    "context_dense": 2,
    "item_fields": [{"name": "item", "vocab": 257, "dim": 4},
                    {"name": "category", "vocab": 31, "dim": 2}],
    "item_dense": 3,
    "hidden": [12, 6],
    "activation": "relu",
}

HEAD_SPEC = {
    "scene": "apparel",
    "version": "apparel-1",
    "parent": "",
    "input": 6,
    "bottleneck": 3,
    "tower": [5],
    "outputs": ["click", "purchase"],
}

# The same pair with the two-tower interaction (k = INTERACTION_DIM).
INTERACTION_DIM = 4
BACKBONE_INTERACTION_SPEC = dict(BACKBONE_SPEC, interaction={"kind": sm.INTERACTION_TWO_TOWER, "dim": INTERACTION_DIM})
HEAD_INTERACTION_SPEC = dict(HEAD_SPEC, interaction=INTERACTION_DIM)

BACKBONE_FILE = "backbone.safetensors"
HEAD_FILE = "head.safetensors"
BACKBONE_INTERACTION_FILE = "backbone_interaction.safetensors"
HEAD_INTERACTION_FILE = "head_interaction.safetensors"
EXPECTED_FILE = "expected.json"

OVERSIZED_HEADER_LENGTH = 200 * 1024 * 1024  # a 200 MB header claim in a file of a few KB

Entries = dict[str, tuple[str, tuple[int, ...], bytes]]


class _Builder:
    """Builds the broken files from a good pair held in memory."""

    def __init__(self, seed: int):
        self.backbone = sm.to_storage(sm.random_backbone(BACKBONE_SPEC, [seed, 1]), "F32")
        self.head = sm.to_storage(sm.random_head(HEAD_SPEC, [seed, 2]), "F32")
        self.backbone_interaction = sm.to_storage(sm.random_backbone(BACKBONE_INTERACTION_SPEC, [seed, 5]), "F32")
        self.head_interaction = sm.to_storage(sm.random_head(HEAD_INTERACTION_SPEC, [seed, 6]), "F32")
        self.rng = np.random.default_rng([seed, 4])

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def entries(stored: dict[str, np.ndarray]) -> Entries:
        """Safetensors entries (dtype, shape, bytes) for float32 tensors."""
        return {name: ("F32", arr.shape, np.ascontiguousarray(arr, dtype="<f4").tobytes())
                for name, arr in stored.items()}

    @staticmethod
    def encode(kind: str, spec: dict, entries: Entries) -> bytes:
        """A file whose metadata (including sha256) is correct for exactly these entries."""
        metadata = sm.model_metadata(kind, spec, {name: raw for name, (_, _, raw) in entries.items()})
        return sm.encode_safetensors(entries, metadata)

    def good_backbone_bytes(self) -> bytes:
        return self.encode("backbone", BACKBONE_SPEC, self.entries(self.backbone))

    @staticmethod
    def split(blob: bytes) -> tuple[int, dict[str, Any]]:
        """(start of the data section, header object) of a well-formed file."""
        (header_len,) = struct.unpack_from("<Q", blob, 0)
        return 8 + header_len, json.loads(blob[8:8 + header_len])

    def with_value(self, stored: dict[str, np.ndarray], name: str, value: float) -> dict[str, np.ndarray]:
        """A copy of ``stored`` with one random element of tensor ``name`` set to ``value``."""
        out = {k: v.copy() for k, v in stored.items()}
        out[name].flat[int(self.rng.integers(out[name].size))] = value
        return out

    # -- container defects ---------------------------------------------------------------------

    def truncated(self) -> bytes:
        blob = self.good_backbone_bytes()
        data_start, _ = self.split(blob)
        cut = data_start + (len(blob) - data_start) // 2 + 1  # mid-data, mid-element
        return blob[:cut]

    def header_length_beyond_file(self) -> bytes:
        blob = self.good_backbone_bytes()
        return struct.pack("<Q", len(blob)) + blob[8:]

    def header_length_oversized(self) -> bytes:
        blob = self.good_backbone_bytes()
        return struct.pack("<Q", OVERSIZED_HEADER_LENGTH) + blob[8:]

    def header_not_json(self) -> bytes:
        blob = self.good_backbone_bytes()
        data_start, _ = self.split(blob)
        size = data_start - 8
        garbage = (b"this header is not JSON {" * (size // 25 + 1))[:size]
        return blob[:8] + garbage + blob[data_start:]

    def overlapping_offsets(self) -> bytes:
        """mlp.0.weight starts 4 bytes before mlp.0.bias ends: the two share one float."""
        entries = self.entries(self.backbone)
        header: dict[str, Any] = {}
        offset = 0
        for name in sorted(entries, key=lambda n: n.encode()):
            dtype, shape, raw = entries[name]
            if name == "mlp.0.weight":
                offset -= 4
            header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
            offset += len(raw)
        data = bytearray(offset)
        for name, entry in header.items():
            begin, end = entry["data_offsets"]
            data[begin:end] = entries[name][2]
        # Hash the bytes as a reader sees them at the declared offsets.
        as_read = {name: bytes(data[e["data_offsets"][0]:e["data_offsets"][1]]) for name, e in header.items()}
        header["__metadata__"] = sm.model_metadata("backbone", BACKBONE_SPEC, as_read)
        return sm.pack_safetensors(header, bytes(data))

    # -- model defects in a well-formed container ----------------------------------------------

    def wrong_dtype_i32(self) -> bytes:
        entries = self.entries(self.backbone)
        ints = np.round(self.backbone["mlp.1.bias"] * 1000).astype("<i4")
        entries["mlp.1.bias"] = ("I32", ints.shape, ints.tobytes())
        return self.encode("backbone", BACKBONE_SPEC, entries)

    def wrong_shape_mlp0_weight(self) -> bytes:
        stored = dict(self.backbone)
        out, inp = stored["mlp.0.weight"].shape
        stored["mlp.0.weight"] = self.rng.normal(0, math.sqrt(2 / inp), (out, inp + 1)).astype(np.float32)
        return self.encode("backbone", BACKBONE_SPEC, self.entries(stored))

    def nan_in_weight(self) -> bytes:
        return self.encode("backbone", BACKBONE_SPEC, self.entries(self.with_value(self.backbone, "mlp.1.weight", np.nan)))

    def nan_in_embedding(self) -> bytes:
        return self.encode("backbone", BACKBONE_SPEC, self.entries(self.with_value(self.backbone, "embedding.item", np.nan)))

    def inf_in_bias(self) -> bytes:
        return self.encode("head", HEAD_SPEC, self.entries(self.with_value(self.head, "tower.0.bias", np.inf)))

    def bad_sha256(self) -> bytes:
        """Valid file, then one byte of mlp.1.weight's data flipped (the low mantissa byte)."""
        blob = bytearray(self.good_backbone_bytes())
        data_start, header = self.split(bytes(blob))
        blob[data_start + header["mlp.1.weight"]["data_offsets"][0]] ^= 0x01
        return bytes(blob)

    def missing_tensor(self) -> bytes:
        stored = {k: v for k, v in self.backbone.items() if k != "mlp.1.bias"}
        return self.encode("backbone", BACKBONE_SPEC, self.entries(stored))

    def head_input_mismatch(self) -> bytes:
        """A valid head whose input is one wider than the backbone's output."""
        spec = dict(HEAD_SPEC, input=HEAD_SPEC["input"] + 1)
        return self.encode("head", spec, self.entries(sm.to_storage(sm.random_head(spec, 5), "F32")))

    # -- interaction defects -------------------------------------------------------------------

    def wrong_shape_user_tower(self) -> bytes:
        """user_tower.weight one column wider than the context part it reads."""
        stored = dict(self.backbone_interaction)
        k, width = stored["user_tower.weight"].shape
        stored["user_tower.weight"] = self.rng.normal(0, math.sqrt(1 / width), (k, width + 1)).astype(np.float32)
        return self.encode("backbone", BACKBONE_INTERACTION_SPEC, self.entries(stored))

    def head_interaction_mismatch(self) -> bytes:
        """A valid head whose interaction dim is one more than the backbone's."""
        spec = dict(HEAD_INTERACTION_SPEC, interaction=INTERACTION_DIM + 1)
        return self.encode("head", spec, self.entries(sm.to_storage(sm.random_head(spec, 7), "F32")))

    def head_interaction_without_towers(self) -> bytes:
        """The valid interaction head, to be loaded against the backbone without towers."""
        return self.encode("head", HEAD_INTERACTION_SPEC, self.entries(self.head_interaction))

    def missing_interaction_weight(self) -> bytes:
        stored = {k: v for k, v in self.head_interaction.items() if k != "interaction.weight"}
        return self.encode("head", HEAD_INTERACTION_SPEC, self.entries(stored))


# file name -> (builder method, kind, any_of substrings, tensor name or None, description)
BAD_MODELS: dict[str, tuple[Callable[[_Builder], bytes], str, list[str], str | None, str]] = {
    "truncated.safetensors": (
        _Builder.truncated, "backbone", ["truncated", "beyond end"], None,
        "file cut in the middle of the data section"),
    "header_length_beyond_file.safetensors": (
        _Builder.header_length_beyond_file, "backbone", ["header"], None,
        "8-byte header length is the whole file size, so the header runs past the end"),
    "header_length_oversized.safetensors": (
        _Builder.header_length_oversized, "backbone", ["header"], None,
        "header length claims 200 MB (must be rejected before allocating)"),
    "header_not_json.safetensors": (
        _Builder.header_not_json, "backbone", ["header"], None,
        "header bytes are not JSON"),
    "wrong_dtype_i32.safetensors": (
        _Builder.wrong_dtype_i32, "backbone", ["dtype"], "mlp.1.bias",
        "mlp.1.bias stored as I32"),
    "wrong_shape_mlp0_weight.safetensors": (
        _Builder.wrong_shape_mlp0_weight, "backbone", ["shape"], "mlp.0.weight",
        "mlp.0.weight has in-dim one larger than the spec implies"),
    "nan_in_weight.safetensors": (
        _Builder.nan_in_weight, "backbone", ["not finite"], "mlp.1.weight",
        "one NaN in mlp.1.weight"),
    "nan_in_embedding.safetensors": (
        _Builder.nan_in_embedding, "backbone", ["not finite"], "embedding.item",
        "one NaN in the embedding table embedding.item"),
    "inf_in_bias.safetensors": (
        _Builder.inf_in_bias, "head", ["not finite"], "tower.0.bias",
        "one +Inf in the head's tower.0.bias"),
    "bad_sha256.safetensors": (
        _Builder.bad_sha256, "backbone", ["sha256"], None,
        "one data byte flipped after hashing"),
    "overlapping_offsets.safetensors": (
        _Builder.overlapping_offsets, "backbone", ["overlap"], None,
        "mlp.0.bias and mlp.0.weight share 4 bytes of data"),
    "missing_tensor.safetensors": (
        _Builder.missing_tensor, "backbone", ["missing"], "mlp.1.bias",
        "mlp.1.bias absent"),
    "head_input_mismatch.safetensors": (
        _Builder.head_input_mismatch, "head", ["input"], None,
        "valid head whose input is the backbone output width + 1"),
    "wrong_shape_user_tower.safetensors": (
        _Builder.wrong_shape_user_tower, "backbone", ["shape"], "user_tower.weight",
        "user_tower.weight has in-dim one larger than the context width"),
    "head_interaction_mismatch.safetensors": (
        _Builder.head_interaction_mismatch, "head",
        [f"interaction {INTERACTION_DIM + 1} does not match the backbone's interaction dim {INTERACTION_DIM}"], None,
        "valid head whose interaction dim is the backbone's + 1"),
    "head_interaction_without_towers.safetensors": (
        _Builder.head_interaction_without_towers, "head", ["needs a backbone with interaction towers"], None,
        "valid interaction head on the backbone without towers"),
    "missing_interaction_weight.safetensors": (
        _Builder.missing_interaction_weight, "head", ["missing"], "interaction.weight",
        "interaction head without its interaction.weight"),
}

# The backbone a broken head is loaded against (BACKBONE_FILE unless named here).
HEAD_BACKBONES = {
    "head_interaction_mismatch.safetensors": BACKBONE_INTERACTION_FILE,
    "missing_interaction_weight.safetensors": BACKBONE_INTERACTION_FILE,
}


def write_bad_models(outdir: str, seed: int = 0) -> dict[str, dict]:
    """Write the good pair, every broken file and expected.json; return the expectations."""
    os.makedirs(outdir, exist_ok=True)
    builder = _Builder(seed)
    sm.save_model(os.path.join(outdir, BACKBONE_FILE), "backbone", BACKBONE_SPEC, builder.backbone)
    sm.save_model(os.path.join(outdir, HEAD_FILE), "head", HEAD_SPEC, builder.head)
    sm.save_model(os.path.join(outdir, BACKBONE_INTERACTION_FILE), "backbone", BACKBONE_INTERACTION_SPEC,
                  builder.backbone_interaction)
    sm.save_model(os.path.join(outdir, HEAD_INTERACTION_FILE), "head", HEAD_INTERACTION_SPEC, builder.head_interaction)
    expected: dict[str, dict] = {}
    for file_name, (build, kind, any_of, tensor, defect) in BAD_MODELS.items():
        with open(os.path.join(outdir, file_name), "wb") as f:
            f.write(build(builder))
        expected[file_name] = {"kind": kind, "backbone": HEAD_BACKBONES.get(file_name, BACKBONE_FILE),
                               "any_of": any_of, "tensor": tensor, "defect": defect}
    with open(os.path.join(outdir, EXPECTED_FILE), "w", encoding="utf-8") as f:
        json.dump(expected, f, indent=2)
        f.write("\n")
    return expected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", metavar="OUTDIR", help="directory to write into (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error("--seed must be non-negative")
    expected = write_bad_models(args.outdir, args.seed)
    print(f"wrote {BACKBONE_FILE}, {HEAD_FILE}, {BACKBONE_INTERACTION_FILE}, {HEAD_INTERACTION_FILE}, "
          f"{len(expected)} broken files and {EXPECTED_FILE} to {args.outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
