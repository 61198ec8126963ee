"""Strict reading of SceneScore model files (Proto/MODEL-FORMAT.md, format 1) for the exporter.

A file the server would refuse is refused here too, with a message naming the file, the tensor
and the problem: metadata (`scenescore.format`, `scenescore.kind`, `scenescore.spec`), the spec's
bounds, every tensor's presence and exact shape, no unexpected tensor, dtype F32 / F16 / BF16
(widened to float32 as the server does), finite values, and `scenescore.sha256` against the
stored bytes. Tensors are read with the `safetensors` package (numpy); the raw bytes that the
sha256 covers, and BF16 (which numpy has no dtype for), come straight from the file's offsets.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open

FORMAT_VERSION = "1"
MAX_HEADER_BYTES = 100_000_000
_SCENE_NAME = re.compile(r"^[a-z0-9_-]{1,64}$")
_DTYPE_SIZE = {"F32": 4, "F16": 2, "BF16": 2}


class ExportError(ValueError):
    """A model file the exporter refuses (the server would refuse it too), or an unusable request."""


@dataclass
class ModelFile:
    """One validated model file: its spec, float32 tensors and content hash."""

    path: Path
    kind: str
    spec: dict[str, Any]
    sha256: str
    metadata: dict[str, str]
    tensors: dict[str, np.ndarray] = field(repr=False)


# ---------------------------------------------------------------------------------------------
# Specs
# ---------------------------------------------------------------------------------------------


def _int(spec: dict, key: str, lo: int, hi: int, where: str, default: Any = ...) -> int:
    value = spec.get(key, default)
    if value is ...:
        raise ExportError(f"{where}: spec has no {key!r}")
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ExportError(f"{where}: spec {key} {value!r} must be an integer {lo}…{hi}")
    return value


def context_width(spec: dict) -> int:
    """Σ context dims + context dense: the context part of layer 0's input."""
    return sum(f["dim"] for f in spec["context_fields"]) + spec["context_dense"]


def item_width(spec: dict) -> int:
    """Σ item dims + item dense: one candidate's item part of layer 0's input."""
    return sum(f["dim"] for f in spec["item_fields"]) + spec["item_dense"]


def interaction_dim(spec: dict) -> int:
    """k of a backbone's two towers (0: none)."""
    interaction = spec.get("interaction")
    return 0 if interaction is None else interaction["dim"]


def validate_backbone_spec(spec: Any, where: str) -> dict:
    """The checks of BackboneSpec.validate (Sources/Model/ModelSpec.swift)."""
    if not isinstance(spec, dict):
        raise ExportError(f"{where}: scenescore.spec is not a JSON object")
    if spec.get("activation", None) != "relu":
        raise ExportError(f"{where}: spec activation {spec.get('activation')!r} is not supported (relu)")
    for key in ("context_fields", "item_fields"):
        fields = spec.get(key)
        if not isinstance(fields, list):
            raise ExportError(f"{where}: spec {key} must be a list")
        for i, f in enumerate(fields):
            if not isinstance(f, dict) or not isinstance(f.get("name"), str):
                raise ExportError(f"{where}: spec {key}[{i}] must be an object with a string name")
            _int(f, "vocab", 1, 1 << 28, f"{where} field {f['name']!r}")
            _int(f, "dim", 1, 4096, f"{where} field {f['name']!r}")
    names = [f["name"] for f in spec["context_fields"] + spec["item_fields"]]
    if len(set(names)) != len(names):
        raise ExportError(f"{where}: spec field names repeat: {names}")
    _int(spec, "context_dense", 0, 4096, where)
    _int(spec, "item_dense", 0, 4096, where)
    hidden = spec.get("hidden")
    if (not isinstance(hidden, list) or not hidden
            or not all(isinstance(h, int) and not isinstance(h, bool) and 0 < h <= 65536 for h in hidden)):
        raise ExportError(f"{where}: spec hidden widths {hidden!r} must be a non-empty list of 1…65536")
    if not spec["item_fields"] and spec["item_dense"] == 0:
        raise ExportError(f"{where}: spec has no item features")
    interaction = spec.get("interaction")
    if interaction is not None:
        if not isinstance(interaction, dict) or interaction.get("kind") != "two_tower":
            raise ExportError(f"{where}: spec interaction {interaction!r} is not supported (kind two_tower)")
        _int(interaction, "dim", 1, 256, f"{where} interaction")
        if context_width(spec) == 0:
            raise ExportError(f"{where}: spec interaction two_tower needs context features for its user tower")
    return spec


