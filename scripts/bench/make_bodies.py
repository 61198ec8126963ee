"""Write binary SceneScore request bodies for the server benchmark.

    python3 scripts/bench/make_bodies.py OUT_DIR 1 64   ->  OUT_DIR/req-1.bin, OUT_DIR/req-64.bin

Bodies use the default model's apparel schema (1 context id, 4 context dense, 3 item ids,
17 item dense) and are encoded with the reference client's `wire.encode_request`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "Proto" / "python"))

from scenescore_client.wire import encode_request  # noqa: E402


def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for arg in sys.argv[2:]:
        n = int(arg)
        rng = np.random.default_rng(1000 + n)
        body = encode_request(
            "apparel",
            rng.integers(0, 2**32, size=1, dtype=np.uint32),
            rng.standard_normal(4).astype(np.float32),
            rng.integers(0, 2**32, size=(n, 3), dtype=np.uint32),
            rng.standard_normal((n, 17)).astype(np.float32),
            request_id=n,
        )
        (out / f"req-{n}.bin").write_bytes(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
