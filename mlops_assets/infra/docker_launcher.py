"""Dagster's DockerRunLauncher, plus container settings chosen by a run's tags.

DockerRunLauncher gives every run the same ``container_kwargs``. Training wants a GPU of the Docker
host, and only training: a run tagged ``mlops/gpu=1`` (``build_job`` or ``retrain_job`` launched with
that tag from the launchpad, or a job that carries it) gets the extra keyword arguments configured for
that tag in deploy/dagster.yaml, e.g. a GPU device request, merged over the launcher's own (keys
replace, as Dagster merges container contexts). Every other run is launched exactly as
DockerRunLauncher launches it. Loaded by the webserver, the daemon and the run containers, so it
imports only Dagster and dagster-docker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dagster import Array, DagsterRun, Field, Permissive, Shape, StringSource
from dagster_docker import DockerRunLauncher
from dagster_docker.container_context import DockerContainerContext
from dagster_docker.docker_run_launcher import DOCKER_CONFIG_SCHEMA

GPU_TAG = "mlops/gpu"

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
