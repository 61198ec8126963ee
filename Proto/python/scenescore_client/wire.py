"""SceneScore wire format v1: encoders and strict decoders.

This module is the executable reference for ``Proto/WIRE.md``. The decoders check
exactly what the spec lists, in the order the spec lists it, and raise
:class:`WireError` with the same ``detail`` text a conforming server puts in its
``application/problem+json`` error.

Layout summary (all integers little-endian, every section starts at an 8-byte
aligned offset and is zero-padded to a multiple of 8 bytes)::

    request  = header(32, "SSQ1") | scene name | context ids (u32) | context dense (f32)
               | item ids (N x F u32) | item dense (N x D f32)
    response = header(32, "SSR1") | scene name | head version | output names
               | scores (N x K f32)
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

CONTENT_TYPE = "application/vnd.scenescore.v1"
JSON_CONTENT_TYPE = "application/json"
PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://scenescore.dev/problems/"
HEAD_VERSION_HEADER = "x-scenescore-head-version"

REQUEST_MAGIC = b"SSQ1"
RESPONSE_MAGIC = b"SSR1"
VERSION = 1
HEADER_SIZE = 32
ALIGNMENT = 8
MAX_SCENE_LEN = 64
MAX_OUTPUT_NAME_LEN = 255
DEFAULT_MAX_CANDIDATES = 1024

U16_MAX = 0xFFFF
U32_MAX = 0xFFFF_FFFF
U64_MAX = 0xFFFF_FFFF_FFFF_FFFF

# Request header: magic, version, flags, request_id, n_candidates, n_context_ids,
# n_context_dense, n_item_ids, n_item_dense, scene_len, reserved.
_REQUEST_HEADER = struct.Struct("<4sHHQIHHHHHH")
# Response header: magic, version, flags, request_id, n_candidates, n_outputs,
# scene_len, head_version_len, output_names_len, reserved.
_RESPONSE_HEADER = struct.Struct("<4sHHQIHHHHI")
assert _REQUEST_HEADER.size == HEADER_SIZE and _RESPONSE_HEADER.size == HEADER_SIZE

# Section names, as they appear in error details.
SCENE_NAME = "scene name"
CONTEXT_IDS = "context ids"
CONTEXT_DENSE = "context dense"
ITEM_IDS = "item ids"
ITEM_DENSE = "item dense"
HEAD_VERSION = "head version"
OUTPUT_NAMES = "output names"
SCORES = "scores"

_SCENE_NAME_PATTERN = re.compile(rb"[a-z0-9_-]+")


class WireError(ValueError):
    """A body (or a value about to be encoded) violates the wire format.

    ``status`` and ``slug`` are the HTTP status and problem type a server answers
    with; ``detail`` is the human-readable problem description.
    """

    def __init__(self, detail: str, *, status: int = 400, slug: str = "malformed-request"):
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.slug = slug

    @property
    def problem_type(self) -> str:
        """The RFC 9457 ``type`` URI for this error."""
        return PROBLEM_TYPE_BASE + self.slug


@dataclass(frozen=True)
class Section:
    """One body section: its name, start offset (a multiple of 8) and payload size."""

    name: str
    offset: int
    size: int

    @property
    def end(self) -> int:
        """Offset one past the last payload byte (where padding starts)."""
        return self.offset + self.size

    @property
    def padded_end(self) -> int:
        """Offset where the next section starts."""
        return self.offset + padded(self.size)


@dataclass(frozen=True)
class ScoreRequest:
    """A decoded scoring request. Arrays are native-endian numpy arrays."""

    scene: str
    request_id: int
    context_ids: np.ndarray  # (n_context_ids,) uint32
    context_dense: np.ndarray  # (n_context_dense,) float32
    item_ids: np.ndarray  # (n_candidates, n_item_ids) uint32
    item_dense: np.ndarray  # (n_candidates, n_item_dense) float32

    @property
    def n_candidates(self) -> int:
        return int(self.item_ids.shape[0])

    def encode(self) -> bytes:
        """Encode this request in the binary wire format."""
        return encode_request(
            self.scene,
            self.context_ids,
            self.context_dense,
            self.item_ids,
            self.item_dense,
            request_id=self.request_id,
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON request object (``application/json`` variant)."""
        return request_to_json(
            self.scene,
            self.context_ids,
            self.context_dense,
            self.item_ids,
            self.item_dense,
            request_id=self.request_id,
        )


