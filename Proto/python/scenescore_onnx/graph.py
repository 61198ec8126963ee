"""The ONNX graph of one scene: the backbone + that scene's head, exactly the server's forward pass
(Proto/MODEL-FORMAT.md, "Forward pass"; Sources/Model/Forward.swift) on the canonical schema.

Graph (opset 18, IR version 8; every weight an initializer, float32):

    context_ids  [1, Fc] uint32 ─ fmix32 ─ mod vocab ─ Gather tables ─┐
    context_dense [1, Dc] float32 ─────────────────────────────────────┴ Concat → ctx [1, cw]
    item_ids     [N, Fi] uint32 ─ fmix32 ─ mod vocab ─ Gather tables ─┐
    item_dense   [N, Di] float32 ──────────────────────────────────────┴ Concat → item [N, iw]
    c0 = Gemm(ctx, W0[:, :cw], b0)                       once per request, [1, h0]
    z  = Relu(Gemm(item, W0[:, cw:], C = c0))             c0 broadcast over the N candidates
    z  = Relu(Gemm(z, W_i, b_i))                          MLP layers 1…
    h' = h + Gemm(Relu(Gemm(h, D, b_D)), U, b_U)          residual bottleneck adapter
    t  = Relu(Gemm(t, T_j, c_j))                          head tower
    logits = Gemm(t, O, b_O)                              [N, K]
    (+ Gemm(v, Reshape(u · B, [K, k])))                   two-tower interaction, when the head has it
    scores = Sigmoid(logits)                              [N, K] float32

fmix32 is computed on uint64 (ids < 2³², so each product < 2⁶⁴ is exact) and masked back to
32 bits after each multiplication, so the graph never depends on integer wraparound.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .modelfile import ExportError, ModelFile, context_width, interaction_dim

OPSET = 18
IR_VERSION = 8
EXPORT_FORMAT = "1"
PRODUCER = "scenescore_onnx"
ID_DTYPES = {"uint32": TensorProto.UINT32, "int64": TensorProto.INT64}

INPUT_NAMES = ("context_ids", "context_dense", "item_ids", "item_dense")
OUTPUT_NAME = "scores"
CANDIDATES_DIM = "N"

_MASK32 = 0xFFFFFFFF
_C1, _C2 = 0x85EBCA6B, 0xC2B2AE35


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names: set[str] = set()

    def name(self, base: str) -> str:
        candidate, i = base, 1
        while candidate in self._names:
            i += 1
            candidate = f"{base}_{i}"
        self._names.add(candidate)
        return candidate

    def const(self, name: str, value: np.ndarray) -> str:
        name = self.name(name)
        # (np.ascontiguousarray would turn a 0-d index into shape [1])
        self.initializers.append(numpy_helper.from_array(np.array(value, order="C", copy=True), name))
        return name

    def op(self, op_type: str, inputs: list[str], out: str, **attrs: Any) -> str:
        out = self.name(out)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"{op_type}:{out}", **attrs))
        return out

    def gemm(self, x: str, weight: np.ndarray, bias: np.ndarray | None, prefix: str, out: str) -> str:
        """x · weightᵀ + bias, weight in nn.Linear's [out, in] layout."""
        inputs = [x, self.const(f"{prefix}.weight", weight)]
        if bias is not None:
            inputs.append(self.const(f"{prefix}.bias", bias))
        return self.op("Gemm", inputs, out, transB=1)

    def fmix32_rows(self, ids: str, vocabs: list[int], id_dtype: str, prefix: str) -> str:
        """int64 rows fmix32(id) mod vocab[f] of an [M, F] id tensor (column f: field f)."""
        mask = self.const(f"{prefix}.mask32", np.array(_MASK32, dtype=np.uint64))
        x = self.op("Cast", [ids], f"{prefix}.ids_u64", to=TensorProto.UINT64)
        if id_dtype != "uint32":
            x = self.op("BitwiseAnd", [x, mask], f"{prefix}.ids_low32")  # an int64 id is taken modulo 2³²
        shifts = {s: self.const(f"{prefix}.shift{s}", np.array(s, dtype=np.uint64)) for s in (13, 16)}

        def xorshift(h: str, s: int, step: str) -> str:
            return self.op("BitwiseXor", [h, self.op("BitShift", [h, shifts[s]], f"{prefix}.{step}_shr",
                                                      direction="RIGHT")], f"{prefix}.{step}")

        def mul32(h: str, c: int, step: str) -> str:
            product = self.op("Mul", [h, self.const(f"{prefix}.{step}_c", np.array(c, dtype=np.uint64))],
                              f"{prefix}.{step}_u64")
            return self.op("BitwiseAnd", [product, mask], f"{prefix}.{step}")

        h = xorshift(x, 16, "h1")
        h = mul32(h, _C1, "h2")
        h = xorshift(h, 13, "h3")
        h = mul32(h, _C2, "h4")
        h = xorshift(h, 16, "fmix32")
        vocab = self.const(f"{prefix}.vocab", np.array(vocabs, dtype=np.uint64))
        rows = self.op("Mod", [h, vocab], f"{prefix}.rows_u64", fmod=0)
        return self.op("Cast", [rows], f"{prefix}.rows", to=TensorProto.INT64)

    def embeddings(self, rows: str, fields: list[dict], tensors: dict[str, np.ndarray], prefix: str) -> list[str]:
        """One [M, dim] lookup per field, in spec order."""
        parts = []
        for f, field in enumerate(fields):
            column = self.op("Gather", [rows, self.const(f"{prefix}.col{f}", np.array(f, dtype=np.int64))],
                             f"{prefix}.{field['name']}.row", axis=1)
            table = self.const(f"embedding.{field['name']}", tensors[f"embedding.{field['name']}"])
            parts.append(self.op("Gather", [table, column], f"{prefix}.{field['name']}.emb", axis=0))
        return parts


