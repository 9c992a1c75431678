"""The model registry as a Dagster resource: settings in, :class:`ModelRegistry` out."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from mlops_assets.ml.registry import ModelRegistry


class ModelRegistryResource(dg.ConfigurableResource):
    """BentoML model store at ``home`` (BENTOML_HOME) holding versions of ``model_name``."""

    home: str = Field(description="BentoML home: the model store and the production pointer live here.")
    model_name: str = Field(default="image_classifier", description="Registry name of the model.")
    require_approval: bool = Field(
        default=False,
        description=(
            "Approval before release (MLOPS_REQUIRE_APPROVAL): a candidate that clears the gate waits as "
            "'awaiting approval' until a reviewer approves it (review_model_job, mlops-registry approve); every "
            "promotion refuses a version no reviewer approved."
        ),
    )

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.home, self.model_name, require_approval=self.require_approval)
