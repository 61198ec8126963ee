#!/usr/bin/env python3
"""Checks a model file written by the Swift side with the Python safetensors package.

Usage: check_model_file.py FILE KIND — exits non-zero with a message on any problem.
"""
import json
import sys

from safetensors import safe_open

sys.path.insert(0, __import__("os").path.dirname(__file__))
from scenescore_model import tensor_sha256  # noqa: E402


def main():
    path, kind = sys.argv[1], sys.argv[2]
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata()
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    assert meta["scenescore.format"] == "1", meta
    assert meta["scenescore.kind"] == kind, meta
    json.loads(meta["scenescore.spec"])
    assert meta["scenescore.sha256"] == tensor_sha256(tensors), "sha256 mismatch"


if __name__ == "__main__":
    main()
