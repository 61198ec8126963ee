"""Scenes as plugins, versions, labels and the admin API (Proto/ADMIN.md) against the real server:
auth, registration with a plugin and raw-field scoring, versions / labels / canary / rollback /
remove, refusals (403, 409, 413, 422) that leave the served head as it was, durability across a
restart and a `kill -9` mid-upload, the registry's metrics, and the `scenescore scene` CLI.

Every client is httpx over HTTP/2 + TLS verifying the test CA. Head files are made by heads.py
for the served model's backbone. Most tests share one admin-enabled server (module scope) and
use scene names of their own; durability tests start their own.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

import heads
from conftest import BINARY, INSTALL_PLUGINS, Launcher, install_plugins
from h2util import H2Conn, free_ports, wire
from scenes_util import (
    ReferenceHeads,
    Scoring,
    assert_admin_problem,
    labelled_versions,
    metric,
    scene_cli,
    state_files,
    wait_for,
)
from scenescore_client import canary_chosen, expected_version, random_inputs
from scenescore_client.admin import ADMIN_PREFIX

UPLOAD_CAP = 1 << 20  # the shared server's --admin-max-upload-bytes
OCTETS = {"content-type": "application/octet-stream"}
# The plugin loader's fixtures (Tests/PluginFixtures), built next to the server as lib<Product>.so:
# plugin name in this module's plugin directory -> product.
FIXTURE_PLUGINS = {"bad_abi": "PluginFixtureBadABI", "no_entry": "PluginFixtureNoEntry",
                   "failing_create": "PluginFixtureFailingCreate", "wrong_counts": "PluginFixtureWrongCounts"}


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plugins(tmp_path_factory) -> Path:
    """This module's plugin directory: the bundled plugins (when scripts/install-plugins.sh exists)
    plus `evil.so`, a symlink to a library outside the directory."""
    root = tmp_path_factory.mktemp("admin-plugins")
    directory = root / "plugins"
    if INSTALL_PLUGINS.is_file():
        install_plugins(directory)
    else:
        directory.mkdir()
    outside = root / "outside"
    outside.mkdir()
    donor = next(iter(sorted(directory.glob("*.so"))), None)
    if donor is not None:
        shutil.copy(donor, outside / "evil.so")
    else:
        (outside / "evil.so").write_bytes(b"\x7fELF not really")
    (directory / "evil.so").symlink_to(outside / "evil.so")
    (directory / "junk.so").write_bytes(b"this is not a shared library\n" * 64)
    for name, product in FIXTURE_PLUGINS.items():
        built = BINARY.parent / f"lib{product}.so"
        if built.is_file():
            shutil.copy(built, directory / f"{name}.so")
    return directory


def has_plugin(plugins: Path, name: str) -> bool:
    return name != "evil" and (plugins / f"{name}.so").is_file()


def need_plugin(plugins: Path, name: str) -> None:
    if not has_plugin(plugins, name):
        pytest.skip(f"plugin {name}.so is not installed (scripts/install-plugins.sh)")


@pytest.fixture(scope="module")
def module_launcher(tmp_path_factory, certs, model_dir):
    lc = Launcher(tmp_path_factory, certs, model_dir)
    yield lc
    problems = lc.stop_all()
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def srv(module_launcher, plugins):
    """The shared admin-enabled server: bearer token, a 1 MiB upload cap, this module's plugins."""
    return module_launcher.start(["--admin-max-upload-bytes", str(UPLOAD_CAP)], admin=True, plugin_dir=plugins,
                                 name="admin")


@pytest.fixture(scope="module")
def admin(srv):
    with srv.admin() as client:
        yield client


@pytest.fixture(scope="module")
def scoring(srv):
    s = Scoring(srv)
    yield s
    s.close()


@pytest.fixture(scope="module")
def ref(model_dir) -> ReferenceHeads:
    return ReferenceHeads(model_dir)


def register(admin, ref: ReferenceHeads, scene: str, version: str | None = None, *, seed: int = 1,
             plugin: str | None = None) -> dict:
    version = version or f"{scene}-1"
    r = admin.request("PUT", f"{ADMIN_PREFIX}/scenes/{scene}", params={"plugin": plugin} if plugin else None,
                      headers=OCTETS, content=ref.make(scene, version, seed=seed))
    assert r.status_code == 201, f"register {scene}: {r.status_code} {r.text[:400]}"
    doc = r.json()
    assert doc["scene"] == scene and doc["stable"] == version, doc
    return doc


def push(admin, ref: ReferenceHeads, scene: str, version: str, *, seed: int, parent: str = "",
         status: int = 200, **params) -> dict:
    r = admin.request("POST", f"{ADMIN_PREFIX}/scenes/{scene}/versions",
                      params={k: str(v) for k, v in params.items()} or None, headers=OCTETS,
                      content=ref.make(scene, version, seed=seed, parent=parent))
    assert r.status_code == status, f"push {scene} {version} {params}: {r.status_code} {r.text[:400]}"
    return r.json()


def versions_of(doc: dict) -> dict[str, dict]:
    return {v["version"]: v for v in doc["versions"]}


# ---------------------------------------------------------------------------
# Auth and the listener
# ---------------------------------------------------------------------------


