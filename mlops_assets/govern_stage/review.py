"""Deploy stage: a reviewer approves or rejects a version, and a fresh comparison asks for a new approval.

The launchpad of ``review_model_job`` takes the version, the decision, the reviewer's name and the reason; the
registry records them in its history. An approval makes the version production (running services follow the
pointer) and profiles its training split, so the drift sensor has the new production model's reference at once.
Rejecting the version in production withdraws it (production returns to the last version that may serve);
rejecting the challenger in the shadow slot empties the slot (``shadow_cleared`` in the record), as
``mlops-registry reject VERSION --by NAME --reason ...`` does.

An approval names the production version it was compared with. When production has changed since, or a version
was rejected and deserves a second look, ``compare_model_job`` scores it against today's production on one split
(its own test split less production's training images, as the gate does) and, if the gate would pass it, files a
fresh request for approval.
"""

from typing import Literal

import dagster as dg
from pydantic import Field

from mlops_assets.build_stage.evaluation import compare_with_production, comparison_markdown
from mlops_assets.build_stage.registration import PromotionConfig, awaiting_markdown
from mlops_assets.core.common.markdown import markdown_table
from mlops_assets.refs import SplitsRef
from resources.artifact_store import ArtifactStore
from resources.model_registry import ModelRegistryResource


class ReviewConfig(dg.Config):
    version: str = Field(description="The version awaiting approval (registered_model → awaiting_approval_versions).")
    decision: Literal["approve", "reject", "approve-trial"] = Field(
        description="approve: it becomes production; reject: it never serves (rejecting production withdraws it); "
                    "approve-trial: the version in the shadow slot may answer its A/B share of clients beside "
                    "today's production (void once production changes; promoting it still needs approve).")
    reviewer: str = Field(description="Who decides; recorded in the registry's history.")
    reason: str = Field(description="Why; recorded in the registry's history.")
    allow_incompatible: bool = Field(
        default=False, description="Approve even a version of other classes or input geometry than production's.",
    )


@dg.op(
    description=("Approve (→ production) or reject a candidate awaiting approval, or approve a trial of the shadow "
                 "(it answers its A/B share), recording who, when and why."),
    tags={"kind": "bentoml"},
)
def review_candidate(
    context: dg.OpExecutionContext, config: ReviewConfig, model_registry: ModelRegistryResource,
    artifact_store: ArtifactStore,
) -> None:
    from mlops_assets.core.registry.registry import RegistryError
    from mlops_assets.monitor_stage.profiles import publish_reference_profile

    registry = model_registry.registry()
    before = registry.production_version()
    via = f"dagster run {context.run_id}"
    try:
        if config.decision == "approve":
            registry.approve(config.version, config.reviewer, config.reason,
                             allow_incompatible=config.allow_incompatible, via=via)
        elif config.decision == "approve-trial":
            registry.approve_trial(config.version, config.reviewer, config.reason, via=via)
        else:
            registry.reject(config.version, config.reviewer, config.reason, via=via)
    except RegistryError as exc:
        raise dg.Failure(description=str(exc)) from exc
    after = registry.production()
    cleared = registry.events()[-1].get("shadow_cleared")  # a rejected (or promoted) challenger leaves the slot
    context.log.info(f"{config.decision} {config.version} by {config.reviewer}: production "
                     f"{before or 'none'} → {after.version if after else 'none'}")
    context.log_event(dg.AssetObservation(
        asset_key="registered_model",
        metadata={
            "action": config.decision,
            "version": config.version,
            "reviewer": config.reviewer,
            "reason": config.reason,
            "production_version": after.version if after else "none",
            "shadow_version": registry.shadow_version() or "none",
            **({"shadow_cleared": cleared} if cleared else {}),
            "awaiting_approval_count": len(registry.awaiting_approval()),
            "awaiting_approval_versions": dg.MetadataValue.md(awaiting_markdown(registry.awaiting_approval())),
            "history": dg.MetadataValue.md(markdown_table(
                ["at", "action", "version", "from", "to", "by", "why"],
                [[e["at"][:19], e["action"], e.get("version", e["to"]), e["from"], e["to"], e.get("actor", ""),
                  e["reason"]] for e in registry.events()[-10:]],
            )),
        },
    ))
    if after is not None and after.version != before:
        version, metadata = publish_reference_profile(after, artifact_store)
        context.log_event(dg.AssetMaterialization(
            asset_key="reference_profile",
            description=f"reference of {after.version}, production after {config.decision} by {config.reviewer}",
            metadata=metadata,
        ))
        context.log.info(f"{version} written: the drift sensor compares traffic with the approved model now")


class CompareConfig(PromotionConfig):
    """The gate's settings, applied to a registered version against today's production."""

    version: str = Field(description="The registered version to compare with the version in production now.")


@dg.op(
    description=(
        "Score a registered version against today's production on the same rows (its test split less "
        "production's training images) and, if the gate would pass it, request a fresh approval."
    ),
    tags={"kind": "onnx"},
)
def compare_candidate(
    context: dg.OpExecutionContext, config: CompareConfig, model_registry: ModelRegistryResource,
    artifact_store: ArtifactStore,
) -> None:
    from mlops_assets.core.data.artifacts import open_split
    from mlops_assets.core.registry.promotion import decide_promotion
    from mlops_assets.core.registry.registry import RegistryError

    registry = model_registry.registry()
    try:
        version = registry.get(config.version)
    except RegistryError as exc:
        raise dg.Failure(description=str(exc)) from exc
    splits_version = version.labels.get("splits_version", "")
    if not splits_version or not artifact_store.exists("splits", splits_version):
        raise dg.Failure(description=(
            f"cannot compare {version.tag}: its split {splits_version or '(none recorded)'} is not in the artifact "
            f"store {artifact_store.root_path}"))
    splits = SplitsRef(version=splits_version, path=str(artifact_store.path("splits", splits_version)),
                       dataset_version=version.labels.get("dataset_version", ""),
                       class_names=list(version.metadata.get("class_names", [])),
                       spec=dict(version.metadata.get("spec", {})), counts={})
    test = open_split(splits.path, "test")
    comparison = compare_with_production(model_registry, artifact_store, test, splits, str(version.onnx_path))
    metrics = {k: v for k, v in version.metadata.get("metrics", {}).items() if isinstance(v, int | float)}
    # the gate's own floor: relative to the majority-class baseline of the same test split
    class_counts = [int((test.labels == i).sum()) for i in range(len(splits.class_names))]
    decision = decide_promotion(metrics, comparison, config.policy(), class_counts)
    context.log_event(dg.AssetObservation(asset_key="registered_model", metadata={
        "action": "compare", "version": version.version, "compared_with": comparison.production_version or "none",
        "gate_would_promote": decision.promote, "gate_reason": decision.reason,
        "champion_vs_challenger": dg.MetadataValue.md(comparison_markdown(comparison)),
    }))
    if not decision.promote:
        raise dg.Failure(description=f"the gate would not promote {version.tag} over today's production "
                                     f"{comparison.production_version}: {decision.reason}")
    try:
        registry.request_approval(version.version, f"fresh comparison: {decision.reason}", f"dagster run "
                                  f"{context.run_id}", allow_incompatible=decision.incompatible_override,
                                  resubmit=True)
    except RegistryError as exc:
        raise dg.Failure(description=str(exc)) from exc
    context.log.info(f"{version.tag}: {registry.approval_state(version.version)}")
