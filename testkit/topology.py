"""Start, stop and poll the production topology as plain processes (no Docker engine needed).

The topology of deploy/docker-compose.yaml, one process per service: PostgreSQL (an existing
server; each topology gets a fresh database), one gRPC code server per code location, the
webserver with a gRPC workspace and the daemon. The instance is deploy/dagster.yaml with only the
run launcher swapped (containers -> the code server's process tree, see topology_launcher.py), so
everything else in the production configuration is what runs.

Used by tests/test_production_topology.py and benchmarks/bench_launch.py.
"""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlops_assets.infra.processes import ProcessExitedError, WaitAborted, free_port, wait_until

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
# build_job with a one-point search of a few epochs: the whole build in seconds, for tests and benchmarks.
FAST_BUILD = {"ops": {"trained_model": {"config": {"learning_rates": [3e-3], "hidden": [8], "epochs": [5]}}}}


class LocationLoadError(WaitAborted):
    """A code location failed to load: waiting longer will not help."""


def holds_for(predicate: Callable[[], Any], seconds: float, what: str, interval: float = 0.25) -> None:
    """Assert that ``predicate()`` stays truthy for ``seconds``: for things that must *not* happen
    (a queued run started by nobody), watched over a window longer than the daemon's loop."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate(), f"{what} stopped holding"
        time.sleep(interval)


# ---------------------------------------------------------------- PostgreSQL


def pg_connect(db: str = "postgres"):
    import psycopg2

    conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=db)
    conn.autocommit = True
    return conn


def sql(db: str, query: str, params: tuple = ()) -> list[tuple]:
    with contextlib.closing(pg_connect(db)) as conn, conn.cursor() as cur:
        cur.execute(query, params or None)
        return cur.fetchall() if cur.description else []


@contextlib.contextmanager
def fresh_database(prefix: str = "mlops_test") -> Iterator[str]:
    """A new empty database on the local server, dropped (with its connections) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with contextlib.closing(pg_connect()) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with contextlib.closing(pg_connect()) as conn, conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_env(db: str) -> dict[str, str]:
    """The variables deploy/dagster.yaml reads; the local server trusts, so the password is unused."""
    return {"DAGSTER_PG_HOST": PG_HOST, "DAGSTER_PG_PORT": str(PG_PORT), "DAGSTER_PG_USER": PG_USER,
            "DAGSTER_PG_PASSWORD": "unused-trust-auth", "DAGSTER_PG_DB": db}


# ---------------------------------------------------------------- configuration

PROCESS_LAUNCHER = {"module": "testkit.topology_launcher", "class": "ProcessRunLauncher"}


def production_instance_config(monitoring_poll_seconds: int | None = 2) -> dict:
    """deploy/dagster.yaml with the process launcher instead of DockerRunLauncher (no Docker here);
    run monitoring polls faster so a test does not wait the production 30 s for a dead worker."""
    config = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    assert config["run_launcher"]["class"] == "TaggedDockerRunLauncher", "deploy/dagster.yaml changed launcher"
    config["run_launcher"] = dict(PROCESS_LAUNCHER)
    if monitoring_poll_seconds is not None:
        config["run_monitoring"]["poll_interval_seconds"] = monitoring_poll_seconds
    return config


def embedded_instance_config(storage_root: Path) -> dict:
    """The top-level (dagster dev) dagster.yaml, its relative storage folders moved under ``storage_root``."""
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    config["storage"]["sqlite"]["base_dir"] = str(storage_root / "storage")
    config["local_artifact_storage"]["config"]["base_dir"] = str(storage_root)
    config["compute_logs"]["config"]["base_dir"] = str(storage_root / "logs")
    return config


@dataclass(frozen=True)
class Location:
    name: str
    module: str


PRODUCT = Location("mlops", "mlops_assets.definitions")
TINY = Location("topology_tiny", "testkit.topology_tiny_location")