def build_model(backbone: ModelFile, head: ModelFile, *, id_dtype: str = "uint32") -> onnx.ModelProto:
    """The ONNX model of backbone + head (both validated by modelfile.load_*)."""
    if id_dtype not in ID_DTYPES:
        raise ExportError(f"id dtype {id_dtype!r} is not supported ({', '.join(ID_DTYPES)})")
    bspec, hspec = backbone.spec, head.spec
    bt, ht = backbone.tensors, head.tensors
    # The loader has checked the pairing; a ModelFile built by hand gets the same check here.
    if hspec["input"] != bspec["hidden"][-1]:
        raise ExportError(f"{head.path.name}: spec input {hspec['input']} does not match the backbone's output "
                          f"width {bspec['hidden'][-1]}")
    k = hspec["interaction"]
    if k and k != interaction_dim(bspec):
        raise ExportError(f"{head.path.name}: spec interaction {k} does not match the backbone's interaction dim "
                          f"{interaction_dim(bspec)}")

    g = _Builder()
    for name in INPUT_NAMES + (OUTPUT_NAME,):
        g._names.add(name)
    ctx_fields, item_fields = bspec["context_fields"], bspec["item_fields"]
    fc, dc, fi, di = len(ctx_fields), bspec["context_dense"], len(item_fields), bspec["item_dense"]
    cw = context_width(bspec)
    n_outputs = len(hspec["outputs"])

    # Layer 0's input: the context part (one row per request) and every candidate's item part.
    ctx_parts: list[str] = []
    if fc:
        rows = g.fmix32_rows("context_ids", [f["vocab"] for f in ctx_fields], id_dtype, "context")
        ctx_parts += g.embeddings(rows, ctx_fields, bt, "context")
    if dc:
        ctx_parts.append("context_dense")
    item_parts: list[str] = []
    if fi:
        rows = g.fmix32_rows("item_ids", [f["vocab"] for f in item_fields], id_dtype, "item")
        item_parts += g.embeddings(rows, item_fields, bt, "item")
    if di:
        item_parts.append("item_dense")
    ctx = (g.op("Concat", ctx_parts, "context_part", axis=1) if len(ctx_parts) > 1 else ctx_parts[0]) \
        if ctx_parts else None
    item = g.op("Concat", item_parts, "item_part", axis=1) if len(item_parts) > 1 else item_parts[0]

    # Layer 0: the context part once per request (with b0), added to each candidate's item part.
    w0, b0 = bt["mlp.0.weight"], bt["mlp.0.bias"]
    if ctx is not None:
        c0 = g.gemm(ctx, w0[:, :cw], b0, "mlp.0.context", "layer0_context")
        z = g.op("Gemm", [item, g.const("mlp.0.item.weight", w0[:, cw:]), c0], "layer0_pre", transB=1)
    else:
        z = g.gemm(item, w0, b0, "mlp.0", "layer0_pre")
    z = g.op("Relu", [z], "layer0")
    for i in range(1, len(bspec["hidden"])):
        z = g.op("Relu", [g.gemm(z, bt[f"mlp.{i}.weight"], bt[f"mlp.{i}.bias"], f"mlp.{i}", f"layer{i}_pre")],
                 f"layer{i}")
    h = z

    # The head: residual bottleneck adapter, tower, output layer.
    a = g.op("Relu", [g.gemm(h, ht["adapter.down.weight"], ht["adapter.down.bias"], "adapter.down",
                             "adapter_down_pre")], "adapter_down")
    up = g.gemm(a, ht["adapter.up.weight"], ht["adapter.up.bias"], "adapter.up", "adapter_up")
    t = g.op("Add", [h, up], "adapted")
    for j in range(len(hspec["tower"])):
        t = g.op("Relu", [g.gemm(t, ht[f"tower.{j}.weight"], ht[f"tower.{j}.bias"], f"tower.{j}",
                                 f"tower{j}_pre")], f"tower{j}")
    logits = g.gemm(t, ht["output.weight"], ht["output.bias"], "output", "output_logits")

    # Two-tower interaction: u (per request) and v_n (per candidate); w_o = A_oᵀ u for every output
    # at once as u · B with B[i, o·k + j] = A_o[i][j]; then logit_o += v_n · w_o.
    if k:
        assert ctx is not None  # a backbone with towers has context features (validated)
        u = g.gemm(ctx, bt["user_tower.weight"], bt["user_tower.bias"], "user_tower", "u")
        v = g.gemm(item, bt["item_tower.weight"], bt["item_tower.bias"], "item_tower", "v")
        packed = ht["interaction.weight"].transpose(1, 0, 2).reshape(k, n_outputs * k)
        w = g.op("MatMul", [u, g.const("interaction.packed", packed)], "interaction_w_flat")
        w = g.op("Reshape", [w, g.const("interaction.w_shape", np.array([n_outputs, k], dtype=np.int64))],
                 "interaction_w")
        inter = g.op("Gemm", [v, w], "interaction_logits", transB=1)
        logits = g.op("Add", [logits, inter], "logits")
    g.nodes.append(helper.make_node("Sigmoid", [logits], [OUTPUT_NAME], name="Sigmoid:scores"))

    id_type = ID_DTYPES[id_dtype]
    inputs = [
        helper.make_tensor_value_info("context_ids", id_type, [1, fc]),
        helper.make_tensor_value_info("context_dense", TensorProto.FLOAT, [1, dc]),
        helper.make_tensor_value_info("item_ids", id_type, [CANDIDATES_DIM, fi]),
        helper.make_tensor_value_info("item_dense", TensorProto.FLOAT, [CANDIDATES_DIM, di]),
    ]
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [CANDIDATES_DIM, n_outputs])]
    graph = helper.make_graph(g.nodes, f"scenescore_{hspec['scene']}", inputs, outputs, g.initializers,
                              doc_string=_doc(bspec, hspec, id_dtype))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name=PRODUCER,
                              producer_version=EXPORT_FORMAT, doc_string=_doc(bspec, hspec, id_dtype))
    model.ir_version = IR_VERSION
    helper.set_model_props(model, metadata(backbone, head, id_dtype))
    return model


