"""served_model: what the running service reports, with the decision and the release timeline, in Dagster."""

from __future__ import annotations

import dagster as dg
import pytest

from mlops_assets.automation import rollback_job
from mlops_assets.deploy_stage.release_timeline import STEPS
from resources.model_registry import ModelRegistryResource
from sensors.serving_sensor import evaluate_serving_tick
from tests import serving_fixtures
from tests.serving_fixtures import MODEL_NAME, make_production, wait_for_version

serving_world = serving_fixtures.serving_world
dev_server = serving_fixtures.dev_server

pytestmark = pytest.mark.slow


def test_served_model_names_the_version_the_service_reports_and_the_decision_behind_it(serving_world, dev_server):
    make_production(serving_world, "v1", "test: setup")
    make_production(serving_world, "v2", "test: to undo")
    instance = dg.DagsterInstance.ephemeral()
    rollback = rollback_job.execute_in_process(
        resources={"model_registry": ModelRegistryResource(home=str(serving_world.home), model_name=MODEL_NAME)},
        run_config={"ops": {"rollback_production": {"config": {"reason": "bad release: wrong answers"}}}},
        instance=instance,
    )
    assert rollback.success
    with serving_fixtures.client(dev_server) as client:
        reported = wait_for_version(client, "v1")

    result = evaluate_serving_tick(instance, serving_world.registry, dev_server, cursor=None)
    (observation,) = result.asset_events
    meta = {k: v.value for k, v in observation.metadata.items()}
    assert observation.asset_key == dg.AssetKey("served_model")
    assert meta["served_version"] == reported["version"] == "v1"
    assert meta["served_since"] == reported["loaded_at"]
    assert "rollback v2 → v1" in meta["decision"] and "bad release" in meta["decision"]
    timeline = meta["release_timeline"]
    positions = [timeline.index(f"| {step} |") for step in STEPS]
    assert positions == sorted(positions), timeline
    assert f"/runs/{rollback.run_id}" in timeline  # the promoted line links to the run that made it production
    assert f"{dev_server}/model" in timeline

    again = evaluate_serving_tick(instance, serving_world.registry, dev_server, cursor=result.cursor)
    assert not again.asset_events and "still answers with v1" in again.skip_reason.skip_message


def test_a_service_that_does_not_answer_is_a_skipped_tick(serving_world):
    result = evaluate_serving_tick(
        dg.DagsterInstance.ephemeral(), serving_world.registry, "http://127.0.0.1:9", cursor=None
    )
    assert not result.asset_events and "did not answer GET /model" in result.skip_reason.skip_message


def test_without_a_url_the_sensor_reads_what_the_service_s_workers_wrote_to_the_artifact_volume(
    serving_world, dev_server
):
    """The Docker stack's case: Dagster cannot reach the service's network, but shares its artifact volume."""
    make_production(serving_world, "v1", "test: served through the volume")
    with serving_fixtures.client(dev_server) as client:
        reported = wait_for_version(client, "v1")
    artifact_root = serving_world.home.parent / "artifacts"
    instance = dg.DagsterInstance.ephemeral()
    result = evaluate_serving_tick(instance, serving_world.registry, "", cursor=None, artifact_root=str(artifact_root))
    (observation,) = result.asset_events
    meta = {k: v.value for k, v in observation.metadata.items()}
    assert meta["served_version"] == reported["version"] == "v1"
    assert meta["served_since"] == reported["loaded_at"]
    assert str(artifact_root / "serving") in meta["release_timeline"]
    gone = evaluate_serving_tick(instance, serving_world.registry, "", cursor=None,
                                 artifact_root=str(serving_world.home / "elsewhere"))
    assert not gone.asset_events and "no worker of the service has reported" in gone.skip_reason.skip_message


def test_the_observation_names_the_shadow_and_a_new_shadow_is_observed(serving_world, tmp_path):
    """A worker's status names the version its shadow mirror scores with (issue 37); the sensor shows it, and a
    shadow set or cleared is a change it observes, though the served version stays."""
    import time

    from mlops_assets.core.serving.serving_status import status_path, write_status

    make_production(serving_world, "v1", "test: served with a shadow")
    loaded_at = "2026-12-03T08:00:00"
    worker = {"version": "v1", "tag": f"{MODEL_NAME}:v1", "loaded_at": loaded_at, "source": "production",
              "production_version": "v1", "swap_error": None, "worker_pid": 1}
    instance = dg.DagsterInstance.ephemeral()

    def tick(shadow, cursor):
        write_status(status_path(tmp_path, "h", 1), {**worker, "shadow_version": shadow}, now=time.time())
        return evaluate_serving_tick(instance, serving_world.registry, "", cursor=cursor, artifact_root=str(tmp_path))

    first = tick("v2", None)
    (observation,) = first.asset_events
    assert observation.metadata["shadow_version"].value == "v2" and "v2 scores the same requests" in (
        observation.description)
    same = tick("v2", first.cursor)
    assert not same.asset_events and "shadow: v2" in same.skip_reason.skip_message
    cleared = tick(None, first.cursor)
    (observation,) = cleared.asset_events
    assert observation.metadata["shadow_version"].value == "none" and cleared.cursor != first.cursor
