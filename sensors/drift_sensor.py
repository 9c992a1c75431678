"""The drift sensor: one retraining run per drift event, decided from profiles, never from rows.

Each tick it looks at the window profiles written since its cursor (``inference_profiles``),
compares each with the reference profile of the production model and, when a window's drift
share reaches the threshold, requests one ``retrain_job`` run. Guarantees:

- exactly one run per drift event: the run key is ``drift-<window>-<reference>``, so re-evaluating
  the same window (a retried tick, a restarted daemon) requests the same key and Dagster launches
  it once;
- none missed: the cursor (the last window evaluated) advances only with the tick's result, and a
  tick evaluates the windows after it, oldest first, up to ``MAX_WINDOWS_PER_TICK`` (each is judged and
  recorded with its HTML report, about half a second); a backlog is worked off over the next ticks;
- no run while a retraining run (tag ``mlops/kind=training``) is queued or running: the tick skips
  *without* advancing the cursor, so those windows are judged once the run has finished, against
  the reference of whichever model is in production then;
- too little data in a window (``drift_policy.min_rows``) is a skip, not an alarm;
- a cooldown (``drift_policy.cooldown_hours``, default 6, 0 to disable) after a drift-launched run:
  drift that persists while the newly labelled data is still arriving does not retrain every window;
- retraining only on new labelled data (``drift_policy.retrain_requires_new_data``, default on): when the
  labelled source's fingerprint (file names, sizes, modification times; no pixel is read) is the one the
  production model was trained on, retraining would reproduce production, so the tick skips, says so,
  and alerts a person once per drift episode (file and webhook, as run failures). The drift stays
  pending in the cursor: when labelled data arrives later, the next tick launches the run for it;
- one retraining per new data: the cursor remembers the source fingerprint of the last retraining it
  launched; when that run left production unchanged (the gate refused its model, or it awaits approval),
  drift on the identical source is skipped with the reason and alerted once, not retrained again;
- never blind without saying so: a production version without a reference profile (promoted by the CLI,
  an approval, a rollback or a reinstate, or registered before every build made one) gets a
  ``reference_profile_job`` run for it (one per version, by run key), and windows wait in the cursor until
  it exists; when they have waited longer than ``drift_policy.blind_alert_minutes``, a person is alerted
  once.

Thresholds and policy come from the ``drift_policy`` resource, the same one ``drift_report`` judges with
(its defaults from MLOPS_DRIFT_SHARE, _P_VALUE, _DISTANCE, _MIN_ROWS, _COOLDOWN_HOURS and
MLOPS_RETRAIN_REQUIRES_NEW_DATA; shown in the UI with the code location's resources).
"""

import dataclasses
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg

from mlops_assets.core.monitoring.output_checks import judge_and_decide, output_metadata, production_output_reference
from mlops_assets.core.monitoring.profile_layout import reference_version, window_label
from mlops_assets.core.monitoring.retrain_decision import DriftCursor
from mlops_assets.monitor_stage.verdicts import judge_window, record_verdict
from mlops_assets.run_tags import RUN_KIND_TAG, TRIGGER_TAG
from resources.alerts import AlertSink
from resources.artifact_store import ArtifactStore
from resources.dataset_source import DatasetSource
from resources.drift_policy import DriftPolicy
from resources.model_registry import ModelRegistryResource
from sensors.cadence import monitoring_sensor

MAX_WINDOWS_PER_TICK = 12  # keeps a tick well inside Dagster's 60 s sensor timeout
IN_FLIGHT_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def in_flight_training_run(instance: dg.DagsterInstance) -> dg.DagsterRun | None:
    records = instance.get_run_records(
        dg.RunsFilter(statuses=IN_FLIGHT_STATUSES, tags={RUN_KIND_TAG: "training"}), limit=1
    )
    return records[0].dagster_run if records else None


def recent_drift_run(instance: dg.DagsterInstance, hours: float):
    """The newest run this sensor launched within the last ``hours`` (any status), if any."""
    if hours <= 0:
        return None
    since = datetime.now(UTC) - timedelta(hours=hours)
    records = instance.get_run_records(
        dg.RunsFilter(tags={TRIGGER_TAG: "drift"}, created_after=since), limit=1
    )
    return records[0] if records else None


