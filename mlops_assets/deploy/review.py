"""Deploy stage: a reviewer approves or rejects a candidate awaiting approval (MLOPS_REQUIRE_APPROVAL).

The launchpad of ``review_model_job`` takes the version, the decision, the reviewer's name and the reason; the
registry records them in its history. An approval makes the version production (running services follow the
pointer) and profiles its training split, so the drift sensor has the new production model's reference at once.
"""

from typing import Literal

import dagster as dg
from pydantic import Field

from mlops_assets.build.registration import awaiting_markdown
from mlops_assets.ml.markdown import markdown_table
from resources.artifact_store import ArtifactStore
from resources.model_registry import ModelRegistryResource


class ReviewConfig(dg.Config):
    version: str = Field(description="The version awaiting approval (registered_model → awaiting_approval_versions).")
    decision: Literal["approve", "reject"] = Field(description="approve: it becomes production; reject: it never does.")
    reviewer: str = Field(description="Who decides; recorded in the registry's history.")
    reason: str = Field(description="Why; recorded in the registry's history.")
    allow_incompatible: bool = Field(
        default=False, description="Approve even a version of other classes or input geometry than production's.",
    )


@dg.op(
    description="Approve (→ production) or reject a candidate awaiting approval, recording who, when and why.",
    tags={"kind": "bentoml"},
)
def review_candidate(
    context: dg.OpExecutionContext, config: ReviewConfig, model_registry: ModelRegistryResource,
    artifact_store: ArtifactStore,
) -> None:
    from mlops_assets.ml.registry import RegistryError
    from mlops_assets.monitor.profiles import publish_reference_profile

    registry = model_registry.registry()
    before = registry.production_version()
    reviewer = f"{config.reviewer} (dagster run {context.run_id})"
    try:
        if config.decision == "approve":
            registry.approve(config.version, reviewer, config.reason, allow_incompatible=config.allow_incompatible)
        else:
            registry.reject(config.version, reviewer, config.reason)
    except RegistryError as exc:
        raise dg.Failure(description=str(exc)) from exc
    after = registry.production()
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
            "awaiting_approval_count": len(registry.awaiting_approval()),
            "awaiting_approval_versions": dg.MetadataValue.md(awaiting_markdown(registry.awaiting_approval())),
            "history": dg.MetadataValue.md(markdown_table(
                ["at", "action", "version", "from", "to", "by", "why"],
                [[e["at"][:19], e["action"], e.get("version", e["to"]), e["from"], e["to"], e.get("actor", ""),
                  e["reason"]] for e in registry.events()[-10:]],
            )),
        },
    ))
    if config.decision == "approve" and after is not None:
        version, metadata = publish_reference_profile(after, artifact_store)
        context.log_event(dg.AssetMaterialization(
            asset_key="reference_profile", description=f"reference of {after.version}, approved by {config.reviewer}",
            metadata=metadata,
        ))
        context.log.info(f"{version} written: the drift sensor compares traffic with the approved model now")
