#!/usr/bin/env python3
"""The other side of `scenescore bench model --against onnxruntime`: the same model in ONNX Runtime.

    python3 scripts/bench/ort_reference.py --model-dir DIR --scene S --core C

Pins itself to core C, exports DIR's backbone + scene S with Proto/python/scenescore_onnx into a
temporary directory and builds two sessions (CPUExecutionProvider, intra- and inter-op 1 thread,
sequential execution, ORT_ENABLE_ALL): the model, and a no-op graph with the same four inputs and
the same output (`scores` [N, K] float32) that only copies K columns of item_dense (or, with
fewer dense values, fills zeros).

Both are timed through `run_with_iobinding`, inputs bound once as OrtValues and the output bound to
a preallocated array, so a call is one Python → C++ transition and ORT's `Run`. The no-op graph
costs that call path (Python binding, ORT's per-`Run` fixed cost, one trivial kernel); the model's
time minus it is what remains of ONNX Runtime without Python, a lower bound on a C API caller's.

Protocol: JSON lines on stdin/stdout (so the sessions are built once and the Swift side can
interleave its rounds with ours). First line out:
    {"onnxruntime": VERSION, "headVersion": V, "noop": DESCRIPTION, "core": C}
then per command in, one line out:
    {"cmd": "inputs", "n": N, "contextIDs": B64, "contextDense": B64, "itemIDs": B64, "itemDense": B64}
        (little-endian u32 ids / f32 values) → {"n": N, "scores": B64 f32 [N, K] (InferenceSession.run)}
        after checking that the bound call path writes the same bytes;
    {"cmd": "time", "n": N, "seconds": S} → {"n": N, "model": s/call, "noop": s/call, "modelCalls": .., "noopCalls": ..}
A failure answers {"error": MESSAGE} and exits 1; EOF on stdin exits 0.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "Proto" / "python"))


def reply(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def session_options(ort):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def noop_model(model):
    """A graph with `model`'s inputs and output that only copies: scores = item_dense[:, :K] (one Slice)
    when there are at least K item dense values, else zeros of [N, K] (Shape, Concat, ConstantOfShape)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    inputs = {i.name: i for i in model.graph.input}
    output = model.graph.output[0]
    k = output.type.tensor_type.shape.dim[1].dim_value
    di = inputs["item_dense"].type.tensor_type.shape.dim[1].dim_value
    if di >= k:
        init = [numpy_helper.from_array(np.array(v, dtype=np.int64), name)
                for name, v in (("starts", [0]), ("ends", [k]), ("axes", [1]))]
        nodes = [helper.make_node("Slice", ["item_dense", "starts", "ends", "axes"], [output.name])]
        what = f"Slice(item_dense, columns 0..<{k})"
    else:
        rows = "item_dense" if di else "item_ids"
        init = [numpy_helper.from_array(np.array([k], dtype=np.int64), "k")]
        nodes = [helper.make_node("Shape", [rows], ["n"], end=1),
                 helper.make_node("Concat", ["n", "k"], ["shape"], axis=0),
                 helper.make_node("ConstantOfShape", ["shape"], [output.name],
                                  value=numpy_helper.from_array(np.zeros(1, dtype=np.float32)))]
        what = f"ConstantOfShape([N, {k}]) from Shape({rows})"
    graph = helper.make_graph(nodes, "noop", list(model.graph.input), [output], init)
    noop = helper.make_model(graph, opset_imports=list(model.opset_import))
    noop.ir_version = model.ir_version
    onnx.checker.check_model(noop, full_check=True)
    return noop, what


