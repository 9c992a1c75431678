"""The production stack of deploy/ running for real in Docker, brought up by ``make deploy-up``'s script.

One stack for the module (PostgreSQL, the gRPC code server, webserver, daemon, Bento service, on free
host ports), used in file order: build_job launched over GraphQL runs in its own container started by
DockerRunLauncher, the Bento container serves the promoted model, a run queued while the daemon
container is dead starts once it is back, and ``make deploy-down``'s script leaves nothing behind.
The first run builds the images (minutes: a debootstrap base where no registry answers, the
wheelhouse); later runs rebuild only the code layers. Needs a Docker engine (root:
deploy/scripts/start_engine.sh); with CI=1 a missing engine fails instead of skipping.
"""

import io
import os
import re
import subprocess
import time
from collections import Counter

import pytest

from testkit.docker_stack import (
    COMPOSE,
    NETWORK,
    PROJECT,
    RUN_LABEL,
    DockerStack,
    docker,
    engine_problem,
    inspect,
    leftovers,
)
from testkit.topology import FAST_BUILD, holds_for, production_instance_config, wait_until

pytestmark = pytest.mark.slow

SLOW_BUILD = {"ops": {"trained_model": {"config": {"learning_rates": [3e-3], "hidden": [8], "epochs": [40]}}}}
INSTANCE = production_instance_config(monitoring_poll_seconds=None)  # deploy/dagster.yaml as the stack runs it
DEQUEUE_SECONDS = INSTANCE["run_coordinator"]["config"]["dequeue_interval_seconds"]
START_TIMEOUT = INSTANCE["run_monitoring"]["start_timeout_seconds"]
MONITORING_POLL = INSTANCE["run_monitoring"]["poll_interval_seconds"]
# A job of seconds (a whylogs profile of the production model's training split), for the faults that need a run,
# not a build. Needs a promoted model: build_job runs first.
QUICK_JOB = "reference_profile_job"
# The Bento's health check: every 10 s, killed at the third failure (deploy/docker-compose.yaml); the bound
# leaves one interval of slack and the check's own time.
BENTO_RESTART_WITHIN = 60
USER_CODE_IMAGE = "mlops-user-code"
# What the public Bento container must not reach: the unauthenticated Dagster internals, by port.
INTERNALS = {"webserver": 3000, "user_code": 4000, "postgres": 5432}
# A login to the stack's PostgreSQL with the daemon's own settings (the password as its entrypoint exports it).
PG_LOGIN = """
import os, psycopg2
connection = psycopg2.connect(host=os.environ["DAGSTER_PG_HOST"], port=os.environ["DAGSTER_PG_PORT"],
    user=os.environ["DAGSTER_PG_USER"], password=os.environ["DAGSTER_PG_PASSWORD"],
    dbname=os.environ["DAGSTER_PG_DB"], connect_timeout=5)
with connection.cursor() as cursor:
    cursor.execute("SELECT count(*) FROM runs")
    print(cursor.fetchone()[0])
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    problem = engine_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"{problem}; CI must run the Docker stack (.ci/run starts the engine)")
        pytest.skip(problem)
    existing = {kind: names for kind, names in leftovers().items() if names}
    if existing:
        pytest.fail(
            f"a stack named {PROJECT} already exists on this engine ({existing}); "
            "this test would tear it down: run `make deploy-down` first if it is yours"
        )
    stack = DockerStack(tmp_path_factory.mktemp("docker_stack"))
    try:
        seconds = stack.up()
        print(f"stack up (build included): {seconds:.0f} s")
        stack.wait_ready()
        yield stack
    finally:
        try:
            stack.down()
        except Exception as exc:  # reported by test_deploy_down_leaves_nothing_behind or the next run
            print(f"deploy-down failed: {exc}")


def png_of_a_digit() -> bytes:
    from PIL import Image
    from sklearn.datasets import load_digits

    pixels = load_digits().images[0]  # a zero, 0..16
    image = Image.fromarray((pixels * (255 / 16)).astype("uint8"), mode="L")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def exited_run_container(stack: DockerStack, run_id: str) -> dict:
    """The one container DockerRunLauncher started for the run (it labels it with the run id), once
    its process has exited: the run's success event is written just before the process ends."""

    def exited() -> dict | None:
        (container,) = stack.run_containers(run_id)
        return container if container["State"]["Status"] == "exited" else None

    return wait_until(exited, 120, f"the container of run {run_id} to exit", interval=1)


