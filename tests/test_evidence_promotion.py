"""Promotion from evidence: promotion_evidence_sensor acts on a live comparison's "better" verdict about the current
shadow vs the current production (promote through the registry, approval still applying, or alert a person with the
figures), once per verdict; never on "worse" or "not enough evidence"."""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd
import pytest

from mlops_assets.core.data.features import MODEL_MS, MODEL_VERSION, PREDICTED_CLASS, PREDICTION_ID
from mlops_assets.core.monitoring.live_comparison import BETTER, NOT_ENOUGH, WORSE, compare_window, write_comparison
from mlops_assets.core.registry.evidence import ALERT, NONE, PROMOTE, step_for
from resources.alerts import AlertSink
from resources.model_registry import ModelRegistryResource
from sensors.evidence_sensor import COMPARISON_KEY, evaluate_evidence_tick
from tests.test_shadow import registry  # noqa: F401 - the fixture: v0 in production, v1 and v2 tested candidates

N = 120


def comparison_file(directory, window: str, production: str, challenger: str, challenger_right: int,
                    production_right: int):
    """A real comparison (live_comparison's statistics and file) of ``N`` labelled requests both versions answered:
    production right on the first ``production_right``, the challenger on the first ``challenger_right``."""
    ids = [f"p{i:04d}" for i in range(N)]

    def answers(version: str, right: int, kind: str) -> pd.DataFrame:
        return pd.DataFrame({PREDICTION_ID: ids, PREDICTED_CLASS: ["cat" if i < right else "dog" for i in range(N)],
                             MODEL_VERSION: version, MODEL_MS: 1.0})

    labels = pd.DataFrame({PREDICTION_ID: ids, "label": ["cat"] * N})
    result = compare_window(window, answers(production, production_right, "served"),
                            answers(challenger, challenger_right, "shadow"), labels, alpha=0.05, min_labelled=50,
                            class_names=["cat", "dog"])
    directory.mkdir(parents=True, exist_ok=True)
    write_comparison(directory, result.payload())
    return directory / "comparison.json", result.verdict()


def record(instance: dg.DagsterInstance, path, window: str) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key=COMPARISON_KEY, partition=window, metadata={"report_path": dg.MetadataValue.path(str(path))}))


@pytest.fixture
def world(registry, tmp_path):  # noqa: F811
    registry.set_shadow("v1", reason="challenger on live traffic", actor="alice")
    instance = dg.DagsterInstance.ephemeral()
    resources = (ModelRegistryResource(home=str(registry.home), model_name="clf"),
                 AlertSink(file=str(tmp_path / "alerts.jsonl")))
    return registry, instance, resources, tmp_path


def alerts(tmp_path) -> list[dict]:
    path = tmp_path / "alerts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_decision_acts_only_on_better_for_the_current_pair(tmp_path):
    _, better = comparison_file(tmp_path / "a", "2026-11-22T10", "v0", "v1", 110, 60)
    _, worse = comparison_file(tmp_path / "b", "2026-11-22T11", "v0", "v1", 60, 110)
    _, unsure = comparison_file(tmp_path / "c", "2026-11-22T12", "v0", "v1", 62, 60)
    assert (better.verdict, worse.verdict, unsure.verdict) == (BETTER, WORSE, NOT_ENOUGH)
    assert step_for("promote", better, "v0", "v1", None).action == PROMOTE
    assert step_for("promote", better, "v0", "v1", None).run_key == "evidence-2026-11-22T10-v1-over-v0"
    for verdict in (worse, unsure):
        assert step_for("promote", verdict, "v0", "v1", None).action == NONE
        assert step_for("alert", verdict, "v0", "v1", None).action == NONE
    assert step_for("promote", better, "v2", "v1", None).action == NONE  # production moved since
    assert step_for("promote", better, "v0", "v2", None).action == NONE  # another shadow now
    assert step_for("off", better, "v0", "v1", None).action == NONE
    step = step_for("promote", better, "v0", "v1", "approval before release is required")
    assert step.action == ALERT and "mlops-registry approve v1" in step.reason
    assert "91.7 % vs 50.0 % on 120 labelled pairs" in step_for("alert", better, "v0", "v1", None).reason
    with pytest.raises(ValueError, match="MLOPS_PROMOTE_FROM_EVIDENCE='always'"):
        step_for("always", better, "v0", "v1", None)


