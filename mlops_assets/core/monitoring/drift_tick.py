"""What the drift monitor does on one tick: a pure decision, no Dagster and no I/O. The cursor, the facts the
sensor gathered and the drift policy go in; what to do and why comes out (runs to request, a skip reason, alerts
for a person, the new cursor). The sensor (``sensors/drift_sensor.py``) only gathers the facts and carries out
the decision, so every threshold is read here and in the verdicts, never in the sensor.

A tick is decided in two steps, because judging a window reads its profile: :func:`plan_tick` decides what can
be decided without judging (no production model, no reference profile yet, nothing new, a retraining in flight)
or names the windows to judge; :func:`decide_tick` decides from their verdicts
(:mod:`~mlops_assets.core.monitoring.window_judgement`). Guarantees (tested in ``tests/test_drift_tick.py`` and,
through the sensor, ``tests/test_sensors.py``):

- one run per drift event: the run key is ``drift-<window>-<reference>``;
- none missed: the cursor advances only with the windows judged, at most :data:`MAX_WINDOWS_PER_TICK` a tick;
- no judging while a retraining run is in flight (the cursor stays, so the windows are judged after it);
- a cooldown after a drift-launched run (``cooldown_hours``, 0: none);
- retraining only on labelled data production was not trained on (``retrain_requires_new_data``), once per
  source fingerprint; otherwise a skip that says why, and one alert per drift episode;
- a production version without a reference profile gets a reference run, and a person is alerted once when the
  windows have waited longer than ``blind_alert_minutes``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from mlops_assets.core.monitoring.profile_layout import reference_version, window_label
from mlops_assets.core.monitoring.retrain_decision import DriftCursor, TriggerPolicy
from mlops_assets.core.monitoring.retrain_requests import (
    LabelledData,
    RetrainingRun,
    RunSpec,
    blind_alert,
    drift_run,
    reference_run,
    refused_retrain_alert,
    stale_data_alert,
)

if TYPE_CHECKING:  # drift.py imports pandas: the sensor's module stays light to import
    from mlops_assets.core.monitoring.drift import DriftThresholds
    from mlops_assets.core.monitoring.window_judgement import JudgedWindow

MAX_WINDOWS_PER_TICK = 12  # each is judged and recorded (about half a second): well inside a sensor's 60 s


@dataclass(frozen=True)
class DriftDecisionPolicy:
    """The drift policy as plain values (built once from the ``drift_policy`` resource, validated by its parts)."""

    thresholds: DriftThresholds
    trigger: TriggerPolicy
    cooldown_hours: float
    retrain_requires_new_data: bool
    blind_alert_minutes: float


@dataclass(frozen=True)
class RunFact:
    """A run found in Dagster's instance: its id, status (lower case) and age."""

    run_id: str
    status: str
    age_hours: float = 0.0


@dataclass(frozen=True)
class TickFacts:
    """What the sensor sees before judging: production's version, whether its reference profile exists, the
    profiled windows (oldest first), a retraining run in flight, and the time."""

    production_version: str | None
    has_reference: bool
    windows: tuple[str, ...]
    in_flight: RunFact | None
    now: datetime


@dataclass(frozen=True)
class RetrainFacts:
    """What a retraining decision needs besides the verdicts: the labelled source against production's, the newest
    drift-launched run (for the cooldown) and the run config retraining runs carry."""

    labelled: LabelledData
    last_drift_run: RunFact | None
    retraining: RetrainingRun
    now: datetime


@dataclass(frozen=True)
class TickDecision:
    """What to do: runs to request, or a skip and why; alerts for a person; the cursor (None: left as it is)."""

    runs: tuple[RunSpec, ...] = ()
    skip_reason: str = ""
    alerts: tuple[dict, ...] = ()
    cursor: str | None = None


@dataclass(frozen=True)
class TickPlan:
    """The first step's answer: a decision already (``decision``), or the windows to judge and what decides on
    them (an empty ``to_judge`` with no decision: drift waits for labelled data, decided from the facts)."""

    state: DriftCursor
    policy: DriftDecisionPolicy
    production_version: str = ""
    to_judge: tuple[str, ...] = ()
    backlog: int = 0
    decision: TickDecision | None = None

    @property
    def reference(self) -> str:
        return reference_version(self.production_version)


def plan_tick(cursor: str | None, facts: TickFacts, policy: DriftDecisionPolicy) -> TickPlan:
    """What can be decided before judging a window, or which windows to judge."""
    state = DriftCursor.parse(cursor)
    version = facts.production_version
    if version is None:
        return TickPlan(state, policy, decision=TickDecision(
            skip_reason="no production model yet: nothing to compare traffic against"))
    if not facts.has_reference:
        return TickPlan(state, policy, version, decision=blind_tick(state, version, policy, facts.now))
    plan = TickPlan(state.replace(blind_since=None, blind_alerted=None), policy, version)
    state = plan.state
    new = [w for w in facts.windows if w > state.window] if state.window else list(facts.windows[-1:])
    if not new:
        last = window_label(state.window) if state.window else "none"
        if state.pending_window and state.reference == plan.reference and facts.in_flight is None:
            return plan  # drift waits for labelled data: decided from the retraining facts
        return dataclasses.replace(plan, decision=TickDecision(skip_reason=f"no new profile window since {last}"))
    backlog = max(0, len(new) - MAX_WINDOWS_PER_TICK)
    new = new[:MAX_WINDOWS_PER_TICK]
    if facts.in_flight is not None:
        running = facts.in_flight
        return dataclasses.replace(plan, decision=TickDecision(skip_reason=(
            f"retraining run {running.run_id[:8]} is {running.status}; "
            f"{len(new)} new window(s) from {window_label(new[0])} will be judged after it finishes"
        )))
    return dataclasses.replace(plan, to_judge=tuple(new), backlog=backlog)


