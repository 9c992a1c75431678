"""The resources every stage is wired with, each field fed by its setting in the one table
(``mlops_assets/core/common/settings.py``).

:data:`WIRING` says which setting feeds which resource field. A field whose variable is set reaches Dagster as an
``EnvVar`` (``EnvVar.int`` for an int field), so the UI names the variable and a run reads the value when it starts;
Dagster carries ``EnvVar`` into str and int fields only, so a float, flag or choice field gets the value resolved
at load (environment, ``.env``, default), as does every field whose variable is not set: ``dagster dev`` works on
a fresh clone with nothing set. Every value is checked here at load, so a malformed variable is an error naming it.
docs/settings.md lists which fields are which (generated from :data:`WIRING`).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from mlops_assets.core.common import settings
from resources.alerts import AlertSink
from resources.artifact_store import ArtifactStore
from resources.dataset_source import DatasetSource
from resources.drift_policy import DriftPolicy
from resources.model_registry import ModelRegistryResource
from resources.performance_policy import PerformancePolicy
from resources.service_auth import ServiceAuth

# resource key → (its class, {field: the setting that feeds it}). A new setting a resource reads is one entry here.
WIRING: dict[str, tuple[type[dg.ConfigurableResource], dict[str, str]]] = {
    "artifact_store": (ArtifactStore, {"root": settings.ARTIFACT_ROOT}),
    "dataset_source": (DatasetSource, {
        "kind": settings.DATASET_KIND, "path": settings.IMAGE_FOLDER, "height": settings.IMAGE_HEIGHT,
        "width": settings.IMAGE_WIDTH, "channels": settings.IMAGE_CHANNELS,
        "max_image_pixels": settings.MAX_IMAGE_PIXELS, "decode_workers": settings.DECODE_WORKERS,
    }),
    "model_registry": (ModelRegistryResource, {
        "home": settings.BENTOML_HOME, "model_name": settings.MODEL_NAME,
        "require_approval": settings.REQUIRE_APPROVAL, "release_policy": settings.RELEASE_POLICY,
    }),
    "drift_policy": (DriftPolicy, {
        "drift_share": settings.DRIFT_SHARE, "p_value": settings.DRIFT_P_VALUE, "distance": settings.DRIFT_DISTANCE,
        "min_rows": settings.DRIFT_MIN_ROWS, "cooldown_hours": settings.DRIFT_COOLDOWN_HOURS,
        "retrain_requires_new_data": settings.RETRAIN_REQUIRES_NEW_DATA,
        "blind_alert_minutes": settings.DRIFT_BLIND_ALERT_MINUTES, "retrain_run_config": settings.RETRAIN_RUN_CONFIG,
        "retrain_trigger": settings.RETRAIN_TRIGGER, "harm_points": settings.HARM_POINTS,
    }),
    "performance_policy": (PerformancePolicy, {
        "min_accuracy": settings.PERF_MIN_ACCURACY, "max_recall_gap": settings.PERF_MAX_RECALL_GAP,
        "min_labelled": settings.PERF_MIN_LABELLED, "min_class_labelled": settings.PERF_MIN_CLASS_LABELLED,
        "comparison_alpha": settings.COMPARISON_ALPHA,
    }),
    "service_auth": (ServiceAuth, {"api_token": settings.API_TOKEN}),
    "alert_sink": (AlertSink, {"file": settings.ALERT_FILE, "webhook_url": settings.ALERT_WEBHOOK_URL}),
}


def carries_envvar(resource: type[dg.ConfigurableResource], field: str) -> bool:
    """Whether Dagster can hand this field an ``EnvVar``: str and int fields only (no float, bool or choice)."""
    return resource.model_fields[field].annotation in (str, int)


def from_setting(resource: type[dg.ConfigurableResource], field: str, name: str):
    """The field's value: ``EnvVar(name)`` (``EnvVar.int`` for an int field) when the variable is set and the field
    can carry one, otherwise the value in force; either way the value is checked now (an error naming the
    variable)."""
    value = settings.value(name)
    if settings.is_set(name) and carries_envvar(resource, field):
        return dg.EnvVar.int(name) if resource.model_fields[field].annotation is int else dg.EnvVar(name)
    return value


def default_alert_file() -> str:
    return settings.resolve(settings.ALERT_FILE) or str(
        Path(settings.resolve(settings.ARTIFACT_ROOT)) / "alerts" / "alerts.jsonl"
    )


def default_resources() -> dict[str, object]:
    # What no single setting gives: where the geometry came from, and the alert file's default under the artifacts.
    derived = {
        "dataset_source": {"geometry_origin": settings.describe_origins(
            (settings.IMAGE_HEIGHT, settings.IMAGE_WIDTH, settings.IMAGE_CHANNELS))},
        "alert_sink": {} if settings.is_set(settings.ALERT_FILE) else {"file": default_alert_file()},
    }
    built: dict[str, object] = {
        key: resource(**{**{field: from_setting(resource, field, name) for field, name in fields.items()},
                         **derived.get(key, {})})
        for key, (resource, fields) in WIRING.items()
    }
    # Asset values are small references to versioned artifacts; keep them beside the artifacts.
    built["io_manager"] = dg.FilesystemIOManager(base_dir=f"{settings.resolve(settings.ARTIFACT_ROOT)}/dagster_io")
    return built
