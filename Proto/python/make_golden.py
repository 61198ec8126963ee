#!/usr/bin/env python3
"""Generate or verify the SceneScore wire-format golden vectors (Proto/golden/).

    python3 Proto/python/make_golden.py            # (re)write Proto/golden/
    python3 Proto/python/make_golden.py --check    # exit 1 unless the files match

With the default output directory it also refreshes (or checks) the annotated
hex dumps in Proto/WIRE.md, the ``<!-- annotate: golden/<file> -->`` blocks.

Every value comes from a SplitMix64 generator with a fixed seed, implemented here
so the output does not depend on the Python or numpy version. Dense values and
scores are multiples of 1/64 and 1/256, so their JSON decimals are exact.

Each invalid vector is checked against the reference decoder while generating:
the expected status and detail substring in invalid/invalid.json are what
``wire.decode_request`` (default candidate limit 1024) actually produces.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

from scenescore_client import wire  # noqa: E402
from scenescore_client.dump import annotate  # noqa: E402

DEFAULT_OUT = HERE.parent / "golden"
WIRE_DOC = HERE.parent / "WIRE.md"
_ANNOTATE_BLOCK = re.compile(r"(<!-- annotate: golden/([\w./-]+) -->\n```text\n)(.*?)(```)", re.S)
SEED = 0x5CE7E5C0DE


class SplitMix64:
    """Steele, Lea & Flood's SplitMix64: a tiny, fully specified 64-bit generator."""

    def __init__(self, seed: int):
        self.state = seed & wire.U64_MAX

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & wire.U64_MAX
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & wire.U64_MAX
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & wire.U64_MAX
        return z ^ (z >> 31)

    def ids(self, *shape: int) -> np.ndarray:
        """uint32 ids spread over the whole 32-bit range."""
        count = int(np.prod(shape))
        return np.array([self.next() >> 32 for _ in range(count)], dtype=np.uint32).reshape(shape)

    def dense(self, *shape: int) -> np.ndarray:
        """float32 values k/64 with k in [-512, 512]: exact in binary and in JSON decimals."""
        count = int(np.prod(shape))
        values = [((self.next() >> 11) % 1025 - 512) / 64 for _ in range(count)]
        return np.array(values, dtype=np.float32).reshape(shape)

    def probabilities(self, *shape: int) -> np.ndarray:
        """float32 scores k/256 with k in [0, 256]."""
        count = int(np.prod(shape))
        values = [((self.next() >> 11) % 257) / 256 for _ in range(count)]
        return np.array(values, dtype=np.float32).reshape(shape)


@dataclass(frozen=True)
class Vector:
    name: str
    description: str
    value: wire.ScoreRequest | wire.ScoreResponse


@dataclass(frozen=True)
class InvalidVector:
    name: str
    description: str
    data: bytes
    status: int
    slug: str
    detail_contains: str


def request_vectors(rng: SplitMix64) -> list[Vector]:
    """Valid requests. The first uses the MODEL-FORMAT.md example schema (1/4/3/17)."""
    one = wire.ScoreRequest(
        scene="apparel",
        request_id=7,
        context_ids=rng.ids(1),
        context_dense=rng.dense(4),
        item_ids=rng.ids(1, 3),
        item_dense=rng.dense(1, 17),
    )
    four_ids = rng.ids(4, 2)
    four_ids[0, 0] = 0  # the extremes of the id range
    four_ids[3, 1] = wire.U32_MAX
    four = wire.ScoreRequest(
        scene="home-garden_2",
        request_id=0x0123456789ABCDEF,
        context_ids=rng.ids(2),
        context_dense=rng.dense(3),
        item_ids=four_ids,
        item_dense=rng.dense(4, 5),
    )
    odd = wire.ScoreRequest(
        scene="toys_kids",
        request_id=wire.U64_MAX,
        context_ids=rng.ids(3),
        context_dense=rng.dense(0),
        item_ids=rng.ids(3, 5),
        item_dense=rng.dense(3, 7),
    )
    minimal = wire.ScoreRequest(
        scene="a-" + "z" * 30 + "_" + "0123456789" * 3 + "9",
        request_id=0,
        context_ids=rng.ids(0),
        context_dense=rng.dense(0),
        item_ids=rng.ids(2, 0),
        item_dense=rng.dense(2, 1),
    )
    assert len(minimal.scene) == wire.MAX_SCENE_LEN
    return [
        Vector("request-1cand", "1 candidate, scene 'apparel' (7 bytes, 1 padding byte), 1/4/3/17 schema", one),
        Vector(
            "request-4cand",
            "4 candidates, 13-byte scene (3 padding bytes), ids 0 and 0xFFFFFFFF, request_id 0x0123456789ABCDEF",
            four,
        ),
        Vector(
            "request-odd",
            "3 candidates, 0 context dense, odd counts (9-byte scene, 3 ctx ids, 5 item ids, 7 item dense), request_id 2^64-1",
            odd,
        ),
        Vector(
            "request-minimal",
            "64-byte scene (no padding), no context, 0 item ids, 1 item dense, 2 candidates, request_id 0",
            minimal,
        ),
    ]


