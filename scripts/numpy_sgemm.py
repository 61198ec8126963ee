#!/usr/bin/env python3
"""The kernel benchmark's anchor: numpy's OpenBLAS sgemm on one thread, same shapes.

Prints JSON: {"library": ..., "results": [{"m":..,"k":..,"n":..,"gflops":..}, ...]}.
Run by `scenescore bench kernel`, which clears OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE for this
process only (they force a slower generic kernel on this machine).
"""
import json
import sys
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits


def median_seconds_per_call(fn, trials=5, min_seconds=0.1):
    fn()
    per_call = []
    for _ in range(trials):
        calls, start = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        per_call.append(elapsed / calls)
    per_call.sort()
    return per_call[len(per_call) // 2]


def main():
    shapes = json.loads(sys.argv[1]) if len(sys.argv) > 1 else [
        {"m": m, "k": k, "n": n} for (k, n) in [(256, 256), (512, 256), (128, 64)]
        for m in [1, 4, 16, 64, 256, 1024]]
    rng = np.random.default_rng(0)
    results = []
    with threadpool_limits(limits=1):
        blas = [i for i in threadpool_info() if i.get("internal_api") == "openblas"]
        for s in shapes:
            m, k, n = s["m"], s["k"], s["n"]
            a = rng.standard_normal((m, k), dtype=np.float32)
            b = rng.standard_normal((k, n), dtype=np.float32)
            c = np.empty((m, n), dtype=np.float32)
            seconds = median_seconds_per_call(lambda: np.matmul(a, b, out=c))
            results.append({"m": m, "k": k, "n": n, "gflops": 2.0 * m * n * k / seconds / 1e9})
    info = blas[0] if blas else {}
    print(json.dumps({"library": f"numpy {np.__version__} {info.get('internal_api', '?')} "
                                 f"{info.get('version', '?')} ({info.get('architecture', '?')}, "
                                 f"{info.get('num_threads', '?')} thread)",
                      "results": results}))


if __name__ == "__main__":
    main()
