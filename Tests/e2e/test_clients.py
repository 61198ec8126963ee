"""Real HTTP/2 clients against the real server: curl, nghttp, h2load."""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pytest

from h2util import H2Conn, golden_bytes, golden_json, score_body, wire


def run(cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, timeout=timeout)


def parse_curl_headers(raw: str) -> tuple[str, dict[str, str]]:
    lines = [l.strip() for l in raw.splitlines() if l.strip()]
    status = lines[0]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


def test_curl_json_score_over_tls(server, certs, tmp_path, reference, model):
    doc = golden_json("request-1cand.json")
    req = tmp_path / "req.json"
    req.write_text(json.dumps(doc))
    out, hdrs = tmp_path / "out.json", tmp_path / "headers.txt"
    port = server.port
    result = run(["curl", "--http2", "-sS", "--max-time", "10", "--cacert", str(certs.ca),
                  "--resolve", f"localhost:{port}:127.0.0.1", "-o", str(out), "-D", str(hdrs),
                  "-w", "%{http_version} %{http_code}", "-H", "content-type: application/json",
                  "--data-binary", f"@{req}", f"https://localhost:{port}/v1/score"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == "2 200", (result.stdout, out.read_bytes()[:300])
    status_line, headers = parse_curl_headers(hdrs.read_text())
    assert status_line.startswith("HTTP/2 200"), status_line
    assert headers.get("content-type", "").split(";")[0] == "application/json", headers
    head = model.head("apparel")
    assert headers.get("x-scenescore-head-version") == head.version, headers
    body = json.loads(out.read_text())
    assert set(body) == {"request_id", "scene", "head_version", "outputs", "scores"}, body
    assert body["request_id"] == 7 and body["scene"] == "apparel" and body["head_version"] == head.version, body
    assert body["outputs"] == head.outputs, body
    scores = np.array(body["scores"], dtype=np.float64)
    assert scores.shape == (1, len(head.outputs))
    assert ((scores >= 0) & (scores <= 1)).all()
    cand = doc["candidates"][0]
    expected = reference("apparel", doc["context"]["ids"], doc["context"]["dense"], [cand["ids"]], [cand["dense"]])
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-4)


def test_curl_binary_score_over_tls_by_ip(server, certs, tmp_path, model):
    req = tmp_path / "req.bin"
    req.write_bytes(golden_bytes("request-1cand.bin"))
    out = tmp_path / "out.bin"
    result = run(["curl", "--http2", "-sS", "--max-time", "10", "--cacert", str(certs.ca), "-o", str(out),
                  "-w", "%{http_version} %{http_code} %{content_type}", "-H",
                  "content-type: application/vnd.scenescore.v1", "--data-binary", f"@{req}",
                  f"https://127.0.0.1:{server.port}/v1/score"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == "2 200 application/vnd.scenescore.v1", result.stdout
    resp = wire.decode_response(out.read_bytes())
    assert (resp.request_id, resp.scene, resp.head_version) == (7, "apparel", model.version("apparel"))
    assert resp.scores.shape == (1, len(model.outputs("apparel")))


def test_curl_h2c_prior_knowledge_scenes(server, model):
    result = run(["curl", "--http2-prior-knowledge", "-sS", "--max-time", "10", "-w", "\n%{http_version} %{http_code}",
                  f"http://127.0.0.1:{server.h2c_port}/v1/scenes"])
    assert result.returncode == 0, result.stderr
    body, _, tail = result.stdout.decode().rpartition("\n")
    assert tail == "2 200", result.stdout
    scenes = sorted(s["scene"] for s in json.loads(body)["scenes"])
    assert scenes == model.scenes


def test_curl_http11_over_tls_is_refused(server, certs):
    """ALPN h2 only: a client offering only http/1.1 must not get an HTTP/1.1 answer."""
    result = run(["curl", "--http1.1", "-sS", "--max-time", "10", "--cacert", str(certs.ca),
                  "-w", "%{http_version} %{http_code}", f"https://127.0.0.1:{server.port}/healthz"])
    assert result.returncode != 0, f"curl --http1.1 succeeded: {result.stdout!r}"
    assert b"200" not in result.stdout, result.stdout
    server.assert_alive()


def test_curl_h2c_port_refuses_http11(server):
    result = run(["curl", "--http1.1", "-sS", "--max-time", "10", "-w", "%{http_code}",
                  f"http://127.0.0.1:{server.h2c_port}/healthz"])
    # Either the connection is closed (curl fails) or curl reads something that is not an HTTP/1.1 200.
    assert result.returncode != 0 or not result.stdout.endswith(b"200"), result.stdout
    server.assert_alive()


def test_nghttp_get_healthz_over_tls(server):
    result = run(["nghttp", "-v", "-n", "-t", "10", f"https://127.0.0.1:{server.port}/healthz"])
    out = result.stdout.decode(errors="replace")
    assert result.returncode == 0, out + result.stderr.decode(errors="replace")
    assert "The negotiated protocol: h2" in out, out
    assert re.search(r"recv \(stream_id=\d+\) :status: 200", out), out
    result = run(["nghttp", "-t", "10", f"https://127.0.0.1:{server.port}/healthz"])
    assert result.returncode == 0
    doc = json.loads(result.stdout)
    assert isinstance(doc, dict) and "status" in doc, result.stdout  # exact document: test_ops


def test_nghttp_post_binary_over_tls(server, tmp_path, model):
    req = tmp_path / "req.bin"
    req.write_bytes(golden_bytes("request-1cand.bin"))
    url = f"https://127.0.0.1:{server.port}/v1/score"
    ctype = "content-type: application/vnd.scenescore.v1"
    verbose = run(["nghttp", "-v", "-n", "-t", "10", "-d", str(req), "-H", ctype, url])
    out = verbose.stdout.decode(errors="replace")
    assert verbose.returncode == 0, out + verbose.stderr.decode(errors="replace")
    assert re.search(r"recv \(stream_id=\d+\) :status: 200", out), out
    version = model.version("apparel")
    assert re.search(rf"recv \(stream_id=\d+\) x-scenescore-head-version: {re.escape(version)}$", out, re.M), out
    assert re.search(r"recv \(stream_id=\d+\) content-type: application/vnd.scenescore.v1", out), out
    plain = run(["nghttp", "-t", "10", "-d", str(req), "-H", ctype, url])
    assert plain.returncode == 0, plain.stderr
    resp = wire.decode_response(plain.stdout)
    assert (resp.request_id, resp.scene, resp.head_version, resp.outputs) == (7, "apparel", version,
                                                                             model.outputs("apparel"))
    # Same bytes as the Python HTTP/2 client gets.
    with H2Conn.tls(server.port, server.cafile) as conn:
        r = conn.post("/v1/score", golden_bytes("request-1cand.bin"))
    assert bytes(r.body) == plain.stdout


def parse_h2load(out: str) -> dict:
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", out)
    assert m, out
    total, started, done, succeeded, failed, errored, timeout = map(int, m.groups())
    s = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    assert s, out
    return {"total": total, "done": done, "succeeded": succeeded, "failed": failed, "errored": errored,
            "timeout": timeout, "2xx": int(s.group(1)), "4xx": int(s.group(3)), "5xx": int(s.group(4))}


@pytest.mark.parametrize("candidates", [1, 16])
def test_h2load_binary_score_over_tls(server, tmp_path, candidates):
    n = 2000
    req = tmp_path / "req.bin"
    req.write_bytes(score_body(candidates, seed=5))
    result = run(["h2load", "-n", str(n), "-c", "4", "-m", "8", "-t", "1", "-T", "10", "-N", "10",
                  "-d", str(req), "-H", "content-type: application/vnd.scenescore.v1",
                  f"https://127.0.0.1:{server.port}/v1/score"], timeout=120)
    out = result.stdout.decode(errors="replace")
    assert result.returncode == 0, out + result.stderr.decode(errors="replace")
    assert "Application protocol: h2" in out, out
    stats = parse_h2load(out)
    assert stats["total"] == n and stats["done"] == n, out
    assert stats["succeeded"] == n and stats["failed"] == 0 and stats["errored"] == 0 and stats["timeout"] == 0, out
    assert stats["2xx"] == n, out
    server.assert_alive()


def test_h2load_h2c(server, tmp_path):
    n = 500
    req = tmp_path / "req.bin"
    req.write_bytes(score_body(1, seed=6))
    result = run(["h2load", "-n", str(n), "-c", "2", "-m", "4", "-t", "1", "-T", "10", "-N", "10",
                  "-d", str(req), "-H", "content-type: application/vnd.scenescore.v1",
                  f"http://127.0.0.1:{server.h2c_port}/v1/score"], timeout=120)
    out = result.stdout.decode(errors="replace")
    assert result.returncode == 0, out
    stats = parse_h2load(out)
    assert stats["succeeded"] == n and stats["2xx"] == n and stats["failed"] == 0 and stats["errored"] == 0, out
