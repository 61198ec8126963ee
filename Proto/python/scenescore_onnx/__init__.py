"""ONNX export of a SceneScore backbone + scene head (Proto/MODEL-FORMAT.md, "ONNX export").

    PYTHONPATH=Proto/python python3 -m scenescore_onnx --model-dir var/models/default --out-dir out/

writes out/<scene>.onnx for every head: one graph computing the server's forward pass on the
canonical schema (raw ids in, in-graph fmix32 hashing, sigmoid scores out). Needs the `onnx`,
`safetensors` and `numpy` packages (and `onnxruntime` for `--check`).
"""

from .exporter import Exported, export, head_files
from .graph import (CANDIDATES_DIM, EXPORT_FORMAT, INPUT_NAMES, IR_VERSION, OPSET, OUTPUT_NAME, build_model,
                    metadata)
from .modelfile import ExportError, ModelFile, load_backbone, load_head, load_model_file
from .reference import fmix32, forward, hash_rows

__all__ = [
    "CANDIDATES_DIM", "EXPORT_FORMAT", "INPUT_NAMES", "IR_VERSION", "OPSET", "OUTPUT_NAME",
    "ExportError", "Exported", "ModelFile",
    "build_model", "export", "fmix32", "forward", "hash_rows", "head_files", "load_backbone", "load_head",
    "load_model_file", "metadata",
]
