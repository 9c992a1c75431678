"""The drift sensor's decision, pure: cursor, facts and policy in, what to do and why out. No Dagster, no profile
on disk (the verdicts are built as the drift scoring gives them; tests/test_sensors.py runs the real sensor)."""

from datetime import UTC, datetime, timedelta

from mlops_assets.core.monitoring.drift import DriftThresholds, DriftVerdict
from mlops_assets.core.monitoring.drift_tick import (
    MAX_WINDOWS_PER_TICK,
    DriftDecisionPolicy,
    RetrainFacts,
    RunFact,
    TickFacts,
    decide_tick,
    plan_tick,
)
from mlops_assets.core.monitoring.profile_layout import window_label, window_version
from mlops_assets.core.monitoring.retrain_decision import DriftCursor, TriggerPolicy, decide_window
from mlops_assets.core.monitoring.retrain_requests import LabelledData, RetrainingRun
from mlops_assets.core.monitoring.window_judgement import JudgedWindow

POLICY = DriftDecisionPolicy(
    thresholds=DriftThresholds(drift_share=0.3, p_value=0.05, distance=0.15, min_rows=100),
    trigger=TriggerPolicy("pixel", 5.0), cooldown_hours=6.0, retrain_requires_new_data=True,
    blind_alert_minutes=30.0,
)
NOW = datetime(2026, 11, 22, 14, tzinfo=UTC)
WINDOWS = tuple(window_version(NOW - timedelta(hours=h)) for h in (3, 2, 1))  # 11:00, 12:00, 13:00
REFERENCE = "reference-v1"
JUDGED_UP_TO_11 = DriftCursor(window=WINDOWS[0], reference=REFERENCE).dump()


def facts(windows=WINDOWS, in_flight=None, version="v1", has_reference=True) -> TickFacts:
    return TickFacts(version, has_reference, tuple(windows), in_flight, NOW)


def retrain_facts(current="fp-new", trained="fp-v1", last_drift_run=None) -> RetrainFacts:
    return RetrainFacts(LabelledData(current, trained, "dataset-v1"), last_drift_run, RetrainingRun(), NOW)


def judged(window: str, share: float, policy: DriftDecisionPolicy = POLICY) -> JudgedWindow:
    """A window judged as drift scoring judges one of 300 rows whose share of drifted features is ``share``."""
    t, label = policy.thresholds, window_label(window)
    is_drift = share >= t.drift_share
    verdict = DriftVerdict(label, 300, 1257, share, ["mean_c0"] if share else [], [], t, enough_data=True,
                           is_drift=is_drift,
                           reason=f"drift share {share:.2f} {'≥' if is_drift else '<'} {t.drift_share:.2f} on "
                                  f"window {label}, 300 rows")
    return JudgedWindow(window, verdict, None, decide_window(verdict, None, policy.trigger))


def tick(shares, cursor=JUDGED_UP_TO_11, policy=POLICY, **retrain):
    """Plan on the windows after the cursor, judge them with ``shares`` (one per window), decide."""
    plan = plan_tick(cursor, facts(), policy)
    assert plan.decision is None and len(plan.to_judge) == len(shares)
    windows = [judged(w, s, policy) for w, s in zip(plan.to_judge, shares, strict=True)]
    return decide_tick(plan, windows, retrain_facts(**retrain))


def test_a_retraining_run_in_flight_is_a_skip_that_keeps_the_cursor():
    plan = plan_tick(JUDGED_UP_TO_11, facts(in_flight=RunFact("f" * 32, "started")), POLICY)
    assert plan.to_judge == ()  # nothing judged meanwhile
    decision = decide_tick(plan, [], retrain_facts())
    assert decision.skip_reason == ("retraining run ffffffff is started; 2 new window(s) from 2026-11-22T12 "
                                    "will be judged after it finishes")
    assert decision.cursor is None and not decision.runs and not decision.alerts


def test_drift_over_the_threshold_launches_one_run_keyed_by_window_and_reference():
    decision = tick([0.1, 0.6])
    run, = decision.runs
    assert run.run_key == f"drift-{WINDOWS[2].removeprefix('window-')}-{REFERENCE}" and run.job_name == "retrain_job"
    assert (run.kind, run.triggered_by) == ("training", "drift")
    assert run.tags["mlops/drift_share"] == "0.60" and run.tags["mlops/drift_window"] == "2026-11-22T13"
    assert run.tags["mlops/source_fingerprint"] == "fp-new" and run.tags["mlops/retrain_signal"] == "pixel"
    cursor = DriftCursor.parse(decision.cursor)
    assert (cursor.window, cursor.last_run_key, cursor.retrained_fingerprint) == (WINDOWS[2], run.run_key, "fp-new")
    assert not decision.skip_reason and not decision.alerts
    assert tick([0.1, 0.6]).runs == decision.runs  # the same windows again: the same key, launched once


def test_below_the_threshold_is_a_skip_with_the_figures_that_advances_the_cursor():
    decision = tick([0.1, 0.29])
    assert not decision.runs
    first, second = decision.skip_reason.split("; ")
    assert first.startswith("drift share 0.10 < 0.30 on window 2026-11-22T12, 300 rows → no retrain")
    assert second.startswith("drift share 0.29 < 0.30 on window 2026-11-22T13")
    assert DriftCursor.parse(decision.cursor).window == WINDOWS[2]


def test_the_threshold_is_the_policys():
    strict = DriftDecisionPolicy(DriftThresholds(drift_share=0.7), POLICY.trigger, 6.0, True, 30.0)
    assert not tick([0.1, 0.6], policy=strict).runs and "< 0.70" in tick([0.1, 0.6], policy=strict).skip_reason


