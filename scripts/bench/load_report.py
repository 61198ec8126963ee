"""Summarise scripts/bench-load.sh: `scenescore load` against h2load, as a Markdown table.

    python3 scripts/bench/load_report.py RUNS.jsonl [--json OUT.json]
    python3 scripts/bench/load_report.py RUNS.jsonl --open-rate    # 80 % of the last h2load run's req/s on nghttpd

RUNS.jsonl has one object per run: {"target": "nghttpd"|"scenescore", "tool": "h2load"|"scenescore-load",
"mode": "closed"|"open", "out": FILE, "log": FILE, "rate": R}; "out" is h2load's output or the tool's
--json report, "log" h2load's --log-file (start µs since the epoch, status, µs to the response's end).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path


def h2load_run(run: dict) -> dict:
    text = Path(run["out"]).read_text(errors="replace")
    m = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", text)
    req_s = float(m.group(1)) if m else None
    m = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", text)
    failed = int(m.group(3)) + int(m.group(4)) if m else None
    latencies = []
    for line in Path(run["log"]).read_text().splitlines():
        cols = line.split("\t")
        if len(cols) >= 3 and int(cols[1]) >= 0:
            latencies.append(int(cols[2]) / 1000.0)
    latencies.sort()
    p50 = latencies[len(latencies) // 2] if latencies else None
    return {"req_s": req_s, "p50_ms": p50, "errors": failed}


def tool_run(run: dict) -> dict:
    report = json.loads(Path(run["out"]).read_text())
    out = {"req_s": report["throughput"], "p50_ms": report["latency"]["p50"], "p99_ms": report["latency"]["p99"],
           "service_p50_ms": report["serviceTime"]["p50"], "errors": report["errors"],
           "warnings": report.get("warnings", [])}
    if run.get("rate"):
        out["rate"] = float(run["rate"])
        out["sent_per_s"] = report["sent"] / report["seconds"]
    return out


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=0):
    return "n/a" if v is None else f"{v:,.{digits}f}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs")
    parser.add_argument("--json")
    parser.add_argument("--open-rate", action="store_true")
    args = parser.parse_args()
    runs = [json.loads(l) for l in Path(args.runs).read_text().splitlines() if l.strip()]
    for run in runs:
        run.update(h2load_run(run) if run["tool"] == "h2load" else tool_run(run))

    def pick(target, tool, mode="closed"):
        return [r for r in runs if r["target"] == target and r["tool"] == tool and r["mode"] == mode]

    ng_h2load = median(r["req_s"] for r in pick("nghttpd", "h2load"))
    if args.open_rate:
        print(int(round(0.8 * pick("nghttpd", "h2load")[-1]["req_s"])))
        return 0
    ng_tool = median(r["req_s"] for r in pick("nghttpd", "scenescore-load"))
    open_runs = pick("nghttpd", "scenescore-load", "open")
    # The run with the median held/requested ratio (its own requested rate and what it held).
    by_ratio = sorted(open_runs, key=lambda r: r["sent_per_s"] / r["rate"])
    mid = by_ratio[(len(by_ratio) - 1) // 2] if by_ratio else None
    rate = mid["rate"] if mid else None
    held = mid["sent_per_s"] if mid else None
    held_ratio = median(r["sent_per_s"] / r["rate"] for r in open_runs)
    ss_h2load = median(r["req_s"] for r in pick("scenescore", "h2load"))
    ss_tool = median(r["req_s"] for r in pick("scenescore", "scenescore-load"))
    ss_h2load_p50 = median(r["p50_ms"] for r in pick("scenescore", "h2load"))
    ss_tool_p50 = median(r["p50_ms"] for r in pick("scenescore", "scenescore-load"))

    def ratio(a, b):
        return a / b if a is not None and b else None

    def paired(target, key):
        """Median of tool/h2load over interleaved pairs (run r of each): robust to a machine whose speed drifts."""
        pairs = zip(pick(target, "h2load"), pick(target, "scenescore-load"))
        return median(ratio(t[key], h[key]) for h, t in pairs)

    rows = []
    r1 = paired("nghttpd", "req_s")
    rows.append(("nghttpd, static response, closed loop", "req/s", fmt(ng_h2load), fmt(ng_tool), r1,
                 "≥ 1.0× (must ≥ 0.8×)", None if r1 is None else ("met" if r1 >= 1.0 else "must met" if r1 >= 0.8 else "NOT MET")))
    r2 = held_ratio
    rows.append(("nghttpd, open loop at 80 % of h2load's max (the run before; the median run)", "req/s held", f"{fmt(rate)} requested", fmt(held, 1), r2,
                 "within 1 %", None if r2 is None else ("met" if abs(r2 - 1) <= 0.01 else "NOT MET")))
    r3 = paired("scenescore", "req_s")
    rows.append(("scenescore, POST /v1/score (1 candidate), closed loop", "req/s", fmt(ss_h2load), fmt(ss_tool), r3,
                 "within 10 %", None if r3 is None else ("met" if abs(r3 - 1) <= 0.10 else "NOT MET")))
    r4 = paired("scenescore", "p50_ms")
    rows.append(("scenescore, same runs", "p50 ms", fmt(ss_h2load_p50, 3), fmt(ss_tool_p50, 3), r4,
                 "within 10 %", None if r4 is None else ("met" if abs(r4 - 1) <= 0.10 else "NOT MET")))

    print("Medians over the runs; the ratio is the median of the per-run ratios (each run pairs an h2load run with")
    print("the tool's run right after it).")
    print()
    print("| target | measure | h2load | scenescore load | ratio | goal | verdict |")
    print("|---|---|---:|---:|---:|---|---|")
    for target, measure, a, b, r, goal, verdict in rows:
        print(f"| {target} | {measure} | {a} | {b} | {fmt(r, 3) if r is not None else 'n/a'} | {goal} | {verdict or 'n/a'} |")
    print()
    print("Runs (req/s; p50 ms):")
    for r in runs:
        extra = f", held {r['sent_per_s']:,.1f}/s of {r['rate']:,.0f}/s, corrected p99 {r['p99_ms']:.3f} ms" if r.get("rate") else ""
        print(f"- {r['target']}, {r['tool']}, {r['mode']}: {fmt(r['req_s'])} req/s, p50 {fmt(r['p50_ms'], 3)}{extra}, "
              f"errors {r['errors']}")
        for w in r.get("warnings", []):
            print(f"  - warning: {w}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": [dict(zip(["target", "measure", "h2load", "tool", "ratio", "goal",
                                                                   "verdict"], row)) for row in rows], "runs": runs},
                                              indent=2) + "\n")
    return 1 if any(r.get("errors") for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
