"""Id hashing and a float64 numpy forward pass (Proto/MODEL-FORMAT.md), for `--check` and for users
who want the embedding rows outside the graph."""

from __future__ import annotations

from typing import Any

import numpy as np

from .modelfile import ModelFile, context_width


def fmix32(ids: Any) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer on uint32 ids (wrapping arithmetic)."""
    h = np.array(ids, dtype=np.uint32, copy=True)
    with np.errstate(over="ignore"):
        h ^= h >> np.uint32(16)
        h *= np.uint32(0x85EBCA6B)
        h ^= h >> np.uint32(13)
        h *= np.uint32(0xC2B2AE35)
        h ^= h >> np.uint32(16)
    return h


def hash_rows(ids: Any, vocab: int) -> np.ndarray:
    """Embedding rows of `ids` in a table of `vocab` rows: fmix32(id) mod vocab, as int64."""
    return (fmix32(ids) % np.uint32(vocab)).astype(np.int64)


def forward(backbone: ModelFile, head: ModelFile, context_ids: Any, context_dense: Any, item_ids: Any,
            item_dense: Any) -> np.ndarray:
    """Scores [N, K] in float64 for one request (context ids [Fc], dense [Dc]; item ids [N, Fi], dense [N, Di])."""
    bspec, hspec, bt, ht = backbone.spec, head.spec, backbone.tensors, head.tensors
    cid = np.asarray(context_ids, dtype=np.uint32).reshape(-1)
    cd = np.asarray(context_dense, dtype=np.float64).reshape(-1)
    iid = np.asarray(item_ids, dtype=np.uint32).reshape(-1, len(bspec["item_fields"]))
    idn = np.asarray(item_dense, dtype=np.float64).reshape(iid.shape[0], bspec["item_dense"])
    n = iid.shape[0]

    def t(tensors, name):
        return tensors[name].astype(np.float64)

    parts = [t(bt, f"embedding.{f['name']}")[hash_rows(cid[i], f["vocab"])][None, :].repeat(n, 0)
             for i, f in enumerate(bspec["context_fields"])]
    parts.append(np.broadcast_to(cd, (n, cd.shape[0])))
    parts += [t(bt, f"embedding.{f['name']}")[hash_rows(iid[:, g], f["vocab"])]
              for g, f in enumerate(bspec["item_fields"])]
    parts.append(idn)
    x0 = np.concatenate(parts, axis=1)
    z = x0
    for i in range(len(bspec["hidden"])):
        z = np.maximum(z @ t(bt, f"mlp.{i}.weight").T + t(bt, f"mlp.{i}.bias"), 0)
    a = np.maximum(z @ t(ht, "adapter.down.weight").T + t(ht, "adapter.down.bias"), 0)
    x = z + a @ t(ht, "adapter.up.weight").T + t(ht, "adapter.up.bias")
    for j in range(len(hspec["tower"])):
        x = np.maximum(x @ t(ht, f"tower.{j}.weight").T + t(ht, f"tower.{j}.bias"), 0)
    logits = x @ t(ht, "output.weight").T + t(ht, "output.bias")
    if hspec["interaction"]:
        cw = context_width(bspec)
        u = x0[:, :cw] @ t(bt, "user_tower.weight").T + t(bt, "user_tower.bias")
        v = x0[:, cw:] @ t(bt, "item_tower.weight").T + t(bt, "item_tower.bias")
        logits = logits + np.einsum("ni,oij,nj->no", u, t(ht, "interaction.weight"), v)
    return 1.0 / (1.0 + np.exp(-logits))
