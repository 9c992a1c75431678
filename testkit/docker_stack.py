"""Bring the Docker production stack (deploy/docker-compose.yaml) up and down through the same
script as ``make deploy-up``/``make deploy-down``, and look at it: containers, PostgreSQL, GraphQL.

Used by tests/test_docker_stack.py and benchmarks/bench_docker_stack.py. Talks to the engine with
the ``docker`` CLI (what a person would type), never through a mock.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mlops_assets.infra.processes import free_port, wait_until
from testkit.topology import DAEMON_HEALTH_QUERY, DEPLOY, LOCATIONS_QUERY, REPO, TERMINAL

STACK_SCRIPT = DEPLOY / "scripts" / "stack.sh"
ENGINE_SCRIPT = DEPLOY / "scripts" / "start_engine.sh"
COMPOSE = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())
NETWORK = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())["run_launcher"]["config"]["networks"][0]
NETWORKS = sorted(spec.get("name", key) for key, spec in COMPOSE["networks"].items())
VOLUMES = sorted(spec.get("name", key) for key, spec in COMPOSE["volumes"].items())
SECRETS = DEPLOY / "secrets"  # stack.sh writes the password and the token here (git-ignored)
PROJECT = "mlops"
RUN_LABEL = "dagster/run_id"  # set by DockerRunLauncher on every run container
REPOSITORY = "__repository__"
LOCATION = "mlops"


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    """The docker CLI's stdout; a failure raises with its stderr."""
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: exit {done.returncode}\n{done.stderr.strip()}")
    return done.stdout.strip()


def engine_problem() -> str | None:
    """Why the stack cannot run here (no docker CLI, no engine answering, no compose), or None."""
    if shutil.which("docker") is None:
        return "no docker CLI (deploy/scripts/start_engine.sh installs Debian's docker.io)"
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
        return "no Docker engine answers on /var/run/docker.sock (deploy/scripts/start_engine.sh starts one)"
    if (
        shutil.which("docker-compose") is None
        and subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode != 0
    ):
        return "neither docker-compose nor docker compose is installed"
    return None


def leftovers(project: str = PROJECT) -> dict[str, list[str]]:
    """Containers, networks and volumes of the stack still on the engine (run containers included)."""
    return {
        "containers": docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}").split()
        + docker("ps", "-aq", "--filter", f"label={RUN_LABEL}", "--filter", f"network={NETWORK}").split(),
        "networks": [n for n in docker("network", "ls", "--format", "{{.Name}}").split() if n in NETWORKS],
        "volumes": [v for v in docker("volume", "ls", "--format", "{{.Name}}").split() if v in VOLUMES],
    }


