"""Scenes as a client sees them: a scene's described schema, requests shaped by it, and which
head version answers a request (Proto/ADMIN.md).

``GET /v1/scenes`` describes every servable scene. Since scenes can be plugins, the counts it
reports (``context_ids``, ``context_dense``, ``item_ids``, ``item_dense``) are the scene's RAW
counts — what the client must send — and ``schema`` names each value; ``plugin`` names the
scene's plugin (``None``: the backbone's canonical schema) and ``canary`` is ``None`` or
``{"version", "share"}``.

A request goes to the canary version when ``mix64(request_id) / 2**64 < share``, with ``mix64``
SplitMix64's finaliser, so a client can tell beforehand which version will answer it
(:func:`canary_chosen`, :func:`expected_version`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .wire import encode_request

MASK64 = (1 << 64) - 1
GOLDEN_GAMMA = 0x9E3779B97F4A7C15
SECTIONS = ("context_ids", "context_dense", "item_ids", "item_dense")


def mix64(x: int) -> int:
    """SplitMix64's finaliser of ``x`` (ADMIN.md), all arithmetic mod 2**64.

    ``mix64(0)`` is the first output of SplitMix64 seeded with 0."""
    z = (x + GOLDEN_GAMMA) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def canary_chosen(request_id: int, share: float) -> bool:
    """Whether a request with this id goes to the canary version at this canary share.

    ``mix64(request_id) / 2**64 < share``; the division is exact in binary floating point
    (a power of two), so this is the server's comparison bit for bit."""
    if not 0 <= request_id <= MASK64:
        raise ValueError(f"request_id {request_id} is not a 64-bit unsigned integer")
    return mix64(request_id) / 2.0**64 < share


@dataclass(frozen=True)
class Canary:
    """A scene's canary label: the version and the share of requests it takes."""

    version: str
    share: float


@dataclass(frozen=True)
class SceneDescription:
    """One entry of ``GET /v1/scenes``.

    ``head_version`` is the stable version; the four counts are the raw counts a request
    must carry; ``schema`` maps each section to the names of its values (empty lists when
    the server does not name them)."""

    scene: str
    head_version: str
    outputs: list[str]
    context_ids: int
    context_dense: int
    item_ids: int
    item_dense: int
    parent_version: str = ""
    content_sha256: str = ""
    plugin: str | None = None
    schema: dict[str, list[str]] = field(default_factory=dict)
    canary: Canary | None = None

    @property
    def counts(self) -> tuple[int, int, int, int]:
        """(context ids, context dense, item ids, item dense): what a request must carry."""
        return self.context_ids, self.context_dense, self.item_ids, self.item_dense

    @classmethod
    def from_json(cls, obj: Any) -> "SceneDescription":
        """Parse one scene entry; raises ValueError when it is malformed."""
        if not isinstance(obj, Mapping):
            raise ValueError(f"scene entry is not an object: {obj!r}")
        try:
            counts = {key: _count(obj[key], key) for key in SECTIONS}
            outputs = obj["outputs"]
            if not isinstance(outputs, list) or not all(isinstance(name, str) for name in outputs):
                raise ValueError(f"outputs must be a list of names, got {outputs!r}")
            plugin = obj.get("plugin")
            if plugin is not None and not isinstance(plugin, str):
                raise ValueError(f"plugin must be null or a name, got {plugin!r}")
            schema = _schema(obj.get("schema"), counts)
            canary = _canary(obj.get("canary"))
            return cls(scene=str(obj["scene"]), head_version=str(obj["head_version"]), outputs=list(outputs),
                       parent_version=str(obj.get("parent_version") or ""),
                       content_sha256=str(obj.get("content_sha256") or ""),
                       plugin=plugin, schema=schema, canary=canary, **counts)
        except KeyError as missing:
            raise ValueError(f"scene entry lacks {missing}: {obj!r}") from None


def _count(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} must be a non-negative integer, got {value!r}")
    return value


def _schema(value: Any, counts: Mapping[str, int]) -> dict[str, list[str]]:
    if value is None:
        return {key: [] for key in SECTIONS}
    if not isinstance(value, Mapping):
        raise ValueError(f"schema must be an object, got {value!r}")
    schema: dict[str, list[str]] = {}
    for key in SECTIONS:
        names = value.get(key, [])
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise ValueError(f"schema.{key} must be a list of names, got {names!r}")
        if len(names) != counts[key]:
            raise ValueError(f"schema.{key} names {len(names)} values but {key} is {counts[key]}")
        schema[key] = list(names)
    return schema


def _canary(value: Any) -> Canary | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not isinstance(value.get("version"), str):
        raise ValueError(f"canary must be null or {{\"version\", \"share\"}}, got {value!r}")
    share = value.get("share")
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
        raise ValueError(f"canary share must be a number in [0, 1], got {share!r}")
    return Canary(value["version"], float(share))


