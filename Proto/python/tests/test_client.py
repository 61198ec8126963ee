"""ScoreClient against an in-process fake server (httpx.MockTransport) that follows WIRE.md."""

import json

import httpx
import numpy as np
import pytest

import scenescore_client.__main__ as cli
from scenescore_client import (
    CONTENT_TYPE,
    HEAD_VERSION_HEADER,
    PROBLEM_CONTENT_TYPE,
    ProblemError,
    ProtocolError,
    ScoreClient,
    WireError,
    wire,
)

SCHEMA = {"context_ids": 1, "context_dense": 4, "item_ids": 3, "item_dense": 17}
OUTPUTS = ["click", "purchase"]


def _problem(status: int, slug: str, title: str, detail: str) -> httpx.Response:
    body = {"type": wire.PROBLEM_TYPE_BASE + slug, "title": title, "status": status, "detail": detail}
    return httpx.Response(
        status, json=body, headers={"content-type": PROBLEM_CONTENT_TYPE}, extensions={"http_version": b"HTTP/2"}
    )


class FakeServer:
    """Just enough of a SceneScore server: one scene 'apparel' with head 'apparel-1'."""

    def __init__(self, *, http_version=b"HTTP/2", ready=True, tamper=None):
        self.http_version = http_version
        self.ready = ready
        self.tamper = tamper or (lambda response: response)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.tamper(self.route(request))

    def respond(self, status, **kwargs) -> httpx.Response:
        return httpx.Response(status, extensions={"http_version": self.http_version}, **kwargs)

    def route(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/readyz":
            if not self.ready:
                return _problem(503, "not-ready", "Not ready", "models are still loading")
            return self.respond(200, json={"status": "ready"})
        if request.url.path == "/v1/scenes":
            entry = {"scene": "apparel", "head_version": "apparel-1", "outputs": OUTPUTS, **SCHEMA}
            return self.respond(200, json={"scenes": [entry]})
        if request.url.path != "/v1/score":
            return _problem(404, "not-found", "Not found", request.url.path)
        media_type = request.headers.get("content-type", "").split(";")[0]
        try:
            if media_type == CONTENT_TYPE:
                scored = wire.decode_request(request.content)
            elif media_type == "application/json":
                scored = wire.request_from_json(json.loads(request.content))
            else:
                return _problem(415, "unsupported-media-type", "Unsupported media type", media_type)
        except WireError as error:
            return _problem(error.status, error.slug, "Bad request", error.detail)
        if scored.scene != "apparel":
            return _problem(404, "unknown-scene", "Unknown scene", f"unknown scene '{scored.scene}'")
        if scored.item_dense.shape[1] != SCHEMA["item_dense"]:
            detail = f"items have {scored.item_dense.shape[1]} dense values each, scene 'apparel' expects 17"
            return _problem(422, "schema-mismatch", "Schema mismatch", detail)
        totals = scored.item_dense.sum(axis=1, dtype=np.float64)
        scores = np.stack([1 / (1 + np.exp(-totals)), 1 / (1 + np.exp(-totals / 2 - 3))], axis=1)
        response = wire.ScoreResponse(scored.request_id, scored.scene, "apparel-1", OUTPUTS, scores.astype(np.float32))
        headers = {HEAD_VERSION_HEADER: "apparel-1"}
        if media_type == CONTENT_TYPE:
            return self.respond(200, content=response.encode(), headers={"content-type": CONTENT_TYPE, **headers})
        return self.respond(200, json=response.to_json(), headers=headers)


def _client(server: FakeServer) -> ScoreClient:
    return ScoreClient("https://scenescore.test", verify=False, transport=httpx.MockTransport(server))


def _arrays(n=4, item_dense=17, seed=3):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 2**32, size=1, dtype=np.uint32),
        rng.standard_normal(4).astype(np.float32),
        rng.integers(0, 2**32, size=(n, 3), dtype=np.uint32),
        rng.standard_normal((n, item_dense)).astype(np.float32),
    )


def test_score_binary():
    server = FakeServer()
    with _client(server) as client:
        result = client.score("apparel", *_arrays(), request_id=42)
    assert (result.request_id, result.scene, result.head_version, result.outputs) == (42, "apparel", "apparel-1", OUTPUTS)
    assert result.scores.shape == (4, 2) and result.scores.dtype == np.float32
    sent = server.requests[0]
    assert sent.method == "POST" and sent.url.path == "/v1/score"
    assert sent.headers["content-type"] == CONTENT_TYPE
    assert wire.decode_request(sent.content).request_id == 42


def test_score_json_matches_binary():
    arrays = _arrays(n=5)
    with _client(FakeServer()) as client:
        binary = client.score("apparel", *arrays, request_id=1)
        as_json = client.score_json("apparel", *arrays, request_id=1)
    np.testing.assert_array_equal(binary.scores, as_json.scores)
    assert as_json.outputs == OUTPUTS


def test_random_request_ids_are_echoed():
    with _client(FakeServer()) as client:
        first = client.score("apparel", *_arrays())
        second = client.score("apparel", *_arrays())
    assert first.request_id != second.request_id


def test_problem_documents_become_problem_errors():
    with _client(FakeServer()) as client:
        with pytest.raises(ProblemError) as caught:
            client.score("apparel", *_arrays(item_dense=12))
        assert caught.value.status == 422 and caught.value.slug == "schema-mismatch"
        assert caught.value.detail == "items have 12 dense values each, scene 'apparel' expects 17"
        with pytest.raises(ProblemError) as caught:
            client.score("shoes", *_arrays())
        assert caught.value.status == 404 and caught.value.detail == "unknown scene 'shoes'"
        with pytest.raises(ProblemError) as caught:
            client.score_json("apparel", *_arrays(n=1025))
        assert caught.value.status == 413 and caught.value.slug == "too-many-candidates"


