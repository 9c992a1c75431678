"""Build stage 6: register the ONNX model with its lineage, and the promotion gate's decision.

The gate decides here; it switches nothing. A version the gate passes receives traffic only from the deploy
group's ``production_release``, after its Bento was built and passed its application test (promotion is the
last step: the registry refuses an untested version on every path)."""


import dagster as dg
from pydantic import Field

from mlops_assets.build_stage.evaluation import comparison_markdown
from mlops_assets.core.common import settings
from mlops_assets.core.common.markdown import markdown_table
from mlops_assets.core.data.artifacts import open_split
from mlops_assets.core.model import explain
from mlops_assets.core.model.ood import METADATA_KEY, calibrate_rows
from mlops_assets.core.monitoring.output_record import validation_output_record
from mlops_assets.core.monitoring.output_reference import OUTPUT_REFERENCE_KEY
from mlops_assets.core.registry.promotion import ChampionComparison, PromotionPolicy, decide_promotion
from mlops_assets.metadata import git_commit
from mlops_assets.refs import EvaluationRef, OnnxModelRef, RegisteredModelRef, SplitsRef
from resources.model_registry import ModelRegistryResource


class PromotionConfig(dg.Config):
    metric: str = Field(default="accuracy", description="Metric the gate compares (from evaluation_report).")
    floor: float = Field(
        default=0.0, description="Absolute minimum to reach production, on top of the baseline-relative floor.",
    )
    min_gain_over_baseline: float = Field(
        default=0.5,
        description=(
            "Floor relative to the majority-class baseline (always answering the test split's commonest class): "
            "the share of the images that answer gets wrong the candidate must get right. 0.5: floor = baseline "
            "+ half the rest (0.55 for ten balanced classes, 0.75 for two, 0.95 for a 90/10 split)."
        ),
    )
    max_regression: float = Field(
        default=0.005,
        description="Largest allowed drop against the production model, both scored on the same test images.",
    )
    min_compared_rows: int = Field(
        default=30, description="Fewest test images production did not train on for a comparison to count."
    )
    allow_incompatible: bool = Field(
        default=False,
        description=(
            "Replace a production model of other classes or input geometry. Off: such a candidate stays a "
            "candidate. Turn on only to change what the service answers on purpose."
        ),
    )

    def policy(self) -> PromotionPolicy:
        return PromotionPolicy(self.metric, self.floor, self.max_regression, self.min_compared_rows,
                               self.allow_incompatible, self.min_gain_over_baseline)


