"""The exporter refuses model files the server refuses, with a message naming the file, the tensor
and the problem, and writes nothing: checked through the API and the command line, and against
the server's own loader (`scenescore model check`, which must refuse the same file)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import CLI, ENV, e2e, write_model_file


def _head(model_dir: Path, scene: str = "apparel"):
    from scenescore_onnx import load_backbone, load_head

    backbone = load_backbone(model_dir / "backbone.safetensors")
    head = load_head(model_dir / "heads" / f"{scene}.safetensors", backbone)
    return head.metadata["scenescore.spec"], {k: v.copy() for k, v in head.tensors.items()}, head.sha256


def corrupt(case: str, interaction_dir: Path, plain_dir: Path, target: Path) -> tuple[str, str]:
    """Builds model dir `target` (the interaction model's backbone and a valid 'beauty' head, plus a
    corrupted 'apparel' head, or a corrupted backbone); returns (file, expected message fragment)."""
    (target / "heads").mkdir(parents=True)
    spec_json, t, sha = _head(interaction_dir)
    spec = json.loads(spec_json)
    backbone_src = plain_dir if case == "interaction-on-plain-backbone" else interaction_dir
    (target / "backbone.safetensors").symlink_to(backbone_src / "backbone.safetensors")
    if case != "interaction-on-plain-backbone":
        (target / "heads" / "beauty.safetensors").symlink_to(interaction_dir / "heads" / "beauty.safetensors")
    path = target / "heads" / "apparel.safetensors"
    name = path.name
    if case == "wrong-shape":
        t["adapter.down.weight"] = t["adapter.down.weight"][:31]
        write_model_file(path, "head", spec, t)
        return name, "tensor adapter.down.weight: shape [31, 128], expected [32, 128]"
    if case == "missing-tensor":
        del t["tower.0.bias"]
        write_model_file(path, "head", spec, t)
        return name, "tensor tower.0.bias: missing (expected shape [64])"
    if case == "unexpected-tensor":
        t["tower.1.weight"] = np.zeros((4, 64), np.float32)
        write_model_file(path, "head", spec, t)
        return name, "tensor tower.1.weight: unexpected tensor for this head spec"
    if case == "sha256-mismatch":
        t["output.bias"] += np.float32(0.5)
        write_model_file(path, "head", spec, t, sha256=sha)
        return name, f"sha256 mismatch: metadata says {sha}"
    if case == "not-finite":
        t["tower.0.weight"][3, 5] = np.nan
        write_model_file(path, "head", spec, t)
        return name, "tensor tower.0.weight: value nan at flat index 389 is not finite"
    if case == "input-width":
        write_model_file(path, "head", {**spec, "input": 64}, t)
        return name, "spec input 64 does not match the backbone's output width 128"
    if case == "interaction-dim":
        t["interaction.weight"] = t["interaction.weight"][:, :8, :8].copy()
        write_model_file(path, "head", {**spec, "interaction": 8}, t)
        return name, "spec interaction 8 does not match the backbone's interaction dim 16"
    if case == "interaction-on-plain-backbone":
        write_model_file(path, "head", spec, t)
        return name, "spec interaction 16 needs a backbone with interaction towers"
    if case == "wrong-kind":
        write_model_file(path, "backbone", spec, t)
        return name, "metadata scenescore.kind is 'backbone', expected 'head'"
    if case == "truncated":
        write_model_file(path, "head", spec, t)
        path.write_bytes(path.read_bytes()[:4000])
        return name, "apparel.safetensors: not a readable safetensors file"
    if case == "backbone-wrong-shape":
        from scenescore_onnx import load_backbone

        b = load_backbone(interaction_dir / "backbone.safetensors")
        bt = dict(b.tensors)
        bt["mlp.1.weight"] = bt["mlp.1.weight"][:, :255]
        (target / "backbone.safetensors").unlink()
        write_model_file(target / "backbone.safetensors", "backbone", b.spec, bt)
        path.symlink_to(interaction_dir / "heads" / "apparel.safetensors")
        return "backbone.safetensors", "tensor mlp.1.weight: shape [128, 255], expected [128, 256]"
    raise AssertionError(case)


CASES = ["wrong-shape", "missing-tensor", "unexpected-tensor", "sha256-mismatch", "not-finite", "input-width",
         "interaction-dim", "interaction-on-plain-backbone", "wrong-kind", "truncated", "backbone-wrong-shape"]


@pytest.mark.parametrize("case", CASES)
def test_corrupted_model_is_refused(case, interaction_model_dir, plain_model_dir, tmp_path):
    from scenescore_onnx import ExportError, export

    model_dir = tmp_path / "model"
    file, fragment = corrupt(case, interaction_model_dir, plain_model_dir, model_dir)
    out = tmp_path / "out"

    with pytest.raises(ExportError) as refused:
        export(model_dir, out)
    message = str(refused.value)
    assert message.startswith(f"{file}: "), message
    assert fragment in message, message
    assert not out.exists(), "a refused export wrote files"

    r = subprocess.run([*CLI, "--model-dir", str(model_dir), "--out-dir", str(out)], capture_output=True, text=True,
                       env=ENV, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"scenescore_onnx: error: {message}" in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()

    # The server's loader refuses the same model directory.
    check = subprocess.run([str(e2e.BINARY), "model", "check", "--model-dir", str(model_dir)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode != 0, f"scenescore model check accepted what the exporter refused ({message}):\n" \
                                  f"{check.stdout}"


def test_valid_scene_exports_beside_a_corrupted_head(interaction_model_dir, plain_model_dir, tmp_path):
    """--scene picks heads: a corrupted head of another scene does not stop the export of a valid one."""
    from scenescore_onnx import export

    corrupt("wrong-shape", interaction_model_dir, plain_model_dir, tmp_path / "model")
    [done] = export(tmp_path / "model", tmp_path / "out", ["beauty"])
    assert done.scene == "beauty" and done.path.is_file()