def test_error_without_problem_document():
    server = FakeServer(tamper=lambda r: httpx.Response(502, text="bad gateway", extensions={"http_version": b"HTTP/2"}))
    with _client(server) as client, pytest.raises(ProblemError, match="no problem document") as caught:
        client.score("apparel", *_arrays())
    assert caught.value.status == 502


def test_http1_answers_are_refused():
    with _client(FakeServer(http_version=b"HTTP/1.1")) as client:
        with pytest.raises(ProtocolError, match="HTTP/1.1; SceneScore requires HTTP/2"):
            client.score("apparel", *_arrays())


def _with_header(value):
    def tamper(response: httpx.Response) -> httpx.Response:
        headers = {k: v for k, v in response.headers.items() if k != HEAD_VERSION_HEADER}
        if value is not None:
            headers[HEAD_VERSION_HEADER] = value
        return httpx.Response(response.status_code, content=response.content, headers=headers,
                              extensions={"http_version": b"HTTP/2"})
    return tamper


def test_head_version_header_is_checked():
    with _client(FakeServer(tamper=_with_header(None))) as client:
        with pytest.raises(ProtocolError, match="lacks the x-scenescore-head-version header"):
            client.score("apparel", *_arrays())
    with _client(FakeServer(tamper=_with_header("apparel-2"))) as client:
        with pytest.raises(ProtocolError, match="body says 'apparel-1'"):
            client.score("apparel", *_arrays())


def test_percent_encoded_head_version_header():
    def tamper(response):
        body = wire.decode_response(response.content)
        renamed = wire.ScoreResponse(body.request_id, body.scene, "apparel β", body.outputs, body.scores)
        return httpx.Response(200, content=renamed.encode(), extensions={"http_version": b"HTTP/2"},
                              headers={"content-type": CONTENT_TYPE, HEAD_VERSION_HEADER: "apparel%20%CE%B2"})
    with _client(FakeServer(tamper=tamper)) as client:
        assert client.score("apparel", *_arrays()).head_version == "apparel β"


def test_mismatched_echo_is_refused():
    def tamper(response):
        body = wire.decode_response(response.content)
        other = wire.ScoreResponse(body.request_id + 1, body.scene, body.head_version, body.outputs, body.scores)
        return httpx.Response(200, content=other.encode(), headers=response.headers,
                              extensions={"http_version": b"HTTP/2"})
    with _client(FakeServer(tamper=tamper)) as client, pytest.raises(ProtocolError, match="request_id"):
        client.score("apparel", *_arrays(), request_id=5)


def test_wrong_content_type_and_garbage_body():
    def wrong_type(response):
        return httpx.Response(200, content=response.content, extensions={"http_version": b"HTTP/2"},
                              headers={"content-type": "application/octet-stream"})
    with _client(FakeServer(tamper=wrong_type)) as client, pytest.raises(ProtocolError, match="expected content type"):
        client.score("apparel", *_arrays())

    def garbage(response):
        return httpx.Response(200, content=b"SSR1" + bytes(40), headers=response.headers,
                              extensions={"http_version": b"HTTP/2"})
    with _client(FakeServer(tamper=garbage)) as client, pytest.raises(ProtocolError, match="undecodable"):
        client.score("apparel", *_arrays())


def test_health_and_scenes():
    with _client(FakeServer()) as client:
        assert client.health() == {"status": "ready"}
        [info] = client.scenes()
    assert (info.scene, info.head_version, info.outputs, info.item_dense) == ("apparel", "apparel-1", OUTPUTS, 17)
    with _client(FakeServer(ready=False)) as client, pytest.raises(ProblemError) as caught:
        client.health()
    assert caught.value.status == 503 and caught.value.slug == "not-ready"


def test_encoding_errors_surface_before_sending():
    server = FakeServer()
    with _client(server) as client, pytest.raises(WireError, match="bad scene name"):
        client.score("Apparel", *_arrays())
    assert server.requests == []


def test_verify_accepts_a_ca_path(tmp_path):
    with pytest.raises(FileNotFoundError):
        ScoreClient("https://localhost:8443", verify=tmp_path / "missing.pem")


def test_cli_score_prints_a_table(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_client", lambda args: _client(FakeServer()))
    assert cli.main(["score", "--scene", "apparel", "--candidates", "3", "--seed", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("scene apparel  head apparel-1")
    assert out[1] == "canonical schema; the canary rule picks stable 'apparel-1'"
    assert out[2].split() == ["candidate", "click", "purchase"]
    assert [line.split()[0] for line in out[3:]] == ["0", "1", "2"]


def test_cli_reports_problems(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_client", lambda args: _client(FakeServer()))
    assert cli.main(["score", "--scene", "apparel", "--item-dense", "5"]) == 1
    assert "HTTP 422 schema-mismatch: items have 5 dense values each" in capsys.readouterr().err
    assert cli.main(["score", "--scene", "shoes"]) == 1
    assert "no scene 'shoes'" in capsys.readouterr().err


def test_cli_dump(capsys, golden_dir):
    assert cli.main(["dump", str(golden_dir / "response-1cand.bin")]) == 0
    assert 'magic "SSR1"' in capsys.readouterr().out