def test_build_job_over_graphql_runs_in_its_own_container(stack):
    run_id = stack.submit("build_job", FAST_BUILD)
    status = stack.wait_run(run_id, timeout=900)
    assert status == "SUCCESS", stack.service_logs()

    container = exited_run_container(stack, run_id)
    assert container["Config"]["Image"] == USER_CODE_IMAGE
    assert container["State"]["ExitCode"] == 0, container["State"]
    assert container["Config"]["Labels"]["dagster/job_name"] == "build_job"
    assert "mlops_network" in container["NetworkSettings"]["Networks"]
    mounts = {m["Name"]: m["Destination"] for m in container["Mounts"] if m["Type"] == "volume"}
    assert mounts.get("mlops_data") == "/opt/mlops", mounts
    # Not the code server, not the daemon: a container of its own.
    assert container["Id"] not in {stack.container(s) for s in ("user_code", "daemon")}

    # Its events landed in the stack's PostgreSQL.
    events = [
        row[0]
        for row in stack.psql(
            f"SELECT dagster_event_type FROM event_logs WHERE run_id = '{run_id}' "
            "AND dagster_event_type IS NOT NULL ORDER BY id"
        )
    ]
    for once in ("PIPELINE_ENQUEUED", "PIPELINE_STARTING", "PIPELINE_START", "PIPELINE_SUCCESS"):
        assert events.count(once) == 1, (once, events)
    assert "ASSET_MATERIALIZATION" in events and "STEP_FAILURE" not in events
    # Promotion is the last step on the stack too: the Bento, its application test, then production_release.
    done = step_events(stack, run_id, "STEP_SUCCESS")
    assert done.index("bento") < done.index("bento_bento_application_test") < done.index("production_release"), done


def test_the_bento_container_classifies_an_image_with_the_promoted_model(stack):
    import httpx

    url = f"http://127.0.0.1:{stack.bento_port}"
    # The service restarts until build_job has promoted a first model, then serves it.
    wait_until(
        lambda: httpx.get(f"{url}/readyz", timeout=5).status_code == 200,
        300,
        f"the Bento service to be ready\n{stack.service_logs()}",
        interval=2,
    )
    info = httpx.get(f"{url}/model", timeout=10).json()
    assert info["follow_production"] is True and info["production_version"], info
    image = {"image": ("zero.png", png_of_a_digit(), "image/png")}
    assert httpx.post(f"{url}/classify_image", timeout=30, files=image).status_code == 401  # access control is on
    response = httpx.post(
        f"{url}/classify_image", timeout=30, files=image, headers={"Authorization": f"Bearer {stack.api_token()}"}
    )
    assert response.status_code == 200, response.text
    prediction = response.json()
    assert prediction["model_version"] == info["production_version"], (prediction, info)
    assert prediction["class_name"] == info["class_names"][prediction["label"]] == "0", prediction
    assert inspect(stack.container("bento"))["State"]["Running"]


def test_every_long_running_service_reports_healthy(stack):
    """Each service's health check passes (deploy/healthcheck.sh: the daemon's heartbeats, the code server's gRPC
    health, the webserver's and the Bento's HTTP), so a failing one is a real fault."""
    def all_healthy() -> bool:
        return all(stack.health(service) == "healthy" for service in COMPOSE["services"])

    wait_until(all_healthy, 180, f"every service healthy\n{stack.service_logs()}", interval=2)


def test_the_public_service_reaches_none_of_the_internals(stack):
    """The Bento container is on its own network: the webserver (GraphQL: launch runs, approve models), the gRPC
    code server and PostgreSQL refuse it by name and by address, while the same probe from the daemon connects."""
    for service, port in INTERNALS.items():
        address = stack.address(service, NETWORK)
        assert stack.reaches("daemon", address, port), f"the probe cannot reach {service} even from the daemon"
        for host in (service, address):
            assert not stack.reaches("bento", host, port), f"the Bento container reaches {service} at {host}:{port}"


