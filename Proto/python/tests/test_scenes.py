"""Scene descriptions, requests shaped by a scene's raw schema, the canary rule (ADMIN.md), the
CLI on a plugin scene, and the admin client against an in-process fake (no server needed)."""

import json

import httpx
import numpy as np
import pytest

import scenescore_client.__main__ as cli
from scenescore_client import (
    CONTENT_TYPE,
    HEAD_VERSION_HEADER,
    PROBLEM_CONTENT_TYPE,
    Canary,
    ProblemError,
    ProtocolError,
    SceneDescription,
    ScoreClient,
    canary_chosen,
    encode_for_scene,
    expected_version,
    mix64,
    random_inputs,
    wire,
)
from scenescore_client.admin import AdminClient, read_token

# A plugin scene: raw fields differ from the backbone's canonical ones (1, 4, 3, 17).
RAW = {
    "scene": "shoes", "head_version": "shoes-2", "parent_version": "shoes-1", "outputs": ["click", "purchase"],
    "content_sha256": "ab" * 32, "context_ids": 2, "context_dense": 1, "item_ids": 1, "item_dense": 3,
    "plugin": "apparel",
    "schema": {"context_ids": ["user", "region"], "context_dense": ["hour"], "item_ids": ["sku"],
               "item_dense": ["price", "rating", "stock"]},
    "canary": {"version": "shoes-3", "share": 0.25},
}


# -- SplitMix64 and the canary rule --------------------------------------------------------------


def test_mix64_is_splitmix64s_output():
    # SplitMix64 seeded with 0 yields mix64(0), mix64(gamma), mix64(2 gamma), ... (its published outputs).
    gamma = 0x9E3779B97F4A7C15
    assert [mix64(k * gamma % 2**64) for k in range(3)] == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4,
                                                             0x06C45D188009454F]
    assert all(0 <= mix64(x) < 2**64 for x in (0, 1, 2**63, 2**64 - 1))


def test_canary_rule_edges_and_share():
    ids = range(20000)
    assert not any(canary_chosen(i, 0.0) for i in ids)
    assert all(canary_chosen(i, 1.0) for i in ids)
    assert all(canary_chosen(i, 0.5) == (mix64(i) < 2**63) for i in ids)
    picked = sum(canary_chosen(i, 0.1) for i in ids) / len(ids)
    assert 0.09 < picked < 0.11, picked
    # Monotone in the share: chosen at s => chosen at every larger share.
    for i in range(2000):
        if canary_chosen(i, 0.3):
            assert canary_chosen(i, 0.31)
    with pytest.raises(ValueError):
        canary_chosen(-1, 0.5)
    with pytest.raises(ValueError):
        canary_chosen(2**64, 0.5)


def test_canary_rule_is_the_exact_comparison():
    """mix64(id) / 2^64 < share as the server computes it in Double; a share just above an id's
    point chooses it, the point itself does not."""
    request_id = 12345
    point = mix64(request_id) / 2.0**64
    assert not canary_chosen(request_id, point)
    assert canary_chosen(request_id, np.nextafter(point, 1.0))


def test_expected_version_follows_the_rule():
    desc = SceneDescription.from_json(RAW)
    for request_id in range(500):
        want = "shoes-3" if canary_chosen(request_id, 0.25) else "shoes-2"
        assert expected_version(desc, request_id) == want
        assert expected_version(RAW, request_id) == want
    no_canary = dict(RAW, canary=None)
    assert {expected_version(no_canary, i) for i in range(100)} == {"shoes-2"}


# -- descriptions --------------------------------------------------------------------------------


def test_description_from_json():
    desc = SceneDescription.from_json(RAW)
    assert desc.counts == (2, 1, 1, 3)
    assert desc.plugin == "apparel" and desc.canary == Canary("shoes-3", 0.25)
    assert desc.schema["item_dense"] == ["price", "rating", "stock"]
    assert desc.parent_version == "shoes-1"
    # Today's entries (no plugin, schema or canary keys) still parse.
    old = {k: RAW[k] for k in ("scene", "head_version", "outputs", "context_ids", "context_dense", "item_ids",
                               "item_dense")}
    plain = SceneDescription.from_json(old)
    assert plain.plugin is None and plain.canary is None and plain.schema["context_ids"] == []


@pytest.mark.parametrize("change, message", [
    ({"item_dense": -1}, "non-negative"),
    ({"context_ids": True}, "non-negative"),
    ({"outputs": "click"}, "outputs"),
    ({"plugin": 3}, "plugin"),
    ({"schema": {"context_ids": ["user"]}}, "schema.context_ids names 1 values but context_ids is 2"),
    ({"canary": {"version": "x", "share": 1.5}}, "share"),
    ({"canary": {"share": 0.5}}, "canary"),
])
def test_description_rejects_malformed_entries(change, message):
    with pytest.raises(ValueError, match=message):
        SceneDescription.from_json(dict(RAW, **change))
    with pytest.raises(ValueError, match="lacks 'head_version'"):
        SceneDescription.from_json({k: v for k, v in RAW.items() if k != "head_version"})


