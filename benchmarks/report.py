"""Write one benchmark's section of BENCHMARKS.md, leaving the other sections as they are.

The file has two parts: the sections ``make bench`` writes, between their markers, and after ``HAND_WRITTEN`` the
sections written by hand, which no benchmark touches. A new benchmark's section joins the first part.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import time
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
HAND_WRITTEN = "<!-- hand-written: make bench writes nothing below this line -->"
HEADER = (
    "# Benchmarks\n\n"
    "Every figure in the sections between `<!-- bench_<name>:start -->` and `<!-- bench_<name>:end -->` is "
    "measured by `make bench` (or `python -m benchmarks.bench_<name>`) on the machine named in its section, "
    "against a baseline measured in the same run; ratios are what to compare across machines. Sections after "
    "the line `" + HAND_WRITTEN + "` are written by hand.\n"
)


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write_section(name: str, body: str) -> None:
    """Replace the section between ``<!-- name:start -->`` and ``<!-- name:end -->``, or add it at the end of the
    measured part (before the hand-written sections)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    section = f"{start}\n{body.rstrip()}\n\n_Measured {stamp} on {machine()}._\n{end}"
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else HEADER
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    elif HAND_WRITTEN in text:
        measured, hand_written = text.split(HAND_WRITTEN, 1)
        text = measured.rstrip() + "\n\n" + section + "\n\n" + HAND_WRITTEN + hand_written
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    BENCHMARKS_MD.write_text(text)


def publish(name: str, body: str, report: str | None, no_write: bool) -> None:
    """A benchmark's usual ending: its section to the ``--report`` file when given, else to BENCHMARKS.md unless
    ``--no-write``; printed either way."""
    if report:
        Path(report).write_text(body + "\n")
    elif not no_write:
        write_section(name, body)
    print(body)


def median(values: list[float]) -> float:
    return statistics.median(values)