def response_vectors(rng: SplitMix64) -> list[Vector]:
    one_scores = rng.probabilities(1, 2)
    three_scores = rng.probabilities(3, 3)
    three_scores[0, 0] = 0.0  # both ends of [0, 1]
    three_scores[2, 2] = 1.0
    return [
        Vector(
            "response-1cand",
            "answer to request-1cand: outputs click, purchase (15-byte names block)",
            wire.ScoreResponse(7, "apparel", "apparel-1", ["click", "purchase"], one_scores),
        ),
        Vector(
            "response-3cand",
            "3 candidates x 3 outputs (36-byte scores, 4 padding bytes), scores 0.0 and 1.0",
            wire.ScoreResponse(
                0x0123456789ABCDEF,
                "home-garden_2",
                "home-garden_2-14",
                ["click", "add_to_cart", "purchase"],
                three_scores,
            ),
        ),
    ]


def _patched(data: bytes, offset: int, fmt: str, value: Any) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def _raw_request(scene: bytes, n_candidates: int, counts: tuple[int, int, int, int]) -> bytes:
    """A request body with a consistent length but arbitrary header values and zero payload."""
    n_ci, n_cd, n_ii, n_id = counts
    _, length = wire.request_layout(
        n_candidates=n_candidates,
        n_context_ids=n_ci,
        n_context_dense=n_cd,
        n_item_ids=n_ii,
        n_item_dense=n_id,
        scene_len=len(scene),
    )
    header = struct.pack(
        "<4sHHQIHHHHHH", wire.REQUEST_MAGIC, 1, 0, 7, n_candidates, n_ci, n_cd, n_ii, n_id, len(scene), 0
    )
    body = bytearray(length)
    body[: wire.HEADER_SIZE] = header
    body[wire.HEADER_SIZE : wire.HEADER_SIZE + len(scene)] = scene
    return bytes(body)


def _float_offset(request: wire.ScoreRequest, section: str, index: int) -> int:
    sections, _ = wire.request_layout(
        n_candidates=request.n_candidates,
        n_context_ids=request.context_ids.size,
        n_context_dense=request.context_dense.size,
        n_item_ids=request.item_ids.shape[1],
        n_item_dense=request.item_dense.shape[1],
        scene_len=len(request.scene),
    )
    return next(s for s in sections if s.name == section).offset + 4 * index


