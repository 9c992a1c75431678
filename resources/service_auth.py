"""The Bento service's access token, as Dagster holds it: a secret read through ``EnvVar(MLOPS_API_TOKEN)``."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from mlops_assets.core.common import settings


class ServiceAuth(dg.ConfigurableResource):
    """What a Dagster step needs to call the service's protected endpoints, and to start a server that protects
    them (the Bento's application test): the bearer token, empty when access control is off."""

    api_token: str = Field(
        default=settings.default_value(settings.API_TOKEN),
        description="MLOPS_API_TOKEN (a secret; set it through the environment).",
    )
