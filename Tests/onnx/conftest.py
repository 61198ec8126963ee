"""Fixtures for the ONNX export tests: exported graphs run in onnxruntime against the real server.

Every test is skipped, with the reason, when the `onnx` or `onnxruntime` package is not importable
(pip install onnx onnxruntime), or when the server binary (.build/release/scenescore, or
$SCENESCORE_BIN) is missing. The server is started with Tests/e2e's Launcher (h2c port, waits for
/readyz) and scored through Proto/python's reference client with the binary wire format, so the
server's float32 scores arrive bit-exact.

Models: the default model (var/models/default, or $SCENESCORE_E2E_MODEL_DIR, or one built with
`scenescore model init` as Tests/e2e does), and a random model with the two-tower interaction
(`scenescore model init --random --interaction 16`) to which `extra_heads` adds heads that reach
the server's other code paths: more than four outputs (its packed output layer instead of the narrow
one) with two tower layers, a head without interaction (and without a tower) on the towered
backbone, and F16 / BF16 storage.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
for p in (REPO / "Proto" / "python", REPO / "Tests" / "e2e"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

# The exporter's command line, run with Proto/python on the path.
CLI = [sys.executable, "-m", "scenescore_onnx"]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "Proto" / "python"), os.environ.get("PYTHONPATH", "")])}


def _missing_packages() -> str | None:
    missing = []
    for name in ("onnx", "onnxruntime"):
        try:
            __import__(name)
        except ImportError as error:
            missing.append(f"{name} ({error})")
    if missing:
        return f"not importable: {', '.join(missing)} — pip install onnx onnxruntime"
    return None


def _load_e2e():
    """Tests/e2e/conftest.py as a plain module (its Launcher, certificates and model helpers)."""
    spec = importlib.util.spec_from_file_location("scenescore_e2e_conftest", REPO / "Tests" / "e2e" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


e2e = _load_e2e()


def pytest_collection_modifyitems(config, items):
    problem = _missing_packages() or e2e._binary_problem()  # noqa: SLF001
    if problem is None:
        return
    marker = pytest.mark.skip(reason=problem)
    for item in items:
        item.add_marker(marker)


# ---------------------------------------------------------------------------
# Max |onnx − server| per (model, scene), printed at the end of the run
# ---------------------------------------------------------------------------

DIFFS: dict[tuple[str, str], dict] = {}


def record(model: str, scene: str, n: int, diff: float, outputs: int) -> None:
    entry = DIFFS.setdefault((model, scene), {"max": 0.0, "requests": 0, "scores": 0})
    entry["max"] = max(entry["max"], diff)
    entry["requests"] += 1
    entry["scores"] += n * outputs


def pytest_terminal_summary(terminalreporter):
    if not DIFFS:
        return
    terminalreporter.section("max |onnxruntime - server| per scene")
    for (model, scene), e in sorted(DIFFS.items()):
        terminalreporter.write_line(f"{model:22s} {scene:12s} {e['max']:.3e}  ({e['requests']} requests, "
                                    f"{e['scores']} scores)")


# ---------------------------------------------------------------------------
# Writing model files (for extra heads and corrupted ones)
# ---------------------------------------------------------------------------


def _bf16_bits(values: np.ndarray) -> np.ndarray:
    """float32 → bfloat16 bit patterns, rounded to nearest even."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def stored_bytes(values: np.ndarray, dtype: str) -> bytes:
    if dtype == "F32":
        return np.ascontiguousarray(values, dtype="<f4").tobytes()
    if dtype == "F16":
        return np.ascontiguousarray(values, dtype="<f2").tobytes()
    if dtype == "BF16":
        return _bf16_bits(values).astype("<u2").tobytes()
    raise ValueError(dtype)


def write_model_file(path: Path, kind: str, spec: dict, tensors: dict[str, np.ndarray], *, dtype: str = "F32",
                     sha256: str | None = None, shapes: dict[str, tuple[int, ...]] | None = None) -> str:
    """A safetensors model file (Proto/MODEL-FORMAT.md). `sha256` None: the correct digest; `shapes`
    overrides a tensor's declared shape (its bytes must still fit). Returns the digest written."""
    raw = {name: stored_bytes(v, dtype) for name, v in tensors.items()}
    digest = hashlib.sha256(b"".join(raw[n] for n in sorted(raw, key=lambda s: s.encode()))).hexdigest()
    header: dict = {"__metadata__": {"scenescore.format": "1", "scenescore.kind": kind,
                                     "scenescore.spec": json.dumps(spec),
                                     "scenescore.sha256": sha256 if sha256 is not None else digest}}
    offset = 0
    for name in sorted(raw):
        shape = (shapes or {}).get(name, tuple(np.shape(tensors[name])))
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw[name])]}
        offset += len(raw[name])
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + b"".join(raw[n] for n in sorted(raw)))
    return sha256 if sha256 is not None else digest


