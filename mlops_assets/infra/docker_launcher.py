"""Dagster's DockerRunLauncher, plus container settings chosen by a run's tags.

DockerRunLauncher gives every run the same ``container_kwargs``. Training wants a GPU of the Docker
host, and only training: a run tagged ``mlops/gpu=1`` (``build_job`` or ``retrain_job`` launched with
that tag from the launchpad, or a job that carries it) gets the extra keyword arguments configured for
that tag in deploy/dagster.yaml, e.g. a GPU device request, merged over the launcher's own (keys
replace, as Dagster merges container contexts). Every other run is launched exactly as
DockerRunLauncher launches it.

DockerRunLauncher never removes a container: a run that ends keeps its exited container, and a launch the
daemon did not finish (it died between creating the container and starting it) leaves one in "created"
for good. So before each launch this launcher removes the containers of the runs the instance knows to be
finished (success, failure, canceled), whatever state they are in short of running: a run's container stays
until the next launch (its exit code and ``docker logs`` can be read), then goes. Containers of runs
unknown to this instance (another stack on the same engine) are left alone. Loaded by the webserver, the
daemon and the run containers, so it imports only Dagster and dagster-docker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dagster import Array, DagsterRun, Field, Permissive, RunsFilter, Shape, StringSource, get_dagster_logger
from dagster_docker import DockerRunLauncher
from dagster_docker.container_context import DockerContainerContext
from dagster_docker.docker_run_launcher import DOCKER_CONFIG_SCHEMA

GPU_TAG = "mlops/gpu"
RUN_ID_LABEL = "dagster/run_id"  # DockerRunLauncher labels every run container with its run's id
# A container in one of these states runs nothing: removing it loses no work.
IDLE_STATES = ("created", "exited", "dead")

TAGGED_CONTAINER_KWARGS = Field(
    Array(Shape({"tag": Field(StringSource), "value": Field(StringSource),
                 "container_kwargs": Field(Permissive())})),
    is_required=False,
    description="Extra docker-py containers.create() arguments for runs carrying tag=value.",
)


def container_kwargs_for_tags(rules: Sequence[Mapping[str, Any]], tags: Mapping[str, str]) -> dict[str, Any]:
    """The extra container arguments of every rule whose tag the run carries with that value, in order."""
    extra: dict[str, Any] = {}
    for rule in rules:
        if tags.get(rule["tag"]) == rule["value"]:
            extra.update(rule["container_kwargs"])
    return extra


class TaggedDockerRunLauncher(DockerRunLauncher):
    """DockerRunLauncher with ``tagged_container_kwargs``: per-tag additions to ``container_kwargs``."""

    def __init__(self, inst_data=None, tagged_container_kwargs=None, **docker_config) -> None:
        super().__init__(inst_data=inst_data, **docker_config)
        self.tagged_container_kwargs = list(tagged_container_kwargs or [])

    @classmethod
    def config_type(cls):
        return {**DOCKER_CONFIG_SCHEMA, "tagged_container_kwargs": TAGGED_CONTAINER_KWARGS}

    def get_container_context(self, dagster_run: DagsterRun) -> DockerContainerContext:
        context = super().get_container_context(dagster_run)
        extra = container_kwargs_for_tags(self.tagged_container_kwargs, dagster_run.tags)
        return context.merge(DockerContainerContext(container_kwargs=extra)) if extra else context

    def remove_finished_run_containers(self) -> list[str]:
        """Remove the idle containers of this instance's finished runs; returns their ids."""
        import docker

        client = docker.from_env()
        idle = client.containers.list(all=True, filters={"label": RUN_ID_LABEL, "status": list(IDLE_STATES)})
        if not idle:
            return []
        run_ids = sorted({container.labels[RUN_ID_LABEL] for container in idle})
        finished = {run.run_id for run in self._instance.get_runs(RunsFilter(run_ids=run_ids)) if run.is_finished}
        removed = []
        for container in idle:
            if container.labels[RUN_ID_LABEL] in finished:
                try:
                    container.remove()
                except docker.errors.APIError as exc:  # removed meanwhile, or being removed: the next launch retries
                    get_dagster_logger().warning(f"could not remove run container {container.short_id}: {exc}")
                    continue
                removed.append(container.id)
        return removed

    def _remove_before_launch(self) -> None:
        # Housekeeping: a launch never fails because an old container could not be removed.
        try:
            removed = self.remove_finished_run_containers()
        except Exception as exc:  # the engine unreachable: the launch itself will say so
            get_dagster_logger().warning(f"could not remove the containers of finished runs: {exc}")
            return
        if removed:
            get_dagster_logger().info(f"removed {len(removed)} container(s) of finished runs")

    def launch_run(self, context) -> None:
        self._remove_before_launch()
        super().launch_run(context)

    def resume_run(self, context) -> None:
        self._remove_before_launch()
        super().resume_run(context)
