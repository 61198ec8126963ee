"""Reference implementation of the SceneScore model file format (format 1) in numpy.

This module is the Python side of the Swift/Python interop tests. It follows
``Proto/MODEL-FORMAT.md`` literally and favours clarity over speed:

* :func:`fmix32` / :func:`hash_rows` -- id hashing (MurmurHash3 32-bit finalizer).
* :func:`backbone_tensor_shapes` / :func:`head_tensor_shapes` -- the tensors a spec requires.
* :func:`random_backbone` / :func:`random_head` -- deterministic random float32 weights.
* :func:`to_storage` / :func:`widen` -- conversion between float32 and the stored dtype
  (``F32``, ``F16`` or ``BF16``; BF16 is held in numpy as raw ``uint16`` bit patterns).
* :func:`tensor_sha256` -- the ``scenescore.sha256`` digest.
* :func:`save_model` -- writes a model file with the ``safetensors`` package.
* :func:`pack_safetensors` -- a minimal hand-rolled safetensors writer, used to build
  deliberately malformed files.
* :func:`load_model` / :func:`check_pair` -- a strict reference loader that rejects every
  malformed file with a descriptive :class:`ModelFormatError`.
* :func:`forward` -- the float64 reference forward pass (including the optional two-tower
  interaction: backbone towers u, v and a per-output k x k matrix in the head).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import struct
from typing import Any, Iterable, Mapping

import numpy as np
import safetensors
import safetensors.numpy

FORMAT_VERSION = "1"
KINDS = ("backbone", "head")
STORAGE_DTYPES = ("F32", "F16", "BF16")

# Metadata keys.
META_FORMAT = "scenescore.format"
META_KIND = "scenescore.kind"
META_SPEC = "scenescore.spec"
META_SHA256 = "scenescore.sha256"
META_TRAINING = "scenescore.training"

# Largest JSON header the reference loader accepts (the same limit as the Rust safetensors crate).
MAX_HEADER_BYTES = 100_000_000

# Element sizes of every dtype the safetensors container format defines.
SAFETENSORS_DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}

# numpy dtype used to hold each storage dtype in memory (BF16 as raw bit patterns).
_STORAGE_NUMPY = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2")}

# Names accepted by safetensors.TensorSpec for each storage dtype.
_TENSORSPEC_DTYPE = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}

_UINT32_MAX = 0xFFFFFFFF

# The one backbone interaction kind, and the largest interaction dim k.
INTERACTION_TWO_TOWER = "two_tower"
MAX_INTERACTION_DIM = 256


class ModelFormatError(ValueError):
    """A model file (or a backbone/head pair) violates the format.

    ``problems`` lists every independent problem found; the message joins them.
    """

    def __init__(self, problems: str | list[str], path: str | os.PathLike | None = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.path = None if path is None else os.fspath(path)
        prefix = f"{self.path}: " if self.path else ""
        super().__init__(prefix + "; ".join(self.problems))


# ---------------------------------------------------------------------------------------------
# Id hashing
# ---------------------------------------------------------------------------------------------

def _as_uint32(ids: Any) -> np.ndarray:
    """Convert ids to a uint32 array, rejecting values outside [0, 2**32)."""
    arr = np.asarray(ids)
    if arr.dtype == np.uint32:
        return arr
    if arr.size == 0:
        return arr.astype(np.uint32)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"ids must be integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "i" and int(arr.min()) < 0:
        raise ValueError("ids must be non-negative")
    if int(arr.max()) > _UINT32_MAX:
        raise ValueError("ids must fit in 32 unsigned bits")
    return arr.astype(np.uint32)


def fmix32(ids: Any) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, applied element-wise on wrapping uint32 arithmetic.

    ``h ^= h >> 16; h *= 0x85ebca6b; h ^= h >> 13; h *= 0xc2b2ae35; h ^= h >> 16``
    """
    h = np.array(_as_uint32(ids), dtype=np.uint32, copy=True)
    with np.errstate(over="ignore"):
        h ^= h >> np.uint32(16)
        h *= np.uint32(0x85EBCA6B)
        h ^= h >> np.uint32(13)
        h *= np.uint32(0xC2B2AE35)
        h ^= h >> np.uint32(16)
    return h


