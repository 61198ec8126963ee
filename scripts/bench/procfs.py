"""What /proc says about a process, for the benchmark scripts' reports."""

from __future__ import annotations

from pathlib import Path


def allowed_cpus(pid: int) -> str:
    """The CPUs `pid` may run on (its Cpus_allowed_list), or "?" if /proc cannot tell."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"