def test_no_or_wrong_token_is_401(srv, admin, ref):
    cases = {"no token": None, "wrong token": "x" * len(srv.admin_token),
             "token prefix": srv.admin_token[:-1], "token plus a byte": srv.admin_token + "x"}
    for what, token in cases.items():
        for method, path, body in [("GET", "/scenes", None), ("GET", "/scenes/apparel", None),
                                   ("PUT", "/scenes/sneaky", ref.make("sneaky", "sneaky-1", seed=1)),
                                   ("DELETE", "/scenes/apparel", None)]:
            r = admin.request(method, ADMIN_PREFIX + path, content=body, token=token,
                              headers=OCTETS if body else None)
            assert_admin_problem(r, 401, what=f"{what}, {method} {path}")
            assert r.headers.get("www-authenticate", "").lower().startswith("bearer"), r.headers
    r = admin.request("GET", ADMIN_PREFIX + "/scenes", headers={"authorization": f"Basic {srv.admin_token}"}, token=None)
    assert_admin_problem(r, 401, what="Basic scheme")
    # Nothing changed: the refused PUT registered nothing, the refused DELETE removed nothing.
    names = {s["scene"] for s in admin.scenes()}
    assert "sneaky" not in names and "apparel" in names, names


def test_admin_answers_only_on_its_port_over_h2(srv, admin, scoring):
    r = admin.request("GET", ADMIN_PREFIX + "/scenes")
    assert r.status_code == 200 and r.http_version == "HTTP/2", r
    assert r.headers["content-type"].split(";")[0] == "application/json"
    assert_admin_problem(admin.request("GET", ADMIN_PREFIX + "/nothing-here"), 404, what="unknown admin path")
    # The serving port has no admin API.
    r = scoring.http.get(scoring.base + ADMIN_PREFIX + "/scenes",
                         headers={"authorization": f"Bearer {srv.admin_token}"})
    assert r.status_code == 404, r


def test_admin_is_off_without_a_token(launcher):
    port = free_ports(1)[0]
    srv = launcher.start(admin_port=port, name="no-admin")  # --admin-port, but no token and no client CA
    time.sleep(0.5)  # an admin listener binds just after readiness: give it the chance to (wrongly) appear
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    srv.assert_alive()


def test_token_from_environment_and_token_file_with_newline(launcher, tmp_path):
    env_srv = launcher.start(admin=True, admin_token_env=True, name="env-token")
    with env_srv.admin() as admin:
        assert {"apparel"} <= {s["scene"] for s in admin.scenes()}
    with env_srv.admin(token="w" * 32) as admin:
        assert_admin_problem(admin.request("GET", ADMIN_PREFIX + "/scenes"), 401)
    token = "t0ken-with-newline-" + "9" * 13
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")  # as `echo TOKEN > file` writes it
    port = free_ports(1)[0]
    file_srv = launcher.start(["--admin-token-file", str(token_file)], admin_port=port, name="token-newline")
    file_srv.admin_port, file_srv.admin_token = port, token
    file_srv.wait_ready()
    with file_srv.admin() as admin:
        assert admin.request("GET", ADMIN_PREFIX + "/scenes").status_code == 200


def test_admin_client_ca(launcher, certs):
    """--admin-client-ca alone: the verified certificate is the credential; with a token too, both."""
    port = free_ports(1)[0]
    srv = launcher.start(["--admin-client-ca", str(certs.ca)], admin_port=port, name="admin-mtls")
    srv.admin_port = port
    srv.wait_ready()

    def get(cert=None, token=None):
        with srv.admin(token=token, cert=cert) as admin:
            return admin.request("GET", ADMIN_PREFIX + "/scenes")

    good, rogue = (certs.client_cert, certs.client_key), (certs.rogue_client_cert, certs.rogue_client_key)
    assert get(cert=good).status_code == 200
    for what, cert in [("no client certificate", None), ("a certificate of another CA", rogue)]:
        try:
            r = get(cert=cert)
        except (httpx.TransportError, ssl.SSLError, OSError):
            continue  # refused in the handshake
        assert r.status_code in (401, 403), f"{what}: {r.status_code} {r.text[:200]}"

    both = launcher.start(["--admin-client-ca", str(certs.ca)], admin=True, name="admin-mtls-token")
    with both.admin(token=None, cert=good) as admin:
        assert_admin_problem(admin.request("GET", ADMIN_PREFIX + "/scenes"), 401, what="certificate without token")
    with both.admin(cert=good) as admin:
        assert admin.request("GET", ADMIN_PREFIX + "/scenes").status_code == 200
    try:
        with both.admin() as admin:  # token without certificate
            r = admin.request("GET", ADMIN_PREFIX + "/scenes")
        assert r.status_code in (401, 403), r
    except (httpx.TransportError, ssl.SSLError, OSError):
        pass


# ---------------------------------------------------------------------------
# Registration, plugins, raw fields
# ---------------------------------------------------------------------------


def test_seeded_scenes_are_listed(admin, scoring, model):
    """An empty state directory is seeded from the model directory's heads (no plugin)."""
    listed = {s["scene"]: s for s in admin.scenes()}
    for scene in model.scenes:
        s = listed[scene]
        assert s["stable"] == model.version(scene) and s["plugin"] is None and s["canary"] is None, s
        assert isinstance(s["generation"], int) and s["versions"], s
        desc = scoring.describe(scene)
        assert desc.plugin is None and desc.canary is None
        assert desc.counts == model.schema, desc  # the canonical schema
        for key, count in zip(("context_ids", "context_dense", "item_ids", "item_dense"), desc.counts):
            assert len(desc.schema[key]) == count, desc.schema