def describe(desc: SceneDescription | Mapping[str, Any]) -> SceneDescription:
    """A :class:`SceneDescription` from itself or from its JSON object."""
    if isinstance(desc, SceneDescription):
        return desc
    return SceneDescription.from_json(desc)


def expected_version(desc: SceneDescription | Mapping[str, Any], request_id: int) -> str:
    """The head version that answers a request with this id, as the scene is described."""
    d = describe(desc)
    if d.canary is not None and canary_chosen(request_id, d.canary.share):
        return d.canary.version
    return d.head_version


# Plausible values of a plugin scene's raw fields, by name (first match wins): plugins check
# their domain (ids below a scene range, prices positive, discounts below 1, counts
# non-negative), which a schema's names hint at but do not state. (pattern, low, high): uniform
# in [low, high); high None: a standard normal deviate. Ids not matched are uniform in
# [0, 1000), below the smallest id range of the bundled plugins (1000 categories).
RAW_ID_RANGES: list[tuple[str, float, float | None]] = [
    (r"user|hash", 0, 2**32),
]
RAW_DENSE_RANGES: list[tuple[str, float, float | None]] = [
    (r"price_cents|cents", 100, 100_000),
    (r"price", 1, 1000),
    (r"discount", 0, 0.9),
    (r"rating", 1, 5),
    (r"sessions|count|views|clicks", 0, 100),
    (r"content|log_|_z$|embedding|score", 0, None),
]
DEFAULT_RAW_ID_RANGE = (0, 1000)
DEFAULT_RAW_DENSE_RANGE = (0.0, 1.0)


def _draw(gen: np.random.Generator, names: list[str], count: int, rows: int | None, rules, default,
          ranges: Mapping[str, tuple[float, float | None]] | None, ids: bool) -> np.ndarray:
    shape = (count,) if rows is None else (rows, count)
    if ids:
        out = gen.integers(0, 2**32, size=shape, dtype=np.uint32)
    else:
        out = gen.standard_normal(shape).astype(np.float32)
    if not names:  # a canonical scene: full-range ids, standard normal dense values
        return out
    for k, name in enumerate(names):
        low, high = (ranges or {}).get(name) or next(
            ((lo, hi) for pattern, lo, hi in rules if re.search(pattern, name)), default)
        column = (slice(None), k) if rows is not None else (k,)
        n = rows if rows is not None else 1
        if high is None:
            values = gen.standard_normal(n)
        elif ids:
            values = gen.integers(int(low), int(high), size=n, dtype=np.uint64)
        else:
            values = low + gen.random(n) * (high - low)
        out[column] = values if rows is not None else values[0]
    return out


def random_inputs(desc: SceneDescription | Mapping[str, Any], candidates: int,
                  rng: np.random.Generator | int | None = None, *,
                  ranges: Mapping[str, tuple[float, float | None]] | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random (context_ids, context_dense, item_ids, item_dense) with the scene's raw counts.

    A canonical scene (no plugin) gets uniform 32-bit ids and standard normal dense values. A
    plugin scene's values are drawn by field name (RAW_ID_RANGES / RAW_DENSE_RANGES, then
    ``ranges``: name -> (low, high), high None for a standard normal) so that they lie in the
    plugin's domain."""
    d = describe(desc)
    if candidates < 0:
        raise ValueError("candidates must be non-negative")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    named = d.plugin is not None or bool(ranges)

    def names(key: str, count: int) -> list[str]:
        listed = d.schema.get(key) or []
        if not named:
            return []
        return listed if len(listed) == count else [f"{key}_{k}" for k in range(count)]

    return (
        _draw(gen, names("context_ids", d.context_ids), d.context_ids, None, RAW_ID_RANGES,
              DEFAULT_RAW_ID_RANGE, ranges, True),
        _draw(gen, names("context_dense", d.context_dense), d.context_dense, None, RAW_DENSE_RANGES,
              DEFAULT_RAW_DENSE_RANGE, ranges, False),
        _draw(gen, names("item_ids", d.item_ids), d.item_ids, candidates, RAW_ID_RANGES,
              DEFAULT_RAW_ID_RANGE, ranges, True),
        _draw(gen, names("item_dense", d.item_dense), d.item_dense, candidates, RAW_DENSE_RANGES,
              DEFAULT_RAW_DENSE_RANGE, ranges, False),
    )


def encode_for_scene(desc: SceneDescription | Mapping[str, Any], candidates: int,
                     rng: np.random.Generator | int | None = None, *, request_id: int = 0,
                     ranges: Mapping[str, tuple[float, float | None]] | None = None) -> bytes:
    """A binary request body (wire v1) for the described scene with random raw inputs
    (:func:`random_inputs`)."""
    d = describe(desc)
    return encode_request(d.scene, *random_inputs(d, candidates, rng, ranges=ranges), request_id=request_id)