def workspace_config(extra: list[Location], product: bool = True) -> dict:
    """deploy/workspace.yaml (its location reads host and port from the environment), plus gRPC
    entries for the test-only locations."""
    entries = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())["load_from"] if product else []
    entries = copy.deepcopy(entries)
    for loc in extra:
        entries.append({"grpc_server": {"host": "127.0.0.1", "port": {"env": port_var(loc)},
                                        "location_name": loc.name}})
    return {"load_from": entries}


def port_var(loc: Location) -> str:
    return "MLOPS_CODE_SERVER_PORT" if loc == PRODUCT else f"TOPOLOGY_{loc.name.upper()}_PORT"


# ---------------------------------------------------------------- processes


@dataclass
class Process:
    """A child started in its own session, so stopping it stops everything it spawned."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen | None = None

    def start(self) -> Process:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(self.argv, env=self.env, cwd=self.env.get("DAGSTER_HOME", REPO),
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return self

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.popen is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, as when a container dies."""
        self.signal_group(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(timeout=10)

    def stop(self, timeout: float = 15) -> None:
        if self.popen is None:
            return
        self.signal_group(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        self.signal_group(signal.SIGKILL)  # stragglers in the group (run workers, child servers)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)

    def tail(self, n: int = 40) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines() if self.log_path.exists() else []
        return f"--- {self.name} ({self.log_path}) ---\n" + "\n".join(lines[-n:])


@dataclass
class Topology:
    """Code servers + webserver + daemon on one instance configuration, in ``root``."""

    root: Path
    instance_config: dict
    locations: list[Location]
    env_overrides: dict[str, str] = field(default_factory=dict)
    database: str = ""  # the PostgreSQL database, when the instance uses one
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, Process] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return self.root / "dagster_home"

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)
        (self.home / "dagster.yaml").write_text(yaml.safe_dump(self.instance_config, sort_keys=False))
        extra = [loc for loc in self.locations if loc != PRODUCT]
        workspace = workspace_config(extra, product=PRODUCT in self.locations)
        (self.home / "workspace.yaml").write_text(yaml.safe_dump(workspace, sort_keys=False))
        for loc in self.locations:
            self.ports[loc.name] = free_port()
        self.ports["webserver"] = free_port()

    @property
    def env(self) -> dict[str, str]:
        mlops_home = self.root / "mlops"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "DAGSTER_PG_"))}
        env.update({
            "DAGSTER_HOME": str(self.home),
            "PYTHONPATH": str(REPO),
            "MLOPS_HOME": str(mlops_home),
            "MLOPS_ARTIFACT_ROOT": str(mlops_home / "artifacts"),
            "BENTOML_HOME": str(mlops_home / "bentoml"),
            "MLOPS_DATASET_KIND": "digits",
            "MLOPS_CODE_SERVER_HOST": "127.0.0.1",
        })
        for loc in self.locations:
            env[port_var(loc)] = str(self.ports[loc.name])
        env.update(self.env_overrides)
        return env

    def _process(self, name: str, argv: list[str]) -> Process:
        proc = Process(name, argv, self.env, self.root / "logs" / f"{name}.log").start()
        self.processes[name] = proc
        return proc

    # -- code servers
    def start_code_server(self, loc: Location) -> Process:
        proc = self._process(loc.name, [
            str(BIN / "dagster"), "code-server", "start", "-h", "127.0.0.1", "-p", str(self.ports[loc.name]),
            "-m", loc.module, "--location-name", loc.name, "-d", str(REPO)])
        return proc

    def wait_code_server(self, loc: Location, timeout: float = 90) -> None:
        from testkit.dagster_private import DagsterGrpcClient

        client = DagsterGrpcClient(port=self.ports[loc.name], host="127.0.0.1")
        wait_until(lambda: self._check_alive(loc.name) and client.list_repositories(),
                   timeout, f"code server {loc.name}\n{self.processes[loc.name].tail()}")

    # -- webserver and daemon
    def start_webserver(self) -> Process:
        return self._process("webserver", [
            str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(self.ports["webserver"]),
            "-w", str(self.home / "workspace.yaml")])

    def start_daemon(self) -> Process:
        return self._process("daemon", [
            str(BIN / "dagster-daemon"), "run", "-w", str(self.home / "workspace.yaml")])

    def _check_alive(self, name: str) -> bool:
        proc = self.processes[name]
        if not proc.alive:
            raise ProcessExitedError(f"{name} exited with {proc.popen.returncode}\n{proc.tail()}")
        return True

    def migrate(self) -> None:
        """Create the schema once, before the processes race to create it on a fresh database."""
        subprocess.run([str(BIN / "dagster"), "instance", "migrate"], env=self.env, cwd=self.home,
                       check=True, capture_output=True, timeout=120)

    def start(self, timeout: float = 120) -> Topology:
        self.migrate()
        for loc in self.locations:
            self.start_code_server(loc)
        for loc in self.locations:
            self.wait_code_server(loc, timeout)
        self.start_webserver()
        self.start_daemon()
        self.wait_webserver(timeout)
        self.wait_daemon(timeout)
        return self

    def wait_webserver(self, timeout: float = 90) -> None:
        import urllib.request

        def loaded() -> bool:
            self._check_alive("webserver")
            with urllib.request.urlopen(f"{self.url}/server_info", timeout=2) as resp:
                if resp.status != 200:
                    return False
            entries = self.graphql(LOCATIONS_QUERY)["workspaceOrError"]["locationEntries"]
            for entry in entries:
                if (entry["locationOrLoadError"] or {}).get("__typename") == "PythonError":
                    raise LocationLoadError(f"{entry['name']}: {entry['locationOrLoadError']['message']}")
            return {e["name"] for e in entries if e["loadStatus"] == "LOADED"} == {
                loc.name for loc in self.locations}

        wait_until(loaded, timeout, f"the webserver and its workspace\n{self.processes['webserver'].tail()}")

    def daemon_statuses(self) -> dict[str, bool]:
        data = self.graphql(DAEMON_HEALTH_QUERY)["instance"]["daemonHealth"]["allDaemonStatuses"]
        return {d["daemonType"]: d["healthy"] for d in data}

    def wait_daemon(self, timeout: float = 90) -> None:
        wanted = {"SCHEDULER", "SENSOR", "QUEUED_RUN_COORDINATOR"}
        if self.instance_config.get("run_monitoring", {}).get("enabled"):
            wanted.add("MONITORING")

        def healthy() -> bool:
            self._check_alive("daemon")
            statuses = self.daemon_statuses()
            return all(statuses.get(d) for d in wanted)

        wait_until(healthy, timeout, f"healthy daemons\n{self.processes['daemon'].tail()}", interval=1)

    def stop(self) -> None:
        for name in ["daemon", "webserver", *[loc.name for loc in self.locations]]:
            if name in self.processes:
                self.processes[name].stop()

    def logs(self) -> str:
        return "\n".join(proc.tail() for proc in self.processes.values())

    # -- GraphQL
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['webserver']}"

    @property
    def client(self):
        from dagster_graphql import DagsterGraphQLClient

        return DagsterGraphQLClient("127.0.0.1", port_number=self.ports["webserver"], timeout=60)

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        from mlops_assets.infra.local_stack import graphql

        return graphql(self.url, query, variables, timeout=60)

    def run_status(self, run_id: str) -> str:
        return self.client.get_run_status(run_id).value

    def wait_run(self, run_id: str, timeout: float, statuses: set[str] = TERMINAL) -> str:
        return wait_until(lambda: (s := self.run_status(run_id)) in statuses and s, timeout,
                          f"run {run_id} to reach {sorted(statuses)}\n{self.logs()}", interval=0.5)


LOCATIONS_QUERY = """
query { workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""

DAEMON_HEALTH_QUERY = """
query { instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }
"""


@contextlib.contextmanager
def running(topology: Topology, timeout: float = 120) -> Iterator[Topology]:
    try:
        yield topology.start(timeout)
    finally:
        topology.stop()


REEXECUTE = """
mutation($params: ReexecutionParams!) { launchRunReexecution(reexecutionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on InvalidStepError { invalidStepKey } ... on RunConflict { message } } }
"""
