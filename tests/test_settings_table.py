"""One source for every default: the settings table (``mlops_assets/core/common/settings.py``) is what the docs show,
what the resources' fields default to, and what is in force when nothing is set; a variable that is set reaches Dagster
as an ``EnvVar`` wherever Dagster can carry one."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from mlops_assets.core.common import settings

ROOT = Path(__file__).resolve().parents[1]
IN_FORCE = """
import json
import dagster as dg
from mlops_assets.core.common import settings
from resources.defaults import WIRING, default_resources

with dg.build_resources(default_resources()) as built:
    fields = {f"{key}.{field}": getattr(getattr(built, key), field)
              for key, (_, wired) in WIRING.items() for field in wired}
print(json.dumps({"home": str(settings.mlops_home()), "settings": {n: settings.resolve(n) for n in settings.ALL},
                  "fields": fields}))
"""


def in_force(cwd: Path, **env: str) -> dict:
    """What a fresh process started in ``cwd`` with no setting in its environment (but ``env``) resolves, and the
    value each wired resource field has in a run."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "BENTOML_HOME", "DAGSTER_HOME"))}
    out = subprocess.run(
        [sys.executable, "-c", IN_FORCE],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        env={**clean, "PYTHONPATH": str(ROOT), **env},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def documented_defaults() -> dict[str, list[tuple[str, str]]]:
    """variable → [(page, the default its row shows)], from every docs table with a variable and a default column."""
    found: dict[str, list[tuple[str, str]]] = {}
    for page in sorted((ROOT / "docs").glob("*.md")):
        header = None
        for line in page.read_text().splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else None
            if cells is None:
                header = None
            elif header is None:
                header = cells
            elif "variable" in header and "default" in header and (m := re.fullmatch(r"`(\w+)`", cells[0])):
                found.setdefault(m.group(1), []).append((page.name, cells[header.index("default")]))
    return found


def as_value(name: str, shown: str, home: str):
    """A documented default (``—`` for empty, ``$MLOPS_HOME/…``, backticks) as the setting's value."""
    text = shown.strip("`")
    text = "" if text == "—" else text.replace("$MLOPS_HOME", home).removeprefix("./")
    if name == settings.MLOPS_HOME:
        text = str(Path(home))
    return settings.convert(name, text)


def test_every_setting_is_documented_with_the_default_in_force(tmp_path):
    force = in_force(tmp_path)
    documented = documented_defaults()
    assert sorted(set(settings.ALL) - set(documented)) == []
    wrong = {
        f"{page}: {name}": (shown, force["settings"][name])
        for name, rows in documented.items()
        if name in settings.TABLE
        for page, shown in rows
        if as_value(name, shown, force["home"]) != settings.convert(name, force["settings"][name])
    }
    assert wrong == {}


def test_each_resource_field_defaults_to_its_settings_default_and_is_the_one_in_force(tmp_path):
    from resources.defaults import WIRING

    force = in_force(tmp_path)
    for key, (resource, fields) in WIRING.items():
        for field, name in fields.items():
            info = resource.model_fields[field]
            if not info.is_required():
                assert info.default == settings.default_value(name), f"{resource.__name__}.{field} vs {name}"
            if name != settings.ALERT_FILE:  # empty: the file under the artifacts, derived in resources/defaults.py
                assert force["fields"][f"{key}.{field}"] == settings.convert(name, force["settings"][name]), field


def test_the_pure_thresholds_default_to_the_table():
    from mlops_assets.core.data.images import DEFAULT_MAX_PIXELS
    from mlops_assets.core.monitoring.drift import DriftThresholds
    from mlops_assets.core.monitoring.performance import PerformanceThresholds

    drift, performance = DriftThresholds(), PerformanceThresholds()
    assert (drift.drift_share, drift.p_value, drift.distance, drift.min_rows) == tuple(
        settings.default_value(n)
        for n in (settings.DRIFT_SHARE, settings.DRIFT_P_VALUE, settings.DRIFT_DISTANCE, settings.DRIFT_MIN_ROWS)
    )
    assert (
        performance.min_accuracy,
        performance.max_recall_gap,
        performance.min_labelled,
        performance.min_class_labelled,
    ) == tuple(
        settings.default_value(n)
        for n in (
            settings.PERF_MIN_ACCURACY,
            settings.PERF_MAX_RECALL_GAP,
            settings.PERF_MIN_LABELLED,
            settings.PERF_MIN_CLASS_LABELLED,
        )
    )
    assert DEFAULT_MAX_PIXELS == settings.default_value(settings.MAX_IMAGE_PIXELS)


SET = {  # a value for every wired variable, unlike its default
    settings.ARTIFACT_ROOT: "/tmp/a",
    settings.BENTOML_HOME: "/tmp/b",
    settings.MODEL_NAME: "m",
    settings.DATASET_KIND: "image_folder",
    settings.IMAGE_FOLDER: "/tmp/f",
    settings.IMAGE_HEIGHT: "48",
    settings.IMAGE_WIDTH: "40",
    settings.IMAGE_CHANNELS: "3",
    settings.MAX_IMAGE_PIXELS: "1000",
    settings.DECODE_WORKERS: "2",
    settings.REQUIRE_APPROVAL: "1",
    settings.RELEASE_POLICY: "shadow",
    settings.DRIFT_SHARE: "0.5",
    settings.DRIFT_P_VALUE: "0.01",
    settings.DRIFT_DISTANCE: "0.2",
    settings.DRIFT_MIN_ROWS: "7",
    settings.DRIFT_COOLDOWN_HOURS: "1",
    settings.RETRAIN_REQUIRES_NEW_DATA: "0",
    settings.DRIFT_BLIND_ALERT_MINUTES: "5",
    settings.RETRAIN_RUN_CONFIG: "/tmp/r.yaml",
    settings.RETRAIN_TRIGGER: "pixel",
    settings.HARM_POINTS: "7",
    settings.PERF_MIN_ACCURACY: "0.5",
    settings.PERF_MAX_RECALL_GAP: "0.5",
    settings.PERF_MIN_LABELLED: "3",
    settings.PERF_MIN_CLASS_LABELLED: "2",
    settings.API_TOKEN: "t",
    settings.ALERT_FILE: "/tmp/alerts.jsonl",
    settings.ALERT_WEBHOOK_URL: "http://127.0.0.1:9/hook",
}


def test_a_set_variable_reaches_dagster_as_an_envvar_wherever_dagster_can_carry_one(monkeypatch):
    """Dagster's ``EnvVar`` fills str fields and ``EnvVar.int`` int fields (it has none for float, bool or a
    choice): each of those is handed the variable, so the UI names it and a run reads it when it starts."""
    from resources.defaults import WIRING, default_resources

    for name, value in SET.items():
        monkeypatch.setenv(name, value)
    resources = default_resources()
    carried, resolved = [], []
    for key, (resource, fields) in WIRING.items():
        for field, name in fields.items():
            annotation = resource.model_fields[field].annotation
            wired = getattr(resources[key], field)
            if annotation in (str, int):
                assert type(wired).__name__ == ("EnvVar" if annotation is str else "IntEnvVar"), f"{key}.{field}"
                assert wired.env_var_name == name, f"{key}.{field}"
                carried.append(name)
            else:
                assert wired == settings.value(name), f"{key}.{field}"
                resolved.append(name)
    assert settings.IMAGE_HEIGHT in carried and settings.DRIFT_MIN_ROWS in carried
    with dg.build_resources(resources) as run:  # what a run sees: every value from the environment
        for key, (_, fields) in WIRING.items():
            for field, name in fields.items():
                assert getattr(getattr(run, key), field) == settings.value(name), f"{key}.{field}"


def test_a_malformed_variable_is_an_error_naming_it_at_load(monkeypatch):
    from resources.defaults import default_resources

    monkeypatch.setenv(settings.IMAGE_HEIGHT, "tall")
    with pytest.raises(settings.SettingError, match="MLOPS_IMAGE_HEIGHT must be an integer, got 'tall'"):
        default_resources()