@dataclass(frozen=True)
class LabelledData:
    """What the labelled source holds now against what production was trained on."""

    current: str | None  # the source's fingerprint now (None: it could not be read)
    trained: str | None  # the fingerprint production was trained on (None: not recorded)
    dataset_version: str
    problem: str = ""

    @property
    def is_new(self) -> bool:
        return self.current is not None and self.current != self.trained


def labelled_data(dataset_source: DatasetSource, model_registry: ModelRegistryResource) -> LabelledData:
    production = model_registry.registry().production()
    labels = production.labels if production else {}
    trained, dataset_version = labels.get("source_fingerprint"), labels.get("dataset_version", "unknown")
    try:
        return LabelledData(dataset_source.fingerprint(), trained, dataset_version)
    except (OSError, ValueError) as exc:
        return LabelledData(None, trained, dataset_version, f"{type(exc).__name__}: {exc}")


def stale_data_alert(verdict, model_version: str, ref_version: str, data: LabelledData) -> dict:
    text = (
        f"Traffic drifted from the training data of production model {model_version} ({verdict.reason}), "
        f"but the labelled source has no new data since dataset version {data.dataset_version}: retraining "
        "would reproduce the same model. Label recent production images and add them to the source; the "
        "drift sensor retrains as soon as they arrive."
    )
    return {
        "at": datetime.now(UTC).isoformat(),
        "kind": "drift_without_new_data",
        "window": verdict.window,
        "drift_share": round(float(verdict.drift_share), 4),
        "drifted_features": list(verdict.drifted_features),
        "model_version": model_version,
        "reference": ref_version,
        "dataset_version": data.dataset_version,
        "source_fingerprint": data.current,
        "text": text,
    }


@dataclass(frozen=True)
class RetrainingRun:
    """What a retraining run is launched with: the run config of the drift policy's file (``source``), if any."""

    run_config: dict = dataclasses.field(default_factory=dict)
    source: str = ""

    @classmethod
    def from_policy(cls, drift_policy: DriftPolicy, repository_def: dg.RepositoryDefinition | None) -> "RetrainingRun":
        """Read and check the policy's run config on every tick, so a bad file is reported at once (in the
        tick's error, naming the file) rather than when drift finally happens."""
        run_config = drift_policy.retraining_run_config()
        if run_config and repository_def is not None:
            try:
                dg.validate_run_config(repository_def.get_job("retrain_job"), run_config)
            except dg.DagsterInvalidConfigError as error:
                problems = "; ".join(e.message for e in error.errors)
                raise ValueError(f"the retraining run config {drift_policy.retrain_run_config} "
                                 f"(MLOPS_RETRAIN_RUN_CONFIG) is not valid for retrain_job: {problems}") from None
        return cls(run_config, drift_policy.retrain_run_config if run_config else "")


def blind_alert(model_version: str, since: str, minutes: float) -> dict:
    text = (
        f"The drift monitor cannot judge traffic: production model {model_version} has had no reference profile "
        f"since {since[:19]} (longer than {minutes:g} min, drift_policy.blind_alert_minutes). A reference_profile_job "
        f"run for it was requested; check that run (Runs, tag mlops/reference), or materialise reference_profile "
        f"with version {model_version}."
    )
    return {"at": datetime.now(UTC).isoformat(), "kind": "drift_monitor_blind", "model_version": model_version,
            "reference": reference_version(model_version), "blind_since": since, "text": text}


def refused_retrain_alert(verdict, model_version: str, data: LabelledData) -> dict:
    text = (
        f"Traffic drifted from production model {model_version} ({verdict.reason}), and a retraining run on the "
        f"labelled source as it is now was already launched without changing production (its model was refused "
        "by the gate or awaits approval). Retraining again on identical data would do the same: add newly "
        "labelled images, or review the candidate (mlops-registry awaiting / list)."
    )
    return {"at": datetime.now(UTC).isoformat(), "kind": "retrain_on_same_data_refused", "window": verdict.window,
            "drift_share": round(float(verdict.drift_share), 4), "model_version": model_version,
            "source_fingerprint": data.current, "text": text}


def reference_run_request(model_version: str) -> dg.RunRequest:
    """A run that builds the reference of ``model_version`` (once per version: the run key says which)."""
    return dg.RunRequest(
        job_name="reference_profile_job", run_key=f"reference-{model_version}",
        run_config={"ops": {"reference_profile": {"config": {"version": model_version}}}},
        tags={RUN_KIND_TAG: "monitoring", "mlops/reference": reference_version(model_version)},
    )