def hash_rows(ids: Any, vocab: int) -> np.ndarray:
    """Embedding rows for ids in a table of ``vocab`` rows: ``fmix32(id) mod vocab``."""
    if vocab <= 0:
        raise ValueError("vocab must be positive")
    return (fmix32(ids).astype(np.uint64) % np.uint64(vocab)).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Specs and tensor shapes
# ---------------------------------------------------------------------------------------------

def _is_pos_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_nonneg_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def validate_backbone_spec(spec: Any) -> list[str]:
    """Return the problems of a backbone spec (empty if valid)."""
    if not isinstance(spec, dict):
        return ["backbone spec must be a JSON object"]
    problems: list[str] = []
    names: set[str] = set()
    for key in ("context_fields", "item_fields"):
        fields = spec.get(key)
        if not isinstance(fields, list):
            problems.append(f"spec: {key} must be a list")
            continue
        for i, field in enumerate(fields):
            if not isinstance(field, dict) or not isinstance(field.get("name"), str) or not field.get("name"):
                problems.append(f"spec: {key}[{i}] must have a non-empty string name")
                continue
            if field["name"] in names:
                problems.append(f"spec: duplicate field name {field['name']!r}")
            names.add(field["name"])
            for dim_key in ("vocab", "dim"):
                if not _is_pos_int(field.get(dim_key)):
                    problems.append(f"spec: {key}[{i}].{dim_key} must be a positive integer")
    for key in ("context_dense", "item_dense"):
        if not _is_nonneg_int(spec.get(key)):
            problems.append(f"spec: {key} must be a non-negative integer")
    hidden = spec.get("hidden")
    if not isinstance(hidden, list) or not hidden or not all(_is_pos_int(h) for h in hidden):
        problems.append("spec: hidden must be a non-empty list of positive integers")
    if spec.get("activation") != "relu":
        problems.append(f"spec: unsupported activation {spec.get('activation')!r} (only 'relu')")
    if "interaction" in spec:
        interaction = spec["interaction"]
        if not isinstance(interaction, dict):
            problems.append("spec: interaction must be an object {kind, dim}")
        else:
            if interaction.get("kind") != INTERACTION_TWO_TOWER:
                problems.append(f"spec: unsupported interaction kind {interaction.get('kind')!r} "
                                f"(only {INTERACTION_TWO_TOWER!r})")
            dim = interaction.get("dim")
            if not _is_pos_int(dim) or dim > MAX_INTERACTION_DIM:
                problems.append(f"spec: interaction dim {dim!r} must be 1..{MAX_INTERACTION_DIM}")
            if not problems and backbone_context_width(spec) == 0:  # (the width needs valid fields)
                problems.append("spec: interaction two_tower needs context features for its user tower")
    return problems


def validate_head_spec(spec: Any) -> list[str]:
    """Return the problems of a head spec (empty if valid)."""
    if not isinstance(spec, dict):
        return ["head spec must be a JSON object"]
    problems: list[str] = []
    for key in ("scene", "version"):
        if not isinstance(spec.get(key), str) or not spec.get(key):
            problems.append(f"spec: {key} must be a non-empty string")
    if not isinstance(spec.get("parent", ""), str):
        problems.append("spec: parent must be a string")
    for key in ("input", "bottleneck"):
        if not _is_pos_int(spec.get(key)):
            problems.append(f"spec: {key} must be a positive integer")
    tower = spec.get("tower")
    if not isinstance(tower, list) or not all(_is_pos_int(t) for t in tower):
        problems.append("spec: tower must be a list of positive integers")
    outputs = spec.get("outputs")
    if (not isinstance(outputs, list) or not outputs
            or not all(isinstance(o, str) and o for o in outputs) or len(set(outputs)) != len(outputs)):
        problems.append("spec: outputs must be a non-empty list of distinct names")
    interaction = spec.get("interaction", 0)
    if not _is_nonneg_int(interaction) or interaction > MAX_INTERACTION_DIM:
        problems.append(f"spec: interaction {interaction!r} must be an integer 0..{MAX_INTERACTION_DIM} (0: none)")
    return problems


def _require_valid(kind: str, spec: Any) -> None:
    problems = validate_backbone_spec(spec) if kind == "backbone" else validate_head_spec(spec)
    if problems:
        raise ModelFormatError(problems)


