"""Annotated hex dumps of SceneScore bodies (``python -m scenescore_client dump FILE``).

The body is decoded first, so only valid bodies are dumped; an invalid one raises
:class:`~scenescore_client.wire.WireError` naming its first fault.
"""

from __future__ import annotations

import struct

import numpy as np

from . import wire

_VALUES_PER_LINE = 4
_HEX_WIDTH = 3 * 4 * _VALUES_PER_LINE


class _Dump:
    def __init__(self, body: bytes):
        self.body = body
        self.lines: list[str] = []
        self.offset = 0

    def field(self, size: int, note: str) -> None:
        chunk = self.body[self.offset : self.offset + size]
        hex_bytes = " ".join(f"{b:02x}" for b in chunk)
        self.lines.append(f"0x{self.offset:04x}  {hex_bytes:<{_HEX_WIDTH}}; {note}")
        self.offset += size

    def text(self, section: wire.Section) -> None:
        """A byte-string section (at most 16 bytes a line), then its padding."""
        raw = self.body[section.offset : section.end]
        for start in range(0, len(raw), 16):
            part = raw[start : start + 16]
            label = section.name if start == 0 else f"{section.name} (cont.)"
            self.field(len(part), f"{label} {wire.show_bytes(part)}")
        self.padding(section)

    def values(self, section: wire.Section, array: np.ndarray, label: str) -> None:
        """A u32/f32 section, one line per run of up to 4 values of one row, then padding."""
        rows = array.reshape(-1, array.shape[-1]) if array.ndim == 2 else array.reshape(1, -1)
        for row_index, row in enumerate(rows):
            for start in range(0, row.size, _VALUES_PER_LINE):
                part = row[start : start + _VALUES_PER_LINE]
                index = f"[{row_index}]" if array.ndim == 2 else ""
                span = f"[{start}]" if part.size == 1 else f"[{start}..{start + part.size - 1}]"
                shown = ", ".join(_format_value(v) for v in part)
                self.field(4 * part.size, f"{label}{index}{span} = {shown}")
        self.padding(section)

    def padding(self, section: wire.Section) -> None:
        if section.padded_end > section.end:
            self.field(section.padded_end - section.end, "padding")


def _format_value(value: np.generic) -> str:
    if isinstance(value, np.floating):
        return repr(float(value))
    return str(int(value))


def annotate_request(body: bytes) -> str:
    """An annotated hex dump of a valid request body."""
    request = wire.decode_request(body, max_candidates=None)
    (_, version, flags, request_id, n, n_ci, n_cd, n_ii, n_id, scene_len, reserved) = struct.unpack_from(
        "<4sHHQIHHHHHH", body
    )
    dump = _Dump(body)
    dump.field(4, 'magic "SSQ1"')
    dump.field(2, f"version {version}")
    dump.field(2, f"flags {flags}")
    dump.field(8, f"request_id {request_id}")
    dump.field(4, f"n_candidates {n}")
    dump.field(2, f"n_context_ids {n_ci}")
    dump.field(2, f"n_context_dense {n_cd}")
    dump.field(2, f"n_item_ids {n_ii}")
    dump.field(2, f"n_item_dense {n_id}")
    dump.field(2, f"scene_len {scene_len}")
    dump.field(2, f"reserved {reserved}")
    scene, ctx_ids, ctx_dense, item_ids, item_dense = wire.request_layout(
        n_candidates=n,
        n_context_ids=n_ci,
        n_context_dense=n_cd,
        n_item_ids=n_ii,
        n_item_dense=n_id,
        scene_len=scene_len,
    )[0]
    dump.text(scene)
    dump.values(ctx_ids, request.context_ids, "context ids")
    dump.values(ctx_dense, request.context_dense, "context dense")
    dump.values(item_ids, request.item_ids, "item ids")
    dump.values(item_dense, request.item_dense, "item dense")
    return "\n".join(dump.lines)


def annotate_response(body: bytes) -> str:
    """An annotated hex dump of a valid response body."""
    response = wire.decode_response(body)
    (_, version, flags, request_id, n, n_outputs, scene_len, version_len, names_len, reserved) = (
        struct.unpack_from("<4sHHQIHHHHI", body)
    )
    dump = _Dump(body)
    dump.field(4, 'magic "SSR1"')
    dump.field(2, f"version {version}")
    dump.field(2, f"flags {flags}")
    dump.field(8, f"request_id {request_id}")
    dump.field(4, f"n_candidates {n}")
    dump.field(2, f"n_outputs {n_outputs}")
    dump.field(2, f"scene_len {scene_len}")
    dump.field(2, f"head_version_len {version_len}")
    dump.field(2, f"output_names_len {names_len}")
    dump.field(4, f"reserved {reserved}")
    scene, head_version, names, scores = wire.response_layout(
        n_candidates=n,
        n_outputs=n_outputs,
        scene_len=scene_len,
        head_version_len=version_len,
        output_names_len=names_len,
    )[0]
    dump.text(scene)
    dump.text(head_version)
    for index, name in enumerate(response.outputs):
        raw = name.encode("utf-8")
        dump.field(1, f"output {index} name length {len(raw)}")
        dump.field(len(raw), f"output {index} name {wire.show_bytes(raw)}")
    dump.padding(names)
    dump.values(scores, response.scores, "scores")
    return "\n".join(dump.lines)


def annotate(body: bytes) -> str:
    """Dump a request or a response, chosen by its magic."""
    if body[:4] == wire.RESPONSE_MAGIC:
        return annotate_response(body)
    return annotate_request(body)
