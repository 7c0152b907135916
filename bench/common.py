"""Shared helpers for the benchmarks: merge figures into bench/results.json and describe the machine."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.json"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {cpu}, {mem_gib:.0f} GiB RAM, {platform.system()} {platform.release()}"


def write_results(figures: dict) -> None:
    """Merge `figures` into bench/results.json (other benchmarks' keys are kept)."""
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data.update(figures)
    data["machine"] = machine()
    RESULTS.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