def backbone_context_width(spec: Mapping) -> int:
    """The context part of ``in_0``: context embeddings, then context dense."""
    return sum(f["dim"] for f in spec["context_fields"]) + spec["context_dense"]


def backbone_item_width(spec: Mapping) -> int:
    """The item part of ``in_0``: item embeddings, then item dense."""
    return sum(f["dim"] for f in spec["item_fields"]) + spec["item_dense"]


def backbone_input_width(spec: Mapping) -> int:
    """``in_0``: all context embeddings, context dense, all item embeddings, item dense."""
    return backbone_context_width(spec) + backbone_item_width(spec)


def backbone_interaction_dim(spec: Mapping) -> int:
    """k of the backbone's two towers (0 without an ``interaction``)."""
    return spec["interaction"]["dim"] if "interaction" in spec else 0


def head_interaction_dim(spec: Mapping) -> int:
    """k of the head's interaction adapter (0: none; the key is absent in older files)."""
    return spec.get("interaction", 0)


def backbone_output_width(spec: Mapping) -> int:
    """Width of the backbone's output (its last hidden layer), which a head's ``input`` must equal."""
    return spec["hidden"][-1]


def backbone_tensor_shapes(spec: Mapping) -> dict[str, tuple[int, ...]]:
    """Every tensor a backbone with this spec must contain, with its shape."""
    _require_valid("backbone", spec)
    shapes: dict[str, tuple[int, ...]] = {}
    for field in list(spec["context_fields"]) + list(spec["item_fields"]):
        shapes[f"embedding.{field['name']}"] = (field["vocab"], field["dim"])
    width = backbone_input_width(spec)
    for i, out in enumerate(spec["hidden"]):
        shapes[f"mlp.{i}.weight"] = (out, width)
        shapes[f"mlp.{i}.bias"] = (out,)
        width = out
    k = backbone_interaction_dim(spec)
    if k:
        shapes["user_tower.weight"] = (k, backbone_context_width(spec))
        shapes["user_tower.bias"] = (k,)
        shapes["item_tower.weight"] = (k, backbone_item_width(spec))
        shapes["item_tower.bias"] = (k,)
    return shapes


def head_tensor_shapes(spec: Mapping) -> dict[str, tuple[int, ...]]:
    """Every tensor a head with this spec must contain, with its shape."""
    _require_valid("head", spec)
    d, b = spec["input"], spec["bottleneck"]
    shapes: dict[str, tuple[int, ...]] = {
        "adapter.down.weight": (b, d), "adapter.down.bias": (b,),
        "adapter.up.weight": (d, b), "adapter.up.bias": (d,),
    }
    width = d
    for j, out in enumerate(spec["tower"]):
        shapes[f"tower.{j}.weight"] = (out, width)
        shapes[f"tower.{j}.bias"] = (out,)
        width = out
    shapes["output.weight"] = (len(spec["outputs"]), width)
    shapes["output.bias"] = (len(spec["outputs"]),)
    k = head_interaction_dim(spec)
    if k:
        shapes["interaction.weight"] = (len(spec["outputs"]), k, k)
    return shapes


def tensor_shapes(kind: str, spec: Mapping) -> dict[str, tuple[int, ...]]:
    """Dispatch to :func:`backbone_tensor_shapes` or :func:`head_tensor_shapes`."""
    if kind == "backbone":
        return backbone_tensor_shapes(spec)
    if kind == "head":
        return head_tensor_shapes(spec)
    raise ValueError(f"unknown model kind {kind!r}")


# ---------------------------------------------------------------------------------------------
# Random weights
# ---------------------------------------------------------------------------------------------

