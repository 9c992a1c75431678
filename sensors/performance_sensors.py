"""Production accuracy and bias, kept current and watched: two sensors around ``production_performance``.

- ``feedback_sensor``: labels arrive hours or days after their predictions, into the hour of the prediction
  (:mod:`mlops_assets.core.serving.feedback`). Each tick lists the feedback part files that appeared since its cursor
  (per hour: the last file name seen; names start with their arrival time), reads only their timestamp column, and
  asks for one ``production_performance_job`` run per ended window they label (``run_key`` names the window and
  the files, so a retried tick launches it once). The cursor passes a file only once it is ``SETTLE`` old, so a
  file of another worker named a moment earlier but written a moment later is still seen. Feedback on a
  window still open waits for the window to end. A window a shadow scored (``shadow_log`` part files in it) gets a
  ``live_comparison_job`` run too, so the comparison of production and the challenger counts the new labels.
- ``performance_alert_sensor``: reads the asset's new materializations (cursor: the last event's storage id),
  each one's verdicts from the file its ``report_path`` names (:mod:`mlops_assets.core.monitoring.performance`
  owns it; the page shows the same verdicts as a table), and alerts a person, through the same file and webhook
  as run failures, when a model version *enters* a breach (accuracy below the threshold, recall gap above the
  bound), with the sentence a product owner reads; once per episode: windows still in breach stay quiet, a
  window back within the thresholds ends the episode, and a window judged out of order (older than the latest
  judged for that version) changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from mlops_assets.metadata import short_hash
from mlops_assets.monitor_stage.windows import profile_partitions
from mlops_assets.run_tags import RUN_KIND_TAG
from resources.alerts import AlertSink
from resources.artifact_store import ArtifactStore
from sensors.cadence import monitoring_sensor

LOOKBACK = timedelta(days=30)  # feedback on older predictions is stored; its window is re-measured by hand
GRACE = timedelta(seconds=30)
SETTLE = timedelta(seconds=60)  # a feedback file is on disk this long after the time its name starts with
PERFORMANCE_KEY = dg.AssetKey("production_performance")
PERFORMANCE_JOB, COMPARISON_JOB = "production_performance_job", "live_comparison_job"
MAX_EVENTS_PER_TICK = 200


# -- feedback_sensor -----------------------------------------------------------------------------------
def evaluate_feedback_tick(cursor: str | None, artifact_store: ArtifactStore, now: datetime) -> dg.SensorResult:
    from mlops_assets.core.data.features import TIMESTAMP
    from mlops_assets.core.serving.feedback import FEEDBACK_KIND, feedback_hours
    from mlops_assets.core.serving.inference_log import SHADOW_KIND, hour_part_files, read_parts, window_may_hold_rows
    from mlops_assets.core.serving.prediction_ids import epoch_ms

    seen: dict[str, str] = json.loads(cursor) if cursor else {}
    partitions = profile_partitions()
    settled = f"part-{epoch_ms(now - SETTLE):013d}"  # names before this are all on disk by now
    windows: dict[str, list[str]] = {}  # window partition key → the new feedback files labelling it
    for hour in feedback_hours(artifact_store.root_path, now - LOOKBACK, now + timedelta(hours=1)):
        key = f"{hour:%Y-%m-%dT%H}"
        new = [p for p in hour_part_files(artifact_store.root_path, hour, FEEDBACK_KIND) if p.name > seen.get(key, "")]
        for path in new:
            keys = {partitions.get_partition_key_for_timestamp(stamp.timestamp())
                    for stamp in read_parts([path], [TIMESTAMP])[TIMESTAMP]}
            if any(partitions.time_window_for_partition_key(k).end > now - GRACE for k in keys):
                break  # labels a window that is still open: this file and later ones wait for the next ticks
            for k in keys:
                windows.setdefault(k, []).append(path.name)
            if path.name < settled:
                seen[key] = path.name
    horizon = f"{now - LOOKBACK:%Y-%m-%dT%H}"
    cursor_out = json.dumps({k: v for k, v in sorted(seen.items()) if k >= horizon})
    if not windows:
        return dg.SensorResult(skip_reason="no new feedback on an ended window", cursor=cursor_out)
    runs = []
    for k, names in sorted(windows.items()):
        arrival = short_hash(sorted(names))[:12]
        runs.append(dg.RunRequest(partition_key=k, run_key=f"performance-{k}-{arrival}", job_name=PERFORMANCE_JOB,
                                  tags={RUN_KIND_TAG: "monitoring"}))
        window = partitions.time_window_for_partition_key(k)
        if window_may_hold_rows(artifact_store.root_path, window.start, window.end, SHADOW_KIND):
            runs.append(dg.RunRequest(partition_key=k, run_key=f"comparison-{k}-{arrival}", job_name=COMPARISON_JOB,
                                      tags={RUN_KIND_TAG: "monitoring"}))
    return dg.SensorResult(run_requests=runs, cursor=cursor_out)


def make_feedback_sensor(performance_job, comparison_job) -> dg.SensorDefinition:
    """The feedback sensor, targeting the jobs it launches (wired in ``mlops_assets.automation``, which owns them)."""

    @monitoring_sensor(
        name="feedback_sensor",
        jobs=[performance_job, comparison_job],
        description=(
            "When feedback (true labels) arrives for the predictions of an ended window, measures that window's "
            "production_performance again, and its live_comparison when a shadow scored it (one run per window "
            "and arrival)."
        ),
    )
    def feedback_sensor(context: dg.SensorEvaluationContext, artifact_store: ArtifactStore) -> dg.SensorResult:
        result = evaluate_feedback_tick(context.cursor, artifact_store, datetime.now(UTC))
        if result.run_requests:
            context.log.info(f"new feedback: {len(result.run_requests)} run(s) measuring the windows it labels")
        return result

    return feedback_sensor


# -- performance_alert_sensor ----------------------------------------------------------------------------------
@dataclass
class AlertCursor:
    """The last materialization read, and per model version the latest window judged and what it breached."""

    after: int | None = None
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str | None) -> AlertCursor:
        try:
            data = json.loads(raw) if raw else {}
            return cls(data.get("after"), dict(data.get("versions") or {}))
        except (json.JSONDecodeError, AttributeError, TypeError):
            return cls()

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def performance_alert(verdict: dict[str, Any], kind: str, window: str, run_id: str) -> dict[str, Any]:
    return {
        "at": datetime.now(UTC).isoformat(),
        "kind": "production_performance",
        "breach": kind,
        "model_version": verdict["model_version"],
        "window": window,
        "accuracy": verdict.get("accuracy"),
        "recall_gap": verdict.get("recall_gap"),
        "worst_class": verdict.get("worst_class"),
        "best_class": verdict.get("best_class"),
        "labelled": verdict.get("labelled"),
        "run_id": run_id,
        "text": verdict["breaches"][kind],
    }


def evaluate_performance_alert_tick(cursor: str | None, instance: dg.DagsterInstance,
                                    alert_sink: AlertSink) -> dg.SensorResult:
    # pandas: not at code-location load
    from mlops_assets.core.monitoring.performance import ALL_VERSIONS, read_verdicts

    state = AlertCursor.parse(cursor)
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=PERFORMANCE_KEY, after_storage_id=state.after),
        limit=MAX_EVENTS_PER_TICK, ascending=True,
    ).records
    if not records:
        return dg.SensorResult(skip_reason="no new production_performance materialization")
    sent, problems, unread = [], [], []
    for record in records:
        state.after = record.storage_id
        materialization = record.asset_materialization
        window = materialization.partition or ""
        report = materialization.metadata.get("report_path")
        try:
            verdicts = read_verdicts(Path(report.value)) if report is not None else []
        except (OSError, ValueError, KeyError, TypeError) as exc:  # said in the tick's reason; later ones still read
            unread.append(f"window {window}: verdicts unreadable ({type(exc).__name__}: {exc})")
            continue
        for verdict in verdicts:
            version = verdict["model_version"]
            last = state.versions.get(version)
            if not verdict["judged"] or version == ALL_VERSIONS or (last and last["window"] > window):
                continue
            breaching = sorted(verdict["breaches"])
            for kind in sorted(set(breaching) - set(last["breaching"] if last else [])):
                alert = performance_alert(verdict, kind, window, record.run_id)
                problems += alert_sink.send(alert)
                sent.append(alert["text"])
            state.versions[version] = {"window": window, "breaching": breaching}
    skipped = f" ({'; '.join(unread)[:600]})" if unread else ""
    if not sent:
        return dg.SensorResult(cursor=state.dump(), skip_reason=(
            f"{len(records)} new production_performance record(s): no version entered a breach{skipped}"))
    return dg.SensorResult(cursor=state.dump(), skip_reason=(
        f"alerted a person: {' | '.join(sent)[:900]}" + (f" (delivery: {'; '.join(problems)})" if problems else "")
        + skipped))


@monitoring_sensor(
    name="performance_alert_sensor",
    description=(
        "Alerts a person (alert file and webhook, as run failures) when a model version's accuracy or recall "
        "gap on labelled production traffic breaches performance_policy; once per episode."
    ),
)
def performance_alert_sensor(context: dg.SensorEvaluationContext, alert_sink: AlertSink) -> dg.SensorResult:
    result = evaluate_performance_alert_tick(context.cursor, context.instance, alert_sink)
    if result.skip_reason:
        context.log.info(result.skip_reason.skip_message)
    return result
