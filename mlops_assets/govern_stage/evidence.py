"""Govern stage: promote the challenger on the live comparison's evidence (what ``promotion_evidence_sensor`` runs).

The run names the challenger and the production version the evidence compared it with; it promotes only while both
are still where the evidence saw them (the shadow slot, production), through the registry's state machine, which
still refuses what its rules refuse (approval required and missing, a failed release test). Recorded as any
promotion: who (this run), when, why (the figures).
"""

import dagster as dg
from pydantic import Field

from resources.model_registry import ModelRegistryResource


class EvidencePromotionConfig(dg.Config):
    challenger: str = Field(description="The shadow version the live comparison found better.")
    production: str = Field(description="The production version it was compared with.")
    reason: str = Field(description="The evidence: the comparison's figures; recorded in the registry's history.")


@dg.op(description="Promote the challenger the live comparison found better, if both versions are still in place.",
       tags={"kind": "bentoml"})
def promote_challenger(context: dg.OpExecutionContext, config: EvidencePromotionConfig,
                       model_registry: ModelRegistryResource) -> None:
    from mlops_assets.core.registry.registry import RegistryError

    registry = model_registry.registry()
    now = (registry.production_version(), registry.shadow_version())
    if now != (config.production, config.challenger):
        raise dg.Failure(description=(
            f"not promoting {config.challenger}: the evidence compared it with production {config.production}, but "
            f"production is now {now[0]} and the shadow {now[1]}"))
    try:
        registry.promote(config.challenger, reason=f"live evidence: {config.reason}",
                         actor=f"dagster run {context.run_id} (promotion from evidence)")
    except RegistryError as exc:
        raise dg.Failure(description=str(exc)) from exc
    context.log.info(f"production is now {config.challenger} (was {config.production}): {config.reason}")
    context.log_event(dg.AssetObservation(asset_key="registered_model", metadata={
        "action": "promote-from-evidence", "version": config.challenger, "was": config.production,
        "reason": config.reason, "production_version": registry.production_version() or "none"}))
