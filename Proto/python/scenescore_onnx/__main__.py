"""python3 -m scenescore_onnx --model-dir DIR [--scene S ...] --out-dir OUT [--id-dtype uint32|int64] [--check]

Writes OUT/<scene>.onnx for each chosen scene (default: every head in DIR/heads). Exit status 0 on
success, 2 when a model file is refused (the message names the file, tensor and problem) or the
request is unusable, 1 when --check finds a difference.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np

from .exporter import export, head_files
from .graph import ID_DTYPES
from .modelfile import ExportError, load_backbone, load_head


def _check(exported, model_dir, id_dtype: str, tolerance: float) -> float:
    """Runs each exported graph in onnxruntime on random inputs; returns the largest |onnx − numpy float64|."""
    import onnxruntime as ort  # noqa: PLC0415 - only needed for --check

    from .reference import forward  # noqa: PLC0415

    backbone = load_backbone(Path(model_dir) / "backbone.safetensors")
    head_paths = head_files(Path(model_dir))
    spec = backbone.spec
    rng = np.random.default_rng(0)
    worst = 0.0
    for e in exported:
        head = load_head(head_paths[e.scene], backbone)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(e.path), options, providers=["CPUExecutionProvider"])
        scene_worst = 0.0
        for n in (1, 7, 64):
            cid = rng.integers(0, 2**32, size=(1, len(spec["context_fields"])), dtype=np.uint64).astype(np.uint32)
            cd = rng.standard_normal((1, spec["context_dense"])).astype(np.float32)
            iid = rng.integers(0, 2**32, size=(n, len(spec["item_fields"])), dtype=np.uint64).astype(np.uint32)
            idn = rng.standard_normal((n, spec["item_dense"])).astype(np.float32)
            ids = np.int64 if id_dtype == "int64" else np.uint32
            got = session.run(None, {"context_ids": cid.astype(ids), "context_dense": cd,
                                     "item_ids": iid.astype(ids), "item_dense": idn})[0]
            want = forward(backbone, head, cid[0], cd[0], iid, idn)
            scene_worst = max(scene_worst, float(np.max(np.abs(got.astype(np.float64) - want))))
        print(f"check {e.scene}: max |onnxruntime - numpy float64| = {scene_worst:.3g}")
        worst = max(worst, scene_worst)
    if worst > tolerance:
        print(f"check failed: {worst:.3g} > {tolerance:g}", file=sys.stderr)
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m scenescore_onnx",
                                     description="Export SceneScore backbone + scene heads to ONNX "
                                                 "(one OUT/<scene>.onnx per scene; Proto/MODEL-FORMAT.md).")
    parser.add_argument("--model-dir", required=True, help="backbone.safetensors and heads/*.safetensors")
    parser.add_argument("--scene", action="append", default=[], metavar="S",
                        help="a scene to export (repeatable; default: every head in DIR/heads)")
    parser.add_argument("--out-dir", required=True, help="where <scene>.onnx files are written")
    parser.add_argument("--id-dtype", choices=sorted(ID_DTYPES), default="uint32",
                        help="element type of the id inputs (default uint32, as on the wire; int64 ids are "
                             "taken modulo 2^32)")
    parser.add_argument("--check", action="store_true",
                        help="run each graph in onnxruntime on random inputs against a float64 numpy "
                             "forward pass")
    parser.add_argument("--tolerance", type=float, default=1e-5, help="--check's largest absolute difference")
    args = parser.parse_args(argv)
    try:
        exported = export(args.model_dir, args.out_dir, args.scene or None, id_dtype=args.id_dtype)
    except ExportError as error:
        print(f"scenescore_onnx: error: {error}", file=sys.stderr)
        return 2
    for e in exported:
        extra = f" (+ {e.external_data})" if e.external_data else ""
        print(f"wrote {e.path}{extra}: scene {e.scene}, head {e.version}, outputs {','.join(e.outputs)}")
    if args.check:
        if importlib.util.find_spec("onnxruntime") is None:
            print("scenescore_onnx: error: --check needs onnxruntime (pip install onnxruntime)", file=sys.stderr)
            return 2
        if _check(exported, args.model_dir, args.id_dtype, args.tolerance) > args.tolerance:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