def test_promote_mode_requests_one_promotion_run_per_better_verdict_and_the_job_promotes(world):
    from mlops_assets.automation import promote_challenger_job, promotion_evidence_sensor

    reg, instance, (model_registry, sink), tmp_path = world
    path, _ = comparison_file(tmp_path / "w10", "2026-11-22T10", "v0", "v1", 110, 60)
    record(instance, path, "2026-11-22T10")
    result = evaluate_evidence_tick(None, instance, model_registry, sink, "promote")
    run, = result.run_requests
    assert run.run_key == "evidence-2026-11-22T10-v1-over-v0"
    config = run.run_config["ops"]["promote_challenger"]["config"]
    assert (config["challenger"], config["production"]) == ("v1", "v0") and "labelled pairs" in config["reason"]
    again = evaluate_evidence_tick(result.cursor, instance, model_registry, sink, "promote")
    assert not again.run_requests and "no new live_comparison" in again.skip_reason.skip_message  # once

    # the real sensor, wired, with its resources
    context = dg.build_sensor_context(instance=instance, resources={"model_registry": model_registry,
                                                                     "alert_sink": sink})
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLOPS_PROMOTE_FROM_EVIDENCE", "promote")
        wired = promotion_evidence_sensor(context)
    assert [r.run_key for r in wired.run_requests] == ["evidence-2026-11-22T10-v1-over-v0"]

    promoted = promote_challenger_job.execute_in_process(
        run_config=run.run_config, resources={"model_registry": model_registry}, instance=instance)
    assert promoted.success and reg.production_version() == "v1" and reg.shadow_version() is None
    event = reg.events()[-1]
    assert event["action"] == "promote" and "promotion from evidence" in event["actor"]
    assert event["reason"].startswith("live evidence: promoting v1")
    stale = promote_challenger_job.execute_in_process(  # the same run again: production moved, nothing happens
        run_config=run.run_config, resources={"model_registry": model_registry}, instance=instance,
        raise_on_error=False)
    assert not stale.success and reg.production_version() == "v1"


def test_worse_or_not_enough_evidence_never_promotes_nor_alerts(world):
    reg, instance, (model_registry, sink), tmp_path = world
    for window, (c, p) in {"2026-11-22T10": (60, 110), "2026-11-22T11": (62, 60)}.items():
        path, _ = comparison_file(tmp_path / window, window, "v0", "v1", c, p)
        record(instance, path, window)
    for mode in ("promote", "alert"):
        result = evaluate_evidence_tick(None, instance, model_registry, sink, mode)
        assert not result.run_requests and "only a 'better' verdict acts" in result.skip_reason.skip_message
    assert alerts(tmp_path) == [] and reg.production_version() == "v0"


def test_alert_mode_tells_a_person_with_the_figures_and_promotes_nothing(world):
    reg, instance, (model_registry, sink), tmp_path = world
    path, _ = comparison_file(tmp_path / "w10", "2026-11-22T10", "v0", "v1", 110, 60)
    record(instance, path, "2026-11-22T10")
    result = evaluate_evidence_tick(None, instance, model_registry, sink, "alert")
    assert not result.run_requests
    alert, = alerts(tmp_path)
    assert alert["kind"] == "promotion_evidence" and alert["action"] == "alert"
    assert (alert["challenger_version"], alert["production_version"], alert["labelled_pairs"]) == ("v1", "v0", 120)
    assert "mlops-registry promote v1" in alert["text"] and reg.production_version() == "v0"
    evaluate_evidence_tick(result.cursor, instance, model_registry, sink, "alert")
    assert len(alerts(tmp_path)) == 1  # once per verdict


def shadow_under_review(reg) -> None:
    """Approval required from now on: v1 re-enters the shadow slot with its approval requested, not given."""
    reg.clear_shadow(reason="re-enter under review", actor="alice")
    reg.set_policy(True, by="setup", reason="a reviewer decides")
    reg.request_approval("v1", reason="gate: better", actor="gate")
    reg.set_shadow("v1", reason="live evidence for the reviewer", actor="alice")


def test_with_approval_required_better_evidence_asks_a_reviewer_instead_of_promoting(world):
    reg, instance, (model_registry, sink), tmp_path = world
    shadow_under_review(reg)
    path, _ = comparison_file(tmp_path / "w10", "2026-11-22T10", "v0", "v1", 110, 60)
    record(instance, path, "2026-11-22T10")
    result = evaluate_evidence_tick(None, instance, model_registry, sink, "promote")
    assert not result.run_requests and reg.production_version() == "v0"
    alert, = alerts(tmp_path)
    assert alert["action"] == "approval needed" and "awaiting approval" in alert["text"]
    assert "mlops-registry approve v1" in alert["text"] and "91.7 %" in alert["text"]


def test_a_trial_approval_lets_the_shadow_answer_but_better_evidence_still_asks_for_the_approval(world):
    reg, instance, (model_registry, sink), tmp_path = world
    shadow_under_review(reg)
    reg.approve_trial("v1", by="dana", reason="A/B on 10 % of clients")
    assert reg.why_not_answerable("v1") is None  # it answers its A/B share ...
    path, _ = comparison_file(tmp_path / "w11", "2026-11-22T11", "v0", "v1", 110, 60)
    record(instance, path, "2026-11-22T11")
    result = evaluate_evidence_tick(None, instance, model_registry, sink, "promote")
    assert not result.run_requests and reg.production_version() == "v0"  # ... and is not promoted on evidence
    alert, = alerts(tmp_path)
    assert alert["action"] == "approval needed" and "trial approval" in alert["text"]


def test_off_reads_nothing(world):
    _, instance, (model_registry, sink), tmp_path = world
    result = evaluate_evidence_tick(None, instance, model_registry, sink, "off")
    assert "off" in result.skip_reason.skip_message and result.cursor is None
