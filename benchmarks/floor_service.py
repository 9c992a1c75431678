"""BentoML's own floor for the serving benchmark: a service that does nothing but what the framework does.

Same ``@bentoml.service`` options as ``bentos/service.py`` (``settings.bento_service_options``: workers, threads,
timeout, access log), the same BentoML patches (``bentoml_private.patch_server``: the lone-request wait cap,
timers ended with their request), the same adaptive batching on one ``POST /classify`` taking
``{"images": [...]}`` as an array, and a constant answer per image: no validation, no model, no inference log.
What it costs per request is what BentoML costs; our service is measured against it.

    bentoml serve benchmarks.floor_service:FloorService
"""

from __future__ import annotations

import bentoml
import numpy as np

from bentos import bentoml_private
from mlops_assets.core.common import settings
from mlops_assets.core.common.memory import freeze_startup_heap

bentoml_private.patch_server(settings.resolve_int(settings.BATCH_MAX_WAIT_MS))

ANSWER = {"label": 0, "class_name": "0", "probabilities": [1.0] + [0.0] * 9, "model_version": "floor"}


@bentoml.service(
    name="floor_service",
    **settings.bento_service_options(),
)
class FloorService:
    def __init__(self) -> None:
        freeze_startup_heap()  # as the service's startup ends

    @bentoml.api(
        batchable=True,
        batch_dim=0,
        max_batch_size=settings.resolve_int(settings.BATCH_MAX_SIZE),
        max_latency_ms=settings.resolve_int(settings.BATCH_MAX_LATENCY_MS),
    )
    def classify(self, images: np.ndarray) -> list[dict]:
        return [ANSWER] * len(images)
