"""Command line: ``python -m scenescore_client {score,scenes,health,dump} ...``.

Example::

    python -m scenescore_client score --url https://localhost:8443 \\
        --cacert certs/dev-ca.pem --scene apparel --candidates 16

``score`` sends a random request shaped like the scene's described schema: the raw
counts ``GET /v1/scenes`` reports for it (a plugin scene's raw fields, else the
backbone's canonical ones); each of ``--context-ids/--context-dense/--item-ids/
--item-dense`` overrides one count (all four: no ``GET /v1/scenes``). It prints which
head version answered (and whether the scene's canary rule chose the canary) and the
scores as a table. ``dump FILE`` prints an annotated hex dump of a request or response body.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from dataclasses import replace
import time
from typing import Sequence

import httpx
import numpy as np

from .client import ClientError, ProblemError, ScoreClient
from .dump import annotate
from .scenes import SECTIONS, SceneDescription, expected_version, random_inputs
from .wire import ScoreResponse, WireError


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
    overrides = dict(zip(SECTIONS, (args.context_ids, args.context_dense, args.item_ids, args.item_dense)))
    with _client(args) as client:
        if all(count is not None for count in overrides.values()):
            info = SceneDescription(scene=args.scene, head_version="", outputs=[], **overrides)
        else:
            scenes = {info.scene: info for info in client.scenes()}
            if args.scene not in scenes:
                known = ", ".join(sorted(scenes)) or "none"
                print(f"error: the server has no scene {args.scene!r} (it has: {known})", file=sys.stderr)
                return 1
            info = scenes[args.scene]
            given = {key: count for key, count in overrides.items() if count is not None}
            if given:  # the counts change, so the described names no longer apply
                info = replace(info, schema={}, **given)
        request_id = secrets.randbits(64) if args.request_id is None else args.request_id
        arrays = random_inputs(info, args.candidates, np.random.default_rng(args.seed))
        send = client.score_json if args.json else client.score
        started = time.perf_counter()
        response = send(args.scene, *arrays, request_id=request_id)
        elapsed_ms = (time.perf_counter() - started) * 1000
    print(
        f"scene {response.scene}  head {response.head_version}  "
        f"request_id {response.request_id}  {response.n_candidates} candidates  "
        f"{'json' if args.json else 'binary'}  {elapsed_ms:.1f} ms"
    )
    if info.head_version:
        expected = expected_version(info, request_id)
        route = "canary" if info.canary is not None and expected == info.canary.version else "stable"
        plugin = f"plugin {info.plugin}" if info.plugin else "canonical schema"
        print(f"{plugin}; the canary rule picks {route} {expected!r}"
              + ("" if expected == response.head_version else f" (the server answered with {response.head_version!r}:"
                 " the scene changed meanwhile?)"))
    print(format_scores(response))
    return 0


def _cmd_scenes(args: argparse.Namespace) -> int:
    with _client(args) as client:
        scenes = client.scenes()
    print(f"{'scene':<20} {'head':<20} {'plugin':<12} {'ctx ids':>7} {'ctx dense':>9} {'item ids':>8} "
          f"{'item dense':>10}  {'canary':<24} outputs")
    for info in scenes:
        canary = f"{info.canary.version} ({info.canary.share:g})" if info.canary else "-"
        print(
            f"{info.scene:<20} {info.head_version:<20} {info.plugin or '-':<12} {info.context_ids:>7} "
            f"{info.context_dense:>9} {info.item_ids:>8} {info.item_dense:>10}  {canary:<24} {', '.join(info.outputs)}"
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
