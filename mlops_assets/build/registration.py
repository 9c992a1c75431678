"""Build stage 6: register the ONNX model with its lineage, and the promotion gate."""


import dagster as dg
from pydantic import Field

from mlops_assets.build.evaluation import comparison_markdown
from mlops_assets.metadata import git_commit
from mlops_assets.ml.markdown import markdown_table
from mlops_assets.ml.promotion import ChampionComparison, PromotionPolicy, decide_promotion
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
        "hyper-parameters, metrics, run id). Promoted to production only if it clears the gate; "
        "otherwise kept as a candidate, with the reason."
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
        # the gate's figures on the images both models were scored on: `mlops-registry list` shows them beside
        # the version's own-split figure, which is not comparable across versions
        **({"gate": {"metric": config.metric, "compared_with": comparison.production_version,
                     "rows": comparison.n, "candidate": float(comparison.candidate[config.metric]),
                     "production": float(comparison.production[config.metric])}}
           if config.metric in comparison.candidate and config.metric in comparison.production else {}),
    }
    version = registry.register(onnx_model.path, onnx_model.version, labels, metadata,
                                actor=f"dagster run {context.run_id}")
    before = registry.production()
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
        promoted, reason = decision.promote, decision.reason
        if promoted:
            promoted, reason = registry.release(version.version, reason, f"dagster run {context.run_id}",
                                                decision.incompatible_override)
    awaiting = registry.awaiting_approval()
    waits = any(v.version == version.version for v in awaiting)
    production = registry.production()
    context.log.info(f"{version.tag}: {'promoted' if promoted else 'kept as candidate'}: {reason}")
    versions = registry.list_versions()
    return dg.MaterializeResult(
        value=RegisteredModelRef(
            tag=version.tag,
            version=version.version,
            promoted=promoted,
            reason=reason,
            production_version=production.version if production else None,
            awaiting_approval=waits,
        ),
        data_version=dg.DataVersion(version.version),
        metadata={
            "tag": version.tag,
            "promoted": promoted,
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
            "accuracy": float(metrics.get("accuracy", 0.0)),
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


STALE_COMPARISON = "production changed to "  # the one reason the gate did not judge this version


def gate_outcome(registered_model: RegisteredModelRef) -> str:
    """The gate's decision in words: promoted, awaiting approval, kept as a candidate, or not judged."""
    if registered_model.promoted:
        return "promoted"
    if registered_model.awaiting_approval:
        return "awaiting approval"
    if registered_model.reason.startswith(STALE_COMPARISON):
        return "not judged"
    return "kept as a candidate"


@dg.asset_check(
    asset=registered_model,
    description=(
        "The gate's decision on this version: promoted, awaiting approval (a reviewer decides) or kept as a "
        "candidate (below the floor, or worse than production), each with the gate's reason and each a normal "
        "outcome of the gate, so it passes. Fails (as a warning) only when the gate could not judge the version: "
        "production changed after evaluation_report compared with it."
    ),
)
def promoted_to_production(registered_model: RegisteredModelRef) -> dg.AssetCheckResult:
    outcome = gate_outcome(registered_model)
    return dg.AssetCheckResult(
        passed=outcome != "not judged",
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{outcome}: {registered_model.reason}",
        metadata={
            "outcome": outcome,
            "reason": dg.MetadataValue.md(registered_model.reason),
            "version": registered_model.version,
            "production_version": registered_model.production_version or "none",
            "awaiting_approval": registered_model.awaiting_approval,
        },
    )