def invalid_vectors(valid: dict[str, wire.ScoreRequest]) -> list[InvalidVector]:
    one = valid["request-1cand"]
    odd = valid["request-odd"]
    base = one.encode()  # 152 bytes
    base_odd = odd.encode()
    nan_offset = _float_offset(odd, wire.ITEM_DENSE, 2 * 7 + 4)
    inf_offset = _float_offset(one, wire.CONTEXT_DENSE, 1)
    malformed = 400, "malformed-request"
    cases: list[tuple[str, str, bytes, tuple[int, str], str]] = [
        ("short-header", "16 bytes: shorter than the header", base[:16], malformed,
         "body is 16 bytes, shorter than the 32-byte header"),
        ("bad-magic", "magic 'SSR1' (a response magic)", b"SSR1" + base[4:], malformed, "bad magic"),
        ("version-2", "version 2", _patched(base, 4, "<H", 2), malformed, "unsupported version 2"),
        ("nonzero-flags", "flags = 1", _patched(base, 6, "<H", 1), malformed, "flags must be 0"),
        ("nonzero-reserved", "reserved header bytes 30-31 = 1", _patched(base, 30, "<H", 1), malformed,
         "reserved header field must be 0"),
        ("zero-candidates", "n_candidates = 0 (body length consistent)",
         _raw_request(b"apparel", 0, (1, 4, 3, 17)), malformed, "n_candidates must be at least 1"),
        ("n-candidates-overflow", "n_candidates = 0xFFFFFFFF (rejected by the limit before length arithmetic)",
         _patched(base, 16, "<I", wire.U32_MAX), (413, "too-many-candidates"),
         "n_candidates 4294967295 exceeds the limit of 1024"),
        ("scene-len-zero", "scene_len = 0 (body length consistent)",
         _raw_request(b"", 1, (1, 4, 3, 17)), malformed, "scene_len must be between 1 and 64, got 0"),
        ("scene-len-65", "65-byte scene name (body length consistent)",
         _raw_request(b"a" * 65, 1, (1, 4, 3, 17)), malformed, "scene_len must be between 1 and 64, got 65"),
        ("truncated", "request-1cand minus its last byte", base[:-1], malformed,
         "body is 151 bytes, header implies 152"),
        ("trailing-byte", "request-1cand plus one zero byte", base + b"\x00", malformed,
         "body is 153 bytes, header implies 152"),
        ("nonzero-padding", "padding byte after the scene name set to 0x01",
         _patched(base, 39, "<B", 1), malformed, "non-zero padding byte 0x01 at offset 39 (after scene name)"),
        ("nonzero-final-padding", "request-odd with its last byte (item dense padding) set to 0x80",
         _patched(base_odd, len(base_odd) - 1, "<B", 0x80), malformed,
         f"non-zero padding byte 0x80 at offset {len(base_odd) - 1} (after item dense)"),
        ("nan-item-dense", "request-odd with a NaN at item dense candidate 2, value 4",
         _patched(base_odd, nan_offset, "<I", 0x7FC00000), malformed,
         "non-finite value NaN in item dense at index 18 (candidate 2, value 4)"),
        ("inf-context-dense", "request-1cand with +Inf at context dense index 1",
         _patched(base, inf_offset, "<I", 0x7F800000), malformed,
         "non-finite value +Inf in context dense at index 1"),
        ("uppercase-scene", "scene name 'Apparel'", base[:32] + b"Apparel" + base[39:], malformed,
         'bad scene name "Apparel"'),
        ("non-ascii-scene", "scene name 'cafe\\u0301s' (UTF-8, not in [a-z0-9_-])",
         _raw_request("cafe\u0301s".encode(), 1, (1, 4, 3, 17)), malformed,
         'bad scene name "cafe\\xcc\\x81s"'),
    ]
    vectors = []
    for name, description, data, (status, slug), detail in cases:
        _expect_rejection(name, data, status, slug, detail)
        vectors.append(InvalidVector(name, description, data, status, slug, detail))
    return vectors


def _expect_rejection(name: str, data: bytes, status: int, slug: str, detail: str) -> None:
    try:
        wire.decode_request(data)
    except wire.WireError as error:
        if (error.status, error.slug) != (status, slug) or detail not in error.detail:
            raise RuntimeError(
                f"invalid vector {name}: decoder says {error.status} {error.slug} {error.detail!r}, "
                f"expected {status} {slug} containing {detail!r}"
            ) from error
        return
    raise RuntimeError(f"invalid vector {name} decodes without error")


def format_json(value: Any, indent: int = 0) -> str:
    """JSON with objects spread over lines but arrays of scalars kept on one line."""
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f'{pad}  {json.dumps(key)}: {format_json(item, indent + 1)}' for key, item in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list):
        if all(not isinstance(item, (dict, list)) for item in value):
            return "[" + ", ".join(json.dumps(item) for item in value) + "]"
        items = [pad + "  " + format_json(item, indent + 1) for item in value]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(value, allow_nan=False)


