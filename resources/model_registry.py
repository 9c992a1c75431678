"""The model registry as a Dagster resource: settings in, :class:`ModelRegistry` out."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from mlops_assets.core.common import settings
from mlops_assets.core.registry.registry import ModelRegistry
from mlops_assets.core.registry.release_rules import release_to_shadow


class ModelRegistryResource(dg.ConfigurableResource):
    """BentoML model store at ``home`` (BENTOML_HOME) holding versions of ``model_name``."""

    home: str = Field(description="BentoML home: the model store and the production pointer live here.")
    model_name: str = Field(
        default=settings.default_value(settings.MODEL_NAME), description="Registry name of the model."
    )
    require_approval: bool = Field(
        default=settings.default_value(settings.REQUIRE_APPROVAL),
        description=(
            "Approval before release (MLOPS_REQUIRE_APPROVAL), as this process would have it. It only seeds a "
            "registry that has no stored policy yet; the registry's stored policy is what every path obeys "
            "(change it with `mlops-registry policy`, recorded). A run whose value disagrees says so and obeys "
            "the store."
        ),
    )

    release_policy: str = Field(
        default=settings.default_value(settings.RELEASE_POLICY),
        description=(
            "Where the gate's yes sends a version once its release test passed (MLOPS_RELEASE_POLICY): "
            "'production' (straight in, the default) or 'shadow' (the shadow slot first, beside production: it "
            "scores the live requests and answers no client; promoting or approving it releases it). With no "
            "production yet there is nothing to shadow and the version is promoted."
        ),
    )

    def release_to_shadow(self) -> bool:
        """Whether the release step puts the gate's yes in the shadow slot (refuses an unknown policy)."""
        return release_to_shadow(self.release_policy)

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.home, self.model_name, require_approval=self.require_approval)
