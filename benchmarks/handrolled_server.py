"""The baseline for the serving benchmark: what a user would hand-roll instead of BentoML.

A bare FastAPI app on uvicorn (one worker) around one onnxruntime session, one model call per request,
no batching. Same request and response JSON as the service's ``POST /classify``: ``{"images": [...]}``
(N×C×H×W, or N×H×W for one channel, floats in [0, 1]) → a list of ``{label, class_name, probabilities,
model_version}``; the same validation essentials (rectangular numbers, shape, batch size, finite) with a
400 and a message. ``GET /readyz`` answers 200 once the session is warm, like BentoML's.

    python -m benchmarks.handrolled_server --onnx model.onnx --shape 1,8,8 --class-names 0,1,... --port 3001
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from mlops_assets.core.model.onnx_model import onnx_logits, open_session, softmax


class ClassifyRequest(BaseModel):
    images: list[Any]


def check_images(value: Any, shape: tuple[int, int, int], max_images: int) -> np.ndarray:
    """The request's images as a float32 N×C×H×W array, or a ValueError saying what was wrong."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"images must be a rectangular nested list of numbers: {exc}") from None
    if array.size == 0 or array.ndim == 0:
        raise ValueError("the batch is empty: send at least one image")
    if array.dtype.kind not in "fiu":
        raise ValueError("images must contain only numbers (float32 in [0, 1])")
    channels, height, width = shape
    if array.ndim == 3 and channels == 1:
        array = array[:, None, :, :]
    if array.ndim != 4 or array.shape[1:] != shape:
        raise ValueError(f"images must have shape N×{channels}×{height}×{width}, got {array.shape}")
    if array.shape[0] > max_images:
        raise ValueError(f"the batch has {array.shape[0]} images; at most {max_images} per request")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise ValueError("images contain NaN or infinite values (or values too large for float32)")
    return np.ascontiguousarray(array)


def create_app(onnx_path: str, shape: tuple[int, int, int], class_names: list[str], version: str,
               max_images: int = 1024) -> FastAPI:
    session = open_session(onnx_path)  # one intra-op thread, as the service's session
    onnx_logits(session, np.zeros((1, *shape), np.float32))  # warm-up before /readyz says yes
    app = FastAPI()

    @app.get("/readyz")
    def readyz() -> str:
        return "ok"

    @app.post("/classify")
    def classify(request: ClassifyRequest) -> list[dict[str, Any]]:
        try:
            images = check_images(request.images, shape, max_images)
        except ValueError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        probabilities = softmax(onnx_logits(session, images))
        return [
            {"label": int(p.argmax()), "class_name": class_names[int(p.argmax())],
             "probabilities": [float(v) for v in p], "model_version": version}
            for p in probabilities
        ]

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", required=True)
    parser.add_argument("--shape", required=True, help="C,H,W")
    parser.add_argument("--class-names", required=True, help="comma-separated, in class order")
    parser.add_argument("--version", default="handrolled")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    app = create_app(args.onnx, shape, args.class_names.split(","), args.version)
    uvicorn.run(app, host=args.host, port=args.port, workers=1, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