def blind_tick(state: DriftCursor, model_version: str, policy: DriftDecisionPolicy, now: datetime) -> TickDecision:
    """No reference for the production version: request it, keep the windows waiting, alert once if too long."""
    since = state.blind_since or now.isoformat()
    blind = state.replace(blind_since=since)
    alerts = ()
    waited = now - datetime.fromisoformat(since)
    if waited > timedelta(minutes=policy.blind_alert_minutes) and state.blind_alerted != model_version:
        alerts = (blind_alert(model_version, since, policy.blind_alert_minutes, now),)
        blind = blind.replace(blind_alerted=model_version)
    return TickDecision(runs=(reference_run(model_version),), alerts=alerts, cursor=blind.dump())


def decide_tick(plan: TickPlan, judged: list[JudgedWindow], facts: RetrainFacts) -> TickDecision:
    """The decision on the windows ``plan`` named, from their verdicts and the retraining facts."""
    if plan.decision is not None:
        return plan.decision
    state, data = plan.state, facts.labelled
    if not plan.to_judge:
        return awaited_data(plan, facts)
    # the decision's sentence (which signal decided, and why) is the reason every skip, alert and run carries
    verdicts = [(j.window, dataclasses.replace(j.verdict, reason=j.decision.reason), j.decision) for j in judged]
    drifted = [(w, v, d) for w, v, d in verdicts if d.retrain]
    judged_state = state.replace(window=plan.to_judge[-1], reference=plan.reference)
    if not drifted:
        reasons = "; ".join(v.reason for _, v, _ in verdicts[-3:])
        more = f" (and {len(verdicts) - 3} earlier window(s) without drift)" if len(verdicts) > 3 else ""
        remaining = f"; {plan.backlog} later window(s) are judged on the next tick" if plan.backlog else ""
        return TickDecision(skip_reason=reasons + more + remaining,  # the drift episode, if any, is over
                            cursor=judged_state.replace(pending_window=None, pending_share=None,
                                                        alerted_episode=None).dump())
    window, verdict, decision = drifted[-1]
    policy, version = plan.policy, plan.production_version
    recent = facts.last_drift_run
    if policy.cooldown_hours > 0 and recent is not None and recent.age_hours < policy.cooldown_hours:
        return TickDecision(cursor=judged_state.dump(), skip_reason=(
            f"{verdict.reason}; but drift retraining run {recent.run_id[:8]} was launched "
            f"{recent.age_hours:.1f} h ago (cooldown {policy.cooldown_hours:g} h, drift_policy.cooldown_hours)"))
    if policy.retrain_requires_new_data and not data.is_new:
        why = (f"the labelled source cannot be read ({data.problem})" if data.current is None else
               f"no new labelled data since dataset version {data.dataset_version}")
        episode = f"{plan.reference}|{data.current}"
        fresh = state.alerted_episode != episode
        alerts = (stale_data_alert(verdict, version, plan.reference, data, facts.now),) if fresh else ()
        return TickDecision(alerts=alerts, skip_reason=(
            f"{verdict.reason}; {why}: retraining would reproduce production {version} "
            f"(drift_policy.retrain_requires_new_data){'; a person was alerted' if fresh else ''}"
        ), cursor=judged_state.replace(pending_window=window, pending_share=float(verdict.drift_share),
                                       pending_signal=decision.signal, alerted_episode=episode).dump())
    if data.current is not None and data.current == state.retrained_fingerprint:
        episode = f"{plan.reference}|{data.current}|retrained"
        fresh = state.alerted_episode != episode
        alerts = (refused_retrain_alert(verdict, version, data, facts.now),) if fresh else ()
        return TickDecision(alerts=alerts, cursor=judged_state.replace(alerted_episode=episode).dump(), skip_reason=(
            f"{verdict.reason}; but a retraining run on this labelled source was already launched "
            f"({state.last_run_key}) and production is still {version} (its model was refused by the "
            f"gate or awaits approval): retraining on identical data would do the same"
            f"{'; a person was alerted' if fresh else ''}"))
    run = drift_run(window, verdict.drift_share, plan.reference, list(verdict.drifted_features), data,
                    facts.retraining, signal=decision.signal)
    return TickDecision(runs=(run,), cursor=judged_state.replace(
        last_run_key=run.run_key, pending_window=None, pending_share=None, alerted_episode=None,
        retrained_fingerprint=data.current).dump())


def awaited_data(plan: TickPlan, facts: RetrainFacts) -> TickDecision:
    """No new window, drift pending: launch the retraining once the labelled data it waited for is here."""
    state, data = plan.state, facts.labelled
    if data.is_new and data.current != state.retrained_fingerprint:
        run = drift_run(state.pending_window, state.pending_share or 0.0, plan.reference, [], data,
                        facts.retraining, suffix=f"-data-{data.current[-8:]}", signal=state.pending_signal or "")
        return TickDecision(runs=(run,), cursor=state.replace(
            pending_window=None, pending_share=None, pending_signal=None, last_run_key=run.run_key,
            retrained_fingerprint=data.current).dump())
    last = window_label(state.window) if state.window else "none"
    return TickDecision(skip_reason=(
        f"no new profile window since {last}; drift on window "
        f"{window_label(state.pending_window)} still waits for new labelled data (production trained on dataset "
        f"version {data.dataset_version})"
    ))
