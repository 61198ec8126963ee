#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (Tests/Fuzz/corpus/TARGET/), deterministically.

    python3 Tests/Fuzz/make_corpus.py        # rewrites every corpus directory

The seeds are real inputs, each a few hundred bytes to a few KB, made by the project's own
reference code where it has some: the golden request vectors (Proto/golden), model files
written by the reference writer (Tests/interop/scenescore_model.py, through the `safetensors`
package) for the fuzz targets' small backbone (FuzzModels.smallBackboneSpec), .npy files
written by numpy, HTTP/2 client conversations recorded from the `h2` package (with Huffman
coding off, so the dictionary's header names and paths match the header blocks), request
bodies from the reference client's encoder (Proto/python/scenescore_client/wire.py).
Input layouts of the plugins and admin targets are described in their Swift files.
"""

import io
import json
import os
import shutil
import struct
import sys
import tempfile

import h2.config
import h2.connection
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "Proto", "python"))
sys.path.insert(0, os.path.join(ROOT, "Tests", "interop"))

from scenescore_client import wire  # noqa: E402
import scenescore_model as sm  # noqa: E402

CORPUS = os.path.join(ROOT, "Tests", "Fuzz", "corpus")
GOLDEN = os.path.join(ROOT, "Proto", "golden")

# Sources/FuzzTargets/Environment.swift: FuzzModels.smallBackboneSpec and smallHeadSpec.
SMALL_BACKBONE = {
    "context_fields": [{"name": "user", "vocab": 97, "dim": 4}], "context_dense": 4,
    "item_fields": [{"name": "item", "vocab": 101, "dim": 4}, {"name": "category", "vocab": 13, "dim": 2},
                    {"name": "brand", "vocab": 17, "dim": 2}],
    "item_dense": 17, "hidden": [16, 8], "activation": "relu",
}


def small_head_spec(scene, version):
    return {"scene": scene, "version": version, "parent": "", "input": 8, "bottleneck": 4, "tower": [8],
            "outputs": ["click", "purchase"]}


def write(target, name, data):
    directory = os.path.join(CORPUS, target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def model_bytes(kind, spec, seed, dtype="F32"):
    tensors = sm.random_head(spec, seed) if kind == "head" else sm.random_backbone(spec, seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.safetensors")
        sm.save_model(path, kind, spec, tensors, dtype=dtype)
        with open(path, "rb") as f:
            return f.read()


def head_bytes(scene, version, seed, dtype="F32"):
    return model_bytes("head", small_head_spec(scene, version), seed, dtype)


# --- wire-binary and wire-json: the golden vectors ----------------------------------------------

def wire_corpora():
    for name in ["request-1cand", "request-4cand", "request-minimal", "request-odd"]:
        shutil.copy(os.path.join(GOLDEN, name + ".bin"), os.path.join(CORPUS, "wire-binary", name + ".bin"))
        shutil.copy(os.path.join(GOLDEN, name + ".json"), os.path.join(CORPUS, "wire-json", name + ".json"))
    for name in ["nonzero-padding", "nan-item-dense"]:
        shutil.copy(os.path.join(GOLDEN, "invalid", name + ".bin"), os.path.join(CORPUS, "wire-binary", "invalid-" + name + ".bin"))
    write("wire-json", "extremes.json",
          b'{"scene": "a\\u0062c_-9", "request_id": 18446744073709551615, "context": {"ids": [0, 4294967295], '
          b'"dense": [-0.0, 1e-45, 3.4028235e38]}, "candidates": [{"ids": [7], "dense": [1.5e-3, -2E+2]}, '
          b'{"ids": [8], "dense": [0, 1]}]}')
    write("wire-json", "nonuniform.json", b'{"candidates": [{"ids": [1, 2]}, {"dense": [NaN]}, {}], "scene": "x"}')


# --- safetensors: model files by the reference writer -----------------------------------------

def safetensors_corpus():
    write("safetensors", "head-f32.safetensors", head_bytes("apparel", "apparel-7", 1))
    write("safetensors", "head-f16.safetensors", head_bytes("beauty", "beauty-2", 2, "F16"))
    write("safetensors", "head-bf16.safetensors", head_bytes("gadgets", "gadgets-1", 3, "BF16"))
    write("safetensors", "backbone-f32.safetensors", model_bytes("backbone", SMALL_BACKBONE, 4))
    # A plain file of the format (no scenescore metadata) with a dtype the loader does not take.
    entries = {"a": ("F32", [2, 2], np.arange(4, dtype="<f4").tobytes()), "b": ("I32", [3], np.arange(3, dtype="<i4").tobytes())}
    write("safetensors", "plain-i32.safetensors", sm.encode_safetensors(entries, {"note": "fuzz"}))


# --- npy: numpy.save -------------------------------------------------------------------------

def npy_bytes(array, version=None):
    buffer = io.BytesIO()
    if version is None:
        np.save(buffer, array)
    else:
        np.lib.format.write_array(buffer, array, version=version)
    return buffer.getvalue()


def npy_corpus():
    write("npy", "f32-vector.npy", npy_bytes(np.linspace(-1, 1, 5, dtype=np.float32)))
    write("npy", "f32-matrix.npy", npy_bytes(np.arange(12, dtype=np.float32).reshape(3, 4) / 7))
    write("npy", "u32-vector.npy", npy_bytes(np.array([0, 1, 4294967295], dtype=np.uint32)))
    write("npy", "u32-matrix-v2.npy", npy_bytes(np.arange(6, dtype=np.uint32).reshape(2, 3), version=(2, 0)))
    write("npy", "f32-fortran.npy", npy_bytes(np.asfortranarray(np.ones((2, 2), dtype=np.float32))))
    write("npy", "f32-bigendian.npy", npy_bytes(np.ones(3, dtype=">f4")))
    write("npy", "f64-scalar.npy", npy_bytes(np.float64(2.5)))


# --- h2-server: recorded client conversations -------------------------------------------------

# The registry the target serves (Sources/FuzzTargets/ServerTarget.swift): the default model's
# scenes with the canonical schema (1 context id, 4 context dense, 3 item ids, 17 item dense),
# and one scene behind each plugin with that plugin's raw schema.
RAW_SCHEMAS = {
    "apparel": (1, 4, 3, 17), "electronics": (1, 4, 3, 17), "beauty": (1, 4, 3, 17),
    "styles": (1, 1, 5, 18), "gadgets": (2, 1, 4, 18), "cosmetics": (2, 1, 3, 17),
}


def plugin_dense(scene, n, rng):
    """Item dense values a plugin accepts: 16 content values, then prices and the like."""
    rows = []
    for _ in range(n):
        content = list(rng.normal(0, 1, 16))
        extra = {"styles": [59.9, 0.2], "gadgets": [349.0, 4.4], "cosmetics": [2599.0]}.get(scene)
        rows.append(content + extra if extra else list(rng.normal(0, 1, RAW_SCHEMAS[scene][3])))
    return np.array(rows, dtype=np.float32)


def score_body(scene, n, request_id, encoding="binary", seed=0):
    rng = np.random.default_rng(seed)
    cids, cdense, iids, idense = RAW_SCHEMAS[scene]
    # Plugins bound their ids (e.g. category below 1000): small ids pass every plugin.
    context_ids = rng.integers(0, 4, cids, dtype=np.uint64)
    context_dense = np.full(cdense, 0.5, dtype=np.float32) if scene in ("styles", "gadgets", "cosmetics") else rng.normal(0, 1, cdense).astype(np.float32)
    item_ids = rng.integers(0, 1000, (n, iids), dtype=np.uint64)
    item_dense = plugin_dense(scene, n, rng)
    if encoding == "binary":
        return wire.encode_request(scene, context_ids, context_dense, item_ids, item_dense, request_id=request_id)
    return json.dumps({"scene": scene, "request_id": request_id,
                       "context": {"ids": [int(x) for x in context_ids], "dense": [float(x) for x in context_dense]},
                       "candidates": [{"ids": [int(x) for x in item_ids[c]], "dense": [float(x) for x in item_dense[c]]}
                                      for c in range(n)]}).encode()


class Client:
    """An h2 client connection whose bytes are recorded instead of sent."""

    def __init__(self):
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        encode = self.conn.encoder.encode
        self.conn.encoder.encode = lambda headers, huffman=True: encode(headers, huffman=False)
        self.conn.initiate_connection()

    def request(self, method, path, body=b"", content_type=None, split=1, end=True, extra=()):
        stream = self.conn.get_next_available_stream_id()
        headers = [(":method", method), (":scheme", "http"), (":authority", "localhost"), (":path", path)]
        if content_type:
            headers.append(("content-type", content_type))
        if body:
            headers.append(("content-length", str(len(body))))
        headers += list(extra)
        self.conn.send_headers(stream, headers, end_stream=end and not body)
        if body:
            step = max(1, (len(body) + split - 1) // split)
            for i in range(0, len(body), step):
                self.conn.send_data(stream, body[i:i + step], end_stream=end and i + step >= len(body))
        return stream

    def bytes(self):
        return self.conn.data_to_send()


BINARY = "application/vnd.scenescore.v1"


def h2_corpus():
    c = Client()
    for path in ["/healthz", "/readyz", "/v1/scenes", "/v2/models/apparel/ready"]:
        c.request("GET", path)
    c.request("HEAD", "/v2/health/live")
    write("h2-server", "probes.h2", c.bytes())

    c = Client()
    c.request("POST", "/v1/score", score_body("apparel", 2, 7), BINARY)
    write("h2-server", "score-binary.h2", c.bytes())

    c = Client()
    c.request("POST", "/v1/score", score_body("electronics", 1, 9, "json", seed=1), "application/json; charset=utf-8")
    write("h2-server", "score-json.h2", c.bytes())

    # One burst: the plugin scenes and a canonical one, batched together.
    c = Client()
    for i, scene in enumerate(["styles", "gadgets", "cosmetics", "beauty"]):
        c.request("POST", "/v1/score", score_body(scene, 3, 100 + i, seed=i), BINARY)
    write("h2-server", "score-plugins.h2", c.bytes())

    # Refusals: route, method, type, body, scene, schema; a body in three DATA frames; a reset.
    c = Client()
    c.request("GET", "/nope")
    c.request("GET", "/v1/score")
    c.request("POST", "/v1/score", b"{}", "text/plain")
    c.request("POST", "/v1/score", b"SSQ1\x01\x00", BINARY)
    c.request("POST", "/v1/score", score_body("apparel", 1, 3).replace(b"apparel", b"shoesss"), BINARY)
    c.request("POST", "/v1/score", score_body("styles", 1, 4, "json"), "application/json")
    c.request("POST", "/v1/score", score_body("gadgets", 2, 5, seed=5), BINARY, split=3)
    reset = c.request("POST", "/v1/score", score_body("apparel", 1, 6), BINARY, end=False)
    c.conn.reset_stream(reset)
    c.conn.ping(b"12345678")
    c.conn.increment_flow_control_window(65536)
    write("h2-server", "refusals.h2", c.bytes())


# --- plugins: byte 0 plugin (| 0x80: config mode), byte 1 candidates | short section << 5,
#     byte 2 outputs - 1, then the raw sections and the scores ----------------------------------

PLUGIN_SCENES = {0: "styles", 1: "gadgets", 2: "cosmetics"}


def plugin_input(index, n, outputs=2, short=0, seed=0):
    scene = PLUGIN_SCENES[index]
    rng = np.random.default_rng(seed)
    cids, cdense, iids, _ = RAW_SCHEMAS[scene]
    sections = (rng.integers(0, 4, cids, dtype=np.uint64).astype("<u4").tobytes()
                + np.full(cdense, 0.5, dtype="<f4").tobytes()
                + rng.integers(0, 1000, n * iids, dtype=np.uint64).astype("<u4").tobytes()
                + plugin_dense(scene, n, rng).astype("<f4").tobytes())
    scores = (rng.uniform(0, 1, n * outputs) * 2**32).astype(np.uint64).clip(0, 2**32 - 1).astype("<u4").tobytes()
    return bytes([index, n | short << 5, outputs - 1]) + sections + scores


def plugins_corpus():
    write("plugins", "apparel-3.bin", plugin_input(0, 3, seed=1))
    write("plugins", "electronics-2.bin", plugin_input(1, 2, seed=2))
    write("plugins", "beauty-4.bin", plugin_input(2, 4, outputs=1, seed=3))
    write("plugins", "electronics-short.bin", plugin_input(1, 2, short=3, seed=4))
    write("plugins", "apparel-config.bin", bytes([0x80]) + b'{"mean_log_price": 3.5, "activity_log_sigma": 0.8}')
    write("plugins", "electronics-config.bin", bytes([0x81]) + b'{"purchase_weight": 0.25, "scene_index": 2}')
    write("plugins", "beauty-config.bin", bytes([0x82]) + b'{"click_scale": 1.5, "click_shift": -0.5, "mean_log_price": 7.8}')


# --- admin: requests separated by "\r\n--\r\n" ---------------------------------------------------

AUTH = b"authorization: Bearer fuzz-token\n"
SEP = b"\r\n--\r\n"


def admin_request(line, body=b"", headers=b""):
    return line.encode() + b"\n" + AUTH + headers + b"\n" + body


def admin_corpus():
    write("admin", "register-plugin-scene.txt",
          admin_request("PUT /admin/v1/scenes/gadgets?plugin=electronics", head_bytes("gadgets", "gadgets-1", 5))
          + SEP + admin_request("GET /admin/v1/scenes/gadgets"))
    write("admin", "canary-promote-rollback.txt", SEP.join([
        admin_request("POST /admin/v1/scenes/apparel/versions?label=canary&share=0.25", head_bytes("apparel", "apparel-2", 6)),
        admin_request("PUT /admin/v1/scenes/apparel/labels", b'{"promote_canary": true}'),
        admin_request("POST /admin/v1/scenes/apparel/rollback"),
        admin_request("PUT /admin/v1/scenes/apparel/labels", b'{"canary": "apparel-2", "canary_share": 0.5}', b"if-match: \"4\"\n"),
        admin_request("GET /admin/v1/scenes/apparel/versions"),
    ]))
    write("admin", "remove-and-list.txt", SEP.join([
        admin_request("DELETE /admin/v1/scenes/beauty", headers=b"if-match: 1\n"),
        admin_request("GET /admin/v1/scenes"),
        admin_request("POST /admin/v1/scenes/electronics/versions?label=none&plugin=electronics",
                      head_bytes("electronics", "electronics-9", 7),
                      b'x-scenescore-plugin-config: {"purchase_weight": 0.5}\n'),
    ]))
    write("admin", "refusals.txt", SEP.join([
        b"GET /admin/v1/scenes\nauthorization: Bearer wrong\n\n",
        admin_request("PUT /admin/v1/scenes/cosmetics?plugin=beauty", head_bytes("cosmetics", "cosmetics-1", 8),
                      b'x-scenescore-plugin-config: {"click_scale": 2}\n'),
        admin_request("PUT /admin/v1/scenes/apparel/labels", b'{"stable": 1}'),
        admin_request("POST /admin/v1/scenes/apparel/versions?label=canary&share=2", head_bytes("apparel", "apparel-1", 9)),
        admin_request("PUT /admin/v1/scenes/x/rollback"),
    ]))


def main():
    if os.path.isdir(CORPUS):
        shutil.rmtree(CORPUS)
    for target in ["wire-binary", "wire-json", "safetensors", "npy", "h2-server", "plugins", "admin"]:
        os.makedirs(os.path.join(CORPUS, target))
    wire_corpora()
    safetensors_corpus()
    npy_corpus()
    h2_corpus()
    plugins_corpus()
    admin_corpus()
    for target in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, target))
        size = sum(os.path.getsize(os.path.join(CORPUS, target, f)) for f in files)
        print(f"{target}: {len(files)} files, {size} bytes")


if __name__ == "__main__":
    main()
