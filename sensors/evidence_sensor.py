"""``promotion_evidence_sensor``: acts on the live comparison's verdicts, as ``MLOPS_PROMOTE_FROM_EVIDENCE`` says.

Each tick reads the ``live_comparison`` materializations since its cursor (the last one's storage id), each one's
verdict from the file its ``report_path`` names (:func:`mlops_assets.core.monitoring.live_comparison.read_verdict`),
and asks the pure decision (:mod:`mlops_assets.core.registry.evidence`) what to do with it given the registry's
production and shadow now: request one ``promote_challenger_job`` run (``run_key``: the window and both versions), or
alert a person with the figures (the alert file and webhook, as ``performance_alert_sensor``), or nothing. Off (the
default), it reads nothing. Each verdict is acted on once: the cursor passes it whatever the step.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from mlops_assets.core.common import settings
from resources.alerts import AlertSink
from resources.model_registry import ModelRegistryResource
from sensors.cadence import monitoring_sensor

COMPARISON_KEY = dg.AssetKey("live_comparison")
MAX_EVENTS_PER_TICK = 100


def evaluate_evidence_tick(cursor: str | None, instance: dg.DagsterInstance, model_registry: ModelRegistryResource,
                           alert_sink: AlertSink, mode: str) -> dg.SensorResult:
    from mlops_assets.core.monitoring.live_comparison import read_verdict
    from mlops_assets.core.registry.evidence import ALERT, OFF, PROMOTE, check_mode, step_for

    if check_mode(mode, settings.PROMOTE_FROM_EVIDENCE) == OFF:
        return dg.SensorResult(skip_reason=f"promotion from evidence is off ({settings.PROMOTE_FROM_EVIDENCE}=off)")
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=COMPARISON_KEY, after_storage_id=int(cursor) if cursor else None),
        limit=MAX_EVENTS_PER_TICK, ascending=True).records
    if not records:
        return dg.SensorResult(skip_reason="no new live_comparison materialization")
    registry = model_registry.registry()
    runs, said, problems = [], [], []
    for record in records:
        report = record.asset_materialization.metadata.get("report_path")
        try:
            verdict = read_verdict(Path(report.value)) if report is not None else None
        except (OSError, ValueError) as exc:
            said.append(f"verdict unreadable ({type(exc).__name__}: {exc})")
            continue
        if verdict is None:
            said.append(f"a live_comparison materialization without report_path (run {record.run_id[:8]})")
            continue
        production, shadow = registry.production_version(), registry.shadow_version()
        missing = registry.why_not_promotable(shadow) if shadow else None
        step = step_for(mode, verdict, production, shadow, missing)
        said.append(step.reason)
        if step.action == PROMOTE:
            runs.append(dg.RunRequest(run_key=step.run_key, tags={"mlops/trigger": "evidence"}, run_config={
                "ops": {"promote_challenger": {"config": {
                    "challenger": verdict.challenger_version, "production": verdict.production_version,
                    "reason": step.reason}}}}))
        elif step.action == ALERT:
            from datetime import UTC, datetime

            problems += alert_sink.send({"at": datetime.now(UTC).isoformat(), **step.alert})
    cursor = str(records[-1].storage_id)
    delivery = f" (delivery: {'; '.join(problems)})" if problems else ""
    reason = (" | ".join(said)[:900] + delivery) or "nothing to do"
    if runs:
        return dg.SensorResult(run_requests=runs, cursor=cursor)
    return dg.SensorResult(cursor=cursor, skip_reason=reason)


def make_promotion_evidence_sensor(promote_job) -> dg.SensorDefinition:
    """The sensor, targeting ``promote_job`` (wired in ``mlops_assets.automation``)."""

    @monitoring_sensor(
        name="promotion_evidence_sensor",
        # by name: a sensor holding an op job gets it re-bound to the resources by Definitions, which in
        # Dagster 1.13 re-creates the sensor with owners=[] and prints a BetaWarning in every `dg` command
        job_name=promote_job.name,
        description=(
            "On a live comparison verdict 'better' for the current shadow vs the current production: promotes it "
            "(MLOPS_PROMOTE_FROM_EVIDENCE=promote; approval still applies: without it, a person is alerted) or "
            "alerts a person with the figures (alert); off by default. Once per verdict."),
    )
    def promotion_evidence_sensor(context: dg.SensorEvaluationContext, model_registry: ModelRegistryResource,
                                  alert_sink: AlertSink) -> dg.SensorResult:
        result = evaluate_evidence_tick(context.cursor, context.instance, model_registry, alert_sink,
                                        settings.resolve(settings.PROMOTE_FROM_EVIDENCE))
        if result.skip_reason:
            context.log.info(result.skip_reason.skip_message)
        return result

    return promotion_evidence_sensor
