"""Run a benchmark's ``--smoke`` mode as its test does: a real run, small, whose report the test then reads."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def smoke_report(module: str, report: Path, timeout_s: float) -> str:
    """``python -m <module> --smoke --report <report>``; the report's text. Skips without ``wrk``, except in CI,
    where a benchmark that cannot run is a failure."""
    import pytest

    if shutil.which("wrk") is None:
        if os.environ.get("CI"):
            pytest.fail(f"wrk is not installed (make bench-deps); CI must run {module}'s smoke mode")
        pytest.skip("wrk is not installed (make bench-deps)")
    done = subprocess.run([sys.executable, "-m", module, "--smoke", "--report", str(report)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=timeout_s)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return report.read_text()