@pytest.mark.parametrize("plugin", ["apparel", "electronics", "beauty"])
def test_register_plugin_scene_and_score_raw_fields(admin, scoring, ref, plugins, model, plugin):
    need_plugin(plugins, plugin)
    scene = f"raw-{plugin}"
    body = ref.make(scene, f"{scene}-1", seed=11)
    r = admin.request("PUT", f"{ADMIN_PREFIX}/scenes/{scene}", params={"plugin": plugin}, headers=OCTETS, content=body)
    assert r.status_code == 201, r.text
    doc = r.json()
    assert (doc["scene"], doc["plugin"], doc["stable"], doc["canary"]) == (scene, plugin, f"{scene}-1", None), doc
    [version] = doc["versions"]
    assert version["bytes"] == len(body) and version["plugin"] == plugin and version["labels"] == ["stable"], version
    assert version["sha256"] == heads.declared_sha256(body) and version["created"], version

    desc = scoring.describe(scene)
    assert desc.plugin == plugin and desc.head_version == f"{scene}-1" and desc.canary is None
    for key, count in zip(("context_ids", "context_dense", "item_ids", "item_dense"), desc.counts):
        assert len(desc.schema[key]) == count and all(desc.schema[key]), (key, desc.schema)
    version_seen, arrays, decoded = scoring.score_ok(desc, n=5, request_id=3)
    assert version_seen == f"{scene}-1" and decoded.outputs == ["click", "purchase"]
    # The same request twice: the same scores (the plugin instance keeps no state).
    _, _, again = scoring.score_ok(desc, n=5, request_id=3)
    np.testing.assert_array_equal(decoded.scores, again.scores)
    if desc.counts != model.schema:  # canonical-shaped input no longer fits the plugin scene
        canonical = wire.encode_request(scene, *random_inputs(dict(scoring.scenes_json()["apparel"]), 2, 1),
                                        request_id=4)
        r = scoring.post(canonical)
        assert r.status_code == 422, (r.status_code, r.text[:300])


def test_plugin_scene_values_that_overflow_the_model_are_422(admin, scoring, ref, plugins):
    """Raw values the plugin maps faithfully (electronics passes content_0..15 through) but so large
    that the forward pass overflows: the request's 422, not the plugin's 500 (a fuzzer finding)."""
    need_plugin(plugins, "electronics")
    scene = "overflowing-electronics"
    register(admin, ref, scene, seed=41, plugin="electronics")
    desc = scoring.describe(scene)
    cids, cdense, iids, idense = random_inputs(desc, 2, np.random.default_rng(41))
    big = np.finfo(np.float32).max
    idense[1, :16] = np.where(np.arange(16) % 2 == 0, big, -big).astype(np.float32)
    r = scoring.post(wire.encode_request(scene, cids, cdense, iids, idense, request_id=41))
    assert r.status_code == 422, (r.status_code, r.text[:300])
    problem = r.json()
    assert problem["type"].endswith("/unscorable-values") and problem["detail"].startswith("candidate 1: "), problem


def test_apparel_plugin_scores_follow_its_mapping(admin, scoring, ref, plugins):
    """The apparel plugin's documented mapping (Plugins/apparel, default config) in numpy, then
    the reference forward pass: the server's scores for raw fields match."""
    need_plugin(plugins, "apparel")
    scene = "mapped-apparel"
    register(admin, ref, scene, seed=21, plugin="apparel")
    desc = scoring.describe(scene)
    if desc.schema["item_dense"][-2:] != ["list_price", "discount"] or desc.counts != (1, 1, 5, 18):
        pytest.skip(f"the apparel plugin's raw schema changed: {desc.schema}")
    _, (cids, cdense, iids, idense), decoded = scoring.score_ok(desc, n=6, request_id=9, seed=5)
    canonical_ctx_dense = np.array([cdense[0], 0, 0, 0], dtype=np.float32)
    canonical_ids = iids[:, :3].astype(np.uint32)  # scene_index 0: item, category, brand as sent
    price = np.log(idense[:, 16].astype(np.float64) * (1 - idense[:, 17].astype(np.float64))) - 3.0
    canonical_dense = np.concatenate([idense[:, :16], price[:, None].astype(np.float32)], axis=1)
    ref.check(scene, f"{scene}-1", (cids, canonical_ctx_dense, canonical_ids, canonical_dense), decoded.scores)


def test_reference_cli_scores_a_plugin_scene_with_a_canary(srv, admin, scoring, ref, plugins):
    """`python -m scenescore_client score --scene X` shapes its request from the scene's described
    raw schema, and names the version the canary rule picks, which is the one that answers."""
    import subprocess
    import sys

    plugin = next((p for p in ("electronics", "beauty", "apparel") if has_plugin(plugins, p)), None)
    scene = "cli-scored"
    register(admin, ref, scene, seed=31, plugin=plugin)
    push(admin, ref, scene, f"{scene}-2", seed=32, label="canary", share=0.5)
    desc = scoring.describe(scene)
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[2] / "Proto" / "python")}
    for request_id in (1, 2, 3, 4):
        result = subprocess.run([sys.executable, "-m", "scenescore_client", "score", "--url",
                                 f"https://127.0.0.1:{srv.port}", "--cacert", str(srv.cafile), "--scene", scene,
                                 "--candidates", "3", "--request-id", str(request_id)],
                                capture_output=True, text=True, timeout=60, env=env)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        want = expected_version(desc, request_id)
        assert lines[0].startswith(f"scene {scene}  head {want}  request_id {request_id}  3 candidates"), lines
        route = "canary" if canary_chosen(request_id, 0.5) else "stable"
        assert lines[1] == f"{'plugin ' + plugin if plugin else 'canonical schema'}; the canary rule picks " \
                           f"{route} '{want}'", lines
        assert len(lines) == 2 + 1 + 3, lines


def test_plugin_names_that_leave_the_directory_are_403(admin, ref, plugins):
    for name in ["../x", "../apparel", "a/b", "..", "/etc/passwd", "evil"]:
        scene = "escape"
        r = admin.request("PUT", f"{ADMIN_PREFIX}/scenes/{scene}", params={"plugin": name}, headers=OCTETS,
                          content=ref.make(scene, f"{scene}-1", seed=1))
        assert_admin_problem(r, 403, what=f"plugin {name!r}")
        assert_admin_problem(admin.request("GET", f"{ADMIN_PREFIX}/scenes/{scene}"), 404, what="nothing registered")
    # The same on a push that changes an existing scene's plugin.
    register(admin, ref, "escape-push")
    before = admin.scene("escape-push")
    r = admin.request("POST", f"{ADMIN_PREFIX}/scenes/escape-push/versions", params={"plugin": "../x"},
                      headers=OCTETS, content=ref.make("escape-push", "escape-push-2", seed=2))
    assert_admin_problem(r, 403)
    assert admin.scene("escape-push") == before


