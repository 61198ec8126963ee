"""Bad input: every header field of the binary format wrong in turn, the invalid golden vectors,
truncated bodies, HTTP-level errors (404/405/413/415), JSON errors and schema mismatches.

The expected status, problem type and exact `detail` of a binary body come from the reference
decoder (`wire.decode_request`), then the scene/schema checks of WIRE.md §5 (steps 17-21) against
the scenes and input schema of the served model (read from its files).
All requests of this module go over ONE TLS connection; the last tests check that a valid
request still succeeds on that connection and on a new one.
"""

from __future__ import annotations

import json
import struct
import time

import numpy as np
import pytest

from h2util import (
    H2Conn,
    GOLDEN,
    ModelInfo,
    assert_problem,
    assert_score_ok,
    golden_bytes,
    random_arrays,
    score_body,
    score_json_body,
    served_model,
    wire,
)

LIMIT = 1024
BODY_LIMIT = 8388608
BASE = golden_bytes("request-1cand.bin")
INVALID = json.loads((GOLDEN / "invalid" / "invalid.json").read_text())


def expected_binary(body: bytes, max_candidates: int = LIMIT, model: ModelInfo | None = None):
    """(status, slug, detail) a conforming server serving `model` (default: the served model) answers
    for `body`, or None if it must score it."""
    model = model or served_model()
    try:
        req = wire.decode_request(body, max_candidates=max_candidates)
    except wire.WireError as error:
        return error.status, error.slug, error.detail
    if req.scene not in model.scenes:
        return 404, "unknown-scene", f"unknown scene '{req.scene}'"
    ci, cd, ii, idn = model.schema
    s = req.scene
    if req.context_ids.shape[0] != ci:
        return 422, "schema-mismatch", f"context has {req.context_ids.shape[0]} ids, scene '{s}' expects {ci}"
    if req.context_dense.shape[0] != cd:
        return 422, "schema-mismatch", f"context has {req.context_dense.shape[0]} dense values, scene '{s}' expects {cd}"
    if req.item_ids.shape[1] != ii:
        return 422, "schema-mismatch", f"items have {req.item_ids.shape[1]} ids each, scene '{s}' expects {ii}"
    if req.item_dense.shape[1] != idn:
        return 422, "schema-mismatch", f"items have {req.item_dense.shape[1]} dense values each, scene '{s}' expects {idn}"
    return None


def patch(body: bytes, offset: int, fmt: str, value) -> bytes:
    out = bytearray(body)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


# Every header field of request-1cand.bin wrong in turn (offsets: WIRE.md §3.1).
HEADER_FAULTS = {
    "magic-SSR1": patch(BASE, 0, "4s", b"SSR1"),
    "magic-garbage": patch(BASE, 0, "4s", b"XXXX"),
    "magic-zero": patch(BASE, 0, "4s", b"\0\0\0\0"),
    "version-0": patch(BASE, 4, "<H", 0),
    "version-2": patch(BASE, 4, "<H", 2),
    "version-ffff": patch(BASE, 4, "<H", 0xFFFF),
    "flags-1": patch(BASE, 6, "<H", 1),
    "flags-8000": patch(BASE, 6, "<H", 0x8000),
    "reserved-1": patch(BASE, 30, "<H", 1),
    "reserved-ffff": patch(BASE, 30, "<H", 0xFFFF),
    "n-candidates-0": patch(BASE, 16, "<I", 0),
    "n-candidates-2": patch(BASE, 16, "<I", 2),
    "n-candidates-1025": patch(BASE, 16, "<I", 1025),
    "n-candidates-ffffffff": patch(BASE, 16, "<I", 0xFFFFFFFF),
    "n-context-ids-0": patch(BASE, 20, "<H", 0),
    "n-context-ids-2": patch(BASE, 20, "<H", 2),  # same length: decodes, then 422
    "n-context-ids-3": patch(BASE, 20, "<H", 3),
    "n-context-ids-ffff": patch(BASE, 20, "<H", 0xFFFF),
    "n-context-dense-3": patch(BASE, 22, "<H", 3),  # same length: the 4th float is now non-zero padding
    "n-context-dense-5": patch(BASE, 22, "<H", 5),
    "n-item-ids-2": patch(BASE, 24, "<H", 2),
    "n-item-ids-4": patch(BASE, 24, "<H", 4),
    "n-item-dense-16": patch(BASE, 26, "<H", 16),
    "n-item-dense-18": patch(BASE, 26, "<H", 18),
    "n-item-dense-ffff": patch(BASE, 26, "<H", 0xFFFF),
    "scene-len-0": patch(BASE, 28, "<H", 0),
    "scene-len-6": patch(BASE, 28, "<H", 6),  # 'appare' + padding byte 'l'
    "scene-len-8": patch(BASE, 28, "<H", 8),  # 'apparel\0'
    "scene-len-9": patch(BASE, 28, "<H", 9),
    "scene-len-65": patch(BASE, 28, "<H", 65),
    "scene-len-ffff": patch(BASE, 28, "<H", 0xFFFF),
    "scene-uppercase": BASE[:32] + b"Apparel" + BASE[39:],
    "scene-space": BASE[:32] + b"app rel" + BASE[39:],
    "scene-0xff": BASE[:32] + b"appar\xffl" + BASE[39:],
    "scene-quote": BASE[:32] + b'app"rel' + BASE[39:],
    "scene-nul-bytes": BASE[:32] + b"shoes\0\0" + BASE[39:],  # scene_len 7 covers two NUL bytes
    "padding-after-context-ids": patch(BASE, 44, "B", 7),
    "context-dense-nan": patch(BASE, 48, "<f", float("nan")),
    "item-dense-neg-inf": patch(BASE, 0x90, "<f", float("-inf")),
    "request-id-max": patch(BASE, 8, "<Q", 2**64 - 1),  # valid: 200 with the id echoed
}