@dataclass
class DockerStack:
    """One stack on this engine: its host ports, its log folder, the script's environment."""

    logs: Path
    web_port: int = field(default_factory=free_port)
    bento_port: int = field(default_factory=free_port)
    project: str = PROJECT

    @property
    def env(self) -> dict[str, str]:
        # The test process's own MLOPS_*/DAGSTER_* settings must not leak into the containers.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "DAGSTER_", "BENTOML_"))}
        env.update(
            {
                "MLOPS_STACK_PROJECT": self.project,
                "DAGSTER_WEBSERVER_PORT": str(self.web_port),
                "MLOPS_BENTO_PORT": str(self.bento_port),
            }
        )
        return env

    def script(self, action: str, timeout: float) -> float:
        """Run ``stack.sh up|down``; its output goes to logs/<action>.log; returns the seconds it took."""
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{action}.log"
        started = time.monotonic()
        with log.open("ab") as out:
            done = subprocess.run(
                [str(STACK_SCRIPT), action],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            )
        if done.returncode != 0:
            raise RuntimeError(f"stack.sh {action} exited {done.returncode}:\n{log.read_text()[-4000:]}")
        return time.monotonic() - started

    def secret(self, name: str) -> str:
        """A secret of the stack (``dagster_pg_password``, ``mlops_api_token``): the file stack.sh writes under
        deploy/secrets/, or, for a stack of before the secrets files, the variable in deploy/.env."""
        path = SECRETS / name
        if path.is_file():
            return path.read_text().strip()
        for line in (REPO / "deploy" / ".env").read_text().splitlines():
            if line.startswith(f"{name.upper()}="):
                return line.split("=", 1)[1].strip()
        raise RuntimeError(f"no {name} in deploy/secrets/ or deploy/.env (stack.sh up writes one)")

    def api_token(self) -> str:
        """The service's bearer token."""
        return self.secret("mlops_api_token")

    def up(self, timeout: float = 2400) -> float:
        return self.script("up", timeout)

    def down(self, timeout: float = 300) -> float:
        return self.script("down", timeout)

    # -- containers
    def container(self, service: str) -> str:
        ids = docker(
            "ps",
            "-aq",
            "--filter",
            f"label=com.docker.compose.project={self.project}",
            "--filter",
            f"label=com.docker.compose.service={service}",
        ).split()
        assert len(ids) == 1, f"{service}: containers {ids}"
        return ids[0]

    def all_run_containers(self) -> list[str]:
        """Every container DockerRunLauncher started on the stack's network (running or exited)."""
        return docker("ps", "-aq", "--filter", f"label={RUN_LABEL}", "--filter", f"network={NETWORK}").split()

    def exec_in(self, service: str, *command: str, check: bool = True) -> str:
        """``docker exec``: the command runs as the container's own user, with its environment."""
        return docker("exec", self.container(service), *command, check=check)

    def address(self, service: str, network: str = NETWORK) -> str:
        """The service container's IP address on ``network``."""
        return inspect(self.container(service))["NetworkSettings"]["Networks"][network]["IPAddress"]

    def reaches(self, service: str, host: str, port: int, seconds: float = 3) -> bool:
        """Whether a TCP connection from inside the service's container to host:port is accepted (its Python:
        both images have one); a name that does not resolve, a refusal or a timeout is False."""
        probe = (
            "import socket, sys\n"
            "try:\n    socket.create_connection((sys.argv[1], int(sys.argv[2])), float(sys.argv[3])).close()\n"
            "except OSError as exc:\n    print(type(exc).__name__, exc)\n    sys.exit(3)\n"
        )
        done = subprocess.run(
            ["docker", "exec", self.container(service), "python3", "-c", probe, host, str(port), str(seconds)],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
        )
        if done.returncode not in (0, 3):
            raise RuntimeError(f"the probe in {service} failed: {done.stderr.strip()}")
        return done.returncode == 0

    def run_containers(self, run_id: str) -> list[dict]:
        ids = docker("ps", "-aq", "--filter", f"label={RUN_LABEL}={run_id}").split()
        return [inspect(i) for i in ids]

    def health(self, service: str) -> str:
        """Docker's health status of the service's container: starting, healthy or unhealthy."""
        return inspect(self.container(service))["State"]["Health"]["Status"]

    def run_tag(self, run_id: str, key: str) -> str | None:
        rows = self.psql(f"SELECT value FROM run_tags WHERE run_id = '{run_id}' AND key = '{key}'")
        return rows[0][0] if rows else None

    @contextlib.contextmanager
    def writes_blocked(self, table: str):
        """Hold ``LOCK TABLE ... IN EXCLUSIVE MODE`` on a table of the stack's PostgreSQL for the block: reads go on,
        every write to it waits (a psql session in the postgres container, its transaction rolled back at the end)."""
        session = subprocess.Popen(
            ["docker", "exec", "-i", self.container("postgres"), "sh", "-c",
             'psql -U "$POSTGRES_USER" -d "$POSTGRES_DB" -q -v ON_ERROR_STOP=1'],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        )
        assert session.stdin is not None
        granted = (
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            f"WHERE c.relname = '{table}' AND l.mode = 'ExclusiveLock' AND l.granted"
        )
        try:
            session.stdin.write(f"BEGIN; LOCK TABLE {table} IN EXCLUSIVE MODE;\n")
            session.stdin.flush()
            wait_until(lambda: self.psql(granted)[0][0] == "1", 30, f"the lock on {table}", interval=0.2)
            yield
        finally:
            with contextlib.suppress(OSError):
                session.stdin.write("ROLLBACK;\n")
                session.stdin.close()
            session.wait(timeout=30)

    def service_logs(self, tail: int = 60) -> str:
        parts = []
        for service in COMPOSE["services"]:
            try:
                cid = self.container(service)
            except AssertionError as exc:
                parts.append(f"--- {service}: {exc}")
                continue
            out = subprocess.run(["docker", "logs", "--tail", str(tail), cid], capture_output=True, text=True)
            parts.append(f"--- {service} ---\n{out.stdout}{out.stderr}")
        return "\n".join(parts)

    def psql(self, query: str) -> list[list[str]]:
        """Rows of a query on the stack's PostgreSQL, through psql in its container."""
        out = docker(
            "exec",
            self.container("postgres"),
            "sh",
            "-c",
            'psql -U "$POSTGRES_USER" -d "$POSTGRES_DB" -At -F "|" -c "$0"',
            query,
        )
        return [line.split("|") for line in out.splitlines() if line]

    # -- the webserver's GraphQL API
    @property
    def client(self):
        from dagster_graphql import DagsterGraphQLClient

        return DagsterGraphQLClient("127.0.0.1", port_number=self.web_port, timeout=60)

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        from mlops_assets.infra.local_stack import graphql

        return graphql(f"http://127.0.0.1:{self.web_port}", query, variables, timeout=60)

    def wait_ready(self, timeout: float = 300) -> None:
        """The webserver serves the loaded ``mlops`` location and the daemon's loops report healthy."""

        def loaded() -> bool:
            entries = self.graphql(LOCATIONS_QUERY)["workspaceOrError"]["locationEntries"]
            return any(
                e["name"] == LOCATION
                and e["loadStatus"] == "LOADED"
                and e["locationOrLoadError"]["__typename"] != "PythonError"
                for e in entries
            )

        wait_until(loaded, timeout, f"the webserver with the mlops location\n{self.service_logs()}", interval=1)
        self.wait_daemon(timeout)

    def wait_daemon(self, timeout: float = 300) -> None:
        wanted = {"SCHEDULER", "SENSOR", "QUEUED_RUN_COORDINATOR", "MONITORING"}

        def healthy() -> bool:
            data = self.graphql(DAEMON_HEALTH_QUERY)["instance"]["daemonHealth"]["allDaemonStatuses"]
            statuses = {d["daemonType"]: d["healthy"] for d in data}
            return all(statuses.get(d) for d in wanted)

        wait_until(healthy, timeout, f"healthy daemons\n{self.service_logs()}", interval=1)

    def submit(self, job: str, run_config: dict | None = None) -> str:
        return self.client.submit_job_execution(
            job, repository_location_name=LOCATION, repository_name=REPOSITORY, run_config=run_config or {}
        )

    def run_status(self, run_id: str) -> str:
        return self.client.get_run_status(run_id).value

    def wait_run(self, run_id: str, timeout: float, statuses: set[str] = TERMINAL) -> str:
        return wait_until(
            lambda: (s := self.run_status(run_id)) in statuses and s,
            timeout,
            f"run {run_id} to reach {sorted(statuses)}\n{self.service_logs()}",
            interval=1,
        )


def inspect(container: str) -> dict:
    return json.loads(docker("inspect", container))[0]