def blind_tick(state: DriftCursor, model_version: str, drift_policy: DriftPolicy,
               alert_sink: AlertSink) -> dg.SensorResult:
    """No reference for the production version: request it, keep the windows waiting, alert once if too long."""
    now = datetime.now(UTC)
    since = state.blind_since or now.isoformat()
    blind = state.replace(blind_since=since)
    waited = now - datetime.fromisoformat(since)
    if waited > timedelta(minutes=drift_policy.blind_alert_minutes) and state.blind_alerted != model_version:
        alert_sink.send(blind_alert(model_version, since, drift_policy.blind_alert_minutes))
        blind = blind.replace(blind_alerted=model_version)
    return dg.SensorResult(run_requests=[reference_run_request(model_version)], cursor=blind.dump())


def drift_run_request(window: str, share: float, ref_version: str, features: list[str], data: LabelledData,
                      retraining: RetrainingRun, suffix: str = "", signal: str = "") -> dg.RunRequest:
    return dg.RunRequest(
        job_name="retrain_job",
        run_key=f"drift-{window.removeprefix('window-')}-{ref_version}{suffix}",
        run_config=retraining.run_config,
        tags={
            RUN_KIND_TAG: "training",
            TRIGGER_TAG: "drift",
            "mlops/drift_window": window_label(window),
            "mlops/drift_share": f"{share:.2f}",
            "mlops/reference": ref_version,
            "mlops/drifted_features": ",".join(features)[:200],
            "mlops/source_fingerprint": data.current or "unknown",
            **({"mlops/retrain_signal": signal} if signal else {}),
            **({"mlops/run_config": retraining.source} if retraining.source else {}),
        },
    )


