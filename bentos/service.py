"""The image classifier as a BentoML 1.4 service: the production model from the registry, in onnxruntime.

Endpoints (all JSON unless noted):

- ``POST /classify``: ``{"images": [...]}`` — N×C×H×W or N×H×W floats in the training scale [0, 1];
  adaptive batching merges concurrent requests. One prediction per image.
- ``POST /classify_image``: one image upload, the file as the body (``Content-Type: image/png``, ...) or a
  multipart field ``image``, decoded and scaled with exactly the training preprocessing
  (:mod:`mlops_assets.core.data.images`).
- ``POST /explain``: ``{"image": ..., "target": k}`` — one image (C×H×W or H×W, as one image of ``/classify``)
  and optionally the class to explain; ``POST /explain_image``: one upload, as ``/classify_image``, the class as
  ``?target=k``. The prediction (logged with its id, as ``/classify_image``'s) and the occlusion map of the explained
  class (``attribution``, H×W, and ``heatmap_png``), computed with the same model snapshot as the prediction
  (:mod:`mlops_assets.core.model.explain`). Only a version whose stored explanation check passed is explained: any
  other is a 409 saying why (the request is fine; the served version is what conflicts, and another version may
  be explained). Explanations run in a thread of their own (``bentos/explainer.py``).
- ``POST /feedback``: ``{"feedback": [{"prediction_id": ..., "label": ...}, ...]}``, the true labels of served
  predictions (every prediction carries an id, also in its inference log row), stored beside the inference
  log (:mod:`mlops_assets.core.serving.feedback`); all or none of a batch: an unknown id is a 404, a second label for a
  prediction a 409, a label that is not a class a 400, each naming the item. Every answered prediction is
  journaled before its answer is sent (:mod:`mlops_assets.core.serving.inference_journal`), so an id is known at once
  and nothing is waited for.
- ``GET /model`` (and ``POST /model``): which model version, data version and pointer state are served.
- BentoML's own ``/readyz``, ``/livez``, ``/metrics`` (Prometheus) and ``/docs.json`` (OpenAPI).

Which model: the Bento argument ``model_tag`` (``bentoml build --arg model_tag=NAME:VERSION``, stored
in the Bento) pins one version at class scope, so ``bentoml build`` packages it; without the argument
(``bentoml serve bentos.service:ClassifierService`` in development) the tag is the registry's production
version at start-up. What the process serves is decided once, in a :class:`bentos.serving_config.ServingConfig`
built from the settings and the registry, and passed to what needs it. When ``MLOPS_FOLLOW_PRODUCTION`` is on, a
background thread watches the registry's ``production`` slot and swaps the onnxruntime session when it changes:
the new session is built and warmed up first, then one reference is replaced, and a request uses the session it
started with. If the new version cannot be loaded, the old one keeps serving and ``/model`` shows the error.

With no production model at start-up (a fresh home), the service starts anyway, with the classes and geometry of
the dataset settings: ``/livez`` is 200, ``/readyz``, ``/model`` and the prediction endpoints are 503 "no
production model yet: ...", and the first version of that signature promoted is served without a restart.

The model computes (``bentos/served_model.py``); the request path (:func:`predict`) decides what goes to the
inference log, under the prediction id it answers with.

When MLOPS_API_TOKEN is set, the five endpoints above require ``Authorization: Bearer <token>`` (401
otherwise); ``/model``, health, metrics and the documents stay open (``bentos/request_guard.py``).

Bad input is a 400 with a message (pydantic validation before batching, so one bad request never fails
the others batched with it); a body over ``MLOPS_MAX_BODY_BYTES`` is a 413 (``bentos/validation.py``).
A/B (``MLOPS_AB_FRACTION`` > 0): a keyed client (``X-Client-Key``) in the challenger's share is answered by the
shadow, while the registry lets it answer clients, and production is scored beside it (``bentos/ab_routing.py``).

The served model and its hot swap are in ``bentos/model_watcher.py``; BentoML's private APIs are used only
through ``bentos/bentoml_private.py``.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Annotated

import bentoml
from pydantic import BaseModel, Field

from bentos import bentoml_private
from bentos.ab_routing import AbRouting, ChallengerGate, client_key_of
from bentos.explainer import Explainer
from bentos.model_info import ModelInfo, model_info_app
from bentos.model_watcher import SlotWatcher
from bentos.ood_refusal import OodRefusal
from bentos.openapi import api_document
from bentos.request_guard import ApiRefusal, RequestGuard
from bentos.served_model import LoadedModel, load_model
from bentos.serving_config import ServingConfig
from bentos.shadow_mirror import Answer, MirroredRequest, ShadowMirror
from bentos.status_reporter import StatusReporter
from bentos.uploads import decode_upload
from bentos.validation import (
    feedback_batch_type,
    image_batch_type,
    parse_target,
    single_image_type,
    target_message,
    target_type,
)
from mlops_assets.core.common import settings
from mlops_assets.core.common.memory import freeze_startup_heap, heap_stats
from mlops_assets.core.data.images import ImageDecodeError, ImageTooLargeError, to_training_scale
from mlops_assets.core.model import explain as explanations
from mlops_assets.core.model.ood import OOD_FLAG_DOC, OOD_REASON_DOC, OOD_SCORE_DOC
from mlops_assets.core.registry.model_versions import SHADOW_SLOT
from mlops_assets.core.serving.feedback import (
    DuplicateFeedback,
    FeedbackItem,
    FeedbackStore,
    UnknownClass,
    UnknownPrediction,
)
from mlops_assets.core.serving.inference_log import LOG_KIND, SHADOW_KIND
from mlops_assets.core.serving.inference_log_writer import InferenceLogWriter
from mlops_assets.core.serving.prediction_ids import new_prediction_ids
from mlops_assets.core.serving.serving_status import status_path

logger = logging.getLogger("bentoml.mlops.classifier")


class ServiceArgs(BaseModel):
    """Bento arguments: stored in the Bento by ``bentoml build --arg``, so a built Bento pins its model."""

    model_tag: str | None = Field(default=None, description="NAME:VERSION to serve; default: production")
    artifact_root: str | None = Field(
        default=None, description="Absolute artifact root for the inference log when MLOPS_ARTIFACT_ROOT is not set"
    )


ARGS = bentoml.use_arguments(ServiceArgs)
CONFIG = ServingConfig.from_settings(ARGS.model_tag, ARGS.artifact_root)  # once, at import: BentoML reads it here
bentoml_private.patch_server(CONFIG.batch_max_wait_ms)
ImageBatch = image_batch_type(CONFIG.spec, CONFIG.max_images)
FeedbackBatch = feedback_batch_type(list(CONFIG.class_names), CONFIG.max_images)
ExplainImage = single_image_type(CONFIG.spec)
Target = target_type(len(CONFIG.class_names))
HEATMAP_SIDE = 256  # pixels a side of the heatmap PNG (nearest-neighbour, a whole factor of the image's size)


class Prediction(BaseModel):
    label: int = Field(description="Index of the predicted class.")
    class_name: str
    probabilities: list[float] = Field(description="Softmax over the classes, in class order.")
    model_version: str = Field(description="The model version that answered.")
    prediction_id: str = Field(description="This prediction's id: POST it to /feedback with the true label.")
    ood_score: float = Field(description=OOD_SCORE_DOC)
    ood_flag: bool | None = Field(description=OOD_FLAG_DOC)
    ood_reason: str | None = Field(description=OOD_REASON_DOC)


def predict(model: LoadedModel, images, log: InferenceLogWriter | None,
            original_sizes: list[tuple[int, int]] | None = None,
            shadow: ShadowMirror | None = None, other: LoadedModel | None = None) -> list[Prediction]:
    """One prediction per image, each with a new id that its inference log row carries too.

    The model only computes; what is logged is decided here, on the request path, under the answer's id (the
    log's writer queues and never raises into this). A ``shadow`` is offered the same images (never waited on);
    its answers are logged under the same ids as :data:`SHADOW_KIND` rows. ``other``: the model the shadow's
    thread scores them with instead of the shadow (production, when the challenger answered: A/B). Each row carries
    the model call's wall time for the whole batch (``model_ms``), so the live comparison reports latency per
    version."""
    at = datetime.now(UTC)
    ids = new_prediction_ids(len(images), at)
    answer, model_ms = model.timed_answer(images)
    probabilities, _, ood = answer
    labels = probabilities.argmax(1)
    names = [model.class_names[i] for i in labels]
    if log is not None:
        log_answer(log, model, images, answer, names, ids, at, original_sizes, LOG_KIND, model_ms)
    if shadow is not None:
        shadow.offer(MirroredRequest(images, ids, at, original_sizes), other)
    return [
        Prediction(label=int(label), class_name=name, probabilities=[float(v) for v in p],
                   model_version=model.version, prediction_id=prediction_id,
                   ood_score=o.score, ood_flag=o.flagged, ood_reason=o.reason)
        for p, label, name, prediction_id, o in zip(probabilities, labels, names, ids, ood, strict=True)
    ]


def log_answer(log: InferenceLogWriter, model: LoadedModel, images, answer: Answer, names: list[str],
               ids: list[str], at: datetime, original_sizes, dataset: str, model_ms: float | None = None) -> bool:
    """Journal one model's answers to ``images`` under ``ids`` (the served answer's, for a shadow's too)."""
    import numpy as np

    probabilities, scores, ood = answer
    flags = np.array([np.nan if a.flagged is None else float(a.flagged) for a in ood])
    return log.log_images(images, names, probabilities.max(1), model.version, original_sizes, ids, at,
                          np.column_stack([scores, flags]), dataset=dataset, model_ms=model_ms)


