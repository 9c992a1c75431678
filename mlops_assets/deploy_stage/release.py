"""Deploy stage, last step: promotion, after the release test.

``production_release`` runs only once ``bento_application_test`` (blocking) passed against the Bento of the
version the gate passed: promotion is the last step, so no traffic reaches a version before its Bento was built
and answered its test split correctly. The registry enforces the same rule on every other path (CLI promote,
approve, reinstate, rollback): it refuses a version without a passed release test. With the release policy
``shadow`` (MLOPS_RELEASE_POLICY) the gate's yes goes to the shadow slot instead, beside production.
"""

import dagster as dg

from mlops_assets.deploy_stage.bento import BentoRef
from mlops_assets.refs import RegisteredModelRef
from resources.model_registry import ModelRegistryResource


@dg.asset(
    kinds={"bentoml"},
    code_version="1",
    description=(
        "Promotion of the version the gate passed, after its Bento passed the application test: the running "
        "services follow the production pointer. Records why when nothing is released (gate refused, awaiting a "
        "reviewer, production moved since the gate compared)."
    ),
)
def production_release(
    context: dg.AssetExecutionContext,
    registered_model: RegisteredModelRef,
    bento: BentoRef,
    model_registry: ModelRegistryResource,
) -> dg.MaterializeResult[RegisteredModelRef]:
    registry = model_registry.registry()
    version, before = registered_model.version, registry.production_version()
    if not registered_model.release_pending:
        promoted, reason = before == version, f"nothing to release: {registered_model.reason}"
    elif bento.model_version != version:
        promoted, reason = False, f"the Bento {bento.tag} serves {bento.model_version}, not {version}: rebuild it"
    elif before != registered_model.production_version:
        promoted, reason = (
            False,
            (
                f"production changed to {before} after the gate compared {version} with "
                f"{registered_model.production_version}: run build_job again to compare with today's production"
            ),
        )
    else:
        promoted, reason = registry.release(
            version, registered_model.reason, f"dagster run {context.run_id}", registered_model.allow_incompatible,
            to_shadow=model_registry.release_to_shadow(),
        )
    after = registry.production_version()
    test = registry.release_test(version) or {}
    context.log.info(f"{registry.tag(version)}: {'in production' if promoted else 'not released'}: {reason}")
    return dg.MaterializeResult(
        value=RegisteredModelRef(
            tag=registered_model.tag,
            version=version,
            promoted=promoted,
            reason=reason,
            production_version=after,
            awaiting_approval=any(v.version == version for v in registry.awaiting_approval()),
            in_shadow=registry.shadow_version() == version,
        ),
        metadata={
            "promoted": promoted,
            "reason": reason,
            "version": version,
            "bento_tag": bento.tag,
            "release_test": f"{'passed' if test.get('passed') else 'failed'} at {test.get('at', '')[:19]} "
            f"by {test.get('by', '')}"
            if test
            else "none",
            "production_version": after or "none",
            "previous_production_version": before or "none",
            "shadow_version": registry.shadow_version() or "none",
            "release_policy": model_registry.release_policy,
        },
    )


STALE_COMPARISON = "production changed to "  # the one reason the gate did not judge this version


def gate_outcome(decision: RegisteredModelRef) -> str:
    """The gate's decision in words: promoted, in shadow (awaiting approval), awaiting approval, kept as a candidate,
    or not judged."""
    if decision.promoted:
        return "promoted"
    if decision.in_shadow:
        return "in shadow, awaiting approval" if decision.awaiting_approval else "in shadow"
    if decision.awaiting_approval:
        return "awaiting approval"
    if decision.reason.startswith(STALE_COMPARISON):
        return "not judged"
    return "kept as a candidate"


@dg.asset_check(
    asset=production_release,
    description=(
        "The release's outcome for this version: promoted, in shadow (the release policy shadow), awaiting "
        "approval (a reviewer decides) or kept as a candidate (below the floor, or worse than production), each "
        "with the gate's reason and each a normal outcome of the gate, so it passes. Fails (as a warning) only "
        "when the gate could not judge the version: production changed after evaluation_report compared with it."
    ),
)
def promoted_to_production(production_release: RegisteredModelRef) -> dg.AssetCheckResult:
    outcome = gate_outcome(production_release)
    return dg.AssetCheckResult(
        passed=outcome != "not judged",
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{outcome}: {production_release.reason}",
        metadata={
            "outcome": outcome,
            "reason": dg.MetadataValue.md(production_release.reason),
            "version": production_release.version,
            "production_version": production_release.production_version or "none",
            "awaiting_approval": production_release.awaiting_approval,
        },
    )
