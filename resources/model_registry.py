"""The model registry as a Dagster resource: settings in, :class:`ModelRegistry` out."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from mlops_assets.core.common import settings
from mlops_assets.core.registry.registry import ModelRegistry


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

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.home, self.model_name, require_approval=self.require_approval)