def evaluate_drift_tick(
    cursor: str | None,
    instance: dg.DagsterInstance,
    artifact_store: ArtifactStore,
    model_registry: ModelRegistryResource,
    dataset_source: DatasetSource,
    drift_policy: DriftPolicy,
    alert_sink: AlertSink,
    retraining: RetrainingRun = RetrainingRun(),
) -> dg.SensorResult:
    """The whole decision of one tick (the sensor is a thin wrapper around it)."""

    state = DriftCursor.parse(cursor)
    model_version = model_registry.registry().production_version()
    if model_version is None:
        return dg.SensorResult(skip_reason="no production model yet: nothing to compare traffic against")
    ref_version = reference_version(model_version)
    profiles = artifact_store.profiles()
    if not profiles.exists(ref_version):
        return blind_tick(state, model_version, drift_policy, alert_sink)
    state = state.replace(blind_since=None, blind_alerted=None)
    windows = profiles.windows()
    new = [w for w in windows if w > state.window] if state.window else windows[-1:]
    if not new:
        last = window_label(state.window) if state.window else "none"
        if state.pending_window and state.reference == ref_version and in_flight_training_run(instance) is None:
            data = labelled_data(dataset_source, model_registry)
            if data.is_new and data.current != state.retrained_fingerprint:  # the awaited labelled data is here
                request = drift_run_request(state.pending_window, state.pending_share or 0.0, ref_version, [],
                                            data, retraining, suffix=f"-data-{data.current[-8:]}",
                                            signal=state.pending_signal or "")
                return dg.SensorResult(run_requests=[request], cursor=state.replace(
                    pending_window=None, pending_share=None, pending_signal=None, last_run_key=request.run_key,
                    retrained_fingerprint=data.current).dump())
            return dg.SensorResult(skip_reason=(
                f"no new profile window since {last}; drift on window {window_label(state.pending_window)} "
                f"still waits for new labelled data (production trained on dataset version {data.dataset_version})"
            ))
        return dg.SensorResult(skip_reason=f"no new profile window since {last}")
    backlog = max(0, len(new) - MAX_WINDOWS_PER_TICK)
    new = new[:MAX_WINDOWS_PER_TICK]
    running = in_flight_training_run(instance)
    if running is not None:
        return dg.SensorResult(
            skip_reason=(
                f"retraining run {running.run_id[:8]} is {running.status.value.lower()}; "
                f"{len(new)} new window(s) from {window_label(new[0])} will be judged after it finishes"
            )
        )
    thresholds, trigger = drift_policy.thresholds(), drift_policy.trigger_policy()
    reference = profiles.read(ref_version)
    output_reference, missing = production_output_reference(model_registry.registry().production())
    judged_windows = []
    for window in new:  # pixel verdict, output verdict and the decision (which signal decides: the policy's)
        verdict = judge_window(profiles, window, reference, thresholds)
        outputs, decision = judge_and_decide(profiles, window, verdict, output_reference, missing, trigger)
        judged_windows.append((window, verdict, outputs, decision))
    # each verdict becomes drift_report's record for its window: the UI shows and plots it
    records = [record_verdict(artifact_store, verdict, window, ref_version, reference,
                              extra_metadata=output_metadata(outputs, decision, missing))
               for window, verdict, outputs, decision in judged_windows]
    # the decision's sentence (which signal decided, and why) is the reason every skip, alert and run carries
    verdicts = [(window, dataclasses.replace(verdict, reason=decision.reason), decision)
                for window, verdict, _, decision in judged_windows]
    drifted = [(w, v, d) for w, v, d in verdicts if d.retrain]
    judged = state.replace(window=new[-1], reference=ref_version)
    if not drifted:
        reasons = "; ".join(v.reason for _, v, _ in verdicts[-3:])
        more = f" (and {len(verdicts) - 3} earlier window(s) without drift)" if len(verdicts) > 3 else ""
        remaining = f"; {backlog} later window(s) are judged on the next tick" if backlog else ""
        return dg.SensorResult(  # the drift episode, if any, is over
            skip_reason=reasons + more + remaining, asset_events=records,
            cursor=judged.replace(pending_window=None, pending_share=None, alerted_episode=None).dump(),
        )
    window, verdict, decision = drifted[-1]
    recent = recent_drift_run(instance, drift_policy.cooldown_hours)
    if recent is not None:
        age_h = (time.time() - recent.create_timestamp.timestamp()) / 3600.0
        return dg.SensorResult(
            skip_reason=(
                f"{verdict.reason}; but drift retraining run {recent.dagster_run.run_id[:8]} was launched "
                f"{age_h:.1f} h ago (cooldown {drift_policy.cooldown_hours:g} h, drift_policy.cooldown_hours)"
            ),
            cursor=judged.dump(), asset_events=records,
        )
    data = labelled_data(dataset_source, model_registry)
    if drift_policy.retrain_requires_new_data and not data.is_new:
        why = (f"the labelled source cannot be read ({data.problem})" if data.current is None else
               f"no new labelled data since dataset version {data.dataset_version}")
        episode = f"{ref_version}|{data.current}"
        alerted = ""
        if state.alerted_episode != episode:
            alert_sink.send(stale_data_alert(verdict, model_version, ref_version, data))
            alerted = "; a person was alerted"
        return dg.SensorResult(
            skip_reason=(
                f"{verdict.reason}; {why}: retraining would reproduce production {model_version} "
                f"(drift_policy.retrain_requires_new_data){alerted}"
            ),
            cursor=judged.replace(pending_window=window, pending_share=float(verdict.drift_share),
                                  pending_signal=decision.signal, alerted_episode=episode).dump(),
            asset_events=records,
        )
    if data.current is not None and data.current == state.retrained_fingerprint:
        episode = f"{ref_version}|{data.current}|retrained"
        alerted = ""
        if state.alerted_episode != episode:
            alert_sink.send(refused_retrain_alert(verdict, model_version, data))
            alerted = "; a person was alerted"
        return dg.SensorResult(
            skip_reason=(
                f"{verdict.reason}; but a retraining run on this labelled source was already launched "
                f"({state.last_run_key}) and production is still {model_version} (its model was refused by the "
                f"gate or awaits approval): retraining on identical data would do the same{alerted}"
            ),
            cursor=judged.replace(alerted_episode=episode).dump(), asset_events=records,
        )
    request = drift_run_request(window, verdict.drift_share, ref_version, list(verdict.drifted_features), data,
                                retraining, signal=decision.signal)
    return dg.SensorResult(run_requests=[request], asset_events=records, cursor=judged.replace(
        last_run_key=request.run_key, pending_window=None, pending_share=None, alerted_episode=None,
        retrained_fingerprint=data.current).dump())


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
        retraining = RetrainingRun.from_policy(drift_policy, context.repository_def)
        result = evaluate_drift_tick(context.cursor, context.instance, artifact_store, model_registry,
                                     dataset_source, drift_policy, alert_sink, retraining)
        for request in result.run_requests or []:
            context.log.info(f"requesting {request.job_name} run {request.run_key}")
        if result.skip_reason:  # also in the tick's logs ("View logs" in the tick list)
            context.log.info(result.skip_reason.skip_message)
        return result

    return drift_sensor