@pytest.fixture(scope="module")
def conn(server):
    c = H2Conn.tls(server.port, server.cafile)
    yield c
    c.close()


def test_base_request_is_scored_by_the_served_model(model):
    """request-1cand.bin (the base of the header faults) fits the served model: a valid request."""
    assert "apparel" in model.scenes, model.scenes
    assert expected_binary(BASE, model=model) is None, expected_binary(BASE, model=model)


def post(conn: H2Conn, body: bytes, content_type: str = wire.CONTENT_TYPE, path: str = "/v1/score"):
    return conn.post(path, body, content_type, timeout=20)


def check_binary(conn: H2Conn, body: bytes, what: str):
    r = post(conn, body)
    expected = expected_binary(body)
    if expected is None:
        rid = struct.unpack_from("<Q", body, 8)[0]
        assert_score_ok(r, request_id=rid, n=struct.unpack_from("<I", body, 16)[0])
    else:
        status, slug, detail = expected
        assert_problem(r, status, slug, detail=detail, what=what)


@pytest.mark.parametrize("case", list(HEADER_FAULTS))
def test_binary_header_field_wrong(conn, case):
    check_binary(conn, HEADER_FAULTS[case], case)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_golden_vector(conn, name):
    spec = INVALID[name]
    body = (GOLDEN / "invalid" / name).read_bytes()
    r = post(conn, body)
    doc = assert_problem(r, spec["status"], spec["type"].rsplit("/", 1)[1],
                         detail_contains=spec["detail_contains"], what=name)
    # And exactly the reference decoder's text.
    assert doc["detail"] == expected_binary(body)[2], (name, doc)


@pytest.mark.parametrize("length", [0, 1, 16, 31, 32, 33, 39, 40, 64, 100, 148, 151])
def test_truncated_body(conn, length):
    check_binary(conn, BASE[:length], f"request-1cand truncated to {length} bytes")


@pytest.mark.parametrize("extra", [1, 8, 1024])
def test_trailing_bytes(conn, extra):
    check_binary(conn, BASE + bytes(extra), f"request-1cand + {extra} zero bytes")


