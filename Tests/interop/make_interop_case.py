#!/usr/bin/env python3
"""Write a small random backbone + "apparel" head and reference scores for interop tests.

Usage:
    python3 Tests/interop/make_interop_case.py OUTDIR [--seed S] [--dtype F32|F16|BF16]
                                               [--interaction K] [--outputs N]

--interaction K adds the two-tower interaction (backbone towers and the head's per-output
K x K matrices); --outputs N gives the head the first N of OUTPUT_NAMES (more than 4 takes the
server's packed output path, up to 4 its narrow one).

Writes:
    OUTDIR/backbone.safetensors   backbone (spec BACKBONE_SPEC, see backbone_spec)
    OUTDIR/head.safetensors       head for scene "apparel" (spec HEAD_SPEC, see head_spec)
    OUTDIR/cases.json             list of requests, each an object with
        name            short label
        context_ids     [len(context_fields)] uint32 ids
        context_dense   [context_dense] floats
        item_ids        [N][len(item_fields)] uint32 ids
        item_dense      [N][item_dense] floats
        scores          [N][len(outputs)] reference scores (float64 math), outputs in head order

Ids are drawn from the full uint32 range; dense values are float32-representable, so a
server that parses them as Float sees exactly the values the reference used. The reference
scores are computed from the files as written (after F16/BF16 rounding), reloaded from disk.
Tensors, metadata and cases.json are deterministic for a given seed and dtype (the
safetensors writer may order the metadata keys in the header differently between runs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

import scenescore_model as sm

# Deliberately small, with odd sizes (vocab not a power of two, item_dense 5, hidden [48, 24]).
BACKBONE_SPEC = {
    "context_fields": [{"name": "user", "vocab": 4999, "dim": 8},
                       {"name": "geo", "vocab": 1000, "dim": 4}],
    "context_dense": 3,
    "item_fields": [{"name": "item", "vocab": 5003, "dim": 8},
                    {"name": "category", "vocab": 97, "dim": 4},
                    {"name": "brand", "vocab": 1021, "dim": 4}],
    "item_dense": 5,
    "hidden": [48, 24],
    "activation": "relu",
}

HEAD_SPEC = {
    "scene": "apparel",
    "version": "apparel-1",
    "parent": "",
    "input": 24,
    "bottleneck": 8,
    "tower": [16],
    "outputs": ["click", "purchase"],
}

# Output names for --outputs; the first two are HEAD_SPEC's.
OUTPUT_NAMES = ("click", "purchase", "add_to_cart", "favorite", "share", "return")

# Candidate counts: single item, small, a SIMD-friendly width, one past it, and a larger batch.
CANDIDATE_COUNTS = (1, 3, 16, 17, 64)

BACKBONE_FILE = "backbone.safetensors"
HEAD_FILE = "head.safetensors"
CASES_FILE = "cases.json"

_UINT32_LIMIT = 1 << 32


def backbone_spec(interaction: int = 0) -> dict:
    """BACKBONE_SPEC, with two towers of dim ``interaction`` when it is positive."""
    if not interaction:
        return dict(BACKBONE_SPEC)
    return dict(BACKBONE_SPEC, interaction={"kind": sm.INTERACTION_TWO_TOWER, "dim": interaction})


def head_spec(interaction: int = 0, outputs: int = 2) -> dict:
    """HEAD_SPEC with the first ``outputs`` of OUTPUT_NAMES and, when positive, an interaction
    adapter of dim ``interaction`` (the key is left out otherwise, as older writers did)."""
    spec = dict(HEAD_SPEC, outputs=list(OUTPUT_NAMES[:outputs]))
    if interaction:
        spec["interaction"] = interaction
    return spec


def _random_ids(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, _UINT32_LIMIT, size=shape, dtype=np.uint64).astype(np.uint32)


def _dense(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def make_requests(rng: np.random.Generator, spec: dict) -> list[dict[str, np.ndarray]]:
    """Random requests: one per entry of CANDIDATE_COUNTS plus one with edge-case ids."""
    n_ctx, n_item = len(spec["context_fields"]), len(spec["item_fields"])
    requests = []
    for n in CANDIDATE_COUNTS:
        requests.append({
            "name": f"random_n{n}",
            "context_ids": _random_ids(rng, (n_ctx,)),
            "context_dense": _dense(rng, (spec["context_dense"],)),
            "item_ids": _random_ids(rng, (n, n_item)),
            "item_dense": _dense(rng, (n, spec["item_dense"])),
        })
    # Boundary ids: 0, 1, 2**31 - 1, 2**31 and 2**32 - 1 in every field.
    edges = np.array([0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF], dtype=np.uint32)
    requests.append({
        "name": "edge_ids_n5",
        "context_ids": np.full((n_ctx,), 0xFFFFFFFF, dtype=np.uint32),
        "context_dense": np.zeros((spec["context_dense"],), dtype=np.float32),
        "item_ids": np.repeat(edges[:, None], n_item, axis=1),
        "item_dense": _dense(rng, (len(edges), spec["item_dense"])),
    })
    return requests


def write_case(outdir: str, seed: int = 0, dtype: str = "F32", interaction: int = 0, outputs: int = 2) -> list[dict]:
    """Write the model pair and cases.json into ``outdir``; return the cases."""
    os.makedirs(outdir, exist_ok=True)
    training = {"generator": "Tests/interop/make_interop_case.py", "seed": seed, "dtype": dtype}
    backbone_path = os.path.join(outdir, BACKBONE_FILE)
    head_path = os.path.join(outdir, HEAD_FILE)
    bspec, hspec = backbone_spec(interaction), head_spec(interaction, outputs)
    sm.save_model(backbone_path, "backbone", bspec, sm.random_backbone(bspec, [seed, 1]),
                  dtype=dtype, training=training)
    sm.save_model(head_path, "head", hspec, sm.random_head(hspec, [seed, 2]),
                  dtype=dtype, training=training)

    # Reference scores from the files as written, so F16/BF16 rounding is accounted for.
    backbone = sm.load_model(backbone_path, "backbone")
    head = sm.load_model(head_path, "head")
    sm.check_pair(backbone.spec, head.spec)

    cases = []
    for req in make_requests(np.random.default_rng([seed, 3]), bspec):
        scores = sm.forward(backbone.tensors, backbone.spec, head.tensors, head.spec,
                            req["context_ids"], req["context_dense"], req["item_ids"], req["item_dense"])
        cases.append({
            "name": req["name"],
            "context_ids": [int(v) for v in req["context_ids"]],
            "context_dense": [float(v) for v in req["context_dense"]],
            "item_ids": [[int(v) for v in row] for row in req["item_ids"]],
            "item_dense": [[float(v) for v in row] for row in req["item_dense"]],
            "scores": [[float(v) for v in row] for row in scores],
        })
    with open(os.path.join(outdir, CASES_FILE), "w", encoding="utf-8") as f:
        json.dump(cases, f, indent=1)
        f.write("\n")
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", metavar="OUTDIR", help="directory to write into (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--dtype", choices=sm.STORAGE_DTYPES, default="F32",
                        help="tensor dtype in the files (default F32)")
    parser.add_argument("--interaction", type=int, default=0,
                        help="two-tower interaction dim K (default 0: none)")
    parser.add_argument("--outputs", type=int, default=2,
                        help=f"number of head outputs, 1..{len(OUTPUT_NAMES)} (default 2)")
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error("--seed must be non-negative")
    if not 0 <= args.interaction <= sm.MAX_INTERACTION_DIM:
        parser.error(f"--interaction must be 0..{sm.MAX_INTERACTION_DIM}")
    if not 1 <= args.outputs <= len(OUTPUT_NAMES):
        parser.error(f"--outputs must be 1..{len(OUTPUT_NAMES)}")
    cases = write_case(args.outdir, args.seed, args.dtype, args.interaction, args.outputs)
    print(f"wrote {BACKBONE_FILE}, {HEAD_FILE} and {CASES_FILE} ({len(cases)} cases, {args.dtype}) "
          f"to {args.outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