def validate_head_spec(spec: Any, where: str, backbone: dict) -> dict:
    """The checks of HeadSpec.validate and of AdapterHead's pairing with the backbone."""
    if not isinstance(spec, dict):
        raise ExportError(f"{where}: scenescore.spec is not a JSON object")
    scene, version = spec.get("scene"), spec.get("version")
    if not isinstance(scene, str) or not _SCENE_NAME.match(scene):
        raise ExportError(f"{where}: spec scene {scene!r} must be 1…64 of [a-z0-9_-]")
    if not isinstance(version, str) or not 1 <= len(version.encode()) <= 128:
        raise ExportError(f"{where}: spec version {version!r} must be 1…128 bytes")
    if not isinstance(spec.get("parent", ""), str):
        raise ExportError(f"{where}: spec parent must be a string")
    _int(spec, "input", 1, 1 << 31, where)
    _int(spec, "bottleneck", 1, 65536, where)
    tower = spec.get("tower", [])
    if not isinstance(tower, list) or not all(isinstance(t, int) and not isinstance(t, bool) and 0 < t <= 65536
                                              for t in tower):
        raise ExportError(f"{where}: spec tower widths {tower!r} must be 1…65536")
    outputs = spec.get("outputs")
    if (not isinstance(outputs, list) or not 1 <= len(outputs) <= 64
            or not all(isinstance(o, str) and 1 <= len(o.encode()) <= 255 for o in outputs)):
        raise ExportError(f"{where}: spec outputs {outputs!r} must be 1…64 names of 1…255 bytes")
    k = _int(spec, "interaction", 0, 256, where, default=0)
    width = backbone["hidden"][-1]
    if spec["input"] != width:
        raise ExportError(f"{where}: spec input {spec['input']} does not match the backbone's output width {width}")
    if k > 0 and interaction_dim(backbone) == 0:
        raise ExportError(f"{where}: spec interaction {k} needs a backbone with interaction towers; "
                          f"this backbone has none")
    if k > 0 and k != interaction_dim(backbone):
        raise ExportError(f"{where}: spec interaction {k} does not match the backbone's interaction dim "
                          f"{interaction_dim(backbone)}")
    return {**spec, "parent": spec.get("parent", ""), "tower": tower, "interaction": k}