def shadow_logger(log: InferenceLogWriter) -> Callable[[LoadedModel, MirroredRequest, Answer, float], bool]:
    """What the shadow's thread does with its answer: log it beside the served one, under the same ids."""

    def record(model: LoadedModel, request: MirroredRequest, answer: Answer, model_ms: float) -> bool:
        if not log_answer(log, model, request.images, answer, [model.class_names[i] for i in answer[0].argmax(1)],
                          request.prediction_ids, request.at, request.original_sizes, SHADOW_KIND, model_ms):
            raise RuntimeError(f"the inference log dropped the shadow's answers: {log.stats().last_error}")
        return True

    return record


class ExplainedPrediction(Prediction):
    """A prediction and the occlusion map of one class for it, both from the same model version."""

    probability: float = Field(description="The predicted class's probability.")
    explained_label: int = Field(description="Index of the class the map explains (the predicted one unless the "
                                             "request named another).")
    explained_class: str
    explained_probability: float = Field(description="The explained class's probability for the image.")
    attribution: list[list[float]] = Field(description=(
        "H×W, the input's geometry: how much of the explained class's probability each pixel accounts for "
        "(occlusion: the mean drop when a patch covering it is blanked); negative where a pixel speaks against "
        "the class."))
    heatmap_png: str = Field(description="Base64 PNG: the image in grey with the map over it (red for, blue "
                                         "against the class), scaled up.")
    method: str = Field(description="How the map was computed: 'occlusion'.")
    explanation_check: str = Field(description=(
        "Why this version's maps may be shown: its fidelity (deletion test) and sanity check, from its "
        "evaluation report, stored with the version."))