@dg.asset(
    kinds={"bentoml"},
    code_version="1",
    description=(
        "The ONNX model in the BentoML model store with its lineage (data split, code version, "
        "hyper-parameters, metrics, run id), with the gate's decision: release pending (production_release "
        "promotes it once its Bento passes the application test), awaiting approval, or kept as a candidate "
        "with the reason. Switches no traffic itself."
    ),
)
def registered_model(
    context: dg.AssetExecutionContext,
    config: PromotionConfig,
    onnx_model: OnnxModelRef,
    evaluation_report: EvaluationRef,
    data_splits: SplitsRef,
    model_registry: ModelRegistryResource,
) -> dg.MaterializeResult[RegisteredModelRef]:
    registry = model_registry.registry()
    conflict = registry.policy_conflict("this run (the model_registry resource's require_approval)")
    if conflict:
        context.log.warning(conflict)
    metrics = {k: v for k, v in evaluation_report.metrics.items() if isinstance(v, int | float)}
    labels = {
        "splits_version": data_splits.version,
        "dataset_version": data_splits.dataset_version,
        "code_version": git_commit(),
        "source": "dagster",
        "source_fingerprint": data_splits.source_fingerprint,
    }
    comparison = ChampionComparison.from_dict(evaluation_report.production_comparison)
    metadata = {
        "onnx_version": onnx_model.version,
        "trained_model_version": onnx_model.trained_model_version,
        "evaluation_version": evaluation_report.version,
        "dagster_run_id": context.run_id,
        "hyperparameters": onnx_model.hyperparameters,
        "metrics": metrics,
        "class_names": data_splits.class_names,
        "spec": data_splits.spec,
        # the out-of-distribution threshold of every answer this version gives (mlops_assets/core/model/ood.py)
        METADATA_KEY: calibrate_rows(onnx_model.path, open_split(data_splits.path, "val"),
                                     settings.resolve_float(settings.OOD_FPR),
                                     train=open_split(data_splits.path, "train")).as_metadata(),
        # the service explains only a version whose check passed (explain.refusal)
        explain.REGISTRY_KEY: evaluation_report.explanations,
        # the gate's figures on the images both models were scored on: `mlops-registry list` shows them beside
        # the version's own-split figure, which is not comparable across versions
        **({"gate": {"metric": config.metric, "compared_with": comparison.production_version,
                     "rows": comparison.n, "candidate": float(comparison.candidate[config.metric]),
                     "production": float(comparison.production[config.metric])}}
           if config.metric in comparison.candidate and config.metric in comparison.production else {}),
    }
    # what the output-only verdict and the harm trigger judge traffic against
    # (mlops_assets/core/monitoring/output_reference.py)
    output_record = validation_output_record(onnx_model.path, data_splits.path, data_splits.class_names)
    if output_record is not None:
        metadata[OUTPUT_REFERENCE_KEY] = output_record
    version = registry.register(onnx_model.path, onnx_model.version, labels, metadata,
                                actor=f"dagster run {context.run_id}")
    before = registry.production()
    pending, override = False, False
    if before is not None and before.version == version.version:
        promoted, reason = True, f"{version.version} is already the production model"
    elif before is not None and before.version != comparison.production_version:
        promoted, reason = False, (
            f"production changed to {before.version} after evaluation_report compared with "
            f"{comparison.production_version}: re-materialise evaluation_report"
        )
    else:
        test_class_counts = [row["support"] for row in evaluation_report.metrics.get("per_class", [])]
        decision = decide_promotion(metrics, comparison, config.policy(), test_class_counts)
        promoted, reason, override = False, decision.reason, bool(decision.incompatible_override)
        if decision.promote:
            pending, reason = registry.admit(version.version, reason, f"dagster run {context.run_id}", override)
    if pending:
        reason += "; released by production_release once its Bento passes the application test"
    awaiting = registry.awaiting_approval()
    waits = any(v.version == version.version for v in awaiting)
    production = registry.production()
    verdict = "already production" if promoted else "release pending" if pending else "kept as candidate"
    context.log.info(f"{version.tag}: {verdict}: {reason}")
    versions = registry.list_versions()
    return dg.MaterializeResult(
        value=RegisteredModelRef(
            tag=version.tag,
            version=version.version,
            promoted=promoted,
            reason=reason,
            production_version=production.version if production else None,
            awaiting_approval=waits,
            release_pending=pending,
            allow_incompatible=override,
        ),
        data_version=dg.DataVersion(version.version),
        metadata={
            "tag": version.tag,
            "promoted": promoted,
            "release_pending": pending,
            "gate_reason": dg.MetadataValue.md(reason),  # long: Markdown wraps where a text cell is cut
            "awaiting_approval": waits,
            "approval_policy": registry.policy().describe(),
            **({"approval_policy_conflict": conflict} if conflict else {}),
            "awaiting_approval_count": len(awaiting),
            "awaiting_approval_versions": dg.MetadataValue.md(awaiting_markdown(awaiting)),
            "production_version": production.version if production else "none",
            "previous_production_version": before.version if before else "none",
            "code_version": labels["code_version"],
            "splits_version": data_splits.version,
            "compared_with": comparison.production_version or "none",
            "compared_rows": comparison.n,
            "compared_rows_relabelled": comparison.relabelled,
            "relabel_accepted": comparison.relabel_accepted or "none",
            "champion_vs_challenger": dg.MetadataValue.md(comparison_markdown(comparison)),
            **({f"compared_{who}_{config.metric}": float(figures[config.metric])
                for who, figures in (("candidate", comparison.candidate), ("production", comparison.production))
                if config.metric in figures}),
            "model_store": dg.MetadataValue.path(version.path),
            **({f"ood_{key}": float(version.metadata[METADATA_KEY][key]) for key in ("threshold", "validation_fpr")}
               if METADATA_KEY in version.metadata else {}),
            "accuracy": float(metrics.get("accuracy", 0.0)),
            **({"validation_accuracy": float(output_record["validation_accuracy"]),
                "atc_threshold": float(output_record["atc_threshold"])} if output_record else
               {"output_reference": "none: the validation split is empty; drift is judged by the pixel policy"}),
            "versions": dg.MetadataValue.md(
                markdown_table(
                    ["version", "stage", "created", "accuracy"],
                    [[v.version, v.stage, v.created[:19], v.metadata.get("metrics", {}).get("accuracy", "")]
                     for v in versions[:10]],
                )
            ),
        },
    )


def awaiting_markdown(awaiting) -> str:
    """What waits for a reviewer, for the UI."""
    if not awaiting:
        return "No version awaits approval."
    return markdown_table(
        ["version", "requested", "by", "gate's reason"],
        [[v.version, (v.review or {}).get("requested_at", "")[:19], (v.review or {}).get("requested_by", ""),
          (v.review or {}).get("request_reason", "")] for v in awaiting],
    )
