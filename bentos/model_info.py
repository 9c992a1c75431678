"""What ``/model`` answers (:class:`ModelInfo`, also ``POST /model``) and the ``GET /model`` route beside BentoML's
APIs: which version, data and pointer state this worker serves, its shadow and A/B arm, its counters."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import bentoml
from pydantic import BaseModel, Field

from bentos.request_guard import error_body


class ModelInfo(BaseModel):
    model_name: str
    version: str
    tag: str
    source: str = Field(description="'pinned' (the Bento's model) or 'production' (followed pointer).")
    pinned_tag: str
    splits_version: str | None
    dataset_version: str | None
    onnx_version: str | None
    class_names: list[str]
    input_shape: list[int]
    loaded_at: str
    follow_production: bool
    production_version: str | None = Field(description="What the pointer named at the last check.")
    swap_error: str | None = Field(description="Why the pointer's version is not served, if it is not.")
    swaps: int
    shadow: dict[str, Any] | None = Field(description=(
        "The shadow (answers no client): slot_version (the registry's shadow slot), version (scoring now), "
        "swap_error; per image mirrored (scored and logged), dropped (queue full), failed (it raised); queued "
        "batches, last_error. Null when the service follows no slot or logs nothing."))
    ab: dict[str, Any] | None = Field(description=(
        "A/B (MLOPS_AB_FRACTION): fraction (of the clients, by their X-Client-Key header) the shadow answers, "
        "challenger_version (the shadow answering them now; null: production answers everyone), not_answering "
        "(why not, e.g. the registry's reason), answered (images, this worker). Null without a shadow."))
    inference_log: dict[str, Any] | None = Field(
        description="This worker's inference log counters (written, dropped, queued: journaled but not yet in "
                    "Parquet, recovered: rows of dead workers' journals it wrote, last_error); null when logging "
                    "is off."
    )
    worker_pid: int = Field(description="The worker process that answered (counters and swaps are per worker).")
    worker_heap: dict[str, int] = Field(description=(
        "This worker's Python heap: tracked_objects (what a full collection scans; growing with traffic is a "
        "leak), frozen_objects (the startup heap, never scanned), full_collections so far."))
    token_required: bool = Field(description="Whether /classify, /classify_image, /explain, /explain_image and "
                                             "/feedback need a bearer token.")


async def model_info_route(request: Any) -> Any:
    """GET /model: the current service's description; a 503 saying what is waited for while it serves none."""
    from starlette.responses import JSONResponse

    service = bentoml.get_current_service()
    if service.active is None:
        return JSONResponse(error_body(service.no_model_message()), status_code=HTTPStatus.SERVICE_UNAVAILABLE)
    return JSONResponse(service.describe().model_dump())


def model_info_app() -> Any:
    """The GET route (BentoML's APIs are POST), mounted at the service's root."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    return Starlette(routes=[Route("/model", model_info_route, methods=["GET"])])