def explain_one(model: LoadedModel, image, target: int | None, log: InferenceLogWriter | None,
                original_size: tuple[int, int] | None = None,
                shadow: ShadowMirror | None = None, other: LoadedModel | None = None) -> ExplainedPrediction:
    """One (C, H, W) image's prediction (logged as any other, under its id) and its occlusion map, both from
    ``model``; a 409 naming the reason when this version's explanations did not pass their check."""
    refusal = model.explanation_refusal()
    if refusal is not None:
        raise ApiRefusal(HTTPStatus.CONFLICT, refusal)
    prediction = predict(model, image[None], log, None if original_size is None else [original_size], shadow,
                         other)[0]
    chosen = prediction.label if target is None else target
    result = model.explain(image, chosen)
    height, width = result.attribution.shape
    scale = max(1, HEATMAP_SIDE // max(height, width))
    return ExplainedPrediction(
        **prediction.model_dump(), probability=prediction.probabilities[prediction.label],
        explained_label=chosen, explained_class=model.class_names[chosen],
        explained_probability=result.probability, attribution=result.attribution.tolist(),
        heatmap_png=base64.b64encode(explanations.heatmap_png(image, result.attribution, scale)).decode("ascii"),
        method=explanations.METHOD, explanation_check=model.metadata[explanations.REGISTRY_KEY].get("reason", ""),
    )


class FeedbackReceipt(BaseModel):
    accepted: int = Field(description="How many labels were stored (all of the batch).")


class FeedbackRequest(BaseModel):
    """The body of POST /feedback (its schema, with the served class names, is the OpenAPI document's)."""

    feedback: FeedbackBatch


# /classify and the A/B challenger's /classify_challenger: adaptive batching with the measured limits
BATCHED = dict(batchable=True, batch_dim=0, max_batch_size=CONFIG.batch_max_size,
               max_latency_ms=CONFIG.batch_max_latency_ms)


@bentoml.asgi_app(model_info_app(), path="/")
@bentoml.service(
    name="image_classifier_service",
    **settings.bento_service_options(),
    labels={"owner": "team:ml-platform", "stage": "serving"},
)
class ClassifierService:
    """Classifies images with the production model; follows promotions and rollbacks live."""

    model = CONFIG.bento_model()  # None while the registry has no production model: the first one is adopted

    def __init__(self) -> None:
        self.config = CONFIG
        self.active: LoadedModel | None = self._load_pinned()
        self.swaps = 0
        self.follow = self.config.follow
        self.watcher: SlotWatcher | None = None
        if self.follow:
            self.watcher = SlotWatcher(self, self.config.registry(), self.config.poll_seconds,
                                       self.config.signature, self.config.slot)
            self.watcher.start()
        self.inference_log: InferenceLogWriter | None = None
        if self.config.inference_log:
            self.inference_log = InferenceLogWriter(self.config.artifact_root, keep_images=self.config.keep_images)
        self.shadow: ShadowMirror | None = None  # the shadow slot's model, followed like production's: mirrored
        self.shadow_watcher: SlotWatcher | None = None
        self.ab: ChallengerGate | None = None
        if self.follow and self.inference_log is not None:
            self.shadow = ShadowMirror(shadow_logger(self.inference_log))
            self.ab = ChallengerGate(self.config.ab_fraction)  # asks the registry on each pointer change
            self.shadow_watcher = SlotWatcher(self.shadow, self.config.registry(), self.config.poll_seconds,
                                              self.config.signature, SHADOW_SLOT, on_change=self.ab.judge)
            self.shadow_watcher.start()
        self.feedback_store = FeedbackStore(self.config.artifact_root)
        self.explainer = Explainer()
        self.status_reporter = StatusReporter(self.status, status_path(self.config.artifact_root),
                                              self.config.poll_seconds)
        self.status_reporter.start()
        logger.info("serving %s (follow %s: %s, inference log: %s)",
                    self.active.tag if self.active else "no model yet", self.config.slot, self.follow,
                    self.inference_log.artifact_root if self.inference_log else "off")
        if self.active is None:
            logger.warning("%s", self.no_model_message())
        freeze_startup_heap()  # the last step of startup: see mlops_assets/core/common/memory.py

    def _load_pinned(self) -> LoadedModel | None:
        from mlops_assets.core.model.onnx_model import ONNX_FILE

        stored = self.model
        if stored is None:
            return None
        return load_model(Path(stored.path_of(ONNX_FILE)), str(stored.tag), stored.tag.version,
                          dict(stored.info.labels), dict(stored.info.metadata), source="pinned",
                          served=self.config.signature)

    def no_model_message(self) -> str:
        return self.config.no_model_message(self.watcher.error if self.watcher else None)

    def serving(self) -> LoadedModel:
        """The model a request uses from start to end; a 503 saying what is waited for while there is none."""
        model = self.active
        if model is None:
            raise ApiRefusal(HTTPStatus.SERVICE_UNAVAILABLE, self.no_model_message())
        return model

    def answering(self, client_key: str | None, images: int = 1,
                  share: bool | None = None) -> tuple[LoadedModel, LoadedModel | None]:
        """The model that answers this client and the one scored beside it (None: the shadow): ab_routing.py."""
        production = self.serving()
        return self.ab.choose(production, self.shadow.active, client_key, images, share) if self.ab else (
            production, None)

    async def __is_ready__(self) -> bool:
        """BentoML's /readyz: 200 once a model is served, else 503 with the reason (not BentoML's generic one)."""
        if self.active is None:
            from starlette.exceptions import HTTPException

            raise HTTPException(status_code=HTTPStatus.SERVICE_UNAVAILABLE, detail=self.no_model_message())
        return True

    @bentoml.on_shutdown
    def _stop_background_work(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        if self.shadow_watcher is not None:
            self.shadow_watcher.stop()
        if self.shadow is not None:
            self.shadow.close()
        if self.inference_log is not None:
            self.inference_log.close()
        self.explainer.close()
        self.status_reporter.stop()

    @bentoml.api(**BATCHED)
    def classify(self, images: ImageBatch) -> list[Prediction]:
        """Classify a batch of images already in the training scale; one prediction per image."""
        return predict(self.serving(), images, self.inference_log, shadow=self.shadow)

    @bentoml.api(**BATCHED)
    def classify_challenger(self, images: ImageBatch) -> list[Prediction]:
        """/classify for the clients in the challenger's share (routed here by ``AbRouting``; a 404 from outside):
        batched apart, so a batch is answered by one version."""
        model, other = self.answering(None, len(images), share=True)
        return predict(model, images, self.inference_log, shadow=self.shadow, other=other)

    @bentoml.api
    def classify_image(self, image: Annotated[Path, Field(description="A PNG or JPEG file.")],
                       ctx: bentoml.Context) -> Prediction:
        """Classify one encoded image, decoded and scaled exactly as in training."""
        model, other = self.answering(client_key_of(ctx.request.headers))
        pixels, size = self.decoded(Path(image))
        return predict(model, to_training_scale(pixels)[None], self.inference_log, [size], self.shadow, other)[0]

    def decoded(self, upload: Path):
        """An upload's pixels and size before resizing; a 413 or 422 naming the image when it cannot be."""
        try:
            return decode_upload(upload.read_bytes(), self.config.spec, self.config.max_pixels)
        except ImageTooLargeError as exc:
            raise ApiRefusal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"{exc} (MLOPS_MAX_IMAGE_PIXELS)", "image") from None
        except ImageDecodeError as exc:
            raise ApiRefusal(HTTPStatus.UNPROCESSABLE_ENTITY, str(exc), "image") from None

    @bentoml.api
    async def explain(self, image: ExplainImage, ctx: bentoml.Context, target: Target = None) -> ExplainedPrediction:
        """Classify one image already in the training scale and map which pixels the decision rests on."""
        # the prediction and its map come from this one version, whatever swaps meanwhile
        model, other = self.answering(client_key_of(ctx.request.headers))
        return await self.explainer.run(explain_one, model, image, target, self.inference_log, None, self.shadow,
                                        other)

    @bentoml.api
    async def explain_image(self, image: Annotated[Path, Field(description="A PNG or JPEG file.")],
                            ctx: bentoml.Context) -> ExplainedPrediction:
        """Classify one encoded image (as /classify_image) and map which pixels the decision rests on."""
        model, other = self.answering(client_key_of(ctx.request.headers))
        given = ctx.request.query_params.getlist("target")
        try:
            if len(given) > 1:
                raise ValueError(f"{target_message(len(model.class_names))}; got {len(given)} targets")
            target = parse_target(given[0] if given else None, len(model.class_names), text=True)
        except ValueError as exc:
            raise ApiRefusal(HTTPStatus.BAD_REQUEST, str(exc), "target") from None

        def decode_and_explain() -> ExplainedPrediction:
            pixels, size = self.decoded(Path(image))
            return explain_one(model, to_training_scale(pixels), target, self.inference_log, size, self.shadow, other)

        return await self.explainer.run(decode_and_explain)

    @bentoml.api
    def feedback(self, feedback: FeedbackBatch) -> FeedbackReceipt:
        """Store the true labels of served predictions beside the inference log (all of the batch or none)."""
        if self.inference_log is None:
            raise ApiRefusal(HTTPStatus.NOT_FOUND, "no prediction of this server is logged (MLOPS_INFERENCE_LOG=0), "
                             "so no feedback can be joined to one", "feedback")
        items = [FeedbackItem(str(item.prediction_id), item.label) for item in feedback]
        try:  # every answered prediction is in the log or a journal already: nothing to wait for
            stored = self.feedback_store.record(items, list(self.config.class_names))
        except UnknownPrediction as exc:
            raise ApiRefusal(HTTPStatus.NOT_FOUND, str(exc), exc.field) from None
        except DuplicateFeedback as exc:
            raise ApiRefusal(HTTPStatus.CONFLICT, str(exc), exc.field) from None
        except UnknownClass as exc:
            raise ApiRefusal(HTTPStatus.BAD_REQUEST, str(exc), exc.field) from None
        return FeedbackReceipt(accepted=stored)

    @bentoml.api(route="/model")
    def model_info(self) -> ModelInfo:
        """Which model and data version this server answers with (also ``GET /model``)."""
        return self.describe()

    def status(self) -> dict:
        """What this worker serves, as Dagster reads it from the artifact volume (status_reporter.py)."""
        active = self.active
        return {"version": active.version if active else None, "tag": active.tag if active else None,
                "loaded_at": active.loaded_at if active else None, "source": active.source if active else None,
                "production_version": self.watcher.slot_version if self.watcher else None,
                "shadow_version": self.shadow.active.version if self.shadow and self.shadow.active else None,
                "swap_error": self.watcher.error if self.watcher else None, "worker_pid": os.getpid()}

    def describe(self) -> ModelInfo:
        active = self.serving()
        spec = self.config.spec
        return ModelInfo(
            model_name=active.tag.split(":")[0],
            version=active.version,
            tag=active.tag,
            source=active.source,
            pinned_tag=self.config.pinned_tag or "",
            splits_version=active.labels.get("splits_version"),
            dataset_version=active.labels.get("dataset_version"),
            onnx_version=active.metadata.get("onnx_version"),
            class_names=active.class_names,
            input_shape=[spec.channels, spec.height, spec.width],
            loaded_at=active.loaded_at,
            follow_production=self.follow,
            production_version=self.watcher.slot_version if self.watcher else None,
            swap_error=self.watcher.error if self.watcher else None,
            swaps=self.swaps,
            shadow=self.shadow.describe(self.shadow_watcher) if self.shadow and self.shadow_watcher else None,
            ab=self.ab.describe(self.shadow.active) if self.ab and self.shadow else None,
            inference_log=vars(self.inference_log.stats()) if self.inference_log else None,
            worker_pid=os.getpid(),
            worker_heap=heap_stats(),
            token_required=bool(self.config.api_token),
        )


def _why_no_answer() -> str | None:
    """The 503's message while this worker serves no model yet; None once it does (the front door asks)."""
    service = bentoml.get_current_service()
    return service.no_model_message() if service is not None and service.active is None else None


for _api in ("classify", "classify_challenger", "explain", "explain_image"):  # measured: BENCHMARKS.md
    bentoml_private.declare_json_response(ClassifierService, _api)
# innermost: the OOD refusal and the guard see the path the client used; always installed, so the challenger's
# internal endpoint is a 404 from outside whatever the fraction
ClassifierService.add_asgi_middleware(AbRouting, fraction=CONFIG.ab_fraction)
if settings.resolve_flag(settings.OOD_REFUSE):  # a flagged input answered 422 (added first: runs inside the guard)
    ClassifierService.add_asgi_middleware(OodRefusal)
ClassifierService.add_asgi_middleware(
    RequestGuard, max_bytes=CONFIG.max_body_bytes, setting_name=settings.MAX_BODY_BYTES,
    openapi=lambda: api_document(
        CONFIG.spec, CONFIG.max_images, CONFIG.max_body_bytes, CONFIG.max_pixels,
        {"Prediction": Prediction, "ModelInfo": ModelInfo, "FeedbackRequest": FeedbackRequest,
         "FeedbackReceipt": FeedbackReceipt, "ExplainedPrediction": ExplainedPrediction},
        CONFIG.pinned_tag or f"{CONFIG.model_name}:none-yet", len(CONFIG.class_names),
        token_required=bool(CONFIG.api_token),
        refuse_ood=settings.resolve_flag(settings.OOD_REFUSE)),
    token=CONFIG.api_token, token_setting=settings.API_TOKEN, unavailable=_why_no_answer,
)
