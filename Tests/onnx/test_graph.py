"""The exported graph's interface (inputs, output, opset, metadata_props), its id dtypes, and the
command line."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from conftest import CLI, ENV, _metadata, ort_session
from test_scores import request_inputs

onnx = pytest.importorskip("onnx", reason="pip install onnx onnxruntime")
TensorProto = onnx.TensorProto


def dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_interface_and_metadata(served):
    from scenescore_onnx import OPSET

    b = served.backbone_spec
    backbone_meta = _metadata(served.dir / "backbone.safetensors")
    for scene in served.scenes:
        model = served.models[scene]
        onnx.checker.check_model(model, full_check=True)
        assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)]
        assert OPSET == 18 and model.ir_version == 8
        assert {n.domain for n in model.graph.node} == {""}, "only standard ONNX operators"
        inputs = {i.name: i for i in model.graph.input}
        assert list(inputs) == ["context_ids", "context_dense", "item_ids", "item_dense"]
        assert dims(inputs["context_ids"]) == [1, len(b["context_fields"])]
        assert dims(inputs["context_dense"]) == [1, b["context_dense"]]
        assert dims(inputs["item_ids"]) == ["N", len(b["item_fields"])]
        assert dims(inputs["item_dense"]) == ["N", b["item_dense"]]
        assert inputs["context_ids"].type.tensor_type.elem_type == TensorProto.UINT32
        assert inputs["item_ids"].type.tensor_type.elem_type == TensorProto.UINT32
        assert inputs["context_dense"].type.tensor_type.elem_type == TensorProto.FLOAT
        head_meta = _metadata(served.head_files[scene])
        head_spec = json.loads(head_meta["scenescore.spec"])
        [out] = model.graph.output
        assert out.name == "scores" and out.type.tensor_type.elem_type == TensorProto.FLOAT
        assert dims(out) == ["N", len(head_spec["outputs"])]
        props = {p.key: p.value for p in model.metadata_props}
        assert props["scenescore.scene"] == scene == head_spec["scene"]
        assert props["scenescore.head_version"] == head_spec["version"]
        assert props["scenescore.head_parent"] == head_spec.get("parent", "")
        assert props["scenescore.head_sha256"] == head_meta["scenescore.sha256"].lower()
        assert props["scenescore.backbone_sha256"] == backbone_meta["scenescore.sha256"].lower()
        assert json.loads(props["scenescore.outputs"]) == head_spec["outputs"]
        assert props["scenescore.id_dtype"] == "uint32"
        assert json.loads(props["scenescore.head_spec"]) == head_spec
        assert json.loads(props["scenescore.backbone_spec"]) == b
        assert json.loads(props["scenescore.inputs"]) == {
            "context_ids": [f["name"] for f in b["context_fields"]], "context_dense": b["context_dense"],
            "item_ids": [f["name"] for f in b["item_fields"]], "item_dense": b["item_dense"]}


def test_int64_ids_score_exactly_as_uint32(interaction_model_dir, tmp_path):
    """--id-dtype int64: the same graph with int64 id inputs (taken modulo 2³²) gives bit-identical scores."""
    from scenescore_onnx import export

    u32 = {e.scene: e.path for e in export(interaction_model_dir, tmp_path / "u32")}
    i64 = {e.scene: e.path for e in export(interaction_model_dir, tmp_path / "i64", id_dtype="int64")}
    spec = json.loads(_metadata(interaction_model_dir / "backbone.safetensors")["scenescore.spec"])
    for scene in sorted(u32):
        a, b = ort_session(u32[scene]), ort_session(i64[scene])
        props = {p.key: p.value for p in onnx.load(str(i64[scene])).metadata_props}
        assert props["scenescore.id_dtype"] == "int64"
        cid, cd, iid, idn = request_inputs(spec, 64, seed=11)
        want = a.run(None, {"context_ids": cid[None], "context_dense": cd[None], "item_ids": iid, "item_dense": idn})[0]
        got = b.run(None, {"context_ids": cid[None].astype(np.int64), "context_dense": cd[None],
                           "item_ids": iid.astype(np.int64), "item_dense": idn})[0]
        assert np.array_equal(got, want), f"{scene}: int64 ids score differently"
        # Only the low 32 bits count: id + 2³² is the same id.
        wrapped = b.run(None, {"context_ids": cid[None].astype(np.int64) + 2**32, "context_dense": cd[None],
                               "item_ids": iid.astype(np.int64) - 2**32, "item_dense": idn})[0]
        assert np.array_equal(wrapped, want), f"{scene}: int64 ids are not taken modulo 2^32"


def test_zero_candidates(served):
    """N = 0 (the server refuses it; the graph answers an empty [0, K])."""
    b = served.backbone_spec
    for scene in served.scenes:
        k = len(json.loads({p.key: p.value for p in served.models[scene].metadata_props}["scenescore.outputs"]))
        [scores] = served.sessions[scene].run(None, {
            "context_ids": np.zeros((1, len(b["context_fields"])), np.uint32),
            "context_dense": np.zeros((1, b["context_dense"]), np.float32),
            "item_ids": np.zeros((0, len(b["item_fields"])), np.uint32),
            "item_dense": np.zeros((0, b["item_dense"]), np.float32)})
        assert scores.shape == (0, k)


def test_hash_helper_matches_the_graph(default_model_dir):
    """scenescore_onnx.hash_rows (for callers that look rows up themselves) is the graph's hash: the
    row of id x in a one-column table whose value is the row number."""
    from scenescore_onnx import fmix32, hash_rows

    # Known values of MurmurHash3's fmix32.
    assert [int(x) for x in fmix32(np.array([0, 1, 0xFFFFFFFF], np.uint32))] == [0, 0x514E28B7, 0x81F16F39]
    ids = np.array([0, 1, 0xFFFFFFFF, 0x80000000, 123456789], np.uint32)
    assert list(hash_rows(ids, 65536)) == [int(fmix32(np.array([i], np.uint32))[0]) % 65536 for i in ids]


def test_large_weights_go_to_external_data(interaction_model_dir, tmp_path, monkeypatch):
    """Above the size limit the weights go to OUT/<scene>.onnx.data; the graph scores the same."""
    import scenescore_onnx.exporter as ex

    [small] = ex.export(interaction_model_dir, tmp_path / "inline", ["apparel"])
    monkeypatch.setattr(ex, "EXTERNAL_DATA_BYTES", 0)
    [large] = ex.export(interaction_model_dir, tmp_path / "external", ["apparel"])
    assert small.external_data is None
    assert large.external_data == tmp_path / "external" / "apparel.onnx.data" and large.external_data.is_file()
    assert sorted(p.name for p in (tmp_path / "external").iterdir()) == ["apparel.onnx", "apparel.onnx.data"]
    assert large.path.stat().st_size < 100_000 < large.external_data.stat().st_size
    spec = json.loads(_metadata(interaction_model_dir / "backbone.safetensors")["scenescore.spec"])
    cid, cd, iid, idn = request_inputs(spec, 7, seed=3)
    feed = {"context_ids": cid[None], "context_dense": cd[None], "item_ids": iid, "item_dense": idn}
    assert np.array_equal(ort_session(large.path).run(None, feed)[0], ort_session(small.path).run(None, feed)[0])


def test_cli_exports_the_chosen_scenes(default_model_dir, tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([*CLI, "--model-dir", str(default_model_dir), "--scene", "apparel", "--scene", "home",
                        "--out-dir", str(out)], capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["apparel.onnx", "home.onnx"]
    assert "wrote" in r.stdout and "apparel" in r.stdout


def test_cli_exports_every_scene_and_checks(interaction_model_dir, tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([*CLI, "--model-dir", str(interaction_model_dir), "--out-dir", str(out), "--check"],
                       capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    heads = sorted(p.stem for p in (interaction_model_dir / "heads").glob("*.safetensors"))
    assert sorted(p.stem for p in out.glob("*.onnx")) == heads
    assert r.stdout.count("check ") == len(heads)
    assert all(oct(p.stat().st_mode & 0o777) != "0o600" for p in out.glob("*.onnx")), "files should follow the umask"


def test_cli_unknown_scene(default_model_dir, tmp_path):
    r = subprocess.run([*CLI, "--model-dir", str(default_model_dir), "--scene", "nope", "--out-dir",
                        str(tmp_path / "out")], capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 2
    assert "no head for scene(s) nope" in r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("missing", ["--model-dir", "--out-dir"])
def test_cli_requires_dirs(missing, tmp_path):
    args = {"--model-dir": str(tmp_path), "--out-dir": str(tmp_path / "o")}
    del args[missing]
    r = subprocess.run([*CLI, *[x for kv in args.items() for x in kv]], capture_output=True, text=True, env=ENV,
                       timeout=60)
    assert r.returncode == 2 and missing in r.stderr
