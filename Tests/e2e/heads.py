"""Head files for the admin tests and benchmarks: valid adapter heads for a given backbone, and
the broken variants the admin API must refuse with 422 (Proto/MODEL-FORMAT.md, Proto/ADMIN.md).

Valid heads are written with numpy + the `safetensors` package through the reference writer
(Tests/interop/scenescore_model.py: `random_head`, `save_model`, metadata with
scenescore.sha256). Every function returns the file's bytes (the body of an upload); `write_head`
also writes them to a path.

    backbone = backbone_spec(model_dir)
    body = head_bytes(backbone, "shoes", "shoes-1", seed=1)
"""

from __future__ import annotations

import json
import struct
import sys
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

_INTEROP = Path(__file__).resolve().parents[1] / "interop"
if str(_INTEROP) not in sys.path:
    sys.path.append(str(_INTEROP))

import scenescore_model as sm  # noqa: E402

DEFAULT_OUTPUTS = ("click", "purchase")


def backbone_spec(model_dir: Path | str) -> dict:
    """The backbone spec (`scenescore.spec`) of a model directory's backbone.safetensors."""
    from safetensors import safe_open

    with safe_open(str(Path(model_dir) / "backbone.safetensors"), "np") as f:
        meta = f.metadata() or {}
    return json.loads(meta[sm.META_SPEC])


def head_spec(backbone: Mapping, scene: str, version: str, *, parent: str = "", bottleneck: int = 32,
              tower: Sequence[int] = (64,), outputs: Sequence[str] = DEFAULT_OUTPUTS,
              input_width: int | None = None, interaction: int | None = None) -> dict:
    """A head spec that fits `backbone` (input = its last hidden width unless `input_width`),
    with an interaction adapter of the backbone's tower width unless `interaction` says
    otherwise (0: none)."""
    spec = {"scene": scene, "version": version, "parent": parent,
            "input": sm.backbone_output_width(backbone) if input_width is None else input_width,
            "bottleneck": bottleneck, "tower": list(tower), "outputs": list(outputs)}
    k = sm.backbone_interaction_dim(backbone) if interaction is None else interaction
    if k:
        spec["interaction"] = k
    return spec


def _serialize(spec: Mapping, tensors: Mapping[str, np.ndarray], dtype: str = "F32") -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "head.safetensors"
        sm.save_model(path, "head", spec, tensors, dtype=dtype)
        return path.read_bytes()


def head_tensors(spec: Mapping, seed: int) -> dict[str, np.ndarray]:
    """Deterministic random float32 weights for `spec` (the reference `random_head`)."""
    return sm.random_head(spec, seed)


def head_bytes(backbone: Mapping, scene: str, version: str, *, seed: int = 0, dtype: str = "F32",
               **spec_kw) -> bytes:
    """A valid head file for `scene` / `version` on `backbone`."""
    spec = head_spec(backbone, scene, version, **spec_kw)
    return _serialize(spec, head_tensors(spec, seed), dtype)


def write_head(path: Path | str, backbone: Mapping, scene: str, version: str, **kw) -> bytes:
    data = head_bytes(backbone, scene, version, **kw)
    Path(path).write_bytes(data)
    return data


def weight_bytes(spec: Mapping, dtype: str = "F32") -> int:
    """Bytes of tensor data of a head with this spec (what a resident head must at least hold)."""
    per_value = {"F32": 4, "F16": 2, "BF16": 2}[dtype]
    return per_value * sum(int(np.prod(shape)) for shape in sm.head_tensor_shapes(spec).values())


def big_head_bytes(backbone: Mapping, scene: str, version: str, *, at_least: int, seed: int = 0) -> bytes:
    """A valid head of at least `at_least` bytes: a wide bottleneck and tower."""
    width = sm.backbone_output_width(backbone)
    # Bytes ~ 4 * (2 * width * b + tower * width + 2 * tower): grow the bottleneck.
    bottleneck = max(32, at_least // (8 * width) + 1)
    return head_bytes(backbone, scene, version, seed=seed, bottleneck=bottleneck, tower=(64,))


def declared_sha256(data: bytes) -> str:
    """The `scenescore.sha256` a head file's metadata declares."""
    (header_len,) = struct.unpack_from("<Q", data, 0)
    return json.loads(data[8:8 + header_len])["__metadata__"][sm.META_SHA256]


# ---------------------------------------------------------------------------------------------
# What the admin API must refuse with 422 (each keeps the file otherwise plausible)
# ---------------------------------------------------------------------------------------------


def not_safetensors(size: int = 4096, seed: int = 0) -> bytes:
    """Random bytes: no safetensors header at all."""
    return np.random.default_rng(seed).integers(0, 256, size=size, dtype=np.uint8).tobytes()


def corrupt_head(backbone: Mapping, scene: str, version: str, *, seed: int = 0) -> bytes:
    """A valid head with one byte of tensor data flipped: scenescore.sha256 no longer matches."""
    data = bytearray(head_bytes(backbone, scene, version, seed=seed))
    (header_len,) = struct.unpack_from("<Q", data, 0)
    data[8 + header_len + 100] ^= 0x40
    return bytes(data)


def truncated_head(backbone: Mapping, scene: str, version: str, *, seed: int = 0, keep: float = 0.6) -> bytes:
    """The first `keep` of a valid head's bytes (the header says more data follows)."""
    data = head_bytes(backbone, scene, version, seed=seed)
    return data[: int(len(data) * keep)]


def nan_head(backbone: Mapping, scene: str, version: str, *, seed: int = 0,
             value: float = float("nan"), tensor: str = "tower.0.weight") -> bytes:
    """A head whose `tensor` holds one non-finite value, with a CORRECT sha256 (only the value is wrong)."""
    spec = head_spec(backbone, scene, version)
    tensors = head_tensors(spec, seed)
    tensors[tensor] = tensors[tensor].copy()
    tensors[tensor].flat[min(7, tensors[tensor].size - 1)] = value
    return _serialize(spec, tensors)


def wrong_dims_head(backbone: Mapping, scene: str, version: str, *, seed: int = 0) -> bytes:
    """A self-consistent head whose input width is not the backbone's output width."""
    width = sm.backbone_output_width(backbone)
    return head_bytes(backbone, scene, version, seed=seed, input_width=width // 2 if width > 1 else 2)


def wrong_scene_head(backbone: Mapping, url_scene: str, version: str, *, seed: int = 0) -> bytes:
    """A valid head whose spec names another scene than the one in the URL."""
    return head_bytes(backbone, url_scene + "-other", version, seed=seed)


BROKEN = {
    "not-safetensors": lambda b, scene, version: not_safetensors(),
    "corrupt": corrupt_head,
    "truncated": truncated_head,
    "nan": nan_head,
    "inf": lambda b, scene, version: nan_head(b, scene, version, value=float("inf"), tensor="output.bias"),
    "wrong-dims": wrong_dims_head,
    "wrong-scene": wrong_scene_head,
}


def reference_scores(backbone_tensors: Mapping[str, np.ndarray], backbone: Mapping, head_spec_: Mapping,
                     head_tensors_: Mapping[str, np.ndarray], context_ids, context_dense, item_ids,
                     item_dense) -> np.ndarray:
    """The float64 reference forward pass (canonical schema) of a head made here."""
    return sm.forward(backbone_tensors, backbone, head_tensors_, head_spec_, context_ids, context_dense,
                      item_ids, item_dense)