def binary_schema_mismatches(ci: int, cd: int, ii: int, idn: int) -> dict[str, tuple[tuple[int, int, int, int], str]]:
    """Wrong counts relative to apparel's schema (ci, cd, ii, idn) -> (counts, expected detail).
    With the schema (1, 4, 3, 17): (2, 4, 3, 17), (0, 4, 3, 17), (1, 3, 3, 17), ..."""
    s = "'apparel'"
    return {
        "context-ids+1": ((ci + 1, cd, ii, idn), f"context has {ci + 1} ids, scene {s} expects {ci}"),
        "context-ids-0": ((0, cd, ii, idn), f"context has 0 ids, scene {s} expects {ci}"),
        "context-dense-1": ((ci, cd - 1, ii, idn), f"context has {cd - 1} dense values, scene {s} expects {cd}"),
        "item-ids-1": ((ci, cd, ii - 1, idn), f"items have {ii - 1} ids each, scene {s} expects {ii}"),
        "item-dense-5": ((ci, cd, ii, idn - 5), f"items have {idn - 5} dense values each, scene {s} expects {idn}"),
        "item-dense-0": ((ci, cd, ii, 0), f"items have 0 dense values each, scene {s} expects {idn}"),
        # The first mismatch wins.
        "all-wrong": ((ci + 1, cd - 1, ii - 1, idn - 5), f"context has {ci + 1} ids, scene {s} expects {ci}"),
        "all-but-context-ids": ((ci, cd - 1, ii - 1, idn - 5),
                                f"context has {cd - 1} dense values, scene {s} expects {cd}"),
    }


@pytest.mark.parametrize("case", list(binary_schema_mismatches(0, 0, 0, 0)))  # the case names
def test_schema_mismatch_binary(conn, model, case):
    schema = model.schema
    counts, detail = binary_schema_mismatches(*schema)[case]
    assert counts != schema and min(counts) >= 0, f"{case}: {counts} is no mismatch for the schema {schema}"
    body = score_body(3, schema=counts, seed=21)
    r = post(conn, body)
    assert_problem(r, 422, "schema-mismatch", detail=detail, what=f"{case} {counts}")


def test_values_that_overflow_the_model(conn):
    """Finite dense values near float32's limit overflow the forward pass (inf - inf is NaN): a 422
    naming the candidate, never NaN scores in a 200 or a 500."""
    cids, cdense, iids, idense = random_arrays(3, seed=23)
    big = np.finfo(np.float32).max
    idense[1, :] = np.where(np.arange(idense.shape[1]) % 2 == 0, big, -big).astype(np.float32)
    body = wire.encode_request("apparel", cids, cdense, iids, idense, request_id=23)
    doc = assert_problem(post(conn, body), 422, "unscorable-values", detail_contains="candidate 1: the model's ")
    assert doc["detail"].endswith("the request's dense values are too large for scene 'apparel' to score"), doc
    # The same candidates without the huge row are scored.
    ok = wire.encode_request("apparel", cids, cdense, iids[[0, 2]], idense[[0, 2]], request_id=24)
    assert post(conn, ok).status == 200


def test_unknown_scene_binary_and_json(conn):
    body = score_body(2, scene="shoes")
    assert_problem(post(conn, body), 404, "unknown-scene", detail="unknown scene 'shoes'")
    jbody = score_json_body(2, scene="shoes")
    assert_problem(post(conn, jbody, "application/json"), 404, "unknown-scene", detail="unknown scene 'shoes'")


def test_unknown_scene_wins_over_schema(conn):
    body = score_body(2, scene="shoes", schema=(5, 5, 5, 5))
    assert_problem(post(conn, body), 404, "unknown-scene", detail="unknown scene 'shoes'")


def test_too_many_candidates(conn):
    body = score_body(LIMIT + 1, seed=22)
    assert_problem(post(conn, body), 413, "too-many-candidates",
                   detail=f"n_candidates {LIMIT + 1} exceeds the limit of {LIMIT}")
    jbody = score_json_body(LIMIT + 1, seed=22)
    assert_problem(post(conn, jbody, "application/json"), 413, "too-many-candidates",
                   detail=f"n_candidates {LIMIT + 1} exceeds the limit of {LIMIT}")


# ---------------------------------------------------------------------------
# HTTP level
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("ctype", ["text/plain", "application/xml", "application/vnd.scenescore.v2",
                                   "application/octet-stream"])
def test_wrong_content_type(conn, ctype):
    r = post(conn, BASE, ctype)
    assert_problem(r, 415, "unsupported-media-type",
                   detail=f"content type '{ctype}' is not supported; use application/vnd.scenescore.v1 or "
                          f"application/json", what=ctype)


def test_missing_content_type(conn):
    r = conn.request("POST", "/v1/score", [], BASE, timeout=10)
    assert_problem(r, 415, "unsupported-media-type", what="no content-type")


@pytest.mark.parametrize("ctype", ["Application/VND.SceneScore.V1", "application/vnd.scenescore.v1; foo=bar",
                                   "application/vnd.scenescore.v1 ; q=1"])
