"""The model registry as a Dagster resource: settings in, :class:`ModelRegistry` out."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from mlops_assets.ml.registry import ModelRegistry


class ModelRegistryResource(dg.ConfigurableResource):
    """BentoML model store at ``home`` (BENTOML_HOME) holding versions of ``model_name``."""

    home: str = Field(description="BentoML home: the model store and the production pointer live here.")
    model_name: str = Field(default="image_classifier", description="Registry name of the model.")

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.home, self.model_name)