def test_random_inputs_and_encoding_use_the_raw_counts():
    cids, cdense, iids, idense = random_inputs(RAW, 5, 7)
    assert (cids.shape, cdense.shape, iids.shape, idense.shape) == ((2,), (1,), (5, 1), (5, 3))
    assert cids.dtype == np.uint32 and idense.dtype == np.float32
    assert np.isfinite(idense).all()
    # Values by field name: ids below the plugins' scene ranges (users excepted), prices positive.
    assert (iids < 1000).all() and cids[1] < 1000
    price, rating, stock = idense.T
    assert ((price >= 1) & (price < 1000)).all() and ((rating >= 1) & (rating < 5)).all()
    assert ((stock >= 0) & (stock < 1)).all()
    fixed = random_inputs(RAW, 3, 1, ranges={"stock": (7, 8), "sku": (5, 6)})
    assert (fixed[2] == 5).all() and ((fixed[3][:, 2] >= 7) & (fixed[3][:, 2] < 8)).all()
    again = random_inputs(RAW, 5, np.random.default_rng(7))
    assert all(np.array_equal(a, b) for a, b in zip((cids, cdense, iids, idense), again))
    body = encode_for_scene(RAW, 5, 7, request_id=99)
    request = wire.decode_request(body)
    assert (request.scene, request.request_id, request.n_candidates) == ("shoes", 99, 5)
    assert (request.context_ids.size, request.context_dense.size, request.item_ids.shape,
            request.item_dense.shape) == (2, 1, (5, 1), (5, 3))
    np.testing.assert_array_equal(request.item_dense, idense)


def test_canonical_scenes_get_full_range_values():
    canonical = dict(RAW, plugin=None, schema=None)
    cids, cdense, iids, idense = random_inputs(canonical, 200, 3)
    assert iids.max() > 2**31 and idense.min() < 0  # uniform 32-bit ids, standard normal dense


# -- the CLI on a plugin scene with a canary -----------------------------------------------------


class PluginSceneServer:
    """A fake server with one plugin scene (RAW): checks the raw counts and follows the canary rule."""

    def __init__(self):
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        h2 = {"http_version": b"HTTP/2"}
        if request.url.path == "/v1/scenes":
            return httpx.Response(200, json={"scenes": [RAW]}, extensions=h2)
        scored = wire.decode_request(request.content)
        if (scored.context_ids.size, scored.context_dense.size, scored.item_ids.shape[1],
                scored.item_dense.shape[1]) != (2, 1, 1, 3):
            problem = {"type": wire.PROBLEM_TYPE_BASE + "schema-mismatch", "title": "Schema mismatch",
                       "status": 422, "detail": "raw counts differ"}
            return httpx.Response(422, json=problem, headers={"content-type": PROBLEM_CONTENT_TYPE}, extensions=h2)
        version = expected_version(RAW, scored.request_id)
        scores = np.full((scored.n_candidates, 2), 0.5, dtype=np.float32)
        body = wire.ScoreResponse(scored.request_id, scored.scene, version, RAW["outputs"], scores).encode()
        return httpx.Response(200, content=body, headers={"content-type": CONTENT_TYPE, HEAD_VERSION_HEADER: version},
                              extensions=h2)


def _score_client(server) -> ScoreClient:
    return ScoreClient("https://scenescore.test", verify=False, transport=httpx.MockTransport(server))