@dataclass(frozen=True)
class ScoreResponse:
    """A decoded scoring response; ``scores`` is an (n_candidates, n_outputs) float32 array."""

    request_id: int
    scene: str
    head_version: str
    outputs: list[str]
    scores: np.ndarray

    @property
    def n_candidates(self) -> int:
        return int(self.scores.shape[0])

    def encode(self) -> bytes:
        """Encode this response in the binary wire format."""
        return encode_response(
            self.request_id, self.scene, self.head_version, self.outputs, self.scores
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON response object (``application/json`` variant)."""
        return {
            "request_id": self.request_id,
            "scene": self.scene,
            "head_version": self.head_version,
            "outputs": list(self.outputs),
            "scores": [[float(v) for v in row] for row in self.scores],
        }


# ---------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------


def padded(size: int) -> int:
    """Round ``size`` up to the next multiple of 8."""
    return (size + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def _layout(named_sizes: Iterable[tuple[str, int]]) -> tuple[list[Section], int]:
    offset = HEADER_SIZE
    sections = []
    for name, size in named_sizes:
        section = Section(name, offset, size)
        sections.append(section)
        offset = section.padded_end
    return sections, offset


def request_layout(
    *,
    n_candidates: int,
    n_context_ids: int,
    n_context_dense: int,
    n_item_ids: int,
    n_item_dense: int,
    scene_len: int,
) -> tuple[list[Section], int]:
    """Sections of a request body and the total body length the header implies.

    Python integers do not overflow; a fixed-width implementation must compute the
    same values with checked arithmetic (see WIRE.md, "Length arithmetic").
    """
    return _layout(
        [
            (SCENE_NAME, scene_len),
            (CONTEXT_IDS, 4 * n_context_ids),
            (CONTEXT_DENSE, 4 * n_context_dense),
            (ITEM_IDS, 4 * n_candidates * n_item_ids),
            (ITEM_DENSE, 4 * n_candidates * n_item_dense),
        ]
    )


def response_layout(
    *,
    n_candidates: int,
    n_outputs: int,
    scene_len: int,
    head_version_len: int,
    output_names_len: int,
) -> tuple[list[Section], int]:
    """Sections of a response body and the total body length the header implies."""
    return _layout(
        [
            (SCENE_NAME, scene_len),
            (HEAD_VERSION, head_version_len),
            (OUTPUT_NAMES, output_names_len),
            (SCORES, 4 * n_candidates * n_outputs),
        ]
    )


# ---------------------------------------------------------------------------
# Shared validation helpers
# ---------------------------------------------------------------------------


def show_bytes(raw: bytes) -> str:
    """Quote ``raw`` for an error message: printable ASCII as is, other bytes as ``\\xNN``."""
    out = []
    for byte in raw:
        if byte in (0x22, 0x5C):
            out.append("\\" + chr(byte))
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\x{byte:02x}")
    return '"' + "".join(out) + '"'


def validate_scene_name(raw: bytes) -> str:
    """Return the scene name in ``raw`` or raise if it is not 1-64 bytes of [a-z0-9_-]."""
    if not 1 <= len(raw) <= MAX_SCENE_LEN:
        raise WireError(f"scene_len must be between 1 and {MAX_SCENE_LEN}, got {len(raw)}")
    if _SCENE_NAME_PATTERN.fullmatch(raw) is None:
        raise WireError(
            f"bad scene name {show_bytes(raw)}: only lowercase a-z, 0-9, '_' and '-' are allowed"
        )
    return raw.decode("ascii")


def _describe_nonfinite(value: float) -> str:
    if np.isnan(value):
        return "NaN"
    return "+Inf" if value > 0 else "-Inf"


def check_finite(
    values: np.ndarray, section: str, *, row_label: str | None = None
) -> None:
    """Raise naming the section and the first index whose value is NaN or infinite.

    For 2-D sections (``row_label`` given) the flat index is followed by
    ``(candidate <row>, <row_label> <column>)``.
    """
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size == 0:
        return
    index = int(bad[0])
    flat = values.reshape(-1)
    message = f"non-finite value {_describe_nonfinite(float(flat[index]))} in {section} at index {index}"
    if row_label is not None:
        columns = values.shape[1]
        message += f" (candidate {index // columns}, {row_label} {index % columns})"
    raise WireError(message)


def _check_padding(body: bytes, section: Section) -> None:
    for offset in range(section.end, section.padded_end):
        if body[offset] != 0:
            raise WireError(
                f"non-zero padding byte 0x{body[offset]:02x} at offset {offset} (after {section.name})"
            )


def _check_preamble(magic: bytes, expected_magic: bytes, version: int, flags: int) -> None:
    if magic != expected_magic:
        raise WireError(
            f"bad magic: expected {expected_magic.hex(' ')} ({show_bytes(expected_magic)}), "
            f"got {magic.hex(' ')}"
        )
    if version != VERSION:
        raise WireError(f"unsupported version {version}, expected {VERSION}")
    if flags != 0:
        raise WireError(f"flags must be 0 in version {VERSION}, got 0x{flags:04x}")


def _check_header_size(body: bytes) -> None:
    if len(body) < HEADER_SIZE:
        raise WireError(
            f"body is {len(body)} bytes, shorter than the {HEADER_SIZE}-byte header"
        )


def _check_length(body: bytes, implied: int) -> None:
    if len(body) != implied:
        raise WireError(f"body is {len(body)} bytes, header implies {implied}")


def _read_array(body: bytes, section: Section, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Copy a section's payload into a native-endian array of ``shape``."""
    count = section.size // 4
    if count == 0:
        return np.zeros(shape, dtype=np.dtype(dtype).newbyteorder("="))
    little = np.frombuffer(body, dtype=dtype, count=count, offset=section.offset)
    return little.astype(np.dtype(dtype).newbyteorder("="), copy=True).reshape(shape)


def _scene_bytes(scene: Any) -> bytes:
    """Validate a scene name given as ``str`` and return its bytes."""
    if not isinstance(scene, str):
        raise WireError(f"scene must be a string, got {type(scene).__name__}")
    raw = scene.encode("utf-8")
    validate_scene_name(raw)
    return raw


def _pad(payload: bytes) -> bytes:
    return payload + bytes(padded(len(payload)) - len(payload))


def _check_uint(value: Any, bits: int, what: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise WireError(f"{what} must be an integer, got {type(value).__name__}")
    value = int(value)
    if not 0 <= value < (1 << bits):
        raise WireError(f"{what} must be in 0...{(1 << bits) - 1}, got {value}")
    return value


def _as_u32_array(values: Any, ndim: int, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != ndim:
        raise WireError(f"{what} must be a {ndim}-D array, got shape {array.shape}")
    if array.size == 0:
        return np.zeros(array.shape, dtype=np.uint32)
    if array.dtype.kind not in "iu":
        raise WireError(f"{what} must be integers, got {array.dtype}")
    low, high = int(array.min()), int(array.max())
    if low < 0 or high > U32_MAX:
        culprit = low if low < 0 else high
        raise WireError(f"{what} must be in 0...{U32_MAX}, got {culprit}")
    return array.astype(np.uint32)


def _as_f32_array(values: Any, ndim: int, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != ndim:
        raise WireError(f"{what} must be a {ndim}-D array, got shape {array.shape}")
    if array.size == 0:
        return np.zeros(array.shape, dtype=np.float32)
    if array.dtype.kind not in "fiu":
        raise WireError(f"{what} must be numbers, got {array.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):
        return array.astype(np.float32)


def _check_count(count: int, limit: int, what: str) -> None:
    if count > limit:
        raise WireError(f"{what} is {count}, at most {limit} fits the header")


# ---------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------


def encode_request(
    scene: str,
    context_ids: Any,
    context_dense: Any,
    item_ids: Any,
    item_dense: Any,
    request_id: int = 0,
) -> bytes:
    """Encode a scoring request.

    ``item_ids`` is an (N, F) array of uint32-range integers and ``item_dense`` an
    (N, D) array of float32-representable finite numbers; both must have the same
    N >= 1 (use shape (N, 0) for "none"). Raises :class:`WireError` for anything
    the decoder would reject.
    """
    scene_raw = _scene_bytes(scene)
    request_id = _check_uint(request_id, 64, "request_id")
    ctx_ids = _as_u32_array(context_ids, 1, CONTEXT_IDS)
    ctx_dense = _as_f32_array(context_dense, 1, CONTEXT_DENSE)
    ids = _as_u32_array(item_ids, 2, ITEM_IDS)
    dense = _as_f32_array(item_dense, 2, ITEM_DENSE)
    if ids.shape[0] != dense.shape[0]:
        raise WireError(
            f"item ids has {ids.shape[0]} candidates but item dense has {dense.shape[0]}"
        )
    n_candidates = ids.shape[0]
    if n_candidates < 1:
        raise WireError("n_candidates must be at least 1")
    _check_count(n_candidates, U32_MAX, "n_candidates")
    _check_count(ctx_ids.shape[0], U16_MAX, "n_context_ids")
    _check_count(ctx_dense.shape[0], U16_MAX, "n_context_dense")
    _check_count(ids.shape[1], U16_MAX, "n_item_ids")
    _check_count(dense.shape[1], U16_MAX, "n_item_dense")
    check_finite(ctx_dense, CONTEXT_DENSE)
    check_finite(dense, ITEM_DENSE, row_label="value")

    header = _REQUEST_HEADER.pack(
        REQUEST_MAGIC,
        VERSION,
        0,
        request_id,
        n_candidates,
        ctx_ids.shape[0],
        ctx_dense.shape[0],
        ids.shape[1],
        dense.shape[1],
        len(scene_raw),
        0,
    )
    return b"".join(
        [
            header,
            _pad(scene_raw),
            _pad(ctx_ids.astype("<u4").tobytes()),
            _pad(ctx_dense.astype("<f4").tobytes()),
            _pad(ids.astype("<u4").tobytes()),
            _pad(dense.astype("<f4").tobytes()),
        ]
    )


def decode_request(
    data: bytes | bytearray | memoryview, *, max_candidates: int | None = DEFAULT_MAX_CANDIDATES
) -> ScoreRequest:
    """Decode and strictly validate a binary request body.

    Checks run in the order of WIRE.md, "Decoding order". ``max_candidates`` is the
    server's candidate limit (``None`` disables it); exceeding it raises a 413
    ``too-many-candidates`` error before any length arithmetic.
    """
    body = bytes(data)
    _check_header_size(body)
    (
        magic,
        version,
        flags,
        request_id,
        n_candidates,
        n_context_ids,
        n_context_dense,
        n_item_ids,
        n_item_dense,
        scene_len,
        reserved,
    ) = _REQUEST_HEADER.unpack_from(body)
    _check_preamble(magic, REQUEST_MAGIC, version, flags)
    if reserved != 0:
        raise WireError(f"reserved header field must be 0, got 0x{reserved:04x}")
    if n_candidates < 1:
        raise WireError("n_candidates must be at least 1")
    if max_candidates is not None and n_candidates > max_candidates:
        raise WireError(
            f"n_candidates {n_candidates} exceeds the limit of {max_candidates}",
            status=413,
            slug="too-many-candidates",
        )
    if not 1 <= scene_len <= MAX_SCENE_LEN:
        raise WireError(f"scene_len must be between 1 and {MAX_SCENE_LEN}, got {scene_len}")
    sections, implied = request_layout(
        n_candidates=n_candidates,
        n_context_ids=n_context_ids,
        n_context_dense=n_context_dense,
        n_item_ids=n_item_ids,
        n_item_dense=n_item_dense,
        scene_len=scene_len,
    )
    _check_length(body, implied)
    scene_sec, ctx_ids_sec, ctx_dense_sec, ids_sec, dense_sec = sections

    scene = validate_scene_name(body[scene_sec.offset : scene_sec.end])
    _check_padding(body, scene_sec)
    context_ids = _read_array(body, ctx_ids_sec, "<u4", (n_context_ids,))
    _check_padding(body, ctx_ids_sec)
    context_dense = _read_array(body, ctx_dense_sec, "<f4", (n_context_dense,))
    check_finite(context_dense, CONTEXT_DENSE)
    _check_padding(body, ctx_dense_sec)
    item_ids = _read_array(body, ids_sec, "<u4", (n_candidates, n_item_ids))
    _check_padding(body, ids_sec)
    item_dense = _read_array(body, dense_sec, "<f4", (n_candidates, n_item_dense))
    check_finite(item_dense, ITEM_DENSE, row_label="value")
    _check_padding(body, dense_sec)
    return ScoreRequest(scene, request_id, context_ids, context_dense, item_ids, item_dense)


# ---------------------------------------------------------------------------
# Responses
# ---------------------------------------------------------------------------


def encode_output_names(outputs: Sequence[str]) -> bytes:
    """The output-names block: for each name a u8 length and its UTF-8 bytes."""
    block = bytearray()
    seen: set[str] = set()
    for index, name in enumerate(outputs):
        raw = name.encode("utf-8")
        if not 1 <= len(raw) <= MAX_OUTPUT_NAME_LEN:
            raise WireError(
                f"output {index} name must be 1...{MAX_OUTPUT_NAME_LEN} bytes, got {len(raw)}"
            )
        if name in seen:
            raise WireError(f"duplicate output name {show_bytes(raw)}")
        seen.add(name)
        block.append(len(raw))
        block += raw
    return bytes(block)


def decode_output_names(block: bytes, n_outputs: int) -> list[str]:
    """Parse an output-names block that must hold exactly ``n_outputs`` names."""
    names: list[str] = []
    position = 0
    for index in range(n_outputs):
        if position >= len(block):
            raise WireError(f"output names block ends before output {index}")
        length = block[position]
        position += 1
        if length == 0:
            raise WireError(f"output {index} has an empty name")
        if position + length > len(block):
            raise WireError(f"output names block ends inside output {index}")
        raw = block[position : position + length]
        position += length
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise WireError(f"output {index} name {show_bytes(raw)} is not valid UTF-8") from None
        if name in names:
            raise WireError(f"duplicate output name {show_bytes(raw)}")
        names.append(name)
    if position != len(block):
        raise WireError(
            f"output names block has {len(block) - position} bytes after {n_outputs} names"
        )
    return names


def check_scores(scores: np.ndarray) -> None:
    """Raise unless every score is a finite probability in [0, 1]."""
    check_finite(scores, SCORES, row_label="output")
    outside = np.flatnonzero((scores < 0) | (scores > 1))
    if outside.size:
        index = int(outside[0])
        columns = scores.shape[1]
        value = float(scores.reshape(-1)[index])
        raise WireError(
            f"score {value!r} at index {index} (candidate {index // columns}, "
            f"output {index % columns}) is outside [0, 1]"
        )


def encode_response(
    request_id: int,
    scene: str,
    head_version: str,
    outputs: Sequence[str],
    scores: Any,
) -> bytes:
    """Encode a scoring response; ``scores`` is (n_candidates, len(outputs))."""
    request_id = _check_uint(request_id, 64, "request_id")
    scene_raw = _scene_bytes(scene)
    version_raw = head_version.encode("utf-8")
    if not 1 <= len(version_raw) <= U16_MAX:
        raise WireError(f"head version must be 1...{U16_MAX} bytes, got {len(version_raw)}")
    if not 1 <= len(outputs) <= U16_MAX:
        raise WireError(f"n_outputs must be 1...{U16_MAX}, got {len(outputs)}")
    names = encode_output_names(outputs)
    _check_count(len(names), U16_MAX, "output_names_len")
    values = _as_f32_array(scores, 2, SCORES)
    if values.shape[1] != len(outputs):
        raise WireError(f"scores have {values.shape[1]} columns but there are {len(outputs)} outputs")
    if values.shape[0] < 1:
        raise WireError("n_candidates must be at least 1")
    _check_count(values.shape[0], U32_MAX, "n_candidates")
    check_scores(values)
    header = _RESPONSE_HEADER.pack(
        RESPONSE_MAGIC,
        VERSION,
        0,
        request_id,
        values.shape[0],
        len(outputs),
        len(scene_raw),
        len(version_raw),
        len(names),
        0,
    )
    return b"".join(
        [header, _pad(scene_raw), _pad(version_raw), _pad(names), _pad(values.astype("<f4").tobytes())]
    )


def decode_response(data: bytes | bytearray | memoryview) -> ScoreResponse:
    """Decode and strictly validate a binary response body."""
    body = bytes(data)
    _check_header_size(body)
    (
        magic,
        version,
        flags,
        request_id,
        n_candidates,
        n_outputs,
        scene_len,
        head_version_len,
        output_names_len,
        reserved,
    ) = _RESPONSE_HEADER.unpack_from(body)
    _check_preamble(magic, RESPONSE_MAGIC, version, flags)
    if reserved != 0:
        raise WireError(f"reserved header field must be 0, got 0x{reserved:08x}")
    if n_candidates < 1:
        raise WireError("n_candidates must be at least 1")
    if n_outputs < 1:
        raise WireError("n_outputs must be at least 1")
    if not 1 <= scene_len <= MAX_SCENE_LEN:
        raise WireError(f"scene_len must be between 1 and {MAX_SCENE_LEN}, got {scene_len}")
    if head_version_len < 1:
        raise WireError("head_version_len must be at least 1")
    sections, implied = response_layout(
        n_candidates=n_candidates,
        n_outputs=n_outputs,
        scene_len=scene_len,
        head_version_len=head_version_len,
        output_names_len=output_names_len,
    )
    _check_length(body, implied)
    scene_sec, version_sec, names_sec, scores_sec = sections

    scene = validate_scene_name(body[scene_sec.offset : scene_sec.end])
    _check_padding(body, scene_sec)
    version_raw = body[version_sec.offset : version_sec.end]
    try:
        head_version = version_raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WireError(f"head version {show_bytes(version_raw)} is not valid UTF-8") from None
    _check_padding(body, version_sec)
    outputs = decode_output_names(body[names_sec.offset : names_sec.end], n_outputs)
    _check_padding(body, names_sec)
    scores = _read_array(body, scores_sec, "<f4", (n_candidates, n_outputs))
    check_scores(scores)
    _check_padding(body, scores_sec)
    return ScoreResponse(request_id, scene, head_version, outputs, scores)


# ---------------------------------------------------------------------------
# JSON variant (application/json)
# ---------------------------------------------------------------------------


def request_to_json(
    scene: str,
    context_ids: Any,
    context_dense: Any,
    item_ids: Any,
    item_dense: Any,
    request_id: int = 0,
) -> dict[str, Any]:
    """Build the JSON request object, validating values exactly like :func:`encode_request`.

    Dense values are written as the float64 value of their float32, so a server
    parsing them back to float32 gets the identical bits.
    """
    # Encoding validates every argument with the binary rules (which JSON shares).
    request = decode_request(
        encode_request(scene, context_ids, context_dense, item_ids, item_dense, request_id),
        max_candidates=None,
    )
    return {
        "scene": request.scene,
        "request_id": request.request_id,
        "context": {
            "ids": [int(v) for v in request.context_ids],
            "dense": [float(v) for v in request.context_dense],
        },
        "candidates": [
            {"ids": [int(v) for v in ids], "dense": [float(v) for v in dense]}
            for ids, dense in zip(request.item_ids, request.item_dense)
        ],
    }


def _json_members(value: Any, where: str, allowed: set[str], required: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise WireError(f"{where}: expected an object")
    for key in value:
        if key not in allowed:
            raise WireError(f"{where}: unknown member '{key}'")
    for key in sorted(required):
        if key not in value:
            raise WireError(f"{where}: missing member '{key}'")
    return value


def _json_ids(value: Any, where: str) -> list[int]:
    if not isinstance(value, list):
        raise WireError(f"{where}: expected an array")
    for index, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= U32_MAX:
            raise WireError(f"{where}[{index}]: expected an integer in 0...{U32_MAX}")
    return value


def _json_dense(value: Any, where: str) -> np.ndarray:
    if not isinstance(value, list):
        raise WireError(f"{where}: expected an array")
    for index, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise WireError(f"{where}[{index}]: expected a number")
    with np.errstate(over="ignore", invalid="ignore"):
        array = np.array(value, dtype=np.float64).astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise WireError(f"{where}[{int(bad[0])}]: value is not a finite float32")
    return array


def request_from_json(
    obj: Any, *, max_candidates: int | None = DEFAULT_MAX_CANDIDATES
) -> ScoreRequest:
    """Validate a JSON request object (already parsed) and convert it to a :class:`ScoreRequest`.

    Applies the JSON rules of WIRE.md in its order: members of the top-level object,
    then ``scene``, ``request_id``, ``context`` and ``candidates`` (count, limit, then
    each candidate). Without a scene schema at hand, candidates whose id or dense
    counts differ from candidate 0 raise a 422 ``schema-mismatch``.
    """
    top = _json_members(obj, "request", {"scene", "request_id", "context", "candidates"}, {"scene", "candidates"})
    if not isinstance(top["scene"], str):
        raise WireError("request.scene: expected a string")
    scene = validate_scene_name(top["scene"].encode("utf-8"))
    request_id = top.get("request_id", 0)
    if isinstance(request_id, bool) or not isinstance(request_id, int) or not 0 <= request_id <= U64_MAX:
        raise WireError(f"request.request_id: expected an integer in 0...{U64_MAX}")
    context = _json_members(top.get("context", {}), "request.context", {"ids", "dense"}, set())
    context_ids = _json_ids(context.get("ids", []), "request.context.ids")
    context_dense = _json_dense(context.get("dense", []), "request.context.dense")
    candidates = top["candidates"]
    if not isinstance(candidates, list):
        raise WireError("request.candidates: expected an array")
    if not candidates:
        raise WireError("n_candidates must be at least 1")
    if max_candidates is not None and len(candidates) > max_candidates:
        raise WireError(
            f"n_candidates {len(candidates)} exceeds the limit of {max_candidates}",
            status=413,
            slug="too-many-candidates",
        )
    rows_ids: list[list[int]] = []
    rows_dense: list[np.ndarray] = []
    for index, candidate in enumerate(candidates):
        where = f"request.candidates[{index}]"
        members = _json_members(candidate, where, {"ids", "dense"}, set())
        rows_ids.append(_json_ids(members.get("ids", []), where + ".ids"))
        rows_dense.append(_json_dense(members.get("dense", []), where + ".dense"))
    for index in range(1, len(candidates)):
        for what, rows in (("ids", rows_ids), ("dense values", rows_dense)):
            if len(rows[index]) != len(rows[0]):
                raise WireError(
                    f"candidate {index}: {len(rows[index])} {what}, candidate 0 has {len(rows[0])}",
                    status=422,
                    slug="schema-mismatch",
                )
    return ScoreRequest(
        scene=scene,
        request_id=request_id,
        context_ids=np.array(context_ids, dtype=np.uint32),
        context_dense=context_dense,
        item_ids=np.array(rows_ids, dtype=np.uint32).reshape(len(candidates), len(rows_ids[0])),
        item_dense=np.array(rows_dense, dtype=np.float32).reshape(len(candidates), len(rows_dense[0])),
    )


def response_from_json(obj: Any) -> ScoreResponse:
    """Validate a JSON response object (already parsed) and convert it to a :class:`ScoreResponse`."""
    members = {"request_id", "scene", "head_version", "outputs", "scores"}
    top = _json_members(obj, "response", members, members)
    request_id = top["request_id"]
    if isinstance(request_id, bool) or not isinstance(request_id, int) or not 0 <= request_id <= U64_MAX:
        raise WireError(f"response.request_id: expected an integer in 0...{U64_MAX}")
    if not isinstance(top["scene"], str):
        raise WireError("response.scene: expected a string")
    scene = validate_scene_name(top["scene"].encode("utf-8"))
    head_version = top["head_version"]
    if not isinstance(head_version, str) or not head_version:
        raise WireError("response.head_version: expected a non-empty string")
    outputs = top["outputs"]
    if not isinstance(outputs, list) or not outputs or not all(isinstance(o, str) for o in outputs):
        raise WireError("response.outputs: expected a non-empty array of strings")
    encode_output_names(outputs)  # same name rules as the binary block
    rows = top["scores"]
    if not isinstance(rows, list) or not rows:
        raise WireError("response.scores: expected a non-empty array of arrays")
    for index, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(outputs):
            raise WireError(f"response.scores[{index}]: expected an array of {len(outputs)} numbers")
    scores = np.stack([_json_dense(row, f"response.scores[{i}]") for i, row in enumerate(rows)])
    check_scores(scores)
    return ScoreResponse(request_id, scene, head_version, list(outputs), scores)