def _linear(rng: np.random.Generator, out: int, inp: int, std: float, bias_mean: float = 0.0,
            bias_std: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    weight = rng.normal(0.0, std, size=(out, inp)).astype(np.float32)
    bias = rng.normal(bias_mean, bias_std, size=(out,)).astype(np.float32)
    return weight, bias


def random_backbone(spec: Mapping, seed: int | None) -> dict[str, np.ndarray]:
    """Random float32 backbone weights.

    Embeddings are N(0, 1) (the same scale as the dense inputs the tests feed), MLP weights
    use He initialisation N(0, 2/in) so that ReLU activations keep a mean square near 1.
    Towers (drawn last, so a spec without them gets the weights it always got) are N(0, 1/in):
    u and v have unit-scale entries.
    """
    shapes = backbone_tensor_shapes(spec)
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}
    for field in list(spec["context_fields"]) + list(spec["item_fields"]):
        name = f"embedding.{field['name']}"
        tensors[name] = rng.standard_normal(shapes[name]).astype(np.float32)
    for i in range(len(spec["hidden"])):
        out, inp = shapes[f"mlp.{i}.weight"]
        tensors[f"mlp.{i}.weight"], tensors[f"mlp.{i}.bias"] = _linear(rng, out, inp, math.sqrt(2.0 / inp))
    if backbone_interaction_dim(spec):
        for tower in ("user_tower", "item_tower"):
            out, inp = shapes[f"{tower}.weight"]
            tensors[f"{tower}.weight"], tensors[f"{tower}.bias"] = _linear(rng, out, inp, math.sqrt(1.0 / inp))
    return tensors


def random_head(spec: Mapping, seed: int | None) -> dict[str, np.ndarray]:
    """Random float32 head weights.

    The adapter's down projection and the tower are He-initialised; the up projection is
    scaled down so the residual adds a modest correction; the output layer has unit-variance
    logits around a bias of -2, so scores sit near 0.12 without saturating. Interaction
    matrices (drawn last) are I/k plus N(0, 0.3/k) noise: with unit-scale u and v the term
    uᵀAv has a standard deviation near sqrt(1/k + 0.09), a modest share of the logit, and A is
    far enough from symmetric that a transposed A (or u and v swapped) shows.
    """
    shapes = head_tensor_shapes(spec)
    rng = np.random.default_rng(seed)
    d, b = spec["input"], spec["bottleneck"]
    tensors: dict[str, np.ndarray] = {}
    tensors["adapter.down.weight"], tensors["adapter.down.bias"] = _linear(rng, b, d, math.sqrt(2.0 / d))
    tensors["adapter.up.weight"], tensors["adapter.up.bias"] = _linear(rng, d, b, 0.5 / math.sqrt(b))
    for j in range(len(spec["tower"])):
        out, inp = shapes[f"tower.{j}.weight"]
        tensors[f"tower.{j}.weight"], tensors[f"tower.{j}.bias"] = _linear(rng, out, inp, math.sqrt(2.0 / inp))
    k, width = shapes["output.weight"]
    tensors["output.weight"], tensors["output.bias"] = _linear(
        rng, k, width, math.sqrt(1.0 / width), bias_mean=-2.0, bias_std=0.25)
    dim = head_interaction_dim(spec)
    if dim:
        noise = rng.normal(0.0, 0.3 / dim, size=(k, dim, dim))
        tensors["interaction.weight"] = (np.eye(dim) / dim + noise).astype(np.float32)
    return tensors


# ---------------------------------------------------------------------------------------------
# Storage dtypes
# ---------------------------------------------------------------------------------------------

def float32_to_bf16_bits(values: np.ndarray) -> np.ndarray:
    """Round float32 values to bfloat16 (round to nearest, ties to even); return uint16 bits."""
    f = np.ascontiguousarray(values, dtype=np.float32)
    bits = f.view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    # Keep NaNs NaN (rounding could otherwise carry a NaN payload into infinity).
    return np.where(np.isnan(f), np.uint16(0x7FC0), rounded).astype("<u2")