@pytest.mark.parametrize("plugin", ["nosuchplugin", "junk", *FIXTURE_PLUGINS])
def test_unusable_plugins_are_422(admin, ref, plugins, plugin):
    """Missing, not a library, wrong ABI version, no entry symbol, failing create(), canonical
    counts that do not fit the backbone: 422, nothing registered, an existing scene unchanged."""
    if plugin in FIXTURE_PLUGINS and not (plugins / f"{plugin}.so").is_file():
        pytest.skip(f"lib{FIXTURE_PLUGINS[plugin]}.so is not built next to {BINARY}")
    scene = "unusable-" + plugin.replace("_", "-")
    r = admin.request("PUT", f"{ADMIN_PREFIX}/scenes/{scene}", params={"plugin": plugin}, headers=OCTETS,
                      content=ref.make(scene, f"{scene}-1", seed=1))
    assert_admin_problem(r, 422, "plugin", plugin, what=f"plugin {plugin}")
    assert_admin_problem(admin.request("GET", f"{ADMIN_PREFIX}/scenes/{scene}"), 404)
    register(admin, ref, scene, seed=1)
    before = admin.scene(scene)
    r = admin.request("POST", f"{ADMIN_PREFIX}/scenes/{scene}/versions", params={"plugin": plugin},
                      headers=OCTETS, content=ref.make(scene, f"{scene}-2", seed=2))
    assert_admin_problem(r, 422, "plugin", plugin, what=f"push switching to plugin {plugin}")
    assert admin.scene(scene) == before


# ---------------------------------------------------------------------------
# Versions, labels, canary, rollback, remove
# ---------------------------------------------------------------------------


def check_all_answer(scoring, ref, desc, ids, what: str) -> dict[str, int]:
    """Every request id is answered by the version the canary rule names; scores match that head."""
    seen: dict[str, int] = {}
    for request_id in ids:
        version, arrays, decoded = scoring.score_ok(desc, n=2, request_id=request_id, seed=request_id)
        want = expected_version(desc, request_id)
        assert version == want, f"{what}: request id {request_id} answered by {version!r}, the rule says {want!r}"
        ref.check(desc.scene, version, arrays, decoded.scores)
        seen[version] = seen.get(version, 0) + 1
    return seen


def test_versions_labels_canary_rollback_remove(admin, scoring, ref):
    scene = "boots"
    doc = register(admin, ref, scene, seed=1)
    generations = [doc["generation"]]

    def step(doc):
        assert doc["generation"] > generations[-1], f"generation did not move: {generations} -> {doc['generation']}"
        generations.append(doc["generation"])
        return doc

    doc = step(push(admin, ref, scene, "boots-2", seed=2, parent="boots-1", label="none"))
    assert doc["stable"] == "boots-1" and doc["canary"] is None
    assert versions_of(doc)["boots-2"]["labels"] == [] and versions_of(doc)["boots-2"]["parent"] == "boots-1"
    desc = scoring.describe(scene)
    assert desc.head_version == "boots-1" and desc.canary is None

    doc = step(push(admin, ref, scene, "boots-3", seed=3, parent="boots-2", label="canary", share=0.3))
    assert (doc["stable"], doc["canary"], doc["canary_share"]) == ("boots-1", "boots-3", 0.3), doc
    assert versions_of(doc)["boots-3"]["labels"] == ["canary"]
    desc = scoring.describe(scene)
    assert desc.canary is not None and (desc.canary.version, desc.canary.share) == ("boots-3", 0.3), desc
    seen = check_all_answer(scoring, ref, desc, range(1, 201), "canary 0.3")
    assert 30 <= seen.get("boots-3", 0) <= 90, seen  # ~60 of 200
    assert seen.get("boots-3", 0) == sum(canary_chosen(i, 0.3) for i in range(1, 201))

    doc = step(admin.set_labels(scene, canary_share=1.0))
    desc = scoring.describe(scene)
    assert check_all_answer(scoring, ref, desc, range(1000, 1030), "canary 1.0") == {"boots-3": 30}
    doc = step(admin.set_labels(scene, canary_share=0.0))
    assert check_all_answer(scoring, ref, scoring.describe(scene), range(1000, 1030), "canary 0.0") == {"boots-1": 30}

    before = admin.scene(scene)
    for bad in ('{"canary_share": 1.5}', '{"canary_share": -0.1}', '{"canary_share": true}',
                '{"canary_share": "0.5"}', '{"stable": 3}', "not json"):
        r = admin.request("PUT", f"{ADMIN_PREFIX}/scenes/{scene}/labels", content=bad.encode(),
                          headers={"content-type": "application/json"})
        assert r.status_code in (400, 422), f"labels {bad}: {r.status_code} {r.text[:200]}"
        assert_admin_problem(r, r.status_code, what=f"labels {bad}")
    assert admin.scene(scene) == before, "a refused label change changed the scene"

    doc = step(admin.set_labels(scene, canary=None))
    assert doc["canary"] is None
    desc = scoring.describe(scene)
    assert desc.canary is None and check_all_answer(scoring, ref, desc, range(5), "no canary") == {"boots-1": 5}

    doc = step(admin.set_labels(scene, stable="boots-2"))
    assert doc["stable"] == "boots-2" and versions_of(doc)["boots-2"]["labels"] == ["stable"]
    desc = scoring.describe(scene)
    assert desc.head_version == "boots-2" and desc.parent_version == "boots-1"
    assert check_all_answer(scoring, ref, desc, range(5), "stable boots-2") == {"boots-2": 5}

    doc = step(admin.rollback(scene))  # to the version stable before the current one
    assert doc["stable"] == "boots-1", doc
    assert check_all_answer(scoring, ref, scoring.describe(scene), range(5), "rolled back") == {"boots-1": 5}
    doc = step(admin.rollback(scene, "boots-3"))
    assert doc["stable"] == "boots-3"
    doc = step(push(admin, ref, scene, "boots-4", seed=4, parent="boots-3"))  # default label: stable
    assert doc["stable"] == "boots-4" and versions_of(doc)["boots-4"]["labels"] == ["stable"]
    assert check_all_answer(scoring, ref, scoring.describe(scene), range(5), "pushed stable") == {"boots-4": 5}

    # Listing.
    listed = admin.versions(scene)
    assert listed["scene"] == scene and set(versions_of(listed)) == {"boots-1", "boots-2", "boots-3", "boots-4"}
    assert admin.scene(scene) == doc
    assert {s["scene"]: s for s in admin.scenes()}[scene] == doc

    # Unknown versions and scenes.
    before = admin.scene(scene)
    assert_admin_problem(admin.request("POST", f"{ADMIN_PREFIX}/scenes/{scene}/rollback",
                                       content=json.dumps({"version": "boots-99"}).encode(),
                                       headers={"content-type": "application/json"}), 404, what="rollback to unknown")
    assert_admin_problem(admin.request("PUT", f"{ADMIN_PREFIX}/scenes/{scene}/labels",
                                       content=json.dumps({"stable": "boots-99"}).encode(),
                                       headers={"content-type": "application/json"}), 404, what="label unknown")
    assert_admin_problem(admin.request("GET", f"{ADMIN_PREFIX}/scenes/nosuchscene"), 404)
    assert_admin_problem(admin.request("POST", f"{ADMIN_PREFIX}/scenes/nosuchscene/versions", headers=OCTETS,
                                       content=ref.make("nosuchscene", "x-1", seed=1)), 404)
    assert admin.scene(scene) == before

    # Remove: new requests get 404.
    r = admin.request("DELETE", f"{ADMIN_PREFIX}/scenes/{scene}")
    assert r.status_code == 200 and r.json() == {"scene": scene, "removed": True}, r.text
    assert_admin_problem(admin.request("GET", f"{ADMIN_PREFIX}/scenes/{scene}"), 404, what="removed scene")
    assert scene not in {s["scene"] for s in admin.scenes()}
    assert scene not in scoring.scenes_json()
    r, _, _ = scoring.score(desc, n=1, request_id=1)
    assert r.status_code == 404, r.text
    assert r.headers["content-type"].split(";")[0] == "application/problem+json"
    assert scoring.http.get(scoring.base + f"/v2/models/{scene}/ready").status_code == 404
    assert_admin_problem(admin.request("DELETE", f"{ADMIN_PREFIX}/scenes/{scene}"), 404, what="removed twice")