class Case:
    """One N: the inputs bound once as OrtValues, the output bound to a preallocated array, per session."""

    def __init__(self, ort, np, model, noop, dims, command):
        n = command["n"]
        fc, dc, fi, di, k = dims

        def array(key, dtype, shape):
            return np.frombuffer(base64.b64decode(command[key]), dtype=dtype).reshape(shape).copy()

        self.feeds = {"context_ids": array("contextIDs", "<u4", (1, fc)),
                      "context_dense": array("contextDense", "<f4", (1, dc)),
                      "item_ids": array("itemIDs", "<u4", (n, fi)),
                      "item_dense": array("itemDense", "<f4", (n, di))}
        self.values = {name: ort.OrtValue.ortvalue_from_numpy(a) for name, a in self.feeds.items()}
        self.outputs, self.bindings = [], []
        for session in (model, noop):
            out = np.zeros((n, k), dtype=np.float32)
            binding = session.io_binding()
            for name, value in self.values.items():
                binding.bind_ortvalue_input(name, value)
            binding.bind_ortvalue_output("scores", ort.OrtValue.ortvalue_from_numpy(out))
            self.outputs.append(out)
            self.bindings.append(binding)


def seconds_per_call(session, binding, seconds: float) -> tuple[float, int]:
    """Calls in a loop until `seconds` pass (after one untimed call); the loop's own cost is in
    both sessions' times alike, so it cancels in their difference."""
    run, clock = session.run_with_iobinding, time.perf_counter
    run(binding)
    calls, start = 0, clock()
    while True:
        run(binding)
        calls += 1
        elapsed = clock() - start
        if elapsed >= seconds:
            return elapsed / calls, calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--scene", required=True)
    parser.add_argument("--core", type=int, required=True)
    args = parser.parse_args()

    os.sched_setaffinity(0, {args.core})  # before onnxruntime starts any thread
    try:
        import numpy as np
        import onnx
        import onnxruntime as ort
        from scenescore_onnx import export
    except ImportError as error:
        print(f"ort_reference.py: not importable: {error} (pip install onnx onnxruntime)", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="scenescore-ort-") as tmp:
        exported = export(args.model_dir, tmp, [args.scene])[0]
        proto = onnx.load(str(exported.path))
        options = session_options(ort)
        model = ort.InferenceSession(str(exported.path), options, providers=["CPUExecutionProvider"])
    noop_proto, what = noop_model(proto)
    noop = ort.InferenceSession(noop_proto.SerializeToString(), session_options(ort), providers=["CPUExecutionProvider"])
    shape = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    dims = (shape["context_ids"][1], shape["context_dense"][1], shape["item_ids"][1], shape["item_dense"][1],
            proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value)
    reply({"onnxruntime": ort.__version__, "headVersion": exported.version, "noop": what,
           "core": sorted(os.sched_getaffinity(0))[0]})

    cases: dict[int, Case] = {}
    for line in sys.stdin.buffer:
        command = json.loads(line)
        try:
            n = command["n"]
            if command["cmd"] == "inputs":
                case = cases[n] = Case(ort, np, model, noop, dims, command)
                want = model.run(["scores"], case.feeds)[0]
                model.run_with_iobinding(case.bindings[0])
                noop.run_with_iobinding(case.bindings[1])
                if not np.array_equal(case.outputs[0], want):
                    raise RuntimeError(f"N={n}: run_with_iobinding wrote other scores than InferenceSession.run "
                                       f"(max |diff| {float(np.max(np.abs(case.outputs[0] - want))):.3g})")
                reply({"n": n, "scores": base64.b64encode(want.astype("<f4").tobytes()).decode()})
            elif command["cmd"] == "time":
                case = cases[n]
                m, m_calls = seconds_per_call(model, case.bindings[0], command["seconds"])
                z, z_calls = seconds_per_call(noop, case.bindings[1], command["seconds"])
                reply({"n": n, "model": m, "noop": z, "modelCalls": m_calls, "noopCalls": z_calls})
            else:
                raise ValueError(f"unknown command {command['cmd']!r}")
        except Exception as error:  # noqa: BLE001 - answered, then exit
            reply({"error": f"{type(error).__name__}: {error}"})
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