def bf16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """Widen bfloat16 bit patterns (uint16) to float32 exactly."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def to_storage(tensors: Mapping[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    """Convert float tensors to their in-file representation (BF16 as uint16 bit patterns)."""
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"dtype must be one of {STORAGE_DTYPES}, got {dtype!r}")
    out: dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        f32 = np.asarray(value, dtype=np.float32)
        if dtype == "BF16":
            out[name] = float32_to_bf16_bits(f32)
        else:
            out[name] = np.ascontiguousarray(f32.astype(_STORAGE_NUMPY[dtype]))
    return out


def widen(stored: np.ndarray, dtype: str) -> np.ndarray:
    """Widen a stored tensor (as returned by :func:`to_storage`) to float32, as the loader does."""
    if dtype == "BF16":
        return bf16_bits_to_float32(stored)
    if dtype in ("F32", "F16"):
        return np.asarray(stored).astype(np.float32)
    raise ValueError(f"unsupported dtype {dtype!r}")


def quantize(tensors: Mapping[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    """The float32 values a loader sees after storing ``tensors`` as ``dtype``."""
    return {name: widen(value, dtype) for name, value in to_storage(tensors, dtype).items()}


# ---------------------------------------------------------------------------------------------
# Hashing and writing
# ---------------------------------------------------------------------------------------------

def _name_key(name: str) -> bytes:
    return name.encode("utf-8")


def _stored_bytes(value: np.ndarray | bytes) -> bytes:
    """Little-endian, C-order bytes of a tensor (or the bytes themselves)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    arr = np.asarray(value)
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and not np.little_endian):
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return np.ascontiguousarray(arr).tobytes()


def tensor_sha256(tensors: Mapping[str, np.ndarray | bytes]) -> str:
    """``scenescore.sha256``: SHA-256 of every tensor's stored bytes, in byte-wise name order.

    Values must be the tensors *as stored* (after dtype conversion; BF16 as uint16 bits),
    or the raw bytes themselves.
    """
    digest = hashlib.sha256()
    for name in sorted(tensors, key=_name_key):
        digest.update(_stored_bytes(tensors[name]))
    return digest.hexdigest()


