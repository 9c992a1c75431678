"""The image classifier as a BentoML 1.4 service: the production model from the registry, in onnxruntime.

Endpoints (all JSON unless noted):

- ``POST /classify``: ``{"images": [...]}`` — N×C×H×W or N×H×W floats in the training scale [0, 1];
  adaptive batching merges concurrent requests. One prediction per image.
- ``POST /classify_image``: one PNG/JPEG upload (multipart field ``image``), decoded and scaled with
  exactly the training preprocessing (:mod:`mlops_assets.ml.images`).
- ``GET /model`` (and ``POST /model``): which model version, data version and pointer state are served.
- BentoML's own ``/readyz``, ``/livez``, ``/metrics`` (Prometheus) and ``/docs.json`` (OpenAPI).

Which model: the Bento argument ``model_tag`` (``bentoml build --arg model_tag=NAME:VERSION``, stored
in the Bento) pins one version at class scope, so ``bentoml build`` packages it; without the argument
(``bentoml serve bentos.service:ClassifierService`` in development) the tag is the registry's production
version at start-up. When ``MLOPS_FOLLOW_PRODUCTION`` is on, a background thread watches the
production pointer and swaps the onnxruntime session when it changes: the new session is built and
warmed up first, then one reference is replaced, and a request uses the session it started with.
If the new version cannot be loaded, the old one keeps serving and ``/model`` shows the error.

Bad input is a 400 with a message (pydantic validation before batching, so one bad request never fails
the others batched with it); a body over ``MLOPS_MAX_BODY_BYTES`` is a 413.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any

import bentoml
import numpy as np
from bentoml.exceptions import BentoMLException, InvalidArgument
from bentoml.validators import DType
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field

from mlops_assets.ml.images import (
    ImageDecodeError,
    PreprocessSpec,
    decode_image_with_size,
    to_training_scale,
)
from mlops_assets.ml.inference_log import InferenceLogWriter
from mlops_assets.ml.onnx_model import onnx_logits, open_session, softmax
from mlops_assets.ml.registry import ModelRegistry, ModelVersion, RegistryError, signature_differences
from resources.settings import (
    ARTIFACT_ROOT,
    BATCH_MAX_LATENCY_MS,
    BATCH_MAX_SIZE,
    BATCH_MAX_WAIT_MS,
    BENTOML_HOME,
    FOLLOW_PRODUCTION,
    INFERENCE_LOG,
    MAX_BATCH,
    MAX_BODY_BYTES,
    MODEL_NAME,
    POLL_SECONDS,
    SERVICE_THREADS,
    resolve,
)

logger = logging.getLogger("bentoml.mlops.classifier")

# -- settings (the names are shared with Dagster and the deployment files) ---------------------------


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def _cap_batching_wait(max_wait_ms: int) -> None:
    """Cap how long BentoML's dispatcher holds a lone request waiting for a batch to form.

    The dispatcher waits about its learned average batch wait, averaged over the last 50 batches
    and decayed only 5% every 5 s; a burst at concurrency 64 raises it to tens of ms, after which
    single requests were measured at ~14 req/s (p50 ~65 ms) for minutes (BENCHMARKS.md). This
    patches a private BentoML 1.4.39 API (pinned in pyproject.toml and bentofile.yaml).
    """
    from bentoml._internal.marshal import dispatcher

    if getattr(dispatcher.Optimizer.trigger_refresh, "_mlops_capped", False):
        return
    refresh = dispatcher.Optimizer.trigger_refresh

    def capped_refresh(self) -> None:
        refresh(self)
        self.wait = min(self.wait, max_wait_ms / 1000)

    capped_refresh._mlops_capped = True
    dispatcher.Optimizer.trigger_refresh = capped_refresh


_cap_batching_wait(_env_int(BATCH_MAX_WAIT_MS, 2))


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value in (None, "") else value.strip().lower() in ("1", "true", "yes", "on")


class ServiceArgs(BaseModel):
    """Bento arguments: stored in the Bento by ``bentoml build --arg``, so a built Bento pins its model."""

    model_tag: str | None = Field(default=None, description="NAME:VERSION to serve; default: production")


def _registry() -> ModelRegistry:
    return ModelRegistry(resolve(BENTOML_HOME), resolve(MODEL_NAME))


def _startup_tag(args: ServiceArgs) -> str:
    if args.model_tag:
        return args.model_tag
    try:
        production = _registry().production()
    except RegistryError as exc:
        raise RuntimeError(f"cannot read the production pointer: {exc}") from exc
    if production is None:
        raise RuntimeError(
            f"no production version of {resolve(MODEL_NAME)} in the registry at {resolve(BENTOML_HOME)}; "
            "promote one (mlops-registry promote VERSION) or pass --arg model_tag=NAME:VERSION"
        )
    return production.tag


ARGS = bentoml.use_arguments(ServiceArgs)
PINNED_MODEL = bentoml.models.BentoModel(_startup_tag(ARGS))
_pinned_info = PINNED_MODEL.resolve().info
# The request schema is fixed for the life of the process: a followed version must keep this geometry.
SPEC = PreprocessSpec(**_pinned_info.metadata["spec"])
MAX_IMAGES = _env_int(MAX_BATCH, 1024)


# -- request validation ---------------------------------------------------------------------------
def _as_float_array(value: Any) -> np.ndarray:
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


def _check_images(images: np.ndarray) -> np.ndarray:
    """Shape, size and finiteness against the served geometry; N×H×W gains its channel axis."""
    expected = f"N×{SPEC.channels}×{SPEC.height}×{SPEC.width}" + (
        f" or N×{SPEC.height}×{SPEC.width}" if SPEC.channels == 1 else ""
    )
    if images.ndim >= 1 and images.shape[0] == 0:
        raise ValueError("the batch is empty: send at least one image")
    if images.ndim == 3 and SPEC.channels == 1:
        images = images[:, None, :, :]
    if images.ndim != 4 or images.shape[1:] != (SPEC.channels, SPEC.height, SPEC.width):
        raise ValueError(f"images must have shape {expected}, got {'×'.join(map(str, images.shape))}")
    if images.shape[0] > MAX_IMAGES:
        raise ValueError(f"the batch has {images.shape[0]} images; at most {MAX_IMAGES} per request")
    if not np.isfinite(images).all():
        raise ValueError("images contain NaN or infinite values")
    return np.ascontiguousarray(images)


ImageBatch = Annotated[
    np.ndarray,
    DType("float32"),
    BeforeValidator(_as_float_array),
    AfterValidator(_check_images),
    Field(
        description=(
            f"Images in the training scale [0, 1]: N×{SPEC.channels}×{SPEC.height}×{SPEC.width}"
            + (f" or N×{SPEC.height}×{SPEC.width}" if SPEC.channels == 1 else "")
            + f", 1 ≤ N ≤ {MAX_IMAGES}."
        )
    ),
]


class Prediction(BaseModel):
    label: int = Field(description="Index of the predicted class.")
    class_name: str
    probabilities: list[float] = Field(description="Softmax over the classes, in class order.")
    model_version: str = Field(description="The model version that answered.")


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
    inference_log: dict[str, Any] | None = Field(
        description="Inference log counters (written, dropped, last_error); null when logging is off."
    )


# -- the served model and the pointer watcher -------------------------------------------------------
@dataclass(frozen=True)
class LoadedModel:
    """One immutable (version, session) pair; swapping replaces the whole object at once."""

    version: str
    tag: str
    session: Any
    class_names: list[str]
    labels: dict[str, str]
    metadata: dict[str, Any]
    source: str
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def predict(self, images: np.ndarray, log: InferenceLogWriter | None = None,
                original_sizes: list[tuple[int, int]] | None = None) -> list[Prediction]:
        probabilities = softmax(onnx_logits(self.session, images))
        if log is not None:  # queues a copy and returns; never raises into the prediction
            labels = probabilities.argmax(1)
            log.log_images(images, [self.class_names[i] for i in labels], probabilities.max(1),
                           self.version, original_sizes)
        return [
            Prediction(
                label=int(p.argmax()),
                class_name=self.class_names[int(p.argmax())],
                probabilities=[float(v) for v in p],
                model_version=self.version,
            )
            for p in probabilities
        ]


def load_model(path: Path, tag: str, version: str, labels: dict[str, str], metadata: dict[str, Any],
               source: str) -> LoadedModel:
    """Open and warm up a session, and check it fits the schema this process serves."""
    spec = PreprocessSpec(**metadata["spec"])
    if spec != SPEC:
        raise RegistryError(
            f"{tag} expects {spec.channels}×{spec.height}×{spec.width} images but this server's API "
            f"takes {SPEC.channels}×{SPEC.height}×{SPEC.width}; restart the service to change geometry"
        )
    session = open_session(path)
    logits = onnx_logits(session, np.zeros((1, SPEC.channels, SPEC.height, SPEC.width), np.float32))
    class_names = [str(c) for c in metadata["class_names"]]
    if logits.shape != (1, len(class_names)):
        raise RegistryError(f"{tag} returns logits of shape {logits.shape} for {len(class_names)} classes")
    return LoadedModel(version, tag, session, class_names, dict(labels), dict(metadata), source)


class ProductionWatcher:
    """Stats the production pointer and swaps the service's model when the named version changes."""

    def __init__(self, service: ClassifierService, registry: ModelRegistry, interval: float) -> None:
        self.service = service
        self.registry = registry
        self.interval = interval
        self.production_version: str | None = None
        self.error: str | None = None
        self._seen: tuple[int, int, int] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="production-watcher", daemon=True)

    def start(self) -> None:
        self.check()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception as exc:  # the watcher must outlive any one bad pointer or model
                logger.exception("production watcher failed")
                self.error = f"{type(exc).__name__}: {exc}"

    def check(self) -> None:
        try:
            stat = self.registry.pointer_path.stat()
        except FileNotFoundError:
            return
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if key == self._seen:
            return
        self._seen = key
        try:
            production = self.registry.production()
        except RegistryError as exc:
            self.error = str(exc)
            logger.error("production pointer unreadable, still serving %s: %s",
                         self.service.active.version, exc)
            return
        if production is None:
            return
        self.production_version = production.version
        if production.version == self.service.active.version:
            self.error = None
            return
        differences = signature_differences(self.service.active.metadata, production.metadata)
        if differences:
            self.error = (
                f"not swapping to {production.tag}: its signature differs from the served "
                f"{self.service.active.tag}: {'; '.join(differences)}; restart the service to serve it"
            )
            logger.error("%s; still serving %s", self.error, self.service.active.tag)
            return
        try:
            model = self._load(production)
        except Exception as exc:
            self.error = f"cannot serve {production.tag}: {exc}"
            logger.error("%s; still serving %s", self.error, self.service.active.tag)
            return
        previous = self.service.active
        self.service.active = model  # one reference: requests keep the model they started with
        self.service.swaps += 1
        self.error = None
        logger.info("now serving %s (was %s)", model.tag, previous.tag)

    @staticmethod
    def _load(version: ModelVersion) -> LoadedModel:
        return load_model(version.onnx_path, version.tag, version.version, version.labels,
                          version.metadata, source="production")