def _readme(entries: list[tuple[str, str, bytes]], invalid: list[InvalidVector]) -> str:
    lines = [
        "# SceneScore wire format v1 — golden vectors",
        "",
        "Generated by `python3 Proto/python/make_golden.py`; do not edit by hand",
        "(`make_golden.py --check` verifies these files byte for byte). Layout: `Proto/WIRE.md`.",
        "",
        "Each valid vector `<name>.bin` has a `<name>.json` with the values it encodes, in the",
        "JSON request/response shape of WIRE.md. Decoding the `.bin` must give the `.json`",
        "values, and encoding the `.json` values must give the `.bin` bytes exactly.",
        "",
        "| file | bytes | sha256 | contents |",
        "|---|---|---|---|",
    ]
    for path, description, data in entries:
        lines.append(f"| `{path}` | {len(data)} | `{hashlib.sha256(data).hexdigest()[:16]}…` | {description} |")
    lines += [
        "",
        "## Invalid requests (`invalid/`)",
        "",
        "`invalid/invalid.json` maps each file to the HTTP status, problem type slug and a",
        "substring of the problem `detail` a server (candidate limit 1024) must answer with.",
        "Each is a valid request with exactly one fault.",
        "",
        "| file | status | detail contains | fault |",
        "|---|---|---|---|",
    ]
    for vector in invalid:
        detail = vector.detail_contains.replace("|", "\\|")
        lines.append(f"| `{vector.name}.bin` | {vector.status} | `{detail}` | {vector.description} |")
    return "\n".join(lines) + "\n"


def build_files() -> dict[str, bytes]:
    """Every golden file, keyed by its path relative to the golden directory."""
    rng = SplitMix64(SEED)
    requests = request_vectors(rng)
    responses = response_vectors(rng)
    files: dict[str, bytes] = {}
    listed: list[tuple[str, str, bytes]] = []
    for vector in requests + responses:
        data = vector.value.encode()
        document = vector.value.to_json()
        files[f"{vector.name}.bin"] = data
        files[f"{vector.name}.json"] = (format_json(document) + "\n").encode()
        listed.append((f"{vector.name}.bin", vector.description, data))
    invalid = invalid_vectors({v.name: v.value for v in requests})
    index = {}
    for vector in invalid:
        files[f"invalid/{vector.name}.bin"] = vector.data
        index[f"{vector.name}.bin"] = {
            "status": vector.status,
            "type": wire.PROBLEM_TYPE_BASE + vector.slug,
            "detail_contains": vector.detail_contains,
            "fault": vector.description,
        }
        listed.append((f"invalid/{vector.name}.bin", vector.description, vector.data))
    files["invalid/invalid.json"] = (format_json(index) + "\n").encode()
    files["README.md"] = _readme(listed, invalid).encode()
    return files


def refresh_doc(text: str, files: dict[str, bytes]) -> str:
    """``text`` with every annotate block replaced by the dump of the golden file it names."""

    def replace(match: re.Match) -> str:
        name = match.group(2)
        if name not in files:
            raise RuntimeError(f"{WIRE_DOC.name} annotates golden/{name}, which is not generated")
        return match.group(1) + annotate(files[name]) + "\n" + match.group(4)

    return _ANNOTATE_BLOCK.sub(replace, text)


def check(out: Path, files: dict[str, bytes]) -> list[str]:
    """Differences between ``files`` and the directory ``out`` (empty when identical)."""
    problems = []
    for path, data in sorted(files.items()):
        target = out / path
        if not target.is_file():
            problems.append(f"missing: {path}")
        elif target.read_bytes() != data:
            problems.append(f"differs: {path}")
    if out.is_dir():
        for target in sorted(out.rglob("*")):
            relative = target.relative_to(out).as_posix()
            if target.is_file() and relative not in files:
                problems.append(f"not generated (stale?): {relative}")
    return problems


def write(out: Path, files: dict[str, bytes], log: Callable[[str], None]) -> None:
    for path, data in sorted(files.items()):
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_file() or target.read_bytes() != data:
            target.write_bytes(data)
            log(f"wrote {target}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"directory (default {DEFAULT_OUT})")
    parser.add_argument("--check", action="store_true", help="verify instead of writing; exit 1 on any difference")
    args = parser.parse_args(argv)
    files = build_files()
    with_doc = args.out.resolve() == DEFAULT_OUT.resolve()
    doc = WIRE_DOC.read_text() if with_doc else ""
    if args.check:
        problems = check(args.out, files)
        if with_doc and refresh_doc(doc, files) != doc:
            problems.append(f"differs: annotated dumps in {WIRE_DOC.name}")
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print(f"{len(problems)} golden file(s) out of date; run {Path(__file__).name}", file=sys.stderr)
            return 1
        print(f"{len(files)} golden files up to date in {args.out}")
        return 0
    write(args.out, files, print)
    if with_doc and refresh_doc(doc, files) != doc:
        WIRE_DOC.write_text(refresh_doc(doc, files))
        print(f"wrote annotated dumps in {WIRE_DOC}")
    stale = [p for p in check(args.out, files) if p.startswith("not generated")]
    for problem in stale:
        print(f"warning: {problem}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
