"""Helpers shared by the scene/admin end-to-end tests: a scoring client that shapes requests from
`GET /v1/scenes`, admin problem checks, state-directory fingerprints, metrics scraping, and the
reference scores of heads made by heads.py."""

from __future__ import annotations

import hashlib
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

import heads
from h2util import REPO, parse_metrics, wire
from scenescore_client import SceneDescription, random_inputs

PROBLEM = "application/problem+json"
SCENESCORE_CLI_TIMEOUT = 60


def h2_client(cafile: Path, timeout: float = 30.0, **kw) -> httpx.Client:
    """httpx over HTTP/2 + TLS, verifying with the test CA."""
    return httpx.Client(http2=True, verify=ssl.create_default_context(cafile=str(cafile)), timeout=timeout, **kw)


class Scoring:
    """Scores through the serving port (binary wire v1 over h2) with requests shaped by the
    scene's description in GET /v1/scenes."""

    def __init__(self, server, timeout: float = 30.0):
        self.base = f"https://127.0.0.1:{server.port}"
        self.http = h2_client(server.cafile, timeout)

    def close(self) -> None:
        self.http.close()

    def scenes_json(self) -> dict[str, dict]:
        r = self.http.get(self.base + "/v1/scenes")
        assert r.status_code == 200 and r.http_version == "HTTP/2", r
        return {s["scene"]: s for s in r.json()["scenes"]}

    def describe(self, scene: str) -> SceneDescription:
        scenes = self.scenes_json()
        assert scene in scenes, f"GET /v1/scenes lacks {scene!r}: {sorted(scenes)}"
        return SceneDescription.from_json(scenes[scene])

    def post(self, body: bytes) -> httpx.Response:
        return self.http.post(self.base + "/v1/score", content=body,
                              headers={"content-type": wire.CONTENT_TYPE})

    def score(self, desc: SceneDescription, n: int = 3, request_id: int = 1, seed: int = 1):
        """(response, arrays, decoded body or None)."""
        arrays = random_inputs(desc, n, np.random.default_rng(seed))
        r = self.post(wire.encode_request(desc.scene, *arrays, request_id=request_id))
        decoded = wire.decode_response(r.content) if r.status_code == 200 else None
        return r, arrays, decoded

    def score_ok(self, desc: SceneDescription, n: int = 3, request_id: int = 1, seed: int = 1):
        """A 200 whose header and body name the same head version; (version, arrays, decoded)."""
        r, arrays, decoded = self.score(desc, n, request_id, seed)
        assert r.status_code == 200, f"score {desc.scene} (request id {request_id}): {r.status_code} {r.text[:300]}"
        assert r.http_version == "HTTP/2"
        header = r.headers.get(wire.HEAD_VERSION_HEADER)
        assert header == decoded.head_version, (header, decoded.head_version)
        assert decoded.request_id == request_id and decoded.scene == desc.scene and decoded.n_candidates == n
        assert np.isfinite(decoded.scores).all() and ((decoded.scores >= 0) & (decoded.scores <= 1)).all()
        return decoded.head_version, arrays, decoded

    def metrics(self) -> tuple[dict[str, str], list[tuple[str, dict[str, str], float]]]:
        r = self.http.get(self.base + "/metrics")
        assert r.status_code == 200, r
        return parse_metrics(r.text)


def metric(samples, name: str, **labels) -> float:
    return sum(v for n, l, v in samples if n == name and all(l.get(k) == str(x) for k, x in labels.items()))


def assert_admin_problem(r: httpx.Response, status: int, *keywords: str, what: str = "") -> dict:
    """An RFC 9457 problem with this status whose detail names the problem (any of `keywords`,
    case-insensitive, when given)."""
    ctx = f"{what}: {r.request.method} {r.request.url} -> {r.status_code} {r.headers.get('content-type')} {r.text[:400]}"
    assert r.status_code == status, f"expected {status}; {ctx}"
    assert r.headers.get("content-type", "").split(";")[0].strip() == PROBLEM, ctx
    doc = r.json()
    assert isinstance(doc, dict) and doc.get("status") == status, ctx
    detail = doc.get("detail")
    assert isinstance(detail, str) and detail.strip(), f"no detail; {ctx}"
    if keywords:
        assert any(k.lower() in detail.lower() for k in keywords), f"detail lacks any of {keywords}; {ctx}"
    return doc


def state_files(state_dir: Path) -> dict[str, str]:
    """Every regular file under the state directory: relative path -> sha256 of its bytes."""
    out = {}
    for path in sorted(Path(state_dir).rglob("*")):
        if path.is_file():
            out[str(path.relative_to(state_dir))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def labelled_versions(admin_scenes: list[dict]) -> set[tuple[str, str]]:
    """(scene, version) of every stable and canary label."""
    out = set()
    for s in admin_scenes:
        out.add((s["scene"], s["stable"]))
        if s.get("canary"):
            out.add((s["scene"], s["canary"]))
    return out


def wait_for(predicate, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


class ReferenceHeads:
    """Expected scores of canonical-schema scenes whose heads were made with heads.py: the
    backbone of the served model, and each (version -> spec, tensors) remembered at upload."""

    def __init__(self, model_dir: Path):
        import scenescore_model as sm

        loaded = sm.load_model(Path(model_dir) / "backbone.safetensors", "backbone")
        self.backbone_spec = loaded.spec
        self.backbone_tensors = loaded.tensors
        self.heads: dict[tuple[str, str], tuple[dict, dict]] = {}

    def make(self, scene: str, version: str, *, seed: int, parent: str = "", **kw) -> bytes:
        """A valid head (bytes to upload) whose weights are remembered for `expected`."""
        spec = heads.head_spec(self.backbone_spec, scene, version, parent=parent, **kw)
        tensors = heads.head_tensors(spec, seed)
        self.heads[(scene, version)] = (spec, tensors)
        return heads._serialize(spec, tensors)  # noqa: SLF001 - the module's writer

    def expected(self, scene: str, version: str, arrays) -> np.ndarray:
        spec, tensors = self.heads[(scene, version)]
        return heads.reference_scores(self.backbone_tensors, self.backbone_spec, spec, tensors, *arrays)

    def check(self, scene: str, version: str, arrays, scores: np.ndarray, atol: float = 1e-4) -> None:
        np.testing.assert_allclose(scores, self.expected(scene, version, arrays), rtol=0, atol=atol,
                                   err_msg=f"scores of {scene} {version} differ from that head's reference")


def scene_cli(*args: str, env: dict[str, str] | None = None) -> Any:
    """`scenescore scene ARGS` (the server binary's admin CLI)."""
    import os
    import subprocess

    from conftest import BINARY

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SCENESCORE_")}
    full_env.update(env or {})
    return subprocess.run([str(BINARY), "scene", *args], capture_output=True, text=True,
                          timeout=SCENESCORE_CLI_TIMEOUT, env=full_env, cwd=REPO)