def backbone_shapes(spec: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor a backbone with this spec holds, with its shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    for f in spec["context_fields"] + spec["item_fields"]:
        shapes[f"embedding.{f['name']}"] = (f["vocab"], f["dim"])
    width = context_width(spec) + item_width(spec)
    for i, out in enumerate(spec["hidden"]):
        shapes[f"mlp.{i}.weight"] = (out, width)
        shapes[f"mlp.{i}.bias"] = (out,)
        width = out
    k = interaction_dim(spec)
    if k:
        shapes["user_tower.weight"], shapes["user_tower.bias"] = (k, context_width(spec)), (k,)
        shapes["item_tower.weight"], shapes["item_tower.bias"] = (k, item_width(spec)), (k,)
    return shapes


def head_shapes(spec: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor a head with this spec holds, with its shape."""
    d, b = spec["input"], spec["bottleneck"]
    shapes: dict[str, tuple[int, ...]] = {
        "adapter.down.weight": (b, d), "adapter.down.bias": (b,),
        "adapter.up.weight": (d, b), "adapter.up.bias": (d,),
    }
    width = d
    for j, t in enumerate(spec["tower"]):
        shapes[f"tower.{j}.weight"], shapes[f"tower.{j}.bias"] = (t, width), (t,)
        width = t
    k_out = len(spec["outputs"])
    shapes["output.weight"], shapes["output.bias"] = (k_out, width), (k_out,)
    if spec["interaction"]:
        k = spec["interaction"]
        shapes["interaction.weight"] = (k_out, k, k)
    return shapes


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def _read_header(path: Path) -> tuple[dict, int]:
    """The safetensors JSON header and the offset where the data starts."""
    try:
        with open(path, "rb") as fh:
            prefix = fh.read(8)
            if len(prefix) != 8:
                raise ExportError(f"{path.name}: not a safetensors file (shorter than 8 bytes)")
            (n,) = struct.unpack("<Q", prefix)
            if n > MAX_HEADER_BYTES:
                raise ExportError(f"{path.name}: safetensors header of {n} bytes is too large")
            raw = fh.read(n)
    except OSError as error:
        raise ExportError(f"{path}: cannot read: {error.strerror or error}") from error
    if len(raw) != n:
        raise ExportError(f"{path.name}: safetensors header truncated")
    try:
        header = json.loads(raw)
    except ValueError as error:
        raise ExportError(f"{path.name}: safetensors header is not JSON: {error}") from error
    if not isinstance(header, dict):
        raise ExportError(f"{path.name}: safetensors header is not a JSON object")
    return header, 8 + n


def _widen(raw: bytes, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    if dtype == "F32":
        values = np.frombuffer(raw, dtype="<f4")
    elif dtype == "F16":
        values = np.frombuffer(raw, dtype="<f2").astype(np.float32)
    else:  # BF16: the upper 16 bits of a float32
        values = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << np.uint32(16)).view(np.float32)
    return np.ascontiguousarray(values.reshape(shape), dtype=np.float32)


def load_model_file(path: str | os.PathLike, kind: str, backbone_spec: dict | None = None) -> ModelFile:
    """Reads and validates one model file; `backbone_spec` (the backbone's) is needed for a head."""
    path = Path(path)
    where = path.name
    header, data_start = _read_header(path)
    try:
        with safe_open(str(path), framework="np") as f:
            metadata = dict(f.metadata() or {})
            names = list(f.keys())
            arrays = {name: f.get_tensor(name) for name in names
                      if f.get_slice(name).get_dtype() in ("F32", "F16")}
    except Exception as error:  # noqa: BLE001 - the safetensors package raises several types
        raise ExportError(f"{where}: not a readable safetensors file: {error}") from error

    if metadata.get("scenescore.format") != FORMAT_VERSION:
        raise ExportError(f"{where}: metadata scenescore.format is {metadata.get('scenescore.format')!r}, "
                          f"expected {FORMAT_VERSION!r}")
    if metadata.get("scenescore.kind") != kind:
        raise ExportError(f"{where}: metadata scenescore.kind is {metadata.get('scenescore.kind')!r}, "
                          f"expected {kind!r}")
    if "scenescore.spec" not in metadata:
        raise ExportError(f"{where}: metadata has no scenescore.spec")
    try:
        spec = json.loads(metadata["scenescore.spec"])
    except ValueError as error:
        raise ExportError(f"{where}: metadata scenescore.spec is not JSON: {error}") from error
    if kind == "backbone":
        spec = validate_backbone_spec(spec, where)
        expected = backbone_shapes(spec)
    else:
        assert backbone_spec is not None, "a head needs its backbone's spec"
        spec = validate_head_spec(spec, where, backbone_spec)
        expected = head_shapes(spec)

    with open(path, "rb") as fh:
        blob = fh.read()
    tensors: dict[str, np.ndarray] = {}
    raw_by_name: dict[str, bytes] = {}
    for name in names:
        info = header.get(name)
        if not isinstance(info, dict):
            raise ExportError(f"{where}: tensor {name}: no header entry")
        start, end = (int(x) for x in info["data_offsets"])
        raw_by_name[name] = blob[data_start + start:data_start + end]
    unexpected = sorted(set(names) - set(expected))
    if unexpected:
        raise ExportError(f"{where}: tensor {unexpected[0]}: unexpected tensor for this {kind} spec")
    for name, shape in expected.items():
        if name not in raw_by_name:
            raise ExportError(f"{where}: tensor {name}: missing (expected shape {list(shape)})")
        info = header[name]
        actual = tuple(int(x) for x in info["shape"])
        if actual != shape:
            raise ExportError(f"{where}: tensor {name}: shape {list(actual)}, expected {list(shape)}")
        dtype = info["dtype"]
        if dtype not in _DTYPE_SIZE:
            raise ExportError(f"{where}: tensor {name}: dtype {dtype} is not supported (F32, F16, BF16)")
        if dtype in ("F32", "F16"):
            values = np.ascontiguousarray(arrays[name], dtype=np.float32).reshape(shape)
        else:
            values = _widen(raw_by_name[name], dtype, shape)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise ExportError(f"{where}: tensor {name}: value {values.reshape(-1)[bad[0]]} at flat index "
                              f"{bad[0]} is not finite")
        tensors[name] = values

    claimed = metadata.get("scenescore.sha256")
    if claimed is None:
        raise ExportError(f"{where}: metadata has no scenescore.sha256")
    digest = hashlib.sha256()
    for name in sorted(raw_by_name, key=lambda s: s.encode()):
        digest.update(raw_by_name[name])
    actual_sha = digest.hexdigest()
    if claimed.lower() != actual_sha:
        raise ExportError(f"{where}: sha256 mismatch: metadata says {claimed}, the tensor data hashes to {actual_sha}")
    return ModelFile(path=path, kind=kind, spec=spec, sha256=actual_sha, metadata=metadata, tensors=tensors)


def load_backbone(path: str | os.PathLike) -> ModelFile:
    return load_model_file(path, "backbone")


def load_head(path: str | os.PathLike, backbone: ModelFile) -> ModelFile:
    return load_model_file(path, "head", backbone.spec)
