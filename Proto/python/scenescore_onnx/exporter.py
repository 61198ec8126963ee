"""Exporting a model directory's scenes: one ONNX file per scene (backbone + that scene's head)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import onnx
from safetensors import safe_open

from .graph import build_model
from .modelfile import ExportError, ModelFile, load_backbone, load_head

# Above this many bytes of weights a graph is written with its initializers in OUT/<scene>.onnx.data
# (protobuf's 2 GiB limit on one message).
EXTERNAL_DATA_BYTES = 1_800_000_000


@dataclass
class Exported:
    scene: str
    version: str
    outputs: list[str]
    path: Path
    head_sha256: str
    backbone_sha256: str
    external_data: Path | None


def head_files(model_dir: Path) -> dict[str, Path]:
    """Scene → head file, from each DIR/heads/*.safetensors's spec (its metadata only)."""
    heads_dir = model_dir / "heads"
    if not heads_dir.is_dir():
        raise ExportError(f"{model_dir}: no heads/ directory")
    scenes: dict[str, Path] = {}
    for path in sorted(heads_dir.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="np") as f:
                spec = json.loads((f.metadata() or {}).get("scenescore.spec", "null"))
        except Exception as error:  # noqa: BLE001
            raise ExportError(f"{path.name}: not a readable safetensors file: {error}") from error
        scene = spec.get("scene") if isinstance(spec, dict) else None
        if not isinstance(scene, str):
            raise ExportError(f"{path.name}: metadata scenescore.spec names no scene")
        if scene in scenes:
            raise ExportError(f"{model_dir}: two heads for scene {scene!r}: {scenes[scene].name} and {path.name}")
        scenes[scene] = path
    if not scenes:
        raise ExportError(f"{heads_dir}: holds no *.safetensors head")
    return scenes


def _write(model: onnx.ModelProto, path: Path) -> Path | None:
    """Writes atomically (temp + rename); the weights go to <path>.data when they are too large for
    one protobuf message. Returns the external data file, if any."""
    weight_bytes = sum(len(t.raw_data) for t in model.graph.initializer)
    path.parent.mkdir(parents=True, exist_ok=True)
    data: Path | None = None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        if weight_bytes > EXTERNAL_DATA_BYTES:
            data = path.with_name(path.name + ".data")
            if data.exists():
                data.unlink()
            onnx.save_model(model, tmp, save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data.name, size_threshold=1024)
            # onnx writes the data file next to tmp under `location`, i.e. already at `data`.
            onnx.checker.check_model(tmp, full_check=True)
        else:
            onnx.checker.check_model(model, full_check=True)
            onnx.save_model(model, tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp made it 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return data


def export(model_dir: str | os.PathLike, out_dir: str | os.PathLike, scenes: Iterable[str] | None = None,
           *, id_dtype: str = "uint32") -> list[Exported]:
    """Validates the backbone and the chosen heads (default: every head in DIR/heads), then writes
    OUT/<scene>.onnx for each. Nothing is written unless every chosen file is valid."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    available = head_files(model_dir)
    chosen = list(dict.fromkeys(scenes)) if scenes else sorted(available)
    missing = [s for s in chosen if s not in available]
    if missing:
        raise ExportError(f"{model_dir}: no head for scene(s) {', '.join(missing)} "
                          f"(heads: {', '.join(sorted(available))})")
    backbone = load_backbone(model_dir / "backbone.safetensors")
    heads: list[ModelFile] = [load_head(available[s], backbone) for s in chosen]
    models = [build_model(backbone, head, id_dtype=id_dtype) for head in heads]
    done = []
    for head, model in zip(heads, models):
        path = out_dir / f"{head.spec['scene']}.onnx"
        data = _write(model, path)
        done.append(Exported(scene=head.spec["scene"], version=head.spec["version"], outputs=list(head.spec["outputs"]),
                             path=path, head_sha256=head.sha256, backbone_sha256=backbone.sha256, external_data=data))
    return done