def test_keep_versions_bounds_what_is_kept(admin, srv, ref):
    scene = "keep"
    register(admin, ref, scene, seed=1)
    for k in range(2, 9):
        doc = push(admin, ref, scene, f"keep-{k}", seed=k)
    kept = versions_of(doc)
    assert doc["stable"] == "keep-8" and len(kept) == 5, sorted(kept)  # --keep-versions 5 (default)
    assert set(kept) == {f"keep-{k}" for k in range(4, 9)}, sorted(kept)
    assert_admin_problem(admin.request("POST", f"{ADMIN_PREFIX}/scenes/{scene}/rollback",
                                       content=json.dumps({"version": "keep-2"}).encode(),
                                       headers={"content-type": "application/json"}), 404, what="dropped version")
    files = [p for p in srv.state_dir.rglob("*.safetensors") if f"/{scene}/" in str(p)]
    assert len(files) == 5, f"{len(files)} head files kept on disk for {scene}: {files}"
    # A labelled version is kept however old: canary on the oldest kept one, then push 5 more.
    admin.set_labels(scene, canary="keep-4", canary_share=0.0)
    for k in range(9, 14):
        doc = push(admin, ref, scene, f"keep-{k}", seed=k, label="none")
    kept = versions_of(doc)
    assert len(kept) == 5 and {"keep-4", "keep-8", "keep-13"} <= set(kept), sorted(kept)


# ---------------------------------------------------------------------------
# Refusals: nothing changes, the old head keeps serving
# ---------------------------------------------------------------------------

BROKEN_REASONS = {
    "not-safetensors": ("safetensors", "header", "json", "truncated", "length"),
    "corrupt": ("sha256", "sha-256", "hash", "digest"),
    "truncated": ("truncat", "end of file", "beyond", "short", "length", "size"),
    "nan": ("finite", "nan"),
    "inf": ("finite", "inf"),
    "wrong-dims": ("input", "width", "shape", "dim", "128"),
    "wrong-scene": ("scene",),
}


