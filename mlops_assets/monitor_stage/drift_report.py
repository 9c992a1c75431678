"""Monitor stage: each window of served traffic judged against the production model's training data.

``drift_report`` is partitioned like ``inference_profiles``, one verdict per window. The drift sensor judges
every new window as soon as it is profiled and records the verdict as this asset's materialization of that
window (``mlops_assets/monitor_stage/verdicts.py``), so the asset is up to date whenever a window is judged and its
Plots show drift share, rows and each feature's Hellinger distance per window over time. Materialising a
partition here (the UI, a backfill) judges that window again, against today's production reference.
"""

import dagster as dg

from mlops_assets.core.monitoring.output_checks import output_metadata
from mlops_assets.core.monitoring.profile_layout import reference_version, window_version
from mlops_assets.core.monitoring.window_judgement import judge_windows, others_metadata
from mlops_assets.monitor_stage.profiles import MONITOR_CODE_VERSION, MonitorError, production_model_version
from mlops_assets.monitor_stage.verdicts import publish_report, verdict_metadata
from mlops_assets.monitor_stage.windows import profile_partitions
from resources.artifact_store import ArtifactStore
from resources.drift_policy import DriftPolicy
from resources.model_registry import ModelRegistryResource


@dg.asset(
    kinds={"whylogs"},
    code_version=MONITOR_CODE_VERSION,
    partitions_def=profile_partitions(),
    deps=["reference_profile", "inference_profiles"],
    description=(
        "Per window: per-feature drift (KS and Hellinger from the sketches, chi-square for the predicted class) "
        "against the production model's reference profile, the drift share, the verdict and why, and whylogs' "
        "HTML drift report; beside it the output-only verdict against the model's validation split (confidence "
        "KS, class-mix chi-squared, accuracy estimated without labels by ATC) and the retraining decision with "
        "the signal that decided. Recorded by the drift sensor as it judges each window."
    ),
)
def drift_report(
    context: dg.AssetExecutionContext,
    artifact_store: ArtifactStore,
    model_registry: ModelRegistryResource,
    drift_policy: DriftPolicy,
) -> dg.MaterializeResult:
    profiles = artifact_store.profiles()
    model_version = production_model_version(model_registry)
    if model_version is None:
        raise MonitorError("no production model: materialise registered_model (build_job) first")
    reference = reference_version(model_version)
    if not profiles.exists(reference):
        raise MonitorError(f"no reference profile for production model {model_version}: materialise reference_profile")
    window = window_version(context.partition_time_window.start)
    if not profiles.exists(window):
        raise MonitorError(f"window {context.partition_key} has no profile: materialise inference_profiles for it")
    reference_view = profiles.read(reference)
    judged, = judge_windows(profiles, [window], reference_view, model_registry.registry().production(),
                            drift_policy.decision_policy())
    report = publish_report(artifact_store, judged.verdict, window, reference, reference_view, html=True)
    context.log.info(judged.decision.reason)
    return dg.MaterializeResult(metadata={**verdict_metadata(judged.verdict, window, reference, report),
                                          **output_metadata(judged.outputs, judged.decision, judged.missing),
                                          **others_metadata(judged.others)})