def random_head_tensors(spec: dict, seed: int) -> dict[str, np.ndarray]:
    """Random weights of the scale a trained head has (logits of a few units)."""
    from scenescore_onnx.modelfile import head_shapes

    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in head_shapes(spec).items():
        fan_in = shape[-1] if len(shape) > 1 else 1
        scale = 0.3 if name == "interaction.weight" else (1.0 / np.sqrt(fan_in) if len(shape) > 1 else 0.1)
        out[name] = (rng.standard_normal(shape) * scale).astype(np.float32)
    return out


EXTRA_HEADS = [
    # (spec without input/interaction filled in, uses the backbone's interaction, storage dtype)
    ({"scene": "wide", "version": "wide-1", "parent": "apparel-1", "bottleneck": 24, "tower": [48, 24],
      "outputs": ["click", "cart", "purchase", "return", "share", "dwell"]}, True, "F32"),
    ({"scene": "plain", "version": "plain-1", "parent": "", "bottleneck": 16, "tower": [],
      "outputs": ["click"]}, False, "F16"),
    ({"scene": "brain16", "version": "brain16-7", "parent": "", "bottleneck": 8, "tower": [32],
      "outputs": ["click", "purchase", "favourite"]}, True, "BF16"),
]


def random_backbone_tensors(spec: dict, seed: int) -> dict[str, np.ndarray]:
    from scenescore_onnx.modelfile import backbone_shapes

    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in backbone_shapes(spec).items():
        if name.startswith("embedding."):
            out[name] = (rng.standard_normal(shape) * 0.5).astype(np.float32)
        elif len(shape) > 1:
            out[name] = (rng.standard_normal(shape) * np.sqrt(2.0 / shape[1])).astype(np.float32)
        else:
            out[name] = (rng.standard_normal(shape) * 0.1).astype(np.float32)
    return out


# Backbones at the edges of the schema, with one head each (random weights).
SCHEMA_EDGE_MODELS = {
    # No context ids (the context part is dense values only), no item dense values, a one-row
    # table (every id hashes to row 0), three MLP layers; a head with five outputs (packed layer).
    "no-context-ids": (
        {"context_fields": [], "context_dense": 3,
         "item_fields": [{"name": "item", "vocab": 1, "dim": 4}, {"name": "shop", "vocab": 7, "dim": 3}],
         "item_dense": 0, "hidden": [16, 8, 6], "activation": "relu"},
        {"scene": "edge-a", "version": "edge-a-1", "parent": "", "bottleneck": 2, "tower": [3],
         "outputs": ["a", "b", "c", "d", "e"]}),
    # No context at all (layer 0 is the item part + bias), no item ids (dense only).
    "no-context-no-item-ids": (
        {"context_fields": [], "context_dense": 0, "item_fields": [], "item_dense": 5,
         "hidden": [12], "activation": "relu"},
        {"scene": "edge_b", "version": "edge_b-1", "parent": "", "bottleneck": 4, "tower": [],
         "outputs": ["click"]}),
}


def write_schema_edge_model(target: Path, name: str) -> Path:
    bspec, hspec = SCHEMA_EDGE_MODELS[name]
    write_model_file(target / "backbone.safetensors", "backbone", bspec, random_backbone_tensors(bspec, seed=7))
    hspec = {**hspec, "input": bspec["hidden"][-1]}
    write_model_file(target / "heads" / f"{hspec['scene']}.safetensors", "head", hspec,
                     random_head_tensors({**hspec, "interaction": 0}, seed=8))
    return target


