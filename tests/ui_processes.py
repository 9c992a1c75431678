"""Real processes for the browser tests: a Dagster instance in a temporary home, built once by
``build_job``; the webserver and the daemon over it; and headless Debian chromium for Playwright.

Every server listens on 127.0.0.1 on a free port, runs in its own session and is stopped by
process group (the webserver, the daemon and ``bentoml serve`` all fork children). Waits poll what
the process answers, with a deadline; nothing sleeps a fixed time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlops_assets.deploy.processes import ProcessExitedError, free_port, stop_process_group, wait_until
from mlops_assets.deploy.processes import log_tail as tail

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


def _absolute_base_dirs(node: Any, home: Path) -> Any:
    """The repository's dagster.yaml keeps storage under relative ``base_dir``s (relative to the cwd);
    root them in ``home`` so every process sees one instance whatever its working directory."""
    if isinstance(node, dict):
        return {
            key: str(home / value) if key == "base_dir" and isinstance(value, str) and not os.path.isabs(value)
            else _absolute_base_dirs(value, home)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_absolute_base_dirs(value, home) for value in node]
    return node


@dataclass(frozen=True)
class UiWorld:
    """A DAGSTER_HOME with the repository's instance configuration, and the MLOps settings under it."""

    home: Path

    @property
    def mlops_home(self) -> Path:
        return self.home / "mlops"

    @property
    def bentoml_home(self) -> Path:
        return self.mlops_home / "bentoml"

    @property
    def logs(self) -> Path:
        return self.home / "process-logs"

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {
            **os.environ,
            "DAGSTER_HOME": str(self.home),
            "MLOPS_HOME": str(self.mlops_home),
            "MLOPS_ARTIFACT_ROOT": str(self.mlops_home / "artifacts"),
            "BENTOML_HOME": str(self.bentoml_home),
            "BENTOML_DO_NOT_TRACK": "true",
            "DAGSTER_DISABLE_TELEMETRY": "1",
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
        }
        env.update(extra or {})
        return env


def make_world(home: Path) -> UiWorld:
    """Write ``home/dagster.yaml`` from the repository's, with every storage path under ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    (home / "dagster.yaml").write_text(yaml.safe_dump(_absolute_base_dirs(config, home), sort_keys=False))
    world = UiWorld(home)
    world.logs.mkdir(exist_ok=True)
    return world


BUILD_SCRIPT = """
import json, sys
import dagster as dg
from mlops_assets.definitions import defs
result = defs.resolve_job_def("build_job").execute_in_process(
    instance=dg.DagsterInstance.get(), run_config=json.loads(sys.argv[1]), raise_on_error=False)
print(json.dumps({"success": result.success, "run_id": result.run_id}))
"""


def run_build(world: UiWorld, run_config: dict | None = None, timeout: float = 600) -> dict[str, Any]:
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
from mlops_assets.ml.features import image_features
from mlops_assets.ml.images import load_digits_dataset
from mlops_assets.ml.inference_log import InferenceLogWriter
from mlops_assets.ml.settings import ARTIFACT_ROOT, resolve
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


def run_monitoring(world: UiWorld, timeout: float = 600) -> dict[str, Any]:
    """Two past hourly windows of logged traffic (clean, then inverted), profiled and judged."""
    log = world.logs / "monitoring.log"
    result = subprocess.run([sys.executable, "-c", MONITOR_SCRIPT], cwd=world.home, env=world.env(),
                            capture_output=True, text=True, timeout=timeout)
    log.write_text(result.stdout + "\n" + result.stderr)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"monitoring setup failed (exit {result.returncode}); log {log}:\n{result.stderr[-4000:]}")
    return json.loads(lines[-1])


# -- servers ------------------------------------------------------------------------------------------
@contextmanager
def process_group(command: list[str], env: dict[str, str], cwd: Path, log: Path) -> Iterator[subprocess.Popen]:
    """Start ``command`` in its own session, output to ``log``; always stop its whole group on exit."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            yield process
        finally:
            stop_process_group(process)


def http_ok(url: str, process: subprocess.Popen, log: Path) -> bool:
    if process.poll() is not None:
        raise ProcessExitedError(f"process exited with {process.returncode}:\n{tail(log)}")
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status == 200


def graphql(base_url: str, query: str, variables: dict | None = None, timeout: float = 30) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"{base_url}/graphql", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        payload = json.loads(response.read())
    if payload.get("errors"):
        raise RuntimeError(f"GraphQL errors: {payload['errors']}")
    return payload["data"]


LOCATION_STATUS = """
{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


def location_loaded(base_url: str) -> bool:
    """True once every code location of the workspace has loaded; raises if one failed to load."""
    entries = graphql(base_url, LOCATION_STATUS)["workspaceOrError"]["locationEntries"]
    for entry in entries:
        error = entry["locationOrLoadError"] or {}
        if error.get("__typename") == "PythonError":
            raise ProcessExitedError(f"code location {entry['name']} failed to load: {error['message']}")
    return bool(entries) and all(e["loadStatus"] == "LOADED" and e["locationOrLoadError"] for e in entries)


@contextmanager
def dagster_webserver(world: UiWorld, timeout: float = 120) -> Iterator[str]:
    """``dagster-webserver`` over the world's instance and the repository's workspace; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = world.logs / "webserver.log"
    command = [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port),
               "-w", str(REPO / "workspace.yaml")]
    with process_group(command, world.env(), world.home, log) as process:
        wait_until(lambda: http_ok(f"{url}/server_info", process, log), timeout, f"dagster-webserver at {url}")
        wait_until(lambda: location_loaded(url), timeout, "the code location to load in the webserver")
        yield url


DAEMON_HEALTH = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }"


def daemon_healthy(base_url: str, daemon_type: str, process: subprocess.Popen, log: Path) -> bool:
    if process.poll() is not None:
        raise ProcessExitedError(f"dagster-daemon exited with {process.returncode}:\n{tail(log)}")
    statuses = graphql(base_url, DAEMON_HEALTH)["instance"]["daemonHealth"]["allDaemonStatuses"]
    return any(s["daemonType"] == daemon_type and s["healthy"] for s in statuses)


@contextmanager
def dagster_daemon(world: UiWorld, base_url: str, timeout: float = 120) -> Iterator[subprocess.Popen]:
    """``dagster-daemon run``: the QueuedRunCoordinator of dagster.yaml needs it to start queued runs.
    Yields once the webserver at ``base_url`` reports the run-queue daemon healthy (heartbeats)."""
    log = world.logs / "daemon.log"
    command = [str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")]
    with process_group(command, world.env(), world.home, log) as process:
        wait_until(lambda: daemon_healthy(base_url, "QUEUED_RUN_COORDINATOR", process, log), timeout,
                   "the daemon's run queue to report healthy")
        yield process


def skip_community_prompt(base_url: str) -> None:
    """The UI opens a newsletter dialog over the first page on a loopback origin; a person clicks
    "Skip", which records it in the instance (``$DAGSTER_HOME/.nux``). Do the same through GraphQL."""
    graphql(base_url, "mutation { setNuxSeen }")