@pytest.mark.parametrize("kind", sorted(BROKEN_REASONS))
def test_broken_heads_are_422_and_the_old_head_serves(admin, scoring, ref, kind):
    scene = "socks-" + kind
    register(admin, ref, scene, seed=5)
    desc = scoring.describe(scene)
    version, arrays, before_scores = scoring.score_ok(desc, n=4, request_id=77)
    before = admin.scene(scene)
    body = heads.BROKEN[kind](ref.backbone_spec, scene, f"{scene}-2")
    for label in ("stable", "canary"):
        r = admin.request("POST", f"{ADMIN_PREFIX}/scenes/{scene}/versions", params={"label": label},
                          headers=OCTETS, content=body)
        assert_admin_problem(r, 422, *BROKEN_REASONS[kind], what=f"{kind} head, label {label}")
    assert admin.scene(scene) == before, "a refused upload changed the scene"
    again_version, _, again = scoring.score_ok(desc, n=4, request_id=77)
    assert again_version == version == f"{scene}-1"
    np.testing.assert_array_equal(again.scores, before_scores.scores)
    # Registering a new scene with it registers nothing.
    fresh = "fresh-" + kind
    r = admin.request("PUT", f"{ADMIN_PREFIX}/scenes/{fresh}", headers=OCTETS,
                      content=heads.BROKEN[kind](ref.backbone_spec, fresh, f"{fresh}-1"))
    assert_admin_problem(r, 422, *BROKEN_REASONS[kind], what=f"{kind} head, register")
    assert_admin_problem(admin.request("GET", f"{ADMIN_PREFIX}/scenes/{fresh}"), 404)
    assert fresh not in scoring.scenes_json()


def test_upload_over_the_cap_is_413(admin, scoring, ref):
    scene = "capped"
    register(admin, ref, scene, seed=1)
    before = admin.scene(scene)
    big = heads.big_head_bytes(ref.backbone_spec, scene, "capped-big", at_least=UPLOAD_CAP + 4096)
    assert len(big) > UPLOAD_CAP
    r = admin.request("POST", f"{ADMIN_PREFIX}/scenes/{scene}/versions", headers=OCTETS, content=big)
    assert_admin_problem(r, 413, what="upload over --admin-max-upload-bytes")
    r = admin.request("PUT", f"{ADMIN_PREFIX}/scenes/capped-new", headers=OCTETS,
                      content=heads.big_head_bytes(ref.backbone_spec, "capped-new", "x", at_least=UPLOAD_CAP + 1))
    assert_admin_problem(r, 413, what="register over the cap")
    assert admin.scene(scene) == before
    assert scoring.score_ok(scoring.describe(scene))[0] == "capped-1"
    # The connection and the listener still work.
    assert admin.request("GET", ADMIN_PREFIX + "/scenes").status_code == 200


def test_conflicts_are_409(admin, scoring, ref):
    scene = "clash"
    doc = register(admin, ref, scene, seed=1)
    r = admin.request("PUT", f"{ADMIN_PREFIX}/scenes/{scene}", headers=OCTETS, content=ref.make(scene, "clash-x", seed=2))
    assert_admin_problem(r, 409, what="register an existing scene")
    r = admin.request("POST", f"{ADMIN_PREFIX}/scenes/{scene}/versions", headers=OCTETS,
                      content=ref.make(scene, "clash-1", seed=3))
    assert_admin_problem(r, 409, "clash-1", "exists", what="duplicate version")
    assert admin.scene(scene) == doc
    generation = doc["generation"]
    doc = push(admin, ref, scene, "clash-2", seed=4, label="none")
    assert doc["generation"] > generation
    stale = {"if-match": str(generation)}
    for method, path, body, headers in [
        ("POST", "/versions", ref.make(scene, "clash-3", seed=5), OCTETS),
        ("PUT", "/labels", json.dumps({"stable": "clash-2"}).encode(), {"content-type": "application/json"}),
        ("POST", "/rollback", json.dumps({"version": "clash-2"}).encode(), {"content-type": "application/json"}),
        ("DELETE", "", None, {}),
    ]:
        r = admin.request(method, f"{ADMIN_PREFIX}/scenes/{scene}{path}", content=body, headers={**headers, **stale})
        assert_admin_problem(r, 409, what=f"stale if-match on {method} {path}")
        assert admin.scene(scene) == doc, f"a refused {method} {path} changed the scene"
    current = {"if-match": str(doc["generation"])}
    r = admin.request("PUT", f"{ADMIN_PREFIX}/scenes/{scene}/labels", headers={"content-type": "application/json", **current},
                      content=json.dumps({"stable": "clash-2"}).encode())
    assert r.status_code == 200 and r.json()["stable"] == "clash-2", r.text
    assert scoring.score_ok(scoring.describe(scene))[0] == "clash-2"


