"""The run launcher removes the containers of finished runs before each launch (deploy/dagster.yaml's
TaggedDockerRunLauncher), on this machine's real Docker engine: the containers are real, made from an
empty image imported here, labelled as DockerRunLauncher labels them, and never started, as the container
of a launch the daemon did not finish. Needs a Docker engine (root: deploy/scripts/start_engine.sh); with
CI=1 a missing engine fails instead of skipping.
"""

import os
import subprocess
import uuid

import pytest

from testkit.docker_stack import RUN_LABEL, docker, engine_problem

EMPTY_IMAGE = "mlops-test-empty:latest"


@pytest.fixture(scope="module")
def empty_image():
    problem = engine_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"{problem}; CI must run the Docker tests (.ci/run starts the engine)")
        pytest.skip(problem)
    empty_tar = subprocess.run(["tar", "cf", "-", "--files-from", "/dev/null"], capture_output=True, check=True)
    subprocess.run(["docker", "import", "-", EMPTY_IMAGE], input=empty_tar.stdout, capture_output=True, check=True)
    yield EMPTY_IMAGE
    docker("image", "rm", "-f", EMPTY_IMAGE, check=False)


def test_only_the_idle_containers_of_finished_runs_are_removed(empty_image):
    from dagster import DagsterInstance, DagsterRun, DagsterRunStatus

    from mlops_assets.infra.docker_launcher import TaggedDockerRunLauncher

    instance = DagsterInstance.ephemeral()
    launcher = TaggedDockerRunLauncher()
    launcher.register_instance(instance)
    runs = {status: DagsterRun(job_name="build_job", run_id=str(uuid.uuid4()), status=status)
            for status in (DagsterRunStatus.FAILURE, DagsterRunStatus.SUCCESS, DagsterRunStatus.STARTING)}
    for run in runs.values():
        instance.add_run(run)
    unknown = str(uuid.uuid4())  # a run of another instance on the same engine
    test_label = f"mlops-test={uuid.uuid4().hex}"
    containers = {
        key: docker("create", "--label", f"{RUN_LABEL}={run_id}", "--label", test_label, empty_image, "/never-started")
        for key, run_id in [*((status.value, run.run_id) for status, run in runs.items()), ("unknown", unknown)]
    }
    try:
        removed = launcher.remove_finished_run_containers()
        left = set(docker("ps", "-aq", "--no-trunc", "--filter", f"label={test_label}").split())
        assert set(removed) == {containers["FAILURE"], containers["SUCCESS"]}, (removed, containers)
        assert left == {containers["STARTING"], containers["unknown"]}, (left, containers)
        assert launcher.remove_finished_run_containers() == []  # nothing more to do
    finally:
        docker("rm", "-f", *containers.values(), check=False)
