"""Operational endpoints (health, readiness, KServe/OIP aliases, scenes, Prometheus metrics) and
configuration (config file < environment < flags, dev certificate, first-run model build)."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess

import numpy as np
import pytest

from h2util import (
    H2Conn,
    assert_problem,
    assert_score_ok,
    free_ports,
    open_tcp,
    open_tls,
    parse_metrics,
    read_model,
    score_body,
    score_json_body,
    wire,
)

FIRST_RUN_TIMEOUT = 600.0  # a server without a model trains the default one (about a minute) before it listens


def total(samples, name: str, **labels) -> float:
    return sum(v for n, l, v in samples if n == name and all(l.get(k) == str(v2) for k, v2 in labels.items()))


def scrape(conn: H2Conn):
    r = conn.get("/metrics", timeout=10)
    assert r.status == 200, r
    assert (r.header("content-type") or "").startswith("text/plain"), r.headers
    return parse_metrics(bytes(r.body).decode())


@pytest.fixture(scope="module")
def conn(server):
    c = H2Conn.tls(server.port, server.cafile)
    yield c
    c.close()


def check_get_and_head_200(conn, path):
    r = conn.get(path)
    assert r.status == 200 and r.ended, (path, r)
    h = conn.request("HEAD", path)
    assert h.status == 200 and len(h.body) == 0, (path, h)


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"])
def test_health_and_readiness_endpoints(conn, path):
    check_get_and_head_200(conn, path)


def test_model_ready_every_scene(conn, model):
    """KServe model readiness for every scene the served model has (read from its files)."""
    assert model.scenes, model
    for scene in model.scenes:
        check_get_and_head_200(conn, f"/v2/models/{scene}/ready")


def test_healthz_document(conn):
    r = conn.get("/healthz")
    assert r.json() == {"status": "live"}, r
    assert conn.get("/readyz").json() == {"status": "ready"}
    assert (r.header("content-type") or "").startswith("application/json"), r


def check_model_not_found(conn, scene):
    r = conn.get(f"/v2/models/{scene}/ready")
    assert r.status == 404, (scene, r)
    assert (r.header("content-type") or "").split(";")[0] == wire.PROBLEM_CONTENT_TYPE, (scene, r)


@pytest.mark.parametrize("scene", ["nope", "Apparel", "apparel-1"])
def test_model_ready_unknown_scene(conn, model, scene):
    assert scene not in model.scenes, f"{scene!r} is a served scene: {model.scenes}"
    check_model_not_found(conn, scene)


def test_model_ready_head_version_is_not_a_scene(conn, model):
    for scene in model.scenes:
        version = model.version(scene)
        assert version not in model.scenes, (version, model.scenes)
        check_model_not_found(conn, version)


def test_scenes_document(conn, model):
    r = conn.get("/v1/scenes")
    assert r.status == 200 and (r.header("content-type") or "").split(";")[0] == "application/json", r
    doc = r.json()
    assert set(doc) == {"scenes"}, doc
    by_name = {s["scene"]: s for s in doc["scenes"]}
    assert sorted(by_name) == model.scenes, doc
    ci, cd, ii, idn = model.schema
    for name, s in by_name.items():
        expected = {"scene": name, "head_version": model.version(name), "outputs": model.outputs(name),
                    "context_ids": ci, "context_dense": cd, "item_ids": ii, "item_dense": idn}
        assert {k: s.get(k) for k in expected} == expected, s  # extra members are allowed


def test_metrics_after_traffic(server, conn, model):
    types0, before = scrape(conn)
    for name, kind in [("scenescore_requests_total", "counter"),
                       ("scenescore_request_duration_seconds", "histogram"),
                       ("scenescore_inference_duration_seconds", "histogram"),
                       ("scenescore_candidates_scored_total", "counter"),
                       ("scenescore_streams_in_flight", "gauge"),
                       ("scenescore_connections_open", "gauge"),
                       ("scenescore_tls_handshake_failures_total", "counter")]:
        assert types0.get(name) == kind, f"# TYPE {name} is {types0.get(name)!r}, expected {kind}"
    for i in range(5):
        assert_score_ok(conn.post("/v1/score", score_body(1, request_id=i)), request_id=i, n=1)
    other = model.other_scene("apparel")
    for i in range(3):
        assert conn.post("/v1/score", score_json_body(4, scene=other), "application/json").status == 200
    assert_problem(conn.post("/v1/score", score_body(1, scene="shoes")), 404, "unknown-scene")
    assert_problem(conn.post("/v1/score", b"junk"), 400, "malformed-request")
    _, after = scrape(conn)

    def delta(name, **labels):
        return total(after, name, **labels) - total(before, name, **labels)

    assert total(after, "scenescore_requests_total", scene="apparel", status=200) > 0
    assert delta("scenescore_requests_total", scene="apparel", status=200) == 5
    assert delta("scenescore_requests_total", scene=other, status=200) == 3
    errors_before = sum(v for n, l, v in before if n == "scenescore_requests_total" and l.get("status") != "200")
    errors_after = sum(v for n, l, v in after if n == "scenescore_requests_total" and l.get("status") != "200")
    assert errors_after - errors_before >= 2, "the 404 and 400 scoring requests are not counted by status"
    assert delta("scenescore_candidates_scored_total") == 5 * 1 + 3 * 4
    assert delta("scenescore_request_duration_seconds_count") >= 8
    inference = delta("scenescore_inference_duration_seconds_count")
    assert 1 <= inference <= 8, inference
    for hist in ("scenescore_request_duration_seconds", "scenescore_inference_duration_seconds"):
        series: dict[tuple, list[tuple[float, float]]] = {}
        counts: dict[tuple, float] = {}
        for n, labels, v in after:
            key = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
            if n == hist + "_bucket":
                le = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
                series.setdefault(key, []).append((le, v))
            elif n == hist + "_count":
                counts[key] = v
        assert series, f"no {hist}_bucket samples"
        for key, buckets in series.items():
            buckets.sort()
            values = [v for _, v in buckets]
            assert values == sorted(values), f"{hist}{key} buckets are not cumulative: {buckets}"
            assert buckets[-1][0] == float("inf"), f"{hist}{key} has no +Inf bucket"
            assert buckets[-1][1] == counts.get(key), f"{hist}{key}: +Inf bucket {buckets[-1][1]} != count {counts.get(key)}"
        assert total(after, hist + "_sum") > 0
    assert total(after, "scenescore_connections_open") >= 1
    assert total(after, "scenescore_streams_in_flight") >= 0


def test_tls_handshake_failures_are_counted(server, conn):
    _, before = scrape(conn)
    for _ in range(3):
        sock = open_tcp(server.port)
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # plaintext to the TLS port
            sock.settimeout(5)
            try:
                while sock.recv(4096):
                    pass
            except OSError:
                pass
        finally:
            sock.close()
    try:  # an untrusted client: the client aborts the handshake
        ctx = ssl.create_default_context()  # system CAs: our test CA is not among them
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost"):
                pass
    except ssl.SSLError:
        pass
    _, after = scrape(conn)
    d = total(after, "scenescore_tls_handshake_failures_total") - total(before, "scenescore_tls_handshake_failures_total")
    assert d >= 3, f"tls handshake failures went up by {d} after 3 plaintext connections to the TLS port"
    server.assert_alive()


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------


def test_config_file_env_precedence_and_dev_cert(launcher, certs, tmp_path):
    """Config file sets ports and limits, env overrides the candidate limit; no TLS flags -> dev cert."""
    p1, q1 = free_ports(2)
    srv = launcher.start(tls_flags=False, port_flags=False, ports=(p1, q1), name="config",
                         config={"port": p1, "h2cPort": q1, "maxCandidates": 16, "maxBodyBytes": 65536},
                         env={"SCENESCORE_MAX_CANDIDATES": "32"})
    cert = srv.workdir / "var" / "certs" / "dev-cert.pem"
    key = srv.workdir / "var" / "certs" / "dev-key.pem"
    assert cert.is_file() and key.is_file(), f"no dev certificate in {srv.workdir}/var/certs\n{srv.describe()}"
    san = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-ext", "subjectAltName"],
                         capture_output=True, text=True).stdout
    assert "DNS:localhost" in san and "IP Address:127.0.0.1" in san, san
    with H2Conn.tls(p1, cert) as c:  # verifies the dev cert (as its own trust anchor) for 'localhost'
        assert_score_ok(c.post("/v1/score", score_body(32, request_id=1)), request_id=1, n=32)
        assert_problem(c.post("/v1/score", score_body(33)), 413, "too-many-candidates",
                       detail="n_candidates 33 exceeds the limit of 32")
        sid = c.send("POST", "/v1/score", [("content-type", wire.CONTENT_TYPE), ("content-length", "65537")],
                     None, end_stream=False)
        r = c.wait([sid], 10)[sid]
        c.reset(sid)
        assert_problem(r, 413, "body-too-large", detail="body exceeds the limit of 65536 bytes")


def test_flags_override_env_and_first_run_model_build(launcher, server, model, request, tmp_path):
    """Env ports override the config file's, a flag overrides the env candidate limit, and without
    --model-dir the default var/models/default is built on first run, deterministically: it is the
    model `scenescore model init` builds (same head specs, same scores). That is the shared server's
    model when the shared model has the same head specs (their versions name the backbone's hash);
    otherwise (e.g. an older model in var/models/default) `scenescore model init` runs for the
    comparison."""
    p1, q1, p2, q2 = free_ports(4)
    srv = launcher.start(["--max-candidates", "48"], port_flags=False, ports=(p2, q2), name="flags",
                         config={"port": p1, "h2cPort": q1, "maxCandidates": 16},
                         env={"SCENESCORE_PORT": str(p2), "SCENESCORE_H2C_PORT": str(q2),
                              "SCENESCORE_MAX_CANDIDATES": "32"}, model_dir=False, wait=False)
    srv.wait_ready(FIRST_RUN_TIMEOUT)  # it trains the model before it listens
    fresh = srv.workdir / "var" / "models" / "default"
    assert (fresh / "backbone.safetensors").is_file(), f"model not built in {fresh}\n{srv.describe()}"
    assert srv.model_dir == fresh
    fresh_model = read_model(fresh)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", p1), timeout=2).close()
    body = score_body(48, seed=51, request_id=5, schema=fresh_model.schema)
    with H2Conn.tls(p2, srv.cafile) as c:
        fresh_scores = assert_score_ok(c.post("/v1/score", body), request_id=5, n=48, model=fresh_model).scores
        assert_problem(c.post("/v1/score", score_body(49, schema=fresh_model.schema)), 413, "too-many-candidates",
                       detail="n_candidates 49 exceeds the limit of 48")

    def head_specs(m):
        return {scene: head.spec for scene, head in m.heads.items()}

    if head_specs(fresh_model) == head_specs(model) and fresh_model.backbone == model.backbone:
        other, other_model, what = server, model, f"the shared model {model.dir}"
    else:
        init_dir = request.getfixturevalue("trained_default_model_dir")
        other_model = read_model(init_dir)
        other = launcher.start(name="model-init", model_dir=init_dir)
        what = f"`scenescore model init` ({init_dir})"
    assert head_specs(fresh_model) == head_specs(other_model), f"first-run model's heads differ from {what}"
    assert fresh_model.backbone == other_model.backbone, f"first-run model's backbone spec differs from {what}"
    with H2Conn.tls(other.port, other.cafile) as c:
        other_scores = assert_score_ok(c.post("/v1/score", body), request_id=5, n=48, model=other_model).scores
    assert np.array_equal(fresh_scores, other_scores), f"first-run model's scores differ from {what}"
