"""`make demo`: materialise build_job end to end on the configured source (digits by default).

Runs against the instance in DAGSTER_HOME, so `dagster dev` afterwards shows this run, its
lineage, checks and metadata. Exits non-zero if any step or blocking check failed, or if the model it
built did not reach production: then it says why, which model the service answers with instead (or that
none does) and how to promote one, since "succeeded" beside an unchanged service misleads.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> int:
    import dagster as dg

    from mlops_assets.build_stage.evaluation import CONFUSION_PNG
    from mlops_assets.definitions import defs

    job = defs.resolve_job_def("build_job")
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        )
    outputs = {}
    for event in result.get_asset_materialization_events():
        outputs[event.asset_key.to_user_string()] = event.materialization.metadata
    failed_checks = [e for e in result.get_asset_check_evaluations() if not e.passed]
    print(f"\nbuild_job run {result.run_id}: {'succeeded' if result.success else 'FAILED'}")
    for check in result.get_asset_check_evaluations():
        print(check_line(check.check_name, check.passed, check.metadata))
    evaluation = outputs.get("evaluation_report", {})
    registered = outputs.get("registered_model", {})
    released = outputs.get("production_release", {})  # promotion, after the Bento's application test
    raw = outputs.get("raw_images", {})
    if raw:
        print(f"  images          {raw['n_images'].value} at {raw['image_shape'].value} (channels×height×width), "
              f"from {raw['geometry_source'].value}")
        if raw["n_skipped"].value:
            counts = ", ".join(f"{kind} {n}" for kind, n in raw["skipped_by_reason"].value.items())
            print(f"  skipped files   {raw['n_skipped'].value} ({counts}); listed in raw_images' skipped_files")
        if raw["geometry_warning"].value != "none":
            print(f"  WARNING         {raw['geometry_warning'].value}")
    if evaluation:
        print(f"  test accuracy   {evaluation['accuracy'].value:.4f}   macro F1 {evaluation['macro_f1'].value:.4f}")
        print(f"  report          {evaluation['report_path'].value}")
        report_dir = Path(evaluation["report_path"].value).parent
        print(f"  confusion PNG   {report_dir / CONFUSION_PNG}")
    if "trained_model" in outputs:
        print(f"  trained model   {outputs['trained_model']['reused'].value}: "
              f"{outputs['trained_model']['artifact_path'].value}")
    if "onnx_model" in outputs:
        print(f"  ONNX model      {outputs['onnx_model']['artifact_path'].value}")
    if registered:
        print(f"  registry        {registered['tag'].value} -> {registered['gate_reason'].value}")
        production = (released or registered)["production_version"].value
        print(f"  production      {production}"
              f"   (list versions: .venv/bin/mlops-registry list)")
    print("  UI              make dev, then open http://127.0.0.1:3000")
    if not result.success or any(c.severity.value == "ERROR" for c in failed_checks):
        return 1
    promoted = released["promoted"].value if released else registered and registered["promoted"].value
    if registered and not promoted:
        reason = released["reason"].value if released else registered["gate_reason"].value
        for line in not_promoted_lines(registered["tag"].value, reason, production_model()):
            print(line)
        return 1
    return 0


def check_line(name: str, passed: bool, metadata: dict) -> str:
    """One check's line: the gate's outcome in its own words ("awaiting approval", "kept as a candidate") rather
    than "passed"/"FAILED", which would call a gate doing its job a failure."""
    outcome, reason = metadata.get("outcome"), metadata.get("reason")
    status = outcome.value if outcome else "passed" if passed else "FAILED"
    return f"  check {name:<24} {status}" + (f"  ({reason.value})" if reason else "")


def production_model():
    """The version the registry names as production (what the service answers with), or None."""
    from mlops_assets.core.common import settings
    from mlops_assets.core.registry.registry import ModelRegistry

    registry = ModelRegistry(settings.resolve(settings.BENTOML_HOME), settings.resolve(settings.MODEL_NAME))
    return registry.production() if registry.exists() else None


def not_promoted_lines(tag: str, reason: str, production) -> list[str]:
    """What a user needs when the new model stays a candidate: why, what serves instead, how to change it."""
    version = tag.rpartition(":")[2]
    if production is None:
        serving = "nothing is served: no model is in production"
    else:
        classes = production.metadata.get("class_names", [])
        shown = ", ".join(classes[:10]) + (f" and {len(classes) - 10} more" if len(classes) > 10 else "")
        serving = f"the service keeps answering with production {production.version} (classes {shown})"
    return [
        f"\nNOT promoted: {tag} stays a candidate: {reason}",
        f"  {serving}",
        f"  to serve it anyway: .venv/bin/mlops-registry promote {version}, or rebuild with registered_model's "
        "config (floor, min_gain_over_baseline, allow_incompatible) changed in the launchpad",
    ]


if __name__ == "__main__":
    sys.exit(main())