def model_metadata(kind: str, spec: Mapping, stored: Mapping[str, np.ndarray | bytes],
                   training: Mapping | None = None) -> dict[str, str]:
    """The ``__metadata__`` block of a model file whose tensors are ``stored``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    metadata = {
        META_FORMAT: FORMAT_VERSION,
        META_KIND: kind,
        META_SPEC: json.dumps(spec),
        META_SHA256: tensor_sha256(stored),
    }
    if training is not None:
        metadata[META_TRAINING] = json.dumps(training)
    return metadata


def save_model(path: str | os.PathLike, kind: str, spec: Mapping, tensors: Mapping[str, np.ndarray],
               dtype: str = "F32", training: Mapping | None = None) -> dict[str, np.ndarray]:
    """Write a model file with the ``safetensors`` package and return the tensors as stored.

    F32 and F16 go through ``safetensors.numpy.save_file``. numpy has no bfloat16, so BF16
    tensors (held as uint16 bit patterns) are written with the package's lower-level
    ``serialize_file`` and a ``bfloat16`` TensorSpec, which records dtype ``BF16``.
    """
    expected = tensor_shapes(kind, spec)
    if set(tensors) != set(expected):
        raise ValueError(f"tensor names differ from the spec: missing {sorted(set(expected) - set(tensors))}, "
                         f"unexpected {sorted(set(tensors) - set(expected))}")
    for name, shape in expected.items():
        if tuple(np.shape(tensors[name])) != shape:
            raise ValueError(f"tensor {name} has shape {np.shape(tensors[name])}, expected {shape}")
    stored = to_storage(tensors, dtype)
    metadata = model_metadata(kind, spec, stored, training)
    if dtype == "BF16":
        specs = {name: safetensors.TensorSpec(dtype=_TENSORSPEC_DTYPE[dtype], shape=list(arr.shape),
                                              data_ptr=arr.ctypes.data, data_len=arr.nbytes)
                 for name, arr in stored.items()}
        # ``stored`` keeps every buffer alive for the duration of the call.
        safetensors.serialize_file(specs, os.fspath(path), metadata=metadata)
    else:
        safetensors.numpy.save_file(stored, os.fspath(path), metadata=metadata)
    return stored


def pack_safetensors(header: Mapping[str, Any], data: bytes, align: int = 8) -> bytes:
    """Assemble a safetensors file from a header object and the data section, without checks.

    Layout: 8-byte little-endian header length, the UTF-8 JSON header (padded with spaces to a
    multiple of ``align``, as the reference writer does), then ``data``. The header is written
    verbatim, so callers can produce malformed files on purpose.
    """
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    if align > 1:
        text += b" " * (-(8 + len(text)) % align)
    return struct.pack("<Q", len(text)) + text + data


def encode_safetensors(entries: Mapping[str, tuple[str, Iterable[int], bytes]],
                       metadata: Mapping[str, str] | None = None) -> bytes:
    """Encode a well-formed safetensors file by hand.

    ``entries`` maps tensor name to ``(dtype, shape, raw little-endian bytes)``; tensors are
    laid out contiguously in byte-wise name order.
    """
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(entries, key=_name_key):
        dtype, shape, raw = entries[name]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    return pack_safetensors(header, b"".join(chunks))


# ---------------------------------------------------------------------------------------------
# Reading and validation
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class RawTensor:
    """One tensor entry of a safetensors file: its declared dtype and shape and its bytes."""
    dtype: str
    shape: tuple[int, ...]
    data: bytes


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, str], dict[str, RawTensor]]:
    """Parse a safetensors container strictly; return ``(metadata, tensors)``.

    Raises :class:`ModelFormatError` for a truncated file, a bad header length, a header that
    is not a JSON object, malformed entries, data beyond the end of the file or overlapping
    tensors. Gaps between tensors are tolerated.
    """
    with open(path, "rb") as f:
        blob = f.read()
    size = len(blob)
    if size < 8:
        raise ModelFormatError(f"file truncated: {size} bytes, too short for the 8-byte header length", path)
    (header_len,) = struct.unpack_from("<Q", blob, 0)
    if header_len > MAX_HEADER_BYTES:
        raise ModelFormatError(f"header length {header_len} exceeds the limit of {MAX_HEADER_BYTES} bytes", path)
    if 8 + header_len > size:
        raise ModelFormatError(f"header length {header_len} extends beyond end of file ({size} bytes)", path)
    try:
        header = json.loads(blob[8:8 + header_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"header is not valid JSON: {exc}", path) from None
    if not isinstance(header, dict):
        raise ModelFormatError("header is not a JSON object", path)
    data = blob[8 + header_len:]

    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise ModelFormatError("header __metadata__ must map strings to strings", path)

    spans: list[tuple[int, int, str]] = []
    tensors: dict[str, RawTensor] = {}
    for name, entry in header.items():
        if not isinstance(entry, dict):
            raise ModelFormatError(f"header entry for tensor {name} is not an object", path)
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in SAFETENSORS_DTYPE_SIZES:
            raise ModelFormatError(f"tensor {name} has unknown dtype {dtype!r}", path)
        if not isinstance(shape, list) or not all(_is_nonneg_int(d) for d in shape):
            raise ModelFormatError(f"tensor {name} has an invalid shape {shape!r}", path)
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_nonneg_int(o) for o in offsets)
                or offsets[0] > offsets[1]):
            raise ModelFormatError(f"tensor {name} has invalid data_offsets {offsets!r}", path)
        begin, end = offsets
        needed = math.prod(shape) * SAFETENSORS_DTYPE_SIZES[dtype]
        if end - begin != needed:
            raise ModelFormatError(f"tensor {name}: data_offsets span {end - begin} bytes but dtype {dtype} "
                                   f"and shape {shape} need {needed}", path)
        if end > len(data):
            raise ModelFormatError(f"tensor {name}: data ends at byte {end}, beyond end of the "
                                   f"{len(data)}-byte data section (file truncated?)", path)
        spans.append((begin, end, name))
        tensors[name] = RawTensor(dtype, tuple(shape), data[begin:end])

    # Sorted by start, a tensor overlaps an earlier one iff it starts before the furthest end so far.
    spans.sort()
    furthest: tuple[int, int, str] | None = None
    for begin, end, name in spans:
        if begin == end:
            continue
        if furthest is not None and begin < furthest[1]:
            raise ModelFormatError(f"tensors {furthest[2]} and {name} overlap (bytes {furthest[0]}..{furthest[1]} "
                                   f"and {begin}..{end})", path)
        if furthest is None or end > furthest[1]:
            furthest = (begin, end, name)
    return metadata, tensors


@dataclasses.dataclass
class LoadedModel:
    """A validated model: its kind, spec, metadata and tensors widened to float32."""
    kind: str
    spec: dict
    metadata: dict[str, str]
    tensors: dict[str, np.ndarray]
    dtypes: dict[str, str]


def _decode_float(raw: RawTensor) -> np.ndarray:
    stored = np.frombuffer(raw.data, dtype=_STORAGE_NUMPY[raw.dtype]).reshape(raw.shape)
    return widen(stored, raw.dtype)


def load_model(path: str | os.PathLike, expected_kind: str | None = None) -> LoadedModel:
    """Load and fully validate a model file, like the server's loader must.

    Container errors (see :func:`read_safetensors`) and metadata errors are raised at once;
    tensor-level problems (missing/unexpected tensors, dtype, shape, non-finite values) and
    the sha256 check are collected so that ``ModelFormatError.problems`` lists all of them.
    """
    metadata, raw = read_safetensors(path)

    fmt = metadata.get(META_FORMAT)
    if fmt != FORMAT_VERSION:
        raise ModelFormatError(f"unsupported {META_FORMAT} {fmt!r} (expected {FORMAT_VERSION!r})", path)
    kind = metadata.get(META_KIND)
    if kind not in KINDS:
        raise ModelFormatError(f"unknown {META_KIND} {kind!r}", path)
    if expected_kind is not None and kind != expected_kind:
        raise ModelFormatError(f"expected a {expected_kind} but {META_KIND} is {kind!r}", path)
    if META_SPEC not in metadata:
        raise ModelFormatError(f"metadata key {META_SPEC} is missing", path)
    try:
        spec = json.loads(metadata[META_SPEC])
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"{META_SPEC} is not valid JSON: {exc}", path) from None
    spec_problems = validate_backbone_spec(spec) if kind == "backbone" else validate_head_spec(spec)
    if spec_problems:
        raise ModelFormatError(spec_problems, path)
    declared_hash = metadata.get(META_SHA256)
    if not isinstance(declared_hash, str) or len(declared_hash) != 64:
        raise ModelFormatError(f"metadata key {META_SHA256} is missing or not a hex SHA-256", path)

    expected = tensor_shapes(kind, spec)
    problems: list[str] = []
    for name in sorted(set(expected) - set(raw), key=_name_key):
        problems.append(f"missing tensor {name}")
    for name in sorted(set(raw) - set(expected), key=_name_key):
        problems.append(f"unexpected tensor {name}")

    tensors: dict[str, np.ndarray] = {}
    for name in sorted(set(expected) & set(raw), key=_name_key):
        entry = raw[name]
        if entry.dtype not in STORAGE_DTYPES:
            problems.append(f"tensor {name} has unsupported dtype {entry.dtype} (expected F32, F16 or BF16)")
            continue
        if entry.shape != expected[name]:
            problems.append(f"tensor {name} has shape {list(entry.shape)}, expected {list(expected[name])}")
            continue
        values = _decode_float(entry)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            problems.append(f"tensor {name} has a value that is not finite ({values.flat[bad[0]]}) "
                            f"at flat index {bad[0]}")
            continue
        tensors[name] = values

    actual_hash = tensor_sha256({name: entry.data for name, entry in raw.items()})
    if actual_hash != declared_hash.lower():
        problems.append(f"sha256 mismatch: metadata says {declared_hash}, tensor data hashes to {actual_hash}")
    if problems:
        raise ModelFormatError(problems, path)
    return LoadedModel(kind, spec, metadata, tensors, {name: entry.dtype for name, entry in raw.items()})


def check_pair(backbone_spec: Mapping, head_spec: Mapping) -> None:
    """Raise :class:`ModelFormatError` unless the head fits the backbone: its ``input`` equals the
    backbone output width and its ``interaction`` (if any) the backbone's interaction dim. A head
    without interaction on a backbone with towers is fine (it ignores u and v)."""
    width = backbone_output_width(backbone_spec)
    version = head_spec.get("version", "")
    if head_spec["input"] != width:
        raise ModelFormatError(f"head {version!r} input {head_spec['input']} does not "
                               f"match the backbone output width {width}")
    k, towers = head_interaction_dim(head_spec), backbone_interaction_dim(backbone_spec)
    if k and not towers:
        raise ModelFormatError(f"head {version!r} interaction {k} needs a backbone with interaction towers; "
                               f"this backbone has none")
    if k and k != towers:
        raise ModelFormatError(f"head {version!r} interaction {k} does not match the backbone's "
                               f"interaction dim {towers}")


# ---------------------------------------------------------------------------------------------
# Forward pass
# ---------------------------------------------------------------------------------------------

def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # exp(-log(1 + exp(-x))) without overflow for large |x|.
    return np.exp(-np.logaddexp(0.0, -x))


def forward(backbone_tensors: Mapping[str, np.ndarray], backbone_spec: Mapping,
            head_tensors: Mapping[str, np.ndarray], head_spec: Mapping,
            context_ids: Any, context_dense: Any, item_ids: Any, item_dense: Any) -> np.ndarray:
    """Reference scores ``[N, K]`` for one request, computed in float64.

    Tensors hold float values (e.g. ``LoadedModel.tensors``; not BF16 bit patterns).
    ``context_ids``: one id per context field; ``context_dense``: ``[context_dense]``;
    ``item_ids``: ``[N, len(item_fields)]``; ``item_dense``: ``[N, item_dense]``.
    Every candidate's full input vector goes through the full layer-0 product (no
    context/item split), exactly as the math in MODEL-FORMAT.md is written; with an interaction
    head, the towers read the same vector's context and item columns.
    """
    check_pair(backbone_spec, head_spec)
    ctx_fields, item_fields = backbone_spec["context_fields"], backbone_spec["item_fields"]
    cid = _as_uint32(context_ids).reshape(-1)
    cd = np.asarray(context_dense, dtype=np.float64).reshape(-1)
    iid = _as_uint32(item_ids)
    idn = np.asarray(item_dense, dtype=np.float64)
    n = iid.shape[0] if iid.ndim == 2 else 0
    iid = iid.reshape(n, len(item_fields))
    idn = idn.reshape(n, backbone_spec["item_dense"])
    if cid.shape != (len(ctx_fields),):
        raise ValueError(f"expected {len(ctx_fields)} context ids, got {cid.shape[0]}")
    if cd.shape != (backbone_spec["context_dense"],):
        raise ValueError(f"expected {backbone_spec['context_dense']} context dense values, got {cd.shape[0]}")

    def t(tensors: Mapping[str, np.ndarray], name: str) -> np.ndarray:
        return np.asarray(tensors[name], dtype=np.float64)

    parts: list[np.ndarray] = []
    for f, field in enumerate(ctx_fields):
        row = hash_rows(cid[f], field["vocab"])
        parts.append(np.broadcast_to(t(backbone_tensors, f"embedding.{field['name']}")[row], (n, field["dim"])))
    parts.append(np.broadcast_to(cd, (n, cd.shape[0])))
    for g, field in enumerate(item_fields):
        rows = hash_rows(iid[:, g], field["vocab"])
        parts.append(t(backbone_tensors, f"embedding.{field['name']}")[rows])
    parts.append(idn)
    x0 = np.concatenate(parts, axis=1)
    z = x0

    for i in range(len(backbone_spec["hidden"])):
        z = _relu(z @ t(backbone_tensors, f"mlp.{i}.weight").T + t(backbone_tensors, f"mlp.{i}.bias"))
    h = z
    a = _relu(h @ t(head_tensors, "adapter.down.weight").T + t(head_tensors, "adapter.down.bias"))
    h = h + a @ t(head_tensors, "adapter.up.weight").T + t(head_tensors, "adapter.up.bias")
    x = h
    for j in range(len(head_spec["tower"])):
        x = _relu(x @ t(head_tensors, f"tower.{j}.weight").T + t(head_tensors, f"tower.{j}.bias"))
    logits = x @ t(head_tensors, "output.weight").T + t(head_tensors, "output.bias")
    if head_interaction_dim(head_spec):
        cw = backbone_context_width(backbone_spec)
        u = x0[:, :cw] @ t(backbone_tensors, "user_tower.weight").T + t(backbone_tensors, "user_tower.bias")
        v = x0[:, cw:] @ t(backbone_tensors, "item_tower.weight").T + t(backbone_tensors, "item_tower.bias")
        # logits[n, o] += u_n^T A_o v_n (u_n is the same for every n: the request's user vector).
        logits = logits + np.einsum("ni,oij,nj->no", u, t(head_tensors, "interaction.weight"), v)
    return _sigmoid(logits)