def test_content_type_variants_binary_accepted(conn, ctype):
    r = post(conn, BASE, ctype)
    assert_score_ok(r, request_id=7, n=1)


@pytest.mark.parametrize("ctype", ["application/json; charset=utf-8", "APPLICATION/JSON"])
def test_content_type_variants_json_accepted(conn, model, ctype):
    r = post(conn, score_json_body(2, request_id=5), ctype)
    assert r.status == 200, r
    doc = r.json()
    assert doc["request_id"] == 5 and len(doc["scores"]) == 2, doc
    assert r.header("x-scenescore-head-version") == model.version("apparel")


@pytest.mark.parametrize("method,path,allow", [
    ("GET", "/v1/score", "POST"),
    ("PUT", "/v1/score", "POST"),
    ("DELETE", "/v1/score", "POST"),
    ("POST", "/healthz", "GET"),
    ("POST", "/v1/scenes", "GET"),
    ("DELETE", "/readyz", "GET"),
    ("POST", "/metrics", "GET"),
    ("PUT", "/v2/health/live", "GET"),
])
def test_wrong_method(conn, method, path, allow):
    body = BASE if method in ("POST", "PUT") else None
    headers = [("content-type", wire.CONTENT_TYPE)] if body is not None else []
    r = conn.request(method, path, headers, body, timeout=10)
    detail = f"method {method} is not allowed on {path}; use POST" if allow == "POST" else None
    assert_problem(r, 405, "method-not-allowed", detail=detail, what=f"{method} {path}")
    allowed = {m.strip().upper() for m in (r.header("allow") or "").split(",") if m.strip()}
    assert allow in allowed, f"Allow header {r.header('allow')!r} lacks {allow}: {r!r}"
    assert method not in allowed, r


def test_head_is_allowed_on_get_endpoints(conn):
    r = conn.request("HEAD", "/healthz", timeout=10)
    assert r.status == 200 and r.ended and len(r.body) == 0, r


@pytest.mark.parametrize("method,path", [("GET", "/v2/score"), ("POST", "/v2/score"), ("GET", "/"),
                                         ("GET", "/v1/score/extra"), ("GET", "/v1"), ("GET", "/healthz/x"),
                                         ("GET", "/v2/models/apparel/ready/x"), ("DELETE", "/nope")])
def test_unknown_path(conn, method, path):
    body = BASE if method == "POST" else None
    headers = [("content-type", wire.CONTENT_TYPE)] if body is not None else []
    r = conn.request(method, path, headers, body, timeout=10)
    assert_problem(r, 404, "not-found", detail=f"no resource at {path}", what=f"{method} {path}")


def test_body_too_large_by_content_length(conn):
    sid = conn.send("POST", "/v1/score", [("content-type", wire.CONTENT_TYPE),
                                           ("content-length", str(BODY_LIMIT + 1))], None, end_stream=False)
    r = conn.wait([sid], 10)[sid]
    conn.reset(sid)
    assert_problem(r, 413, "body-too-large", detail=f"body exceeds the limit of {BODY_LIMIT} bytes",
                   what="content-length limit+1, no body sent")


def test_body_too_large_huge_content_length(conn):
    sid = conn.send("POST", "/v1/score", [("content-type", "application/json"),
                                           ("content-length", str(2**63 - 1))], None, end_stream=False)
    r = conn.wait([sid], 10)[sid]
    conn.reset(sid)
    assert_problem(r, 413, "body-too-large", detail=f"body exceeds the limit of {BODY_LIMIT} bytes")


def test_body_exactly_at_limit_is_read(conn):
    body = BASE[:32] + bytes(BODY_LIMIT - 32)
    r = post(conn, body)
    assert_problem(r, 400, "malformed-request", detail=f"body is {BODY_LIMIT} bytes, header implies 152")


