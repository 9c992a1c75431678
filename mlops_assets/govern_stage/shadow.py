"""Govern stage: put a challenger in the registry's shadow slot, or empty it; the running services follow the slot.

The registry checks the way in as it checks a promotion (``mlops_assets/core/registry/shadow_slot.py``) and records
who, when and why; a refusal fails the run with the registry's reason.
"""

import dagster as dg
from pydantic import Field

from resources.model_registry import ModelRegistryResource


class ShadowConfig(dg.Config):
    version: str = Field(default="", description="The version to shadow production with (empty with clear).")
    clear: bool = Field(default=False, description="Empty the shadow slot instead.")
    reason: str = Field(description="Why; recorded in the registry's history.")
    allow_incompatible: bool = Field(
        default=False, description="Shadow even a version of other classes or input geometry than production's.",
    )


@dg.op(
    description="Put a version in the shadow slot (it scores the live requests, answers no client) or clear it.",
    tags={"kind": "bentoml"},
)
def set_shadow_slot(context: dg.OpExecutionContext, config: ShadowConfig,
                    model_registry: ModelRegistryResource) -> None:
    from mlops_assets.core.registry.registry import RegistryError

    registry = model_registry.registry()
    actor = f"dagster run {context.run_id}"
    try:
        if config.clear == bool(config.version.strip()):
            raise RegistryError("give either a version to put in shadow or clear: true, not both or neither")
        if config.clear:
            cleared = registry.clear_shadow(config.reason, actor=actor)
            context.log.info(f"shadow slot cleared (was {cleared})" if cleared else "no shadow to clear")
        else:
            registry.set_shadow(config.version.strip(), config.reason, actor=actor,
                                allow_incompatible=config.allow_incompatible)
            context.log.info(f"shadow is now {config.version} beside production {registry.production_version()}")
    except RegistryError as exc:
        raise dg.Failure(description=str(exc)) from exc
    context.log_event(dg.AssetObservation(asset_key="registered_model", metadata={
        "action": "clear-shadow" if config.clear else "shadow", "reason": config.reason,
        "shadow_version": registry.shadow_version() or "none",
        "production_version": registry.production_version() or "none"}))