def metadata(backbone: ModelFile, head: ModelFile, id_dtype: str) -> dict[str, str]:
    """The model's metadata_props (Proto/MODEL-FORMAT.md, "ONNX export")."""
    hspec = head.spec
    return {
        "scenescore.onnx_format": EXPORT_FORMAT,
        "scenescore.scene": hspec["scene"],
        "scenescore.head_version": hspec["version"],
        "scenescore.head_parent": hspec["parent"],
        "scenescore.head_sha256": head.sha256,
        "scenescore.backbone_sha256": backbone.sha256,
        "scenescore.outputs": json.dumps(hspec["outputs"]),
        "scenescore.id_dtype": id_dtype,
        "scenescore.inputs": json.dumps({
            "context_ids": [f["name"] for f in backbone.spec["context_fields"]],
            "context_dense": backbone.spec["context_dense"],
            "item_ids": [f["name"] for f in backbone.spec["item_fields"]],
            "item_dense": backbone.spec["item_dense"],
        }),
        "scenescore.head_spec": head.metadata["scenescore.spec"],
        "scenescore.backbone_spec": backbone.metadata["scenescore.spec"],
    }


def _doc(bspec: dict, hspec: dict, id_dtype: str) -> str:
    return (f"SceneScore scene {hspec['scene']!r}, head {hspec['version']}: the server's forward pass on the "
            f"canonical schema. Inputs context_ids [1, {len(bspec['context_fields'])}] {id_dtype}, context_dense "
            f"[1, {bspec['context_dense']}] float32, item_ids [N, {len(bspec['item_fields'])}] {id_dtype}, "
            f"item_dense [N, {bspec['item_dense']}] float32; output scores [N, {len(hspec['outputs'])}] float32 "
            f"(columns: {', '.join(hspec['outputs'])}).")
