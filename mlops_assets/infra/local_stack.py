"""The local stack as processes: a Dagster home with the repository's instance configuration, the webserver
and the daemon over it, each in its own session and stopped by process group.

They run in the home, not the repository: Dagster's CLI loads ``./.env`` over the environment, and a
developer's ``.env`` in the repository must not redirect a demo's or a test's stack.

``make loop-demo`` runs on it, and so do the browser tests. Every wait polls what a process answers, with a
deadline; nothing sleeps a fixed time. Standard library and PyYAML only (no Dagster import): the servers are
separate processes, spoken to over GraphQL.
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

from mlops_assets.core.common import settings
from mlops_assets.infra.processes import ProcessExitedError, free_port, log_tail, process_group, wait_until

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LOCATION = "mlops"  # workspace.yaml's location name
REPOSITORY = "__repository__"  # a Definitions object's repository name


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
class StackHome:
    """A DAGSTER_HOME with the repository's instance configuration, and the MLOps settings under it."""

    home: Path
    settings: tuple[tuple[str, str], ...] = ()  # extra environment for every process of the stack

    @property
    def mlops_home(self) -> Path:
        return self.home / "mlops"

    @property
    def artifact_root(self) -> Path:
        return self.mlops_home / "artifacts"

    @property
    def bentoml_home(self) -> Path:
        return self.mlops_home / "bentoml"

    @property
    def logs(self) -> Path:
        return self.home / "process-logs"

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        inherited = settings.process_environment()
        return {
            **inherited,
            "DAGSTER_HOME": str(self.home),
            "MLOPS_HOME": str(self.mlops_home),
            "MLOPS_ARTIFACT_ROOT": str(self.artifact_root),
            "BENTOML_HOME": str(self.bentoml_home),
            "BENTOML_DO_NOT_TRACK": "true",
            "DAGSTER_DISABLE_TELEMETRY": "1",
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), inherited.get("PYTHONPATH")) if p),
            **dict(self.settings),
            **(extra or {}),
        }


def make_home(home: Path, settings: dict[str, str] | None = None) -> StackHome:
    """Write ``home/dagster.yaml`` from the repository's, with every storage path under ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    (home / "dagster.yaml").write_text(yaml.safe_dump(_absolute_base_dirs(config, home), sort_keys=False))
    stack = StackHome(home, tuple(sorted((settings or {}).items())))
    stack.logs.mkdir(exist_ok=True)
    return stack


def http_ok(url: str, process: subprocess.Popen, log: Path) -> bool:
    if process.poll() is not None:
        raise ProcessExitedError(f"process exited with {process.returncode}:\n{log_tail(log)}")
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
def dagster_webserver(stack: StackHome, port: int | None = None, timeout: float = 120) -> Iterator[str]:
    """``dagster-webserver`` over the stack's instance and the repository's workspace; yields its URL."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    log = stack.logs / "webserver.log"
    command = [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port),
               "-w", str(REPO / "workspace.yaml")]
    with process_group(command, stack.env(), stack.home, log) as process:
        wait_until(lambda: http_ok(f"{url}/server_info", process, log), timeout, f"dagster-webserver at {url}")
        wait_until(lambda: location_loaded(url), timeout, "the code location to load in the webserver")
        yield url


DAEMON_HEALTH = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }"


def daemon_healthy(base_url: str, daemon_type: str, process: subprocess.Popen, log: Path) -> bool:
    if process.poll() is not None:
        raise ProcessExitedError(f"dagster-daemon exited with {process.returncode}:\n{log_tail(log)}")
    statuses = graphql(base_url, DAEMON_HEALTH)["instance"]["daemonHealth"]["allDaemonStatuses"]
    return any(s["daemonType"] == daemon_type and s["healthy"] for s in statuses)


@contextmanager
def dagster_daemon(stack: StackHome, base_url: str, timeout: float = 120,
                   daemons: tuple[str, ...] = ("QUEUED_RUN_COORDINATOR",)) -> Iterator[subprocess.Popen]:
    """``dagster-daemon run``: it starts queued runs and ticks the sensors. Yields once the webserver at
    ``base_url`` reports each of ``daemons`` healthy (heartbeats)."""
    log = stack.logs / "daemon.log"
    command = [str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")]
    with process_group(command, stack.env(), stack.home, log) as process:
        for daemon in daemons:
            wait_until(lambda d=daemon: daemon_healthy(base_url, d, process, log), timeout,
                       f"the daemon's {daemon} to report healthy")
        yield process


def skip_community_prompt(base_url: str) -> None:
    """The UI opens a newsletter dialog over the first page on a loopback origin; a person clicks
    "Skip", which records it in the instance (``$DAGSTER_HOME/.nux``). Do the same through GraphQL."""
    graphql(base_url, "mutation { setNuxSeen }")