def test_the_daemon_logs_in_to_postgres(stack):
    entrypoint = inspect(stack.container("daemon"))["Config"]["Entrypoint"] or []
    runs = stack.exec_in("daemon", *entrypoint, "python3", "-c", PG_LOGIN)
    assert int(runs.splitlines()[-1]) >= 1, runs  # build_job's run, at least


def stack_containers(stack: DockerStack) -> dict[str, str]:
    """Every container of the stack by a readable name: the compose services, then the run containers."""
    containers = {service: stack.container(service) for service in COMPOSE["services"]}
    containers.update({f"run container {cid}": cid for cid in stack.all_run_containers()})
    return containers


def test_every_container_runs_as_a_user_without_root_or_capabilities(stack):
    runs = stack.all_run_containers()
    assert runs, "no run container to look at (build_job runs first)"
    for service in COMPOSE["services"]:
        assert stack.exec_in(service, "id", "-u") != "0", f"{service} runs as root"
    for run in runs:  # exited: what it ran as is its configuration (the image's USER unless overridden)
        assert inspect(run)["Config"]["User"] not in ("", "0", "root", "0:0"), f"run container {run} runs as root"
    for name, cid in stack_containers(stack).items():
        host = inspect(cid)["HostConfig"]
        assert "ALL" in (host["CapDrop"] or []), f"{name} keeps its capabilities: {host['CapDrop']}"
        assert any(opt.startswith("no-new-privileges") for opt in host["SecurityOpt"] or []), name


def test_docker_inspect_shows_no_secret(stack):
    """Neither the PostgreSQL password nor the service's token is in any container's configuration (environment,
    command, labels): they reach the processes as files (Compose secrets, and a volume for run containers)."""
    secrets = {name: stack.secret(name) for name in ("dagster_pg_password", "mlops_api_token")}
    assert all(len(value) >= 16 for value in secrets.values()), "stack.sh writes random secrets"
    for name, cid in stack_containers(stack).items():
        described = docker("inspect", cid)
        for secret, value in secrets.items():
            assert value not in described, f"docker inspect of {name} shows {secret}"


def step_events(stack: DockerStack, run_id: str, event_type: str) -> list[str]:
    return [
        row[0]
        for row in stack.psql(
            f"SELECT step_key FROM event_logs WHERE run_id = '{run_id}' AND dagster_event_type = '{event_type}' "
            "ORDER BY id"
        )
    ]


def step_failures(stack: DockerStack, run_id: str) -> list[str]:
    return [
        row[0]
        for row in stack.psql(
            "SELECT replace(event, E'\\n', ' ') FROM event_logs "
            f"WHERE run_id = '{run_id}' AND dagster_event_type = 'STEP_FAILURE'"
        )
    ]


def test_retrain_job_builds_the_bento_in_its_own_container_without_a_package_index(stack):
    """retrain_job, what the drift sensor launches, includes the bento asset: `bentoml build` and the
    Bento's application test run inside the run container, which reaches no package index here."""
    run_id = stack.submit("retrain_job", FAST_BUILD)
    status = stack.wait_run(run_id, timeout=900)
    assert status == "SUCCESS", step_failures(stack, run_id) or stack.service_logs()
    container = exited_run_container(stack, run_id)
    assert container["State"]["ExitCode"] == 0
    assert container["Config"]["Labels"]["dagster/job_name"] == "retrain_job"
    done = step_events(stack, run_id, "STEP_SUCCESS")
    assert "bento" in done and "production_release" in done, done


def run_failure_messages(stack: DockerStack, run_id: str) -> list[str]:
    return [
        row[0]
        for row in stack.psql(
            "SELECT replace(event::json->'dagster_event'->>'message', E'\\n', ' ') FROM event_logs "
            f"WHERE run_id = '{run_id}' AND dagster_event_type = 'PIPELINE_FAILURE'"
        )
    ]


