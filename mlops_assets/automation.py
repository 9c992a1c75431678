"""Every job, schedule and sensor of the code location, wired in one place.

The stages (``build_stage/``, ``deploy_stage/``, ``monitor_stage/``, ``govern_stage/``) define assets, checks and ops;
``sensors/`` defines the sensors' decisions; this module says what runs together and when.
"""

from __future__ import annotations

import dagster as dg

from mlops_assets.govern_stage.evidence import promote_challenger
from mlops_assets.govern_stage.review import compare_candidate, review_candidate
from mlops_assets.govern_stage.rollback import rollback_production
from mlops_assets.govern_stage.shadow import set_shadow_slot
from mlops_assets.monitor_stage.labelled_export import export_labelled_feedback
from mlops_assets.run_tags import RUN_KIND_TAG
from sensors.alerts import run_failure_alert
from sensors.drift_sensor import make_drift_sensor
from sensors.evidence_sensor import make_promotion_evidence_sensor
from sensors.performance_sensors import make_feedback_sensor, performance_alert_sensor
from sensors.profiling_sensor import inference_profiling_sensor
from sensors.serving_sensor import served_model_sensor

# Every job runs in-process (the Definitions' executor, set once in definitions.py): the build is a chain of fifteen
# steps (nine assets, six check steps) on one small dataset, and each multiprocess step pays ~3 s of process
# start-up on a 2-core machine (see BENCHMARKS.md).
build_job = dg.define_asset_job(
    name="build_job",
    # the registered version's reference profile too: whichever path later puts it in production (the gate, an
    # approval, the CLI, a rollback), the drift sensor can judge the first window after the switch. The deploy
    # group too: promotion is the last step, after the version's Bento passed its application test.
    selection=dg.AssetSelection.groups("build", "deploy") | dg.AssetSelection.assets("reference_profile"),
    tags={RUN_KIND_TAG: "training"},
    description="Images → splits → data checks → model → ONNX → evaluation → registry (the gate decides) → the "
    "Bento of the gate-passed version → its application test → promotion (production_release), and the "
    "registered version's reference profile.",
)

deploy_job = dg.define_asset_job(
    name="deploy_job",
    selection=dg.AssetSelection.groups("deploy"),
    tags={RUN_KIND_TAG: "release"},
    description="Build the Bento of the last registered version the gate passed (else production), run its "
    "application test (the release test) and, if it passed, promote it.",
)


@dg.job(
    description="Roll production back to the previous model version (the services follow the pointer).",
    tags={RUN_KIND_TAG: "release"},
    # `dg launch --job rollback_job` prints what happened (one line: the move, or why there is nothing to roll
    # back), not the engine's DEBUG events; the run's page in the UI still holds every event
    config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
)
def rollback_job() -> None:
    rollback_production()


@dg.job(
    description=(
        "A reviewer approves (→ production) or rejects a version (rejecting production withdraws it); the "
        "registry records who, when and why. Launchpad: version, decision, reviewer, reason."
    ),
    tags={RUN_KIND_TAG: "release"},
)
def review_model_job() -> None:
    review_candidate()


@dg.job(
    description=(
        "Put a version in the registry's shadow slot (it scores the live requests beside production and answers no "
        "client) or clear it; checked and recorded by the registry. Launchpad: version or clear, reason."
    ),
    tags={RUN_KIND_TAG: "release"},
)
def shadow_model_job() -> None:
    set_shadow_slot()


@dg.job(
    description=(
        "Compare a registered version with today's production on the same rows and, if the gate passes it, "
        "request a fresh approval (an approval names the production version it was compared with)."
    ),
    tags={RUN_KIND_TAG: "release"},
)
def compare_model_job() -> None:
    compare_candidate()


@dg.job(
    description=(
        "Promote the challenger (the shadow) the live comparison found better than production, if both are still in "
        "place; the registry's rules still apply. Launched by promotion_evidence_sensor (MLOPS_PROMOTE_FROM_EVIDENCE)."
    ),
    tags={RUN_KIND_TAG: "release"},
)
def promote_challenger_job() -> None:
    promote_challenger()


promotion_evidence_sensor = make_promotion_evidence_sensor(promote_challenger_job)

retrain_job = dg.define_asset_job(
    name="retrain_job",
    # raw_images and everything downstream of it (splits … registered_model, bento and its application test, then
    # production_release; the reference profile of the new version), but not what is measured per window of traffic.
    selection=dg.AssetSelection.assets("raw_images").downstream()
    - dg.AssetSelection.assets("inference_profiles", "drift_report", "production_performance", "live_comparison"),
    tags={RUN_KIND_TAG: "training"},
    description="Re-materialise the model on the latest data, launched by the drift sensor.",
)

reference_profile_job = dg.define_asset_job(
    name="reference_profile_job",
    selection=dg.AssetSelection.assets("reference_profile"),
    tags={RUN_KIND_TAG: "monitoring"},
    description="Profile the training split of one model version (config: version; empty: the last registered), "
    "so drift can be judged against it; the drift sensor launches it for a production version that has none.",
)

drift_sensor = make_drift_sensor(retrain_job, reference_profile_job)

profile_job = dg.define_asset_job(
    name="profile_inference_log_job",
    selection=dg.AssetSelection.assets("inference_profiles"),
    tags={RUN_KIND_TAG: "monitoring"},
    description="Profile one window of the inference log.",
)

drift_report_job = dg.define_asset_job(
    name="drift_report_job",
    selection=dg.AssetSelection.assets("drift_report"),
    tags={RUN_KIND_TAG: "monitoring"},
    description="Judge windows again (a backfill of drift_report), e.g. against a new production reference; "
    "the drift sensor judges each new window by itself.",
)

performance_job = dg.define_asset_job(
    name="production_performance_job",
    selection=dg.AssetSelection.assets("production_performance"),
    tags={RUN_KIND_TAG: "monitoring"},
    description="Measure one window's accuracy and bias on labelled production traffic (launched by "
    "feedback_sensor as labels arrive; a backfill re-measures many).",
)

live_comparison_job = dg.define_asset_job(
    name="live_comparison_job",
    selection=dg.AssetSelection.assets("live_comparison"),
    tags={RUN_KIND_TAG: "monitoring"},
    description="Compare production and the challenger in the shadow slot on one window's requests (launched by "
    "feedback_sensor as labels arrive on a window a shadow scored; a backfill compares many).",
)

feedback_sensor = make_feedback_sensor(performance_job, live_comparison_job)

@dg.job(
    description=(
        "Write labelled production images (feedback on predictions whose image was kept) into the image-folder "
        "source, each once, so the drift sensor's retraining policy sees new labels."
    ),
    tags={RUN_KIND_TAG: "monitoring"},
)
def export_feedback_job() -> None:
    export_labelled_feedback()


weekly_rebuild_schedule = dg.ScheduleDefinition(
    name="weekly_rebuild",
    job=build_job,
    cron_schedule="0 3 * * 1",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Rebuild the model every Monday 03:00 UTC on whatever the image source holds then.",
)

JOBS = [build_job, deploy_job, rollback_job, review_model_job, shadow_model_job, compare_model_job,
        promote_challenger_job, retrain_job, reference_profile_job, profile_job, drift_report_job, performance_job,
        live_comparison_job, export_feedback_job]
SCHEDULES = [weekly_rebuild_schedule]
SENSORS = [inference_profiling_sensor, drift_sensor, run_failure_alert, feedback_sensor, performance_alert_sensor,
           served_model_sensor, promotion_evidence_sensor]
