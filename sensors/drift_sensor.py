"""The drift sensor: one retraining run per drift event, decided from profiles, never from rows.

A thin Dagster adapter around the pure decision (:mod:`mlops_assets.core.monitoring.drift_tick`, where its
guarantees are listed): each tick it gathers the facts (the production version, its reference profile, the
profiled windows, a retraining run in flight, the labelled source's fingerprint, the newest drift-launched run),
has the windows after its cursor judged (:mod:`mlops_assets.core.monitoring.window_judgement`), records each
verdict as ``drift_report``'s materialization of its window, and carries out the decision: ``RunRequest``s, a
``SkipReason``, the new cursor, alerts to the alert sink. It compares no threshold itself.

The policy is the ``drift_policy`` resource's, the same one ``drift_report`` judges with (its defaults from
MLOPS_DRIFT_SHARE, _P_VALUE, _DISTANCE, _MIN_ROWS, _COOLDOWN_HOURS, _BLIND_ALERT_MINUTES,
MLOPS_RETRAIN_REQUIRES_NEW_DATA and MLOPS_RETRAIN_TRIGGER; shown in the UI with the code location's resources).
"""

from datetime import UTC, datetime

import dagster as dg

from mlops_assets.core.monitoring.drift_tick import (
    RetrainFacts,
    RunFact,
    TickDecision,
    TickFacts,
    decide_tick,
    plan_tick,
)
from mlops_assets.core.monitoring.output_checks import output_metadata
from mlops_assets.core.monitoring.profile_layout import reference_version
from mlops_assets.core.monitoring.retrain_requests import LabelledData, RetrainingRun, RunSpec
from mlops_assets.core.monitoring.window_judgement import judge_windows, others_metadata
from mlops_assets.monitor_stage.verdicts import record_verdict
from mlops_assets.run_tags import RUN_KIND_TAG, TRIGGER_TAG
from resources.alerts import AlertSink
from resources.artifact_store import ArtifactStore
from resources.dataset_source import DatasetSource
from resources.drift_policy import DriftPolicy
from resources.model_registry import ModelRegistryResource
from sensors.cadence import monitoring_sensor

IN_FLIGHT_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def newest_run(instance: dg.DagsterInstance, now: datetime, tags: dict[str, str],
               statuses: list[dg.DagsterRunStatus] | None = None) -> RunFact | None:
    """The newest run with ``tags`` (and one of ``statuses``, when given), as a fact: id, status, age."""
    records = instance.get_run_records(dg.RunsFilter(statuses=statuses, tags=tags), limit=1)
    if not records:
        return None
    run = records[0].dagster_run
    age_hours = (now.timestamp() - records[0].create_timestamp.timestamp()) / 3600.0
    return RunFact(run.run_id, run.status.value.lower(), age_hours)


def labelled_data(dataset_source: DatasetSource, production) -> LabelledData:
    """The labelled source's fingerprint now, beside the one production (a ``ModelVersion``) was trained on."""
    labels = production.labels if production else {}
    trained, dataset_version = labels.get("source_fingerprint"), labels.get("dataset_version", "unknown")
    try:
        return LabelledData(dataset_source.fingerprint(), trained, dataset_version)
    except (OSError, ValueError) as exc:
        return LabelledData(None, trained, dataset_version, f"{type(exc).__name__}: {exc}")


def retraining_run(drift_policy: DriftPolicy, repository_def: dg.RepositoryDefinition | None) -> RetrainingRun:
    """The policy's run config for retraining runs, read and checked against ``retrain_job`` on every tick, so a
    bad file is reported at once (in the tick's error, naming the file) rather than when drift finally happens."""
    run_config = drift_policy.retraining_run_config()
    if run_config and repository_def is not None:
        try:
            dg.validate_run_config(repository_def.get_job("retrain_job"), run_config)
        except dg.DagsterInvalidConfigError as error:
            problems = "; ".join(e.message for e in error.errors)
            raise ValueError(f"the retraining run config {drift_policy.retrain_run_config} "
                             f"(MLOPS_RETRAIN_RUN_CONFIG) is not valid for retrain_job: {problems}") from None
    return RetrainingRun(run_config, drift_policy.retrain_run_config if run_config else "")