def retries_of(stack: DockerStack, run_id: str) -> dict[str, str]:
    """The runs re-executing ``run_id`` (its run group below it), by id, with their status."""
    rows = stack.psql(
        "SELECT r.run_id, r.status FROM runs r JOIN run_tags t ON t.run_id = r.run_id "
        f"WHERE t.key = 'dagster/root_run_id' AND t.value = '{run_id}'"
    )
    return dict((run, status) for run, status in rows)


def automatic_retry(stack: DockerStack, run_id: str, timeout: float = 60) -> str:
    """The run Dagster's run retries (deploy/dagster.yaml, run_retries) launched for the failed ``run_id``."""
    return wait_until(
        lambda: stack.run_tag(run_id, "dagster/auto_retry_run_id"), timeout, f"the automatic retry of {run_id}"
    )


def test_a_failed_step_is_not_retried(stack):
    """A real failure (an asset raising) is for a person to read: run retries skip it
    (retry_on_asset_or_op_failure: false). export_feedback_job refuses the digits dataset with a Failure."""
    run_id = stack.submit("export_feedback_job")
    assert stack.wait_run(run_id, timeout=300) == "FAILURE"
    wait_until(lambda: stack.run_tag(run_id, "dagster/will_retry"), 60, "the retry decision")
    assert stack.run_tag(run_id, "dagster/failure_reason") == "STEP_FAILURE"
    assert stack.run_tag(run_id, "dagster/will_retry") == "false"
    holds_for(lambda: not retries_of(stack, run_id), 3 * DEQUEUE_SECONDS + 2, "no retry of a failed step")


def worker_log_counts(log: str, run_id: str) -> Counter:
    """What the run worker printed, event by event: its console logger writes one line per event
    (``... - <run_id> - <pid> - [<step> - ]<EVENT_TYPE> - <message>``), and the training epochs as debug messages."""
    counts: Counter = Counter()
    for line in log.splitlines():
        if f" - {run_id} - " not in line:
            continue
        if event := re.search(rf" - {run_id} - \d+ - (?:[\w.\[\]]+ - )?([A-Z_]+) - ", line):
            counts[event.group(1)] += 1
        elif re.search(r" - trial \d+ lr=\S+ hidden=\S+ epoch \d+: ", line):
            counts["epoch"] += 1
    return counts


def stored_counts(stack: DockerStack, run_id: str, kinds: set[str]) -> Counter:
    """The same kinds of events as stored in the stack's PostgreSQL: the worker's, and the webserver's and daemon's
    for the run (the console's event names are Dagster's current ones: RUN_* where the table says PIPELINE_*)."""
    counts: Counter = Counter()
    for kind, number in stack.psql(
        "SELECT coalesce(dagster_event_type, "
        "CASE WHEN event ~ 'trial [0-9]+ lr=[^ ]+ hidden=[^ ]+ epoch [0-9]+: ' THEN 'epoch' END), count(*) "
        f"FROM event_logs WHERE run_id = '{run_id}' GROUP BY 1"
    ):
        kind = kind.replace("PIPELINE_", "RUN_")
        if kind in kinds:
            counts[kind] = int(number)
    return counts


