"""What the classifier service accepts: the request types (validated before batching, so one bad request never
fails the others batched with it) and the request-body size limit. Every refusal says what was wrong."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Annotated, Any

import numpy as np
from bentoml.exceptions import BentoMLException
from bentoml.validators import DType
from pydantic import AfterValidator, BeforeValidator, Field

from mlops_assets.ml.images import PreprocessSpec


def as_float_array(value: Any) -> np.ndarray:
    """Anything JSON can carry → float32 array, or a ValueError (→ 400) that says what was wrong."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "fiu":
            raise ValueError(f"images must be numbers, got an array of dtype {value.dtype}")
        return value.astype(np.float32, copy=False)
    if not isinstance(value, list):
        raise ValueError(f"images must be a nested list of numbers, got {type(value).__name__}")
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            "images must be a rectangular nested list of numbers (N×C×H×W or N×H×W); "
            f"it could not be read as one: {exc}"
        ) from None
    if array.size and array.dtype.kind not in "fiu":
        raise ValueError(
            "images must contain only numbers (float32 in [0, 1]); "
            f"got {'booleans' if array.dtype.kind == 'b' else 'strings, nulls or objects'}"
        )
    array = array.astype(np.float64)
    if np.isfinite(array).all() and np.abs(array).max(initial=0.0) > np.finfo(np.float32).max:
        raise ValueError("images contain values too large for float32")
    return array.astype(np.float32)


def expected_shape(spec: PreprocessSpec) -> str:
    return f"N×{spec.channels}×{spec.height}×{spec.width}" + (
        f" or N×{spec.height}×{spec.width}" if spec.channels == 1 else ""
    )


def image_checker(spec: PreprocessSpec, max_images: int):
    """Shape, size and finiteness against the served geometry; N×H×W gains its channel axis."""

    def check(images: np.ndarray) -> np.ndarray:
        if images.ndim >= 1 and images.shape[0] == 0:
            raise ValueError("the batch is empty: send at least one image")
        if images.ndim == 3 and spec.channels == 1:
            images = images[:, None, :, :]
        if images.ndim != 4 or images.shape[1:] != (spec.channels, spec.height, spec.width):
            raise ValueError(
                f"images must have shape {expected_shape(spec)}, got {'×'.join(map(str, images.shape))}"
            )
        if images.shape[0] > max_images:
            raise ValueError(f"the batch has {images.shape[0]} images; at most {max_images} per request")
        if not np.isfinite(images).all():
            raise ValueError("images contain NaN or infinite values")
        return np.ascontiguousarray(images)

    return check


def image_batch_type(spec: PreprocessSpec, max_images: int) -> Any:
    """The ``images`` parameter's type: validation and the OpenAPI schema both come from it."""
    return Annotated[
        np.ndarray,
        DType("float32"),
        BeforeValidator(as_float_array),
        AfterValidator(image_checker(spec, max_images)),
        Field(description=f"Images in the training scale [0, 1]: {expected_shape(spec)}, 1 ≤ N ≤ {max_images}."),
    ]


class RequestTooLarge(BentoMLException):
    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class BodySizeLimit:
    """ASGI middleware: 413 for a declared Content-Length over the limit, and for streamed bodies
    (no Content-Length) as soon as they cross it, before anything is parsed."""

    def __init__(self, app: Any, max_bytes: int, setting_name: str) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.setting_name = setting_name

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        message = f"request body larger than {self.max_bytes} bytes (set {self.setting_name} to change)"
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await send_json(send, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": message})
            return
        received = 0

        async def limited_receive() -> dict:
            nonlocal received
            event = await receive()
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > self.max_bytes:
                    raise RequestTooLarge(message)
            return event

        await self.app(scope, limited_receive, send)


async def send_json(send: Any, status: HTTPStatus, payload: dict) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": int(status),
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
