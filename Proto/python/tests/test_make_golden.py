"""make_golden.py reproduces the committed vectors and notices any drift."""

import shutil
import subprocess
import sys

from conftest import GOLDEN_DIR, PYTHON_DIR

SCRIPT = PYTHON_DIR / "make_golden.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_committed_golden_files_match_regeneration():
    result = _run("--check")
    assert result.returncode == 0, result.stderr


def test_generation_is_deterministic(tmp_path):
    assert _run("--out", str(tmp_path / "a")).returncode == 0
    assert _run("--out", str(tmp_path / "b")).returncode == 0
    first = {p.relative_to(tmp_path / "a"): p.read_bytes() for p in (tmp_path / "a").rglob("*") if p.is_file()}
    second = {p.relative_to(tmp_path / "b"): p.read_bytes() for p in (tmp_path / "b").rglob("*") if p.is_file()}
    assert first == second and first


def test_check_reports_modified_missing_and_stale_files(tmp_path):
    copy = tmp_path / "golden"
    shutil.copytree(GOLDEN_DIR, copy)
    assert _run("--check", "--out", str(copy)).returncode == 0

    target = copy / "request-1cand.bin"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    (copy / "response-1cand.json").unlink()
    (copy / "invalid" / "extra.bin").write_bytes(b"x")

    result = _run("--check", "--out", str(copy))
    assert result.returncode == 1
    assert "differs: request-1cand.bin" in result.stderr
    assert "missing: response-1cand.json" in result.stderr
    assert "not generated (stale?): invalid/extra.bin" in result.stderr


def test_wire_doc_dumps_are_refreshed_from_the_golden_files():
    import make_golden

    files = make_golden.build_files()
    doc = make_golden.WIRE_DOC.read_text()
    assert doc.count("<!-- annotate: golden/") >= 2
    assert make_golden.refresh_doc(doc, files) == doc
    stale = doc.replace('; magic "SSQ1"', '; magic "XXXX"', 1)
    assert stale != doc and make_golden.refresh_doc(stale, files) == doc