def test_a_killed_run_container_is_retried_from_failure_and_a_postgres_restart_mid_run_loses_no_event(stack):
    """Two faults in sequence on one run: its container killed mid-training (as an OOM kill or a lost host
    would), then PostgreSQL restarted while the automatic retry trains."""
    # A training configuration of its own, so trained_model really trains (long enough to be killed).
    run_id = stack.submit("build_job", SLOW_BUILD)
    wait_until(
        lambda: "trained_model" in step_events(stack, run_id, "STEP_START"), 300, "trained_model to start", interval=0.5
    )
    (container,) = stack.run_containers(run_id)
    docker("kill", container["Id"])
    killed = time.monotonic()

    # Run monitoring (deploy/dagster.yaml: every 15 s) finds the dead container and fails the run.
    assert stack.wait_run(run_id, timeout=180) == "FAILURE", stack.service_logs()
    reasons = run_failure_messages(stack, run_id)
    assert len(reasons) == 1, reasons
    assert "Detected run worker status FAILED" in reasons[0] and "Container status is exited" in reasons[0], reasons
    assert '"ExitCode": 137' in reasons[0], reasons  # SIGKILL
    assert "trained_model" not in step_events(stack, run_id, "STEP_SUCCESS")

    # Not a failed step: run retries re-execute it from failure, once, in a new container.
    child = automatic_retry(stack, run_id)
    assert stack.run_tag(child, "dagster/parent_run_id") == run_id
    wait_until(lambda: "trained_model" in step_events(stack, child, "STEP_START"), 300, "the retry to train")

    # PostgreSQL restarted while the retry trains and logs each epoch: a fast shutdown (STOPSIGNAL SIGINT), back
    # in seconds, and the run's writes in between wait for it (Dagster retries a lost connection for ~6 s).
    wait_until(lambda: stored_counts(stack, child, {"epoch"})["epoch"] >= 2, 120, "two epochs logged")
    postgres = stack.container("postgres")
    restarted = time.monotonic()
    since = docker("info", "--format", "{{json .SystemTime}}").strip('"')
    docker("restart", postgres)
    wait_until(lambda: stack.health("postgres") == "healthy", 120, "PostgreSQL healthy again", interval=0.5)
    print(f"PostgreSQL restart: healthy again after {time.monotonic() - restarted:.1f} s")
    log = subprocess.run(["docker", "logs", "--since", since, postgres], capture_output=True, text=True).stderr
    assert "received fast shutdown request" in log and "database system is shut down" in log, log
    assert "not properly shut down" not in log and "automatic recovery" not in log, log  # no crash recovery
    # The webserver takes a run at once: no stale pooled connection (--db-pool-recycle 0) fails its first write.
    after_restart = stack.submit(QUICK_JOB)

    assert stack.wait_run(child, timeout=900) == "SUCCESS", step_failures(stack, child) or stack.service_logs()
    assert stack.wait_run(after_restart, timeout=300) == "SUCCESS", stack.service_logs()
    print(f"killed run container: its retry succeeded {time.monotonic() - killed:.0f} s after the kill")
    assert retries_of(stack, run_id) == {child: "SUCCESS"}  # one retry, one success
    worker = exited_run_container(stack, child)
    assert worker["State"]["ExitCode"] == 0
    # No event lost: every event the run worker printed, the epochs' messages included, is in PostgreSQL.
    logs = subprocess.run(["docker", "logs", worker["Id"]], capture_output=True, text=True)
    printed = worker_log_counts(logs.stdout + logs.stderr, child)
    assert printed["epoch"] > 2 and printed["STEP_SUCCESS"] > 1, printed
    stored = stored_counts(stack, child, set(printed))
    assert all(stored[kind] >= number for kind, number in printed.items()), (printed, stored)  # the daemon's too
    started = step_events(stack, child, "STEP_START")
    assert "trained_model" in started, started
    # What succeeded before the kill is reused, not recomputed.
    done_before = set(step_events(stack, run_id, "STEP_SUCCESS"))
    assert done_before and not done_before & set(started), (done_before, started)


def test_a_run_queued_while_the_daemon_container_is_dead_starts_when_it_is_back(stack):
    daemon = stack.container("daemon")
    docker("kill", daemon)
    assert not inspect(daemon)["State"]["Running"]
    run_id = stack.submit(QUICK_JOB)  # the webserver still takes it: into the queue
    # A killed container stays down (a kill is a manual stop for `restart: unless-stopped`):
    # nobody dequeues, the run waits in PostgreSQL.
    holds_for(lambda: stack.run_status(run_id) == "QUEUED", 3 * DEQUEUE_SECONDS + 2, "the run queued without a daemon")

    docker("start", daemon)
    stack.wait_run(run_id, timeout=180, statuses={"STARTING", "STARTED", "SUCCESS"})
    assert stack.wait_run(run_id, timeout=600) == "SUCCESS", stack.service_logs()
    assert exited_run_container(stack, run_id)["State"]["ExitCode"] == 0
    stack.wait_daemon()


