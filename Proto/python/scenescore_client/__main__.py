"""Command line: ``python -m scenescore_client {score,scenes,health,dump} ...``.

Example::

    python -m scenescore_client score --url https://localhost:8443 \\
        --cacert certs/dev-ca.pem --scene apparel --candidates 16

``score`` sends a random request shaped like the scene's schema (taken from
``GET /v1/scenes`` unless all four ``--context-ids/--context-dense/--item-ids/
--item-dense`` counts are given) and prints the scores as a table. ``dump FILE``
prints an annotated hex dump of a request or response body.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

import httpx
import numpy as np

from .client import ClientError, ProblemError, ScoreClient
from .dump import annotate
from .wire import ScoreResponse, WireError


def _random_request(
    rng: np.random.Generator,
    n_candidates: int,
    context_ids: int,
    context_dense: int,
    item_ids: int,
    item_dense: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (
        rng.integers(0, 2**32, size=context_ids, dtype=np.uint32),
        rng.standard_normal(context_dense).astype(np.float32),
        rng.integers(0, 2**32, size=(n_candidates, item_ids), dtype=np.uint32),
        rng.standard_normal((n_candidates, item_dense)).astype(np.float32),
    )


def format_scores(response: ScoreResponse) -> str:
    """Render the scores as a fixed-width table, one row per candidate."""
    widths = [max(8, len(name)) for name in response.outputs]
    lines = [
        "candidate  " + "  ".join(name.rjust(width) for name, width in zip(response.outputs, widths))
    ]
    for index, row in enumerate(response.scores):
        cells = "  ".join(f"{float(value):.6f}".rjust(width) for value, width in zip(row, widths))
        lines.append(f"{index:>9}  {cells}")
    return "\n".join(lines)


def _client(args: argparse.Namespace) -> ScoreClient:
    verify: str | bool = False if args.insecure else (args.cacert or True)
    return ScoreClient(args.url, verify=verify, timeout=args.timeout)


def _cmd_score(args: argparse.Namespace) -> int:
    overrides = (args.context_ids, args.context_dense, args.item_ids, args.item_dense)
    with _client(args) as client:
        if all(count is not None for count in overrides):
            schema = overrides
        else:
            scenes = {info.scene: info for info in client.scenes()}
            if args.scene not in scenes:
                known = ", ".join(sorted(scenes)) or "none"
                print(f"error: the server has no scene {args.scene!r} (it has: {known})", file=sys.stderr)
                return 1
            info = scenes[args.scene]
            defaults = (info.context_ids, info.context_dense, info.item_ids, info.item_dense)
            schema = tuple(d if o is None else o for o, d in zip(overrides, defaults))
        rng = np.random.default_rng(args.seed)
        arrays = _random_request(rng, args.candidates, *schema)
        send = client.score_json if args.json else client.score
        started = time.perf_counter()
        response = send(args.scene, *arrays, request_id=args.request_id)
        elapsed_ms = (time.perf_counter() - started) * 1000
    print(
        f"scene {response.scene}  head {response.head_version}  "
        f"request_id {response.request_id}  {response.n_candidates} candidates  "
        f"{'json' if args.json else 'binary'}  {elapsed_ms:.1f} ms"
    )
    print(format_scores(response))
    return 0


def _cmd_scenes(args: argparse.Namespace) -> int:
    with _client(args) as client:
        scenes = client.scenes()
    print(f"{'scene':<20} {'head':<20} {'ctx ids':>7} {'ctx dense':>9} {'item ids':>8} {'item dense':>10}  outputs")
    for info in scenes:
        print(
            f"{info.scene:<20} {info.head_version:<20} {info.context_ids:>7} {info.context_dense:>9} "
            f"{info.item_ids:>8} {info.item_dense:>10}  {', '.join(info.outputs)}"
        )
    return 0


def _cmd_health(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print(client.health())
    return 0


def _cmd_dump(args: argparse.Namespace) -> int:
    with open(args.file, "rb") as body:
        print(annotate(body.read()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scenescore_client", description=__doc__.split("\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default="https://localhost:8443", help="server base URL")
    common.add_argument("--cacert", help="CA certificate (PEM) that signed the server certificate")
    common.add_argument("--insecure", action="store_true", help="skip TLS certificate verification")
    common.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    commands = parser.add_subparsers(dest="command", required=True)

    score = commands.add_parser("score", parents=[common], help="score a random request")
    score.add_argument("--scene", required=True)
    score.add_argument("--candidates", type=int, default=16, help="number of candidates (default 16)")
    score.add_argument("--seed", type=int, default=None, help="random seed for the request values")
    score.add_argument("--request-id", type=int, default=None, help="default: random")
    score.add_argument("--json", action="store_true", help="use application/json instead of binary")
    for name in ("context-ids", "context-dense", "item-ids", "item-dense"):
        score.add_argument(f"--{name}", type=int, default=None, help="override the scene's count")
    score.set_defaults(run=_cmd_score)

    scenes = commands.add_parser("scenes", parents=[common], help="list the server's scenes")
    scenes.set_defaults(run=_cmd_scenes)
    health = commands.add_parser("health", parents=[common], help="check readiness")
    health.set_defaults(run=_cmd_health)
    dump = commands.add_parser("dump", help="annotated hex dump of a request or response body")
    dump.add_argument("file", help="a .bin body")
    dump.set_defaults(run=_cmd_dump)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ProblemError as error:
        print(f"error: HTTP {error.status} {error.slug}: {error.detail}", file=sys.stderr)
        return 1
    except (ClientError, WireError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except httpx.HTTPError as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
