"""Deploy stage: roll production back to the previous version; the running services follow the pointer."""

import dagster as dg
from pydantic import Field

from mlops_assets.core.common.markdown import markdown_table
from resources.model_registry import ModelRegistryResource


class RollbackConfig(dg.Config):
    reason: str = Field(default="rollback from Dagster", description="Recorded in the pointer's history.")
    allow_incompatible: bool = Field(
        default=False,
        description="Roll back even to a version of other classes or input geometry than production's.",
    )


@dg.op(
    description="Point production back at the previous version; running services swap within seconds.",
    tags={"kind": "bentoml"},
)
def rollback_production(
    context: dg.OpExecutionContext, config: RollbackConfig, model_registry: ModelRegistryResource
) -> None:
    from mlops_assets.core.registry.registry import NothingToRollBackError, RegistryError

    registry = model_registry.registry()
    before = registry.production()
    try:
        after = registry.rollback(config.reason, actor=f"dagster run {context.run_id}",
                                  allow_incompatible=config.allow_incompatible)
    except NothingToRollBackError as exc:
        # nothing was asked of the registry that it could do, and nothing changed: a refusal, not a failed run
        context.log.warning(f"nothing to roll back: {exc}; production stays "
                            f"{before.version if before else 'empty (no model in production)'}")
        return
    except RegistryError as exc:
        raise dg.Failure(description=str(exc)) from exc
    context.log.info(f"production: {before.version if before else 'none'} → {after.version}")
    context.log_event(
        dg.AssetObservation(
            asset_key="registered_model",
            metadata={
                "action": "rollback",
                "from_version": before.version if before else "none",
                "production_version": after.version,
                "reason": config.reason,
                "history": dg.MetadataValue.md(markdown_table(
                    ["at", "action", "from", "to", "by"],
                    [[e["at"][:19], e["action"], e["from"], e["to"], e.get("actor", "")]
                     for e in registry.events()[-10:]],
                )),
            },
        )
    )