def add_extra_heads(model_dir: Path, width: int, k: int) -> list[str]:
    scenes = []
    for i, (base, interacting, dtype) in enumerate(EXTRA_HEADS):
        spec = {**base, "input": width}
        if interacting and k:
            spec["interaction"] = k
        tensors = random_head_tensors({**spec, "interaction": spec.get("interaction", 0)}, seed=100 + i)
        write_model_file(model_dir / "heads" / f"{spec['scene']}.safetensors", "head", spec, tensors, dtype=dtype)
        scenes.append(spec["scene"])
    return scenes


# ---------------------------------------------------------------------------
# Models, servers and exported graphs
# ---------------------------------------------------------------------------


def model_init(target: Path, *extra: str) -> Path:
    result = subprocess.run([str(e2e.BINARY), "model", "init", "--dir", str(target), *extra], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, f"scenescore model init --dir {target} {' '.join(extra)} failed: {result.stderr}"
    return target


@dataclass
class Served:
    """One model directory: a server on it, a client, and every scene exported and loaded in onnxruntime."""

    name: str
    dir: Path
    server: object
    client: object
    backbone_spec: dict
    sessions: dict = field(default_factory=dict)  # scene -> onnxruntime.InferenceSession
    models: dict = field(default_factory=dict)  # scene -> onnx.ModelProto (metadata)
    head_files: dict = field(default_factory=dict)  # scene -> Path

    @property
    def scenes(self) -> list[str]:
        return sorted(self.sessions)


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    return e2e.make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def default_model_dir(tmp_path_factory) -> Path:
    target = e2e.existing_model_dir()
    if target is None:
        target = model_init(tmp_path_factory.mktemp("model") / "default")
    elif not (target / "backbone.safetensors").is_file():
        model_init(target)
    return target


@pytest.fixture(scope="session")
def plain_model_dir(tmp_path_factory) -> Path:
    """A backbone without interaction towers (the trained default model has them; --random alone has not)."""
    target = model_init(tmp_path_factory.mktemp("model") / "plain", "--random")
    backbone = json.loads(_metadata(target / "backbone.safetensors")["scenescore.spec"])
    assert not backbone.get("interaction"), f"model init --random wrote towers: {backbone}"
    return target


@pytest.fixture(scope="session")
def interaction_model_dir(tmp_path_factory) -> Path:
    target = model_init(tmp_path_factory.mktemp("model") / "interaction16", "--random", "--interaction", "16")
    backbone = json.loads(_metadata(target / "backbone.safetensors")["scenescore.spec"])
    assert backbone.get("interaction", {}).get("dim") == 16, f"model init --interaction 16 wrote {backbone}"
    add_extra_heads(target, backbone["hidden"][-1], 16)
    return target


def _metadata(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        return dict(f.metadata() or {})


def ort_session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # a 2-core machine shared with the server under test
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="session")
def launcher(tmp_path_factory, certs, default_model_dir):
    lc = e2e.Launcher(tmp_path_factory, certs, default_model_dir)
    yield lc
    problems = lc.stop_all()
    assert not problems, "\n".join(problems)


def _served(name: str, model_dir: Path, launcher, tmp_path_factory) -> Served:
    import onnx
    from scenescore_client import ScoreClient
    from scenescore_onnx import export, head_files

    out = tmp_path_factory.mktemp(f"onnx-{name}")
    exported = export(model_dir, out)
    server = launcher.start(name=name, model_dir=model_dir)
    client = ScoreClient(f"http://127.0.0.1:{server.h2c_port}", timeout=10)
    served = Served(name=name, dir=model_dir, server=server, client=client,
                    backbone_spec=json.loads(_metadata(model_dir / "backbone.safetensors")["scenescore.spec"]),
                    head_files=head_files(model_dir))
    for e in exported:
        served.sessions[e.scene] = ort_session(e.path)
        served.models[e.scene] = onnx.load(str(e.path), load_external_data=False)
    assert set(served.sessions) == set(served.head_files), "export did not cover every head"
    return served


MODELS = ["default", "interaction16", *SCHEMA_EDGE_MODELS]


@pytest.fixture(scope="session", params=MODELS)
def served(request, launcher, tmp_path_factory) -> Served:
    if request.param == "default":
        model_dir = request.getfixturevalue("default_model_dir")
    elif request.param == "interaction16":
        model_dir = request.getfixturevalue("interaction_model_dir")
    else:
        model_dir = write_schema_edge_model(tmp_path_factory.mktemp("model") / request.param, request.param)
    s = _served(request.param, model_dir, launcher, tmp_path_factory)
    yield s
    s.client.close()