def test_cli_score_sends_the_raw_schema_and_names_the_canary(monkeypatch, capsys):
    server = PluginSceneServer()
    monkeypatch.setattr(cli, "_client", lambda args: _score_client(server))
    canary_id = next(i for i in range(1000) if canary_chosen(i, 0.25))
    stable_id = next(i for i in range(1000) if not canary_chosen(i, 0.25))
    assert cli.main(["score", "--scene", "shoes", "--candidates", "2", "--request-id", str(canary_id)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("scene shoes  head shoes-3")
    assert out[1] == "plugin apparel; the canary rule picks canary 'shoes-3'"
    assert cli.main(["score", "--scene", "shoes", "--candidates", "2", "--request-id", str(stable_id)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "plugin apparel; the canary rule picks stable 'shoes-2'"
    sent = wire.decode_request(server.requests[-1].content)
    assert sent.item_dense.shape == (2, 3) and sent.context_ids.shape == (2,)
    # One count overridden: the request no longer fits the scene, and the server says so.
    assert cli.main(["score", "--scene", "shoes", "--item-dense", "4"]) == 1
    assert "HTTP 422" in capsys.readouterr().err


def test_cli_scenes_lists_plugin_and_canary(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_client", lambda args: _score_client(PluginSceneServer()))
    assert cli.main(["scenes"]) == 0
    line = capsys.readouterr().out.splitlines()[1].split()
    assert line[:3] == ["shoes", "shoes-2", "apparel"] and "shoes-3" in line and "(0.25)" in line


def test_client_refuses_a_malformed_scene_entry():
    def server(request):
        return httpx.Response(200, json={"scenes": [dict(RAW, item_ids=-2)]}, extensions={"http_version": b"HTTP/2"})
    with _score_client(server) as client, pytest.raises(ProtocolError, match="malformed scene entry"):
        client.scenes()


# -- the admin client ----------------------------------------------------------------------------


class FakeAdmin:
    """Records requests; answers 401 without the token, a problem for scene 'taken', else an echo."""

    def __init__(self, token="s3cret"):
        self.token = token
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        h2 = {"http_version": b"HTTP/2"}
        if request.headers.get("authorization") != f"Bearer {self.token}":
            problem = {"type": "about:blank", "title": "Unauthorized", "status": 401, "detail": "bad token"}
            return httpx.Response(401, json=problem, extensions=h2,
                                  headers={"content-type": PROBLEM_CONTENT_TYPE, "www-authenticate": "Bearer"})
        if "/taken" in request.url.path:
            problem = {"type": "about:blank", "title": "Conflict", "status": 409, "detail": "scene 'taken' exists"}
            return httpx.Response(409, json=problem, headers={"content-type": PROBLEM_CONTENT_TYPE}, extensions=h2)
        if request.url.path == "/admin/v1/scenes":
            return httpx.Response(200, json={"scenes": []}, extensions=h2)
        return httpx.Response(201 if request.method == "PUT" else 200, json={"scene": "echo"}, extensions=h2)


def _admin(fake, token="s3cret") -> AdminClient:
    return AdminClient("https://admin.test", token, verify=False, transport=httpx.MockTransport(fake))


def test_admin_requests_follow_the_spec():
    fake = FakeAdmin()
    with _admin(fake) as admin:
        assert admin.scenes() == []
        assert admin.register("shoes", b"HEAD", plugin="apparel", plugin_config={"a": 1}) == {"scene": "echo"}
        admin.push("shoes", b"HEAD2", label="canary", share=0.1, if_match=3)
        admin.push("shoes", b"HEAD3")
        admin.set_labels("shoes", stable="shoes-1", canary=None)
        admin.set_labels("shoes", canary_share=0.5)
        admin.rollback("shoes")
        admin.rollback("shoes", "shoes-1")
        admin.remove("shoes", if_match=7)
        admin.versions("shoes")
    r = fake.requests
    assert [(q.method, q.url.path) for q in r] == [
        ("GET", "/admin/v1/scenes"), ("PUT", "/admin/v1/scenes/shoes"), ("POST", "/admin/v1/scenes/shoes/versions"),
        ("POST", "/admin/v1/scenes/shoes/versions"), ("PUT", "/admin/v1/scenes/shoes/labels"),
        ("PUT", "/admin/v1/scenes/shoes/labels"), ("POST", "/admin/v1/scenes/shoes/rollback"),
        ("POST", "/admin/v1/scenes/shoes/rollback"), ("DELETE", "/admin/v1/scenes/shoes"),
        ("GET", "/admin/v1/scenes/shoes/versions")]
    assert all(q.headers["authorization"] == "Bearer s3cret" for q in r)
    assert dict(r[1].url.params) == {"plugin": "apparel"} and r[1].content == b"HEAD"
    assert r[1].headers["content-type"] == "application/octet-stream"
    assert json.loads(r[1].headers["x-scenescore-plugin-config"]) == {"a": 1}
    assert dict(r[2].url.params) == {"label": "canary", "share": "0.1"} and r[2].headers["if-match"] == "3"
    assert dict(r[3].url.params) == {} and "if-match" not in r[3].headers
    assert json.loads(r[4].content) == {"stable": "shoes-1", "canary": None}
    assert json.loads(r[5].content) == {"canary_share": 0.5}
    assert r[6].content == b"" and json.loads(r[7].content) == {"version": "shoes-1"}
    assert r[8].headers["if-match"] == "7"


def test_admin_problems_and_tokens(tmp_path):
    fake = FakeAdmin()
    with _admin(fake, token="wrong") as admin, pytest.raises(ProblemError) as caught:
        admin.scenes()
    assert caught.value.status == 401 and caught.value.detail == "bad token"
    with _admin(fake) as admin:
        with pytest.raises(ProblemError) as caught:
            admin.register("taken", b"x")
        assert caught.value.status == 409
        assert admin.request("GET", "/admin/v1/scenes", token=None).status_code == 401
        assert admin.request("GET", "/admin/v1/scenes").status_code == 200
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    assert read_token(token_file) == "s3cret"