# -- request body limit -----------------------------------------------------------------------------
class RequestTooLarge(BentoMLException):
    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class BodySizeLimit:
    """ASGI middleware: 413 for a declared Content-Length over the limit, and for streamed bodies
    (no Content-Length) as soon as they cross it, before anything is parsed."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        message = f"request body larger than {self.max_bytes} bytes (set {MAX_BODY_BYTES} to change)"
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _send_json(send, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": message})
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


async def _send_json(send: Any, status: HTTPStatus, payload: dict) -> None:
    import json

    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": int(status),
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# -- GET /model ---------------------------------------------------------------------------------------
async def _model_info_route(request: Any) -> Any:
    from starlette.responses import JSONResponse

    service = bentoml.get_current_service()
    return JSONResponse(service.describe().model_dump())


def _model_info_app() -> Any:
    from starlette.applications import Starlette
    from starlette.routing import Route

    return Starlette(routes=[Route("/model", _model_info_route, methods=["GET"])])


@bentoml.asgi_app(_model_info_app(), path="/")
@bentoml.service(
    name="image_classifier_service",
    workers=1,
    threads=_env_int(SERVICE_THREADS, 4),
    traffic={"timeout": 60},
    labels={"owner": "team:ml-platform", "stage": "serving"},
)
class ClassifierService:
    """Classifies images with the production model; follows promotions and rollbacks live."""

    model = PINNED_MODEL

    def __init__(self) -> None:
        from mlops_assets.ml.onnx_model import ONNX_FILE

        stored = self.model
        self.active: LoadedModel = load_model(
            Path(stored.path_of(ONNX_FILE)), str(stored.tag), stored.tag.version,
            dict(stored.info.labels), dict(stored.info.metadata), source="pinned",
        )
        self.swaps = 0
        self.follow = _env_flag(FOLLOW_PRODUCTION, True)
        self.watcher: ProductionWatcher | None = None
        if self.follow:
            interval = float(os.environ.get(POLL_SECONDS) or 1.0)
            self.watcher = ProductionWatcher(self, _registry(), interval)
            self.watcher.start()
        self.inference_log: InferenceLogWriter | None = None
        if _env_flag(INFERENCE_LOG, True):
            self.inference_log = InferenceLogWriter(resolve(ARTIFACT_ROOT))
        logger.info("serving %s (follow production: %s, inference log: %s)", self.active.tag, self.follow,
                    self.inference_log.artifact_root if self.inference_log else "off")

    @bentoml.on_shutdown
    def _stop_background_work(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        if self.inference_log is not None:
            self.inference_log.close()

    @bentoml.api(
        batchable=True,
        batch_dim=0,
        max_batch_size=_env_int(BATCH_MAX_SIZE, 256),
        max_latency_ms=_env_int(BATCH_MAX_LATENCY_MS, 10_000),
    )
    def classify(self, images: ImageBatch) -> list[Prediction]:
        """Classify a batch of images already in the training scale; one prediction per image."""
        return self.active.predict(images, self.inference_log)

    @bentoml.api
    def classify_image(self, image: Annotated[Path, Field(description="A PNG or JPEG file.")]) -> Prediction:
        """Classify one encoded image, decoded and scaled exactly as in training."""
        model = self.active
        data = Path(image).read_bytes()
        try:
            pixels, size = decode_image_with_size(data, SPEC, name="upload")
        except ImageDecodeError as exc:
            raise InvalidArgument(f"{exc}; send a PNG or JPEG image") from None
        return model.predict(to_training_scale(pixels)[None], self.inference_log, [size])[0]

    @bentoml.api(route="/model")
    def model_info(self) -> ModelInfo:
        """Which model and data version this server answers with (also ``GET /model``)."""
        return self.describe()

    def describe(self) -> ModelInfo:
        active = self.active
        return ModelInfo(
            model_name=active.tag.split(":")[0],
            version=active.version,
            tag=active.tag,
            source=active.source,
            pinned_tag=str(PINNED_MODEL.tag),
            splits_version=active.labels.get("splits_version"),
            dataset_version=active.labels.get("dataset_version"),
            onnx_version=active.metadata.get("onnx_version"),
            class_names=active.class_names,
            input_shape=[SPEC.channels, SPEC.height, SPEC.width],
            loaded_at=active.loaded_at,
            follow_production=self.follow,
            production_version=self.watcher.production_version if self.watcher else None,
            swap_error=self.watcher.error if self.watcher else None,
            swaps=self.swaps,
            inference_log=vars(self.inference_log.stats()) if self.inference_log else None,
        )


# BentoML 1.4 otherwise derives each response's media type by rebuilding the output model's JSON schema:
# ~20% of the worker's CPU at concurrency 64 (measured, BENCHMARKS.md).
ClassifierService.apis["classify"].output_spec.media_type = "application/json"
ClassifierService.add_asgi_middleware(BodySizeLimit, max_bytes=_env_int(MAX_BODY_BYTES, 8 * 1024 * 1024))
