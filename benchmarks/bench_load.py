"""Code-location load time: ``import mlops_assets.definitions`` against a bare ``import dagster``.

Every run, sensor tick and code-server start imports the definitions, so what they import at load is paid
again and again; the goal is a ratio ≤ 1.2. Measured paired: each pair runs both imports in fresh
interpreters back to back (alternating which goes first), and the ratio is taken within the pair, so a machine
that other work slows down slows both sides of a pair alike. Wall time and the child's CPU time (user + system)
are both reported; CPU time is the steadier one on a shared machine, and the goal reads on it.

The interpreters write and reuse their bytecode caches (``PYTHONDONTWRITEBYTECODE`` is dropped, one warm-up run
first), as a deployed code location does: compiling the project's own modules on every start is not what the
load costs there.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.report import median, write_section

ROOT = Path(__file__).resolve().parents[1]
PAIRS = 7
GOAL = 1.2
BASELINE = "import dagster"
LOCATION = "import mlops_assets.definitions"
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def time_import(statement: str) -> tuple[float, float]:
    """Wall and CPU seconds of one fresh interpreter running ``statement``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], cwd=ROOT, env=CHILD_ENV, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure_pairs(pairs: int = PAIRS) -> list[dict[str, tuple[float, float]]]:
    time_import(LOCATION)  # the file cache and the bytecode caches, once, for both sides
    samples = []
    for i in range(pairs):
        order = (BASELINE, LOCATION) if i % 2 == 0 else (LOCATION, BASELINE)
        samples.append({statement: time_import(statement) for statement in order})
    return samples


def main() -> None:
    samples = measure_pairs()
    rows = []
    for label, index in (("wall", 0), ("CPU", 1)):
        bare = median([s[BASELINE][index] for s in samples])
        location = median([s[LOCATION][index] for s in samples])
        ratios = [s[LOCATION][index] / s[BASELINE][index] for s in samples]
        rows.append(f"| {label} | {bare:.2f} s | {location:.2f} s | {median(ratios):.2f} | "
                    f"{min(ratios):.2f}–{max(ratios):.2f} |")
    body = "\n".join([
        "## Code-location load time",
        "",
        f"`{LOCATION}` against `{BASELINE}` (the baseline), each in a fresh interpreter, {PAIRS} pairs run back "
        "to back (alternating which goes first); the ratio is taken within each pair, and its median is what the "
        f"goal (≤ {GOAL}) reads, on CPU time (steadier than wall time on a shared machine). Bytecode caches are "
        "written and reused, as where the code location is deployed. What is left above the baseline is the "
        "project's own modules and the assembly of the Definitions; nothing heavy loads "
        "(tests/test_definitions.py fails if torch, numpy, pandas, docker or an ML library does).",
        "",
        f"| time | `{BASELINE}` (median) | `{LOCATION}` (median) | ratio, median of pairs (goal ≤ {GOAL}) "
        "| ratio, range |",
        "|---|---:|---:|---:|---:|",
        *rows,
    ])
    write_section("bench_load", body)
    print(body)


if __name__ == "__main__":
    main()