def test_a_cooldown_after_a_drift_run_is_a_skip_that_says_when_and_then_lapses():
    cooled = tick([0.1, 0.6], last_drift_run=RunFact("e" * 32, "success", 2.0))
    assert not cooled.runs
    assert "≥ 0.30 on window 2026-11-22T13" in cooled.skip_reason
    assert "run eeeeeeee was launched 2.0 h ago (cooldown 6 h, drift_policy.cooldown_hours)" in cooled.skip_reason
    assert DriftCursor.parse(cooled.cursor).window == WINDOWS[2]  # judged: not judged again
    assert len(tick([0.1, 0.6], last_drift_run=RunFact("e" * 32, "success", 6.5)).runs) == 1
    no_cooldown = DriftDecisionPolicy(POLICY.thresholds, POLICY.trigger, 0.0, True, 30.0)
    assert len(tick([0.1, 0.6], policy=no_cooldown, last_drift_run=RunFact("e" * 32, "success", 0.0)).runs) == 1


def test_drift_without_new_labelled_data_waits_alerts_once_and_launches_when_the_data_arrives():
    waiting = tick([0.1, 0.6], current="fp-v1")  # the source is what production was trained on
    assert not waiting.runs and "no new labelled data since dataset version dataset-v1" in waiting.skip_reason
    assert "a person was alerted" in waiting.skip_reason
    alert, = waiting.alerts
    assert alert["kind"] == "drift_without_new_data" and alert["drift_share"] == 0.6 and alert["at"] == NOW.isoformat()
    assert DriftCursor.parse(waiting.cursor).pending_window == WINDOWS[2]
    idle = decide_tick(plan_tick(waiting.cursor, facts(), POLICY), [], retrain_facts(current="fp-v1"))
    assert "drift on window 2026-11-22T13 still waits for new labelled data" in idle.skip_reason and not idle.alerts
    arrived = decide_tick(plan_tick(waiting.cursor, facts(), POLICY), [], retrain_facts(current="fp-labelled"))
    run, = arrived.runs
    assert run.run_key == f"drift-{WINDOWS[2].removeprefix('window-')}-{REFERENCE}-data-labelled"
    assert DriftCursor.parse(arrived.cursor).pending_window is None


def test_the_same_data_as_the_last_retraining_is_not_retrained_again_and_alerts_once():
    """A retraining on this source was launched and production did not change (refused, or awaiting approval)."""
    launched = tick([0.1, 0.6])
    later = DriftCursor.parse(launched.cursor).replace(window=WINDOWS[0]).dump()
    again = tick([0.5, 0.6], cursor=later)  # drift goes on; the source is the one retrained on
    assert not again.runs and "a retraining run on this labelled source was already launched" in again.skip_reason
    assert launched.runs[0].run_key in again.skip_reason and "a person was alerted" in again.skip_reason
    assert [a["kind"] for a in again.alerts] == ["retrain_on_same_data_refused"]
    once_more = tick([0.5, 0.6], cursor=DriftCursor.parse(again.cursor).replace(window=WINDOWS[0]).dump())
    assert not once_more.runs and not once_more.alerts and "alerted" not in once_more.skip_reason
    assert len(tick([0.5, 0.6], cursor=later, current="fp-more").runs) == 1  # more labels: worth a retraining


def test_a_backlog_is_judged_a_batch_per_tick():
    windows = [window_version(NOW - timedelta(hours=h)) for h in range(MAX_WINDOWS_PER_TICK + 3, 0, -1)]
    plan = plan_tick(DriftCursor(window=windows[0]).dump(), facts(windows), POLICY)
    assert plan.to_judge == tuple(windows[1:MAX_WINDOWS_PER_TICK + 1]) and plan.backlog == 2
    decision = decide_tick(plan, [judged(w, 0.0) for w in plan.to_judge], retrain_facts())
    assert decision.skip_reason.endswith("; 2 later window(s) are judged on the next tick")
    assert f"and {MAX_WINDOWS_PER_TICK - 3} earlier window(s) without drift" in decision.skip_reason
    assert DriftCursor.parse(decision.cursor).window == windows[MAX_WINDOWS_PER_TICK]


def test_no_production_model_or_no_reference_profile():
    assert plan_tick(None, facts(version=None), POLICY).decision.skip_reason.startswith("no production model yet")
    blind = plan_tick(None, facts(has_reference=False), POLICY).decision
    run, = blind.runs
    assert (run.run_key, run.kind) == ("reference-v1", "monitoring") and not blind.alerts
    assert DriftCursor.parse(blind.cursor).blind_since == NOW.isoformat()
    long_ago = DriftCursor(blind_since=(NOW - timedelta(minutes=31)).isoformat()).dump()
    late = plan_tick(long_ago, facts(has_reference=False), POLICY).decision
    assert [a["kind"] for a in late.alerts] == ["drift_monitor_blind"]
    assert not plan_tick(late.cursor, facts(has_reference=False), POLICY).decision.alerts  # once per blind spell
    seen = plan_tick(late.cursor, facts(), POLICY)
    assert seen.state.blind_since is None and seen.to_judge == WINDOWS[-1:]  # a fresh cursor: the latest window


def test_nothing_new_is_a_skip_that_keeps_the_cursor():
    decision = plan_tick(DriftCursor(window=WINDOWS[-1], reference=REFERENCE).dump(), facts(), POLICY).decision
    assert decision.skip_reason == "no new profile window since 2026-11-22T13" and decision.cursor is None