def run_request(spec: RunSpec) -> dg.RunRequest:
    kind = {RUN_KIND_TAG: spec.kind, **({TRIGGER_TAG: spec.triggered_by} if spec.triggered_by else {})}
    return dg.RunRequest(job_name=spec.job_name, run_key=spec.run_key, run_config=spec.run_config,
                         tags={**kind, **spec.tags})


def carry_out(decision: TickDecision, alert_sink: AlertSink, records: list | None = None) -> dg.SensorResult:
    """The decision as Dagster takes it; its alerts delivered to the alert sink."""
    for alert in decision.alerts:
        alert_sink.send(alert)
    return dg.SensorResult(run_requests=[run_request(spec) for spec in decision.runs] or None,
                           skip_reason=decision.skip_reason or None, cursor=decision.cursor, asset_events=records)


def evaluate_drift_tick(
    cursor: str | None,
    instance: dg.DagsterInstance,
    artifact_store: ArtifactStore,
    model_registry: ModelRegistryResource,
    dataset_source: DatasetSource,
    drift_policy: DriftPolicy,
    alert_sink: AlertSink,
    retraining: RetrainingRun,
) -> dg.SensorResult:
    """One tick: the facts gathered, the windows judged and recorded, the pure decision carried out."""
    now, profiles, registry = datetime.now(UTC), artifact_store.profiles(), model_registry.registry()
    version = registry.production_version()
    in_flight = newest_run(instance, now, {RUN_KIND_TAG: "training"}, IN_FLIGHT_STATUSES)
    facts = TickFacts(version, version is not None and profiles.exists(reference_version(version)),
                      tuple(profiles.windows()), in_flight, now)
    plan = plan_tick(cursor, facts, drift_policy.decision_policy())
    if plan.decision is not None:
        return carry_out(plan.decision, alert_sink)
    production = registry.production()
    records, judged = None, []
    if plan.to_judge:
        reference_view = profiles.read(plan.reference)
        judged = judge_windows(profiles, list(plan.to_judge), reference_view, production, plan.policy)
        # each verdict becomes drift_report's record for its window: the UI shows and plots it
        records = [record_verdict(artifact_store, j.verdict, j.window, plan.reference, reference_view,
                                  extra_metadata={**output_metadata(j.outputs, j.decision, j.missing),
                                                  **others_metadata(j.others)}) for j in judged]
    retrain_facts = RetrainFacts(labelled_data(dataset_source, production),
                                 newest_run(instance, now, {TRIGGER_TAG: "drift"}), retraining, now)
    return carry_out(decide_tick(plan, judged, retrain_facts), alert_sink, records)


def make_drift_sensor(retrain_job, reference_job) -> dg.SensorDefinition:
    """The drift sensor, targeting the jobs it launches (wired in ``mlops_assets.automation``, which owns them)."""

    @monitoring_sensor(
        name="drift_sensor",
        jobs=[retrain_job, reference_job],
        description=(
            "Compares each new traffic profile window with the production model's reference profile; on "
            "drift, launches one retrain_job run (raw_images → … → registered_model → bento) if the labelled "
            "source holds data production was not trained on, once per source; otherwise skips, says why and "
            "alerts once (MLOPS_RETRAIN_REQUIRES_NEW_DATA). A production version without a reference gets a "
            "reference_profile_job run; a long blind spell alerts once (MLOPS_DRIFT_BLIND_ALERT_MINUTES)."
        ),
    )
    def drift_sensor(
        context: dg.SensorEvaluationContext, artifact_store: ArtifactStore, model_registry: ModelRegistryResource,
        dataset_source: DatasetSource, drift_policy: DriftPolicy, alert_sink: AlertSink,
    ) -> dg.SensorResult:
        retraining = retraining_run(drift_policy, context.repository_def)
        result = evaluate_drift_tick(context.cursor, context.instance, artifact_store, model_registry,
                                     dataset_source, drift_policy, alert_sink, retraining)
        for request in result.run_requests or []:
            context.log.info(f"requesting {request.job_name} run {request.run_key}")
        if result.skip_reason:  # also in the tick's logs ("View logs" in the tick list)
            context.log.info(result.skip_reason.skip_message)
        return result

    return drift_sensor
