"""Summarise h2load runs of scripts/bench-server.sh: a Markdown table, and JSON.

    python3 scripts/bench/report.py RUNS.json [--json OUT.json]

RUNS.json is a list of {"server", "case", "method", "command", "stdout", "log"} where
"stdout" is the file with h2load's output and "log" its --log-file (tab-separated:
start time in microseconds since the epoch, status code (-1 for a failed stream),
microseconds until the end of the response).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def parse_stdout(text: str) -> dict:
    out: dict = {}
    m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s, ([\d.]+)([KMG]?B)/s", text)
    if m:
        out["reported_req_per_s"] = float(m.group(3))
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", text)
    if m:
        keys = ["total", "started", "done", "succeeded", "failed", "errored", "timeout"]
        out.update(dict(zip(keys, map(int, m.groups()))))
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if m:
        out.update({"2xx": int(m.group(1)), "3xx": int(m.group(2)), "4xx": int(m.group(3)), "5xx": int(m.group(4))})
    m = re.search(r"Application protocol: (\S+)", text)
    out["protocol"] = m.group(1) if m else None
    return out


def parse_log(path: Path) -> dict:
    latencies: list[float] = []
    starts: list[int] = []
    failed = 0
    with open(path) as f:
        for line in f:
            cols = line.split("\t")
            if len(cols) < 3:
                continue
            starts.append(int(cols[0]))
            if int(cols[1]) < 0:
                failed += 1
                continue
            latencies.append(int(cols[2]) / 1000.0)  # ms
    latencies.sort()
    span = (max(starts) - min(starts)) / 1e6 if len(starts) > 1 else 0.0
    return {
        "logged_requests": len(starts),
        "logged_failed": failed,
        "log_span_s": span,
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "p999_ms": percentile(latencies, 99.9),
        "max_ms": latencies[-1] if latencies else None,
    }


def fmt(value, digits=2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs")
    parser.add_argument("--json")
    parser.add_argument("--target", type=float, default=0.7)
    args = parser.parse_args()
    runs = json.loads(Path(args.runs).read_text())
    results = []
    for run in runs:
        result = {k: run[k] for k in ("server", "case", "method", "command")}
        result["response_bytes"] = run.get("response_bytes")
        result.update(parse_stdout(Path(run["stdout"]).read_text(errors="replace")))
        result.update(parse_log(Path(run["log"])))
        results.append(result)
    baseline = {r["case"]: r.get("reported_req_per_s") for r in results if r["server"] == "nghttpd"}
    for r in results:
        base = baseline.get(r["case"])
        rps = r.get("reported_req_per_s")
        r["ratio_vs_nghttpd"] = (rps / base) if (rps and base) else None

    print("| server | case | req/s | ratio vs nghttpd | p50 ms | p99 ms | p99.9 ms | succeeded/failed |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for r in results:
        failed = (r.get("failed") or 0) + (r.get("errored") or 0) + (r.get("timeout") or 0)
        print(f"| {r['server']} | {r['case']} ({r['method']}, {r.get('response_bytes')} B response) "
              f"| {fmt(r.get('reported_req_per_s'), 0)} | {fmt(r.get('ratio_vs_nghttpd'))} "
              f"| {fmt(r.get('p50_ms'), 3)} | {fmt(r.get('p99_ms'), 3)} | {fmt(r.get('p999_ms'), 3)} "
              f"| {r.get('succeeded')}/{failed} |")
    one = next((r for r in results if r["server"] == "scenescore" and r["case"] == "1 candidate"), None)
    verdict = None
    if one and one.get("ratio_vs_nghttpd") is not None:
        verdict = one["ratio_vs_nghttpd"] >= args.target
        print(f"\nTarget: scenescore at 1 candidate >= {args.target}x nghttpd req/s: "
              f"{one['ratio_vs_nghttpd']:.2f}x -> {'MET' if verdict else 'NOT MET'}")
    summary = {"target_ratio": args.target, "target_met": verdict, "runs": results}
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    bad = [r for r in results if (r.get("succeeded") or 0) == 0 or (r.get("failed") or 0) or (r.get("errored") or 0)]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