def test_body_too_large_streamed_without_content_length(conn):
    sid = conn.send("POST", "/v1/score", [("content-type", wire.CONTENT_TYPE)], None, end_stream=False)
    chunk = BASE[:32] + bytes(65536 - 32)
    sent = 0
    r = conn.responses[sid]
    deadline = time.monotonic() + 30
    while sent <= BODY_LIMIT + (1 << 20) and not r.done and not conn.closed and time.monotonic() < deadline:
        if sid not in conn.pending:
            conn.send_data(sid, chunk, end_stream=False)
            sent += len(chunk)
        conn.poll(0.01)
    conn.wait([sid], 10)
    conn.reset(sid)
    assert r.status is not None, f"no answer after streaming {sent} bytes (limit {BODY_LIMIT}): {r!r}"
    assert_problem(r, 413, "body-too-large", detail=f"body exceeds the limit of {BODY_LIMIT} bytes",
                   what=f"streamed {sent} bytes without content-length")


# ---------------------------------------------------------------------------
# JSON errors
# ---------------------------------------------------------------------------

def good_json() -> dict:
    """A valid 2-candidate apparel request of the served model's schema (a fresh copy)."""
    return json.loads(score_json_body(2, request_id=3))


def with_(path, value):
    """good_json() with `value` at `path` (KeyError: deleted), made when a test runs."""
    def make() -> dict:
        doc = good_json()
        target = doc
        for key in path[:-1]:
            target = target[key]
        if value is KeyError:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return doc
    return make


JSON_CASES = {
    "unknown-top-member": (lambda: {**good_json(), "candidate": []}, "request: unknown member 'candidate'"),
    "missing-candidates": (with_(["candidates"], KeyError), "request: missing member 'candidates'"),
    "missing-scene": (with_(["scene"], KeyError), "request: missing member 'scene'"),
    "not-object": (lambda: [1, 2], "request: expected an object"),
    "scene-number": (with_(["scene"], 5), "request.scene: expected a string"),
    "scene-uppercase": (with_(["scene"], "Apparel"),
                        "bad scene name \"Apparel\": only lowercase a-z, 0-9, '_' and '-' are allowed"),
    "scene-empty": (with_(["scene"], ""), "scene_len must be between 1 and 64, got 0"),
    "request-id-negative": (with_(["request_id"], -1), "request.request_id: expected an integer in 0...18446744073709551615"),
    "request-id-2^64": (with_(["request_id"], 2**64), "request.request_id: expected an integer in 0...18446744073709551615"),
    "request-id-float": (with_(["request_id"], 1.5), "request.request_id: expected an integer in 0...18446744073709551615"),
    "context-unknown": (with_(["context", "idz"], []), "request.context: unknown member 'idz'"),
    "context-id-float": (with_(["context", "ids"], [1.5]), "request.context.ids[0]: expected an integer in 0...4294967295"),
    "context-id-negative": (with_(["context", "ids"], [-1]), "request.context.ids[0]: expected an integer in 0...4294967295"),
    "context-id-string": (with_(["context", "ids"], ["17"]), "request.context.ids[0]: expected an integer in 0...4294967295"),
    "context-id-bool": (with_(["context", "ids"], [True]), "request.context.ids[0]: expected an integer in 0...4294967295"),
    "context-id-2^32": (with_(["context", "ids"], [2**32]), "request.context.ids[0]: expected an integer in 0...4294967295"),
    "context-dense-1e39": (with_(["context", "dense"], [1e39, 0, 0, 0]), "request.context.dense[0]: value is not a finite float32"),
    "context-dense-string": (with_(["context", "dense"], [0, "x", 0, 0]), "request.context.dense[1]: expected a number"),
    "candidates-empty": (with_(["candidates"], []), "n_candidates must be at least 1"),
    "candidates-object": (with_(["candidates"], {}), "request.candidates: expected an array"),
    "candidate-id-bad": (with_(["candidates", 1, "ids", 2], 4294967296), "request.candidates[1].ids[2]: expected an integer in 0...4294967295"),
    "candidate-unknown": (with_(["candidates", 0, "id"], [1]), "request.candidates[0]: unknown member 'id'"),
    "candidate-dense-inf": (with_(["candidates", 1, "dense", 3], -1e300), "request.candidates[1].dense[3]: value is not a finite float32"),
}


@pytest.mark.parametrize("case", list(JSON_CASES))
def test_json_errors(conn, case):
    make, detail = JSON_CASES[case]
    doc = make()
    r = post(conn, json.dumps(doc).encode(), "application/json")
    # The reference decoder agrees on the detail (sanity check of the expectation itself).
    try:
        wire.request_from_json(doc)
        raise AssertionError("the reference decoder accepts this document")
    except wire.WireError as error:
        assert error.detail == detail, (error.detail, detail)
    assert_problem(r, 400, "malformed-request", detail=detail, what=case)


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b'{"scene": "apparel",}', b"\xff\xfe{}", b"[1, 2"])
def test_json_unparsable(conn, raw):
    r = post(conn, raw, "application/json")
    doc = assert_problem(r, 400, "malformed-request", what=repr(raw))
    assert doc["detail"].startswith("body is not valid JSON: "), doc


