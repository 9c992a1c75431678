"""What the service answers with, in Dagster: an observation of ``served_model`` each time it changes.

The production pointer says what *should* serve; only the running service says what does (a swap can fail, a
service can pin its Bento). Every tick asks the service's ``GET /model`` (MLOPS_SERVICE_URL) or, when that
setting is empty (the Docker stack, where the service's network is closed to Dagster), reads the status its
workers write to the artifact volume (:mod:`mlops_assets.core.serving.serving_status`); when the version
it reports (or the moment it loaded it, or the shadow it mirrors requests to) differs from the last one observed,
the sensor records an
``AssetObservation`` of ``served_model``: the version, since when, by which registry decision, the run that
built it, the gate's figures and the release test, and the release timeline (window judged → run launched →
gate → release test → promoted → served), each line linking to its run or asset. A service that does not answer
is a skipped tick with the reason, never a failure: the loop goes on without it.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from mlops_assets.core.common import settings
from resources.artifact_store import ArtifactStore
from resources.model_registry import ModelRegistryResource
from sensors.cadence import monitoring_sensor

SERVED_MODEL = dg.AssetSpec(
    "served_model",
    group_name="deploy",
    kinds={"bentoml"},
    code_version="1",
    description=(
        "The model version the running service reports it answers with (its GET /model), since when, by which "
        "registry decision, and the release timeline that led to it. Observed by served_model_sensor; the "
        "production pointer alone says what should serve, this says what does."
    ),
)


def ask_service(url: str, artifact_root: str) -> dict[str, Any] | str:
    """The service's /model (or, without a URL, its workers' status files), or why it could not be read."""
    import httpx

    if not url:
        from mlops_assets.core.serving.serving_status import read_statuses

        return read_statuses(artifact_root).served()
    try:
        answer = httpx.get(f"{url}/model", timeout=3.0)
        answer.raise_for_status()
        return answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        return f"the service at {url} did not answer GET /model ({type(exc).__name__}: {exc})"


def shadow_of(served: dict[str, Any]) -> str | None:
    """The version the service mirrors requests to (its shadow), from ``GET /model`` or a worker's status file."""
    shadow = served.get("shadow")
    return shadow.get("version") if isinstance(shadow, dict) else served.get("shadow_version")


def served_observation(
    instance: dg.DagsterInstance, registry, served: dict[str, Any], service_url: str
) -> dg.AssetObservation:
    from mlops_assets.deploy_stage.release_timeline import release_timeline, timeline_markdown

    steps, facts = release_timeline(instance, registry, served, service_url)
    return dg.AssetObservation(
        asset_key=SERVED_MODEL.key,
        description=f"the service answers with {facts['served_version']} since {facts['served_since'][:19]}"
        + (f"; {shadow_of(served)} scores the same requests in the shadow" if shadow_of(served) else ""),
        metadata={
            "served_version": facts["served_version"],
            "served_since": facts["served_since"],
            "decision": dg.MetadataValue.md(facts["decision"]),
            "dagster_run": dg.MetadataValue.md(f"[{facts['run_id'][:8]}](/runs/{facts['run_id']})")
            if facts["run_id"] != "none"
            else "none",
            "production_pointer": served.get("production_version") or "none",
            "shadow_version": shadow_of(served) or "none",
            "source": served.get("source", ""),
            "swap_error": served.get("swap_error") or "none",
            "release_timeline": dg.MetadataValue.md(timeline_markdown(steps)),
            "service": dg.MetadataValue.url(f"{service_url}/model") if service_url.startswith("http")
            else dg.MetadataValue.path(service_url),
        },
    )


def evaluate_serving_tick(
    instance: dg.DagsterInstance, registry, service_url: str, cursor: str | None, artifact_root: str = ""
) -> dg.SensorResult:
    served = ask_service(service_url, artifact_root)
    if not service_url:  # what the observation links to: the workers' status files
        from mlops_assets.core.serving.serving_status import status_dir

        service_url = str(status_dir(artifact_root))
    if isinstance(served, str):
        return dg.SensorResult(skip_reason=served)
    shadow = shadow_of(served)
    seen = f"{served['version']}@{served.get('loaded_at', '')}" + (f"+shadow:{shadow}" if shadow else "")
    if seen == cursor:
        return dg.SensorResult(skip_reason=f"the service still answers with {served['version']}"
                               + (f" (shadow: {shadow})" if shadow else ""))
    if not registry.exists() or served["version"] not in {v.version for v in registry.list_versions()}:
        return dg.SensorResult(
            skip_reason=f"the service answers with {served['version']}, which this registry "
            f"({registry.store_path}) does not hold"
        )
    return dg.SensorResult(asset_events=[served_observation(instance, registry, served, service_url)], cursor=seen)


@monitoring_sensor(
    name="served_model_sensor",
    description=(
        "Asks the running service (MLOPS_SERVICE_URL; when empty, its workers' status files on the artifact "
        "volume) which version it answers with; on a change, records an "
        "observation of served_model with the decision, the gate's figures, the release test and the release "
        "timeline."
    ),
)
def served_model_sensor(context: dg.SensorEvaluationContext, model_registry: ModelRegistryResource,
                        artifact_store: ArtifactStore):
    return evaluate_serving_tick(
        context.instance, model_registry.registry(), settings.resolve(settings.SERVICE_URL).rstrip("/"),
        context.cursor, str(artifact_store.root_path),
    )