def test_a_daemon_killed_between_creating_and_starting_a_run_container_ends_in_one_success(stack):
    """The daemon dies mid-launch: the run's container created, never started, the run STARTING. Run monitoring
    fails it at the start timeout, run retries launch it again, the launch removes the orphan container.

    To die exactly there, the daemon is held between the two: the table it writes the container's id to
    (run_tags, after creating the container and before starting it) is locked for writes while it launches."""
    daemon = stack.container("daemon")
    restarts = inspect(daemon)["RestartCount"]
    docker("pause", daemon)  # no dequeue until the lock is held
    try:
        run_id = stack.submit(QUICK_JOB)
        with stack.writes_blocked("run_tags"):
            docker("unpause", daemon)

            def created() -> dict | None:
                containers = stack.run_containers(run_id)
                return containers[0] if containers and containers[0]["State"]["Status"] == "created" else None

            orphan = wait_until(created, 60, "the run's container to be created", interval=0.2)
            # The daemon process dies (killed, as the kernel's OOM killer would): its init ends the container.
            died = time.monotonic()
            stack.exec_in("daemon", "sh", "-c", "kill -KILL $(cat /tmp/mlops-main.pid)")
            # Back by itself: `restart: unless-stopped` (the process died, nobody stopped the container).
            wait_until(lambda: inspect(daemon)["RestartCount"] > restarts, 60, "the daemon container to restart")
            print(f"daemon killed mid-launch: its container restarted after {time.monotonic() - died:.1f} s")
    finally:
        if inspect(daemon)["State"]["Paused"]:
            docker("unpause", daemon)
    assert stack.run_status(run_id) == "STARTING"
    assert inspect(orphan["Id"])["State"]["Status"] == "created"  # never started
    stack.wait_daemon()

    assert stack.wait_run(run_id, timeout=START_TIMEOUT + 4 * MONITORING_POLL) == "FAILURE", stack.service_logs()
    assert stack.run_tag(run_id, "dagster/failure_reason") == "START_TIMEOUT"
    retry = automatic_retry(stack, run_id)
    assert stack.wait_run(retry, timeout=600) == "SUCCESS", stack.service_logs()
    print(f"daemon killed mid-launch: the request's run succeeded {time.monotonic() - died:.0f} s after")
    assert retries_of(stack, run_id) == {retry: "SUCCESS"}  # exactly one success for the request
    assert stack.run_containers(run_id) == []  # the orphan was removed when the retry was launched
    assert not docker("ps", "-aq", "--filter", f"label={RUN_LABEL}", "--filter", "status=created")
    assert exited_run_container(stack, retry)["State"]["ExitCode"] == 0


def test_a_frozen_bento_service_is_restarted_by_its_health_check(stack):
    """SIGSTOP on the service's main process (BentoML's supervisor: its workers go on answering): the health check
    sees it stopped, kills it after three checks, and the restart policy starts the container again."""
    import httpx

    bento = stack.container("bento")
    wait_until(lambda: stack.health("bento") == "healthy", 120, "the Bento container healthy", interval=1)
    restarts = inspect(bento)["RestartCount"]
    stack.exec_in("bento", "sh", "-c", "kill -STOP $(cat /tmp/mlops-main.pid)")
    frozen = time.monotonic()
    wait_until(lambda: inspect(bento)["RestartCount"] > restarts, BENTO_RESTART_WITHIN, "the restart", interval=1)
    restarted = time.monotonic() - frozen
    url = f"http://127.0.0.1:{stack.bento_port}"
    wait_until(lambda: httpx.get(f"{url}/readyz", timeout=5).status_code == 200, 180, "the Bento ready", interval=1)
    print(f"Bento frozen: restarted after {restarted:.0f} s, serving again after {time.monotonic() - frozen:.0f} s")
    assert httpx.get(f"{url}/model", timeout=10).json()["production_version"]


def test_deploy_down_leaves_no_container_network_or_volume(stack):
    started = time.monotonic()
    stack.down()
    print(f"deploy-down: {time.monotonic() - started:.0f} s")
    assert leftovers() == {"containers": [], "networks": [], "volumes": []}