def json_schema_mismatches(ci: int, cd: int, ii: int, idn: int) -> dict:
    """Mutations of good_json() that break apparel's schema (ci, cd, ii, idn) -> (mutate, wrong
    count, expected count, expected detail). With the schema (1, 4, 3, 17): context ids [1, 2],
    context dense [1.0], candidate 1 ids [1, 2], candidate 0 with 12 dense values, candidate 1
    without ids (and one dense value)."""
    s = "'apparel'"

    def cand(i, key, values):
        return lambda d: d["candidates"][i].__setitem__(key, values)

    def no_ids_one_dense(d):
        d["candidates"][1]["dense"] = [0.5]
        d["candidates"][1]["ids"] = []

    return {
        "context-ids+1": (lambda d: d["context"].__setitem__("ids", list(range(1, ci + 2))), ci + 1, ci,
                          f"context has {ci + 1} ids, scene {s} expects {ci}"),
        "context-dense-1-value": (lambda d: d["context"].__setitem__("dense", [1.0]), 1, cd,
                                  f"context has 1 dense values, scene {s} expects {cd}"),
        "candidate-1-ids-1": (cand(1, "ids", list(range(1, ii))), ii - 1, ii,
                              f"candidate 1: {ii - 1} ids, scene {s} expects {ii}"),
        "candidate-0-dense-5": (cand(0, "dense", [0.5] * (idn - 5)), idn - 5, idn,
                                f"candidate 0: {idn - 5} dense values, scene {s} expects {idn}"),
        "candidate-1-no-ids": (no_ids_one_dense, 0, ii, f"candidate 1: 0 ids, scene {s} expects {ii}"),
    }


@pytest.mark.parametrize("case", list(json_schema_mismatches(0, 0, 0, 0)))  # the case names
def test_schema_mismatch_json(conn, model, case):
    mutate, wrong, expected, detail = json_schema_mismatches(*model.schema)[case]
    assert wrong != expected and wrong >= 0, f"{case} is no mismatch for the schema {model.schema}"
    doc = good_json()
    mutate(doc)
    r = post(conn, json.dumps(doc).encode(), "application/json")
    assert_problem(r, 422, "schema-mismatch", detail=detail, what=case)


def test_json_defaults(conn, model):
    """request_id and context are optional; missing context on a scene that needs it is a 422."""
    ci = model.schema[0]
    assert ci > 0, f"apparel needs no context ids in the served model {model.dir}"
    good = good_json()
    doc = {"scene": "apparel", "candidates": good["candidates"], "context": good["context"]}
    r = post(conn, json.dumps(doc).encode(), "application/json")
    assert r.status == 200, r
    assert r.json()["request_id"] == 0
    doc = {"scene": "apparel", "candidates": good["candidates"]}
    r = post(conn, json.dumps(doc).encode(), "application/json")
    assert_problem(r, 422, "schema-mismatch", detail=f"context has 0 ids, scene 'apparel' expects {ci}")


# ---------------------------------------------------------------------------
# Afterwards: the connection and the server still work
# ---------------------------------------------------------------------------


def test_valid_request_on_same_connection_after_bad_inputs(conn):
    assert not conn.closed, f"the connection was closed (goaway={conn.goaway})"
    assert conn.goaway is None, f"server sent GOAWAY {conn.goaway} during bad-input tests"
    errors = [r for r in conn.responses.values()
              if (r.reset is not None or not r.done) and r.stream_id not in conn.cancelled]
    assert not errors, f"streams reset by the server or left unanswered: {errors[:3]}"
    for rid in (1, 2):
        r = post(conn, score_body(3, request_id=rid))
        assert_score_ok(r, request_id=rid, n=3)


def test_valid_request_on_new_connection_after_bad_inputs(server):
    with H2Conn.tls(server.port, server.cafile) as c:
        r = c.post("/v1/score", BASE)
        assert_score_ok(r, request_id=7, n=1)
    server.assert_alive()
