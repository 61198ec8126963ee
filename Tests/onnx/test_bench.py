"""`scenescore bench model --against onnxruntime`, functionally (nothing here judges the timings): both
sides report a positive time for every N after their scores were compared, and a side that scores
differently stops the benchmark before anything is timed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, e2e


def bench(model_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(e2e.BINARY), "bench", "model", "--against", "onnxruntime", "--candidates", "1,16",
                           "--rounds", "1", "--model-dir", str(model_dir), "--json", *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=600)


def test_both_sides_timed_after_their_scores_agree(default_model_dir):
    result = bench(default_model_dir)
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    report = json.loads(result.stdout)
    assert report["outputsChecked"] is True
    assert report["tolerance"] == 1e-5
    assert report["rounds"] == 1
    assert report["onnxruntime"].startswith("onnxruntime ")
    assert [r["candidates"] for r in report["rows"]] == [1, 16]
    for r in report["rows"]:
        for key in ("scenescoreMicroseconds", "onnxruntimeRawMicroseconds", "onnxruntimeOverheadMicroseconds"):
            assert r[key] > 0, f"N={r['candidates']}: {key} = {r[key]}"
        # one round: the medians are that round's figures
        assert r["onnxruntimeMicroseconds"] == pytest.approx(r["onnxruntimeRawMicroseconds"] - r["onnxruntimeOverheadMicroseconds"])
        assert r["ratio"] == pytest.approx(r["onnxruntimeMicroseconds"] / r["scenescoreMicroseconds"])
        assert 0 <= r["maxAbsDifference"] <= 1e-5


# A stand-in for ort_reference.py that speaks its protocol but scores every candidate 0.
FAKE = """
import base64, json, sys
print(json.dumps({"onnxruntime": "stand-in", "headVersion": HEAD, "noop": "none", "core": 0}), flush=True)
for line in sys.stdin:
    c = json.loads(line)
    if c["cmd"] == "time":
        print(json.dumps({"n": c["n"], "model": 1e-5, "noop": 1e-6}), flush=True)
    else:
        zeros = bytes(4 * c["n"] * OUTPUTS)
        print(json.dumps({"n": c["n"], "scores": base64.b64encode(zeros).decode()}), flush=True)
"""


def test_disagreeing_scores_stop_the_benchmark(default_model_dir, tmp_path):
    """Scores that differ from scenescore's fail the benchmark, naming the score, before any timing."""
    from scenescore_onnx import head_files, load_backbone, load_head

    scene = sorted(head_files(default_model_dir))[0]  # the benchmark's default scene
    head = load_head(head_files(default_model_dir)[scene], load_backbone(default_model_dir / "backbone.safetensors"))
    fake = tmp_path / "fake_ort.py"
    fake.write_text(f"HEAD = {head.spec['version']!r}\nOUTPUTS = {len(head.spec['outputs'])}\n" + FAKE)
    result = bench(default_model_dir, "--ort-reference", str(fake))
    assert result.returncode != 0, f"scores of 0 were accepted: {result.stdout}"
    assert "N=1: scenescore and onnxruntime disagree" in result.stderr, result.stderr
    assert "not timing" in result.stderr, result.stderr