def test_concurrent_uploads_all_land(srv, ref):
    """Writes are serialised: concurrent pushes (separate connections) never lose one another."""
    scene = "rush"
    with srv.admin() as admin:
        doc = register(admin, ref, scene, seed=1)
    bodies = {f"rush-{k}": ref.make(scene, f"rush-{k}", seed=k) for k in range(2, 6)}
    results: dict[str, int] = {}

    def upload(version: str) -> None:
        with srv.admin() as admin:
            r = admin.request("POST", f"{ADMIN_PREFIX}/scenes/{scene}/versions", params={"label": "none"},
                              headers=OCTETS, content=bodies[version])
        results[version] = r.status_code

    threads = [threading.Thread(target=upload, args=(v,)) for v in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {v: 200 for v in bodies}, results
    with srv.admin() as admin:
        final = admin.scene(scene)
    assert set(versions_of(final)) == {"rush-1", *bodies}, final
    assert final["generation"] >= doc["generation"] + len(bodies)


# ---------------------------------------------------------------------------
# Durability: restart, kill -9
# ---------------------------------------------------------------------------


def served_state(srv) -> tuple[list[dict], dict[str, dict]]:
    with srv.admin() as admin:
        listed = admin.scenes()
    s = Scoring(srv)
    try:
        served = s.scenes_json()
    finally:
        s.close()
    return listed, served


def build_state(srv, ref, plugins) -> None:
    """A plugin scene (if any plugin is installed) with a canary, a canonical scene with a rolled
    back stable and an unlabelled version, and a removed scene."""
    with srv.admin() as admin:
        plugin = "apparel" if has_plugin(plugins, "apparel") else None
        register(admin, ref, "dur-a", seed=1, plugin=plugin)
        push(admin, ref, "dur-a", "dur-a-2", seed=2, label="canary", share=0.25)
        register(admin, ref, "dur-b", seed=3)
        push(admin, ref, "dur-b", "dur-b-2", seed=4)
        push(admin, ref, "dur-b", "dur-b-3", seed=5, label="none")
        admin.rollback("dur-b")
        register(admin, ref, "dur-gone", seed=6)
        admin.remove("dur-gone")


def scores_by_scene(srv, scenes: list[str]) -> dict[str, tuple[str, np.ndarray]]:
    s = Scoring(srv)
    try:
        out = {}
        for scene in scenes:
            version, _, decoded = s.score_ok(s.describe(scene), n=3, request_id=5, seed=5)
            out[scene] = (version, decoded.scores)
        return out
    finally:
        s.close()


def test_restart_serves_the_same_state(launcher, ref, plugins):
    srv = launcher.start(admin=True, plugin_dir=plugins, name="restart")
    build_state(srv, ref, plugins)
    listed, served = served_state(srv)
    files = state_files(srv.state_dir)
    scores = scores_by_scene(srv, ["dur-a", "dur-b", "apparel"])
    rc, killed = srv.stop()
    assert (rc, killed) == (0, False), srv.describe()
    again = launcher.restart(srv)
    assert served_state(again) == (listed, served)
    assert state_files(again.state_dir) == files
    after = scores_by_scene(again, ["dur-a", "dur-b", "apparel"])
    for scene, (version, values) in scores.items():
        assert after[scene][0] == version
        np.testing.assert_array_equal(after[scene][1], values)
    with again.admin() as admin:
        assert_admin_problem(admin.request("GET", f"{ADMIN_PREFIX}/scenes/dur-gone"), 404)
        doc = push(admin, ref, "dur-b", "dur-b-4", seed=7)  # and it takes writes
        assert doc["stable"] == "dur-b-4"


def test_kill9_during_upload_restarts_with_the_previous_state(launcher, ref, plugins):
    srv = launcher.start(admin=True, plugin_dir=plugins, name="kill9")
    build_state(srv, ref, plugins)
    listed, served = served_state(srv)
    files = state_files(srv.state_dir)
    big = heads.big_head_bytes(ref.backbone_spec, "dur-b", "dur-b-big", at_least=24 << 20)

    # 1. Half of a large upload sent, then SIGKILL.
    conn = H2Conn.tls(srv.admin_port, srv.cafile, timeout=10)
    sid = conn.send("POST", f"{ADMIN_PREFIX}/scenes/dur-b/versions",
                    [("authorization", f"Bearer {srv.admin_token}"), ("content-type", "application/octet-stream"),
                     ("content-length", str(len(big)))], None, end_stream=False)
    half = len(big) // 2
    conn.send_data(sid, big[:half], end_stream=False)
    conn.wait([sid], 1.0)  # let the server read what the window allows
    srv.kill9()
    conn.close()
    srv = launcher.restart(srv)
    assert served_state(srv) == (listed, served), "state changed by an upload cut short by kill -9"
    assert state_files(srv.state_dir) == files, "state directory files differ after kill -9 mid-upload"

    # 2. Whole uploads, SIGKILL at once / shortly after the last byte: the old or the new state.
    for delay in (0.0, 0.02, 0.1):
        listed, served = served_state(srv)
        files = state_files(srv.state_dir)
        version = f"dur-b-k{int(delay * 1000)}"
        body = ref.make("dur-b", version, seed=int(delay * 1000) + 50)
        conn = H2Conn.tls(srv.admin_port, srv.cafile, timeout=10)
        sid = conn.send("POST", f"{ADMIN_PREFIX}/scenes/dur-b/versions",
                        [("authorization", f"Bearer {srv.admin_token}"), ("content-type", "application/octet-stream")],
                        body)
        deadline = time.monotonic() + 10
        while sid in conn.pending and time.monotonic() < deadline:  # until the last byte is on the wire
            conn.poll(0.01)
        time.sleep(delay)
        srv.kill9()
        conn.close()
        srv = launcher.restart(srv)
        now_listed, now_served = served_state(srv)
        if (now_listed, now_served) == (listed, served):
            assert state_files(srv.state_dir) == files, f"kill at +{delay}s: same listing but files differ"
            continue
        # The push committed before the kill: exactly one new stable version, files to match.
        by_scene = {s["scene"]: s for s in now_listed}
        assert by_scene["dur-b"]["stable"] == version, (delay, by_scene["dur-b"])
        others = [s for s in now_listed if s["scene"] != "dur-b"]
        assert others == [s for s in listed if s["scene"] != "dur-b"]
        new_files = state_files(srv.state_dir)
        assert {k: v for k, v in files.items() if "/dur-b/" not in k} == \
            {k: v for k, v in new_files.items() if "/dur-b/" not in k}
        heads_on_disk = [k for k in new_files if "/dur-b/" in k and k.endswith(".safetensors")]
        assert len(heads_on_disk) == len(by_scene["dur-b"]["versions"]), (heads_on_disk, by_scene["dur-b"])
        assert scores_by_scene(srv, ["dur-b"])["dur-b"][0] == version


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------


def test_registry_metrics(admin, scoring, ref):
    types, before = scoring.metrics()
    for name, kind in [("scenescore_live_head_versions", "gauge"), ("scenescore_head_loads_total", "counter"),
                       ("scenescore_head_load_seconds", "histogram"), ("scenescore_resident_head_bytes", "gauge"),
                       ("scenescore_scene_head_info", "gauge")]:
        assert types.get(name) == kind, f"# TYPE {name} is {types.get(name)!r}, expected {kind}"
    scene = "metered"
    register(admin, ref, scene, seed=1)
    push(admin, ref, scene, "metered-2", seed=2, label="canary", share=0.5)
    r = admin.request("POST", f"{ADMIN_PREFIX}/scenes/{scene}/versions", headers=OCTETS,
                      content=heads.nan_head(ref.backbone_spec, scene, "metered-3"))
    assert r.status_code == 422

    def settled():
        _, samples = scoring.metrics()
        live = metric(samples, "scenescore_live_head_versions")
        return samples if live == len(labelled_versions(admin.scenes())) else None

    after = wait_for(settled, 5.0)
    assert after, "scenescore_live_head_versions never equalled the number of labelled versions"
    assert metric(after, "scenescore_head_loads_total", result="ok") - \
        metric(before, "scenescore_head_loads_total", result="ok") >= 2
    assert metric(after, "scenescore_head_loads_total", result="failed") - \
        metric(before, "scenescore_head_loads_total", result="failed") >= 1
    assert metric(after, "scenescore_head_load_seconds_count") >= 2
    info = {(l["scene"], l["version"], l["label"]) for n, l, v in after if n == "scenescore_scene_head_info" and v == 1}
    expected = set()
    for s in admin.scenes():
        expected.add((s["scene"], s["stable"], "stable"))
        if s["canary"]:
            expected.add((s["scene"], s["canary"], "canary"))
    assert info == expected, f"scene_head_info: extra {info - expected}, missing {expected - info}"
    resident = metric(after, "scenescore_resident_head_bytes")
    spec = heads.head_spec(ref.backbone_spec, scene, "x")
    assert resident >= len(labelled_versions(admin.scenes())) * heads.weight_bytes(spec) * 0.9, resident


# ---------------------------------------------------------------------------
# The `scenescore scene` CLI
# ---------------------------------------------------------------------------


def cli_available() -> str | None:
    result = scene_cli("--help")
    if result.returncode != 0:
        return f"scenescore scene --help exited {result.returncode}: {(result.stderr or result.stdout)[:200]}"
    return None


def test_scene_cli_drives_the_admin_api(srv, ref, scoring, tmp_path):
    """register / push (canary, no label) / list / canary / rollback / remove, a refusal's exit
    status, and the token from SCENESCORE_ADMIN_TOKEN."""
    problem = cli_available()
    if problem:
        pytest.skip(problem)
    token_file = tmp_path / "token"
    token_file.write_text(srv.admin_token + "\n")
    common = ["--admin-url", srv.admin_url, "--cacert", str(srv.cafile), "--token-file", str(token_file)]
    files = {}
    for k in (1, 2, 3):
        files[k] = tmp_path / f"cli-{k}.safetensors"
        files[k].write_bytes(ref.make("cli", f"cli-{k}", seed=k))

    def run(*args: str) -> str:
        result = scene_cli(*args, *common)
        assert result.returncode == 0, f"scenescore scene {' '.join(args)}: exit {result.returncode}\n" \
                                       f"{result.stdout}\n{result.stderr}"
        return result.stdout

    doc = json.loads(run("register", "cli", "--head", str(files[1])))
    assert doc["scene"] == "cli" and doc["stable"] == "cli-1", doc
    doc = json.loads(run("push", "cli", "--head", str(files[2]), "--canary", "0.5"))
    assert (doc["canary"], doc["canary_share"]) == ("cli-2", 0.5), doc
    desc = scoring.describe("cli")
    assert desc.canary is not None and (desc.canary.version, desc.canary.share) == ("cli-2", 0.5)
    doc = json.loads(run("push", "cli", "--head", str(files[3]), "--no-label"))
    assert doc["stable"] == "cli-1" and versions_of(doc)["cli-3"]["labels"] == [], doc
    listed = json.loads(run("list"))
    assert "cli" in {s["scene"] for s in listed["scenes"]}, listed
    assert set(versions_of(json.loads(run("list", "cli")))) == {"cli-1", "cli-2", "cli-3"}
    run("canary", "cli", "--share", "0")
    assert scoring.describe("cli").canary.share == 0.0
    run("canary", "cli", "--promote")
    assert scoring.describe("cli").head_version == "cli-2" and scoring.describe("cli").canary is None
    run("rollback", "cli", "--to", "cli-3")
    assert scoring.describe("cli").head_version == "cli-3"
    run("rollback", "cli")
    assert scoring.describe("cli").head_version == "cli-2"
    run("canary", "cli", "--version", "cli-1", "--share", "1")
    desc = scoring.describe("cli")
    assert scoring.score_ok(desc, request_id=12)[0] == "cli-1"
    run("canary", "cli", "--off")
    assert scoring.describe("cli").canary is None
    generation = admin_generation(srv, "cli")
    stale = scene_cli("remove", "cli", "--if-generation", str(generation - 1), *common)
    assert stale.returncode == 1 and "409" in stale.stderr, stale
    run("remove", "cli", "--if-generation", str(generation))
    assert "cli" not in scoring.scenes_json()
    # Refusals: exit 1 with the status and the server's detail.
    result = scene_cli("push", "nosuchscene", "--head", str(files[1]), *common)
    assert result.returncode == 1 and "404" in result.stderr, result
    bad = tmp_path / "bad"
    bad.write_text("not-the-token-at-all-000\n")
    result = scene_cli("list", "--admin-url", srv.admin_url, "--cacert", str(srv.cafile), "--token-file", str(bad))
    assert result.returncode == 1 and "401" in result.stderr, result
    # The token and the URL from the environment.
    result = scene_cli("list", "--cacert", str(srv.cafile),
                       env={"SCENESCORE_ADMIN_TOKEN": srv.admin_token, "SCENESCORE_ADMIN_URL": srv.admin_url})
    assert result.returncode == 0 and "apparel" in result.stdout, result


def admin_generation(srv, scene: str) -> int:
    with srv.admin() as admin:
        return admin.scene(scene)["generation"]
