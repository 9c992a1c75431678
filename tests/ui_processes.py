"""What the browser tests add to the local stack (``mlops_assets/infra/local_stack.py``: the home, the
webserver and the daemon as process groups): ``build_job`` and two windows of monitoring run once in the
stack's home, and headless Debian chromium for Playwright.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from mlops_assets.infra.local_stack import StackHome

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SCREENSHOTS = REPO / "artifacts" / "ui"
# The fast build the UI tests start from: one small grid point, seconds on 2 cores.
FAST_BUILD = {"ops": {"trained_model": {"config": {"learning_rates": [3e-3], "hidden": [8], "epochs": [5]}}}}
# Debian's chromium in a sandbox-less container with no network: no GPU, no QUIC, no background calls.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def chromium_path() -> str | None:
    """The system chromium (``apt-get install chromium``), or ``$CHROMIUM`` when set."""
    for candidate in (os.environ.get("CHROMIUM"), *CHROMIUM_CANDIDATES):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


BUILD_SCRIPT = """
import json, sys
import dagster as dg
from mlops_assets.definitions import defs
result = defs.resolve_job_def("build_job").execute_in_process(
    instance=dg.DagsterInstance.get(), run_config=json.loads(sys.argv[1]), raise_on_error=False)
print(json.dumps({"success": result.success, "run_id": result.run_id}))
"""


def run_build(world: StackHome, run_config: dict | None = None, timeout: float = 600) -> dict[str, Any]:
    """``build_job`` once, in a subprocess so the resources read this world's settings at import."""
    log = world.logs / "build_job.log"
    result = subprocess.run(
        [sys.executable, "-c", BUILD_SCRIPT, json.dumps(run_config or FAST_BUILD)],
        cwd=world.home, env=world.env(), capture_output=True, text=True, timeout=timeout,
    )
    log.write_text(result.stdout + "\n" + result.stderr)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines or not json.loads(lines[-1])["success"]:
        raise RuntimeError(f"build_job failed (exit {result.returncode}); log {log}:\n{result.stderr[-4000:]}")
    return json.loads(lines[-1])


MONITOR_SCRIPT = """
import json, sys
from datetime import UTC, datetime, timedelta
import dagster as dg
import numpy as np
from mlops_assets.definitions import ASSETS, defs
from mlops_assets.core.data.features import image_features
from mlops_assets.core.data.images import load_digits_dataset
from mlops_assets.core.serving.inference_log_writer import InferenceLogWriter
from mlops_assets.core.common.settings import ARTIFACT_ROOT, resolve
from mlops_assets.tools.simulator import apply_drift

instance = dg.DagsterInstance.get()
resources = defs.resources
assert dg.materialize(ASSETS, selection=["reference_profile"], resources=resources, instance=instance).success
digits = load_digits_dataset()
hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
windows = []
for offset, drift in ((3, "none"), (2, "invert")):
    start = hour - timedelta(hours=offset)
    images, labels = apply_drift(digits.images[-300:], digits.labels[-300:], drift)
    with InferenceLogWriter(resolve(ARTIFACT_ROOT), clock=lambda s=start: s + timedelta(minutes=10)) as log:
        log.log(image_features(images), [str(v) for v in labels], np.full(len(labels), 0.9), "ui-test")
        assert log.flush()
    key = start.strftime("%Y-%m-%d-%H:%M")
    for asset in ("inference_profiles", "drift_report"):
        assert dg.materialize(ASSETS, selection=[asset], partition_key=key, resources=resources,
                              instance=instance).success
    windows.append(key)
print(json.dumps({"windows": windows}))
"""


def run_monitoring(world: StackHome, timeout: float = 600) -> dict[str, Any]:
    """Two past hourly windows of logged traffic (clean, then inverted), profiled and judged."""
    log = world.logs / "monitoring.log"
    result = subprocess.run([sys.executable, "-c", MONITOR_SCRIPT], cwd=world.home, env=world.env(),
                            capture_output=True, text=True, timeout=timeout)
    log.write_text(result.stdout + "\n" + result.stderr)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"monitoring setup failed (exit {result.returncode}); log {log}:\n{result.stderr[-4000:]}")
    return json.loads(lines[-1])


