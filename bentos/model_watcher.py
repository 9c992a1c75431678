"""The served model and the watcher that swaps it when the registry's production pointer moves.

A swap builds and warms the new onnxruntime session first, then replaces one reference, so a request uses the
session it started with. A version that cannot be loaded, or whose signature (classes, input geometry) differs
from the served one, is refused: the old model keeps serving and ``/model`` says why.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mlops_assets.ml.images import PreprocessSpec
from mlops_assets.ml.inference_log_writer import InferenceLogWriter
from mlops_assets.ml.onnx_model import onnx_logits, open_session, softmax
from mlops_assets.ml.ood import OodAnswer, OodCalibration, answers, calibration_of, energy_scores
from mlops_assets.ml.registry import ModelRegistry, ModelVersion, RegistryError
from mlops_assets.ml.signature import signature_differences

logger = logging.getLogger("bentoml.mlops.classifier")


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
    ood: OodCalibration | None = None  # the version's stored calibration (mlops_assets/ml/ood.py)

    def probabilities(self, images: np.ndarray, log: InferenceLogWriter | None = None,
                      original_sizes: list[tuple[int, int]] | None = None, prediction_ids: list[str] | None = None,
                      at: datetime | None = None) -> np.ndarray:
        return self.answer(images, log, original_sizes, prediction_ids, at)[0]

    def answer(self, images: np.ndarray, log: InferenceLogWriter | None = None,
               original_sizes: list[tuple[int, int]] | None = None, prediction_ids: list[str] | None = None,
               at: datetime | None = None) -> tuple[np.ndarray, list[OodAnswer]]:
        """Softmax and out-of-distribution answer per image; each is also queued to the inference log (which
        never raises into this), under its prediction id and time, with its OOD score and flag."""
        logits = onnx_logits(self.session, images)
        probabilities, scores = softmax(logits), energy_scores(logits)
        ood = answers(scores, self.ood)
        if log is not None:
            labels = probabilities.argmax(1)
            flags = np.array([np.nan if a.flagged is None else float(a.flagged) for a in ood])
            log.log_images(images, [self.class_names[i] for i in labels], probabilities.max(1),
                           self.version, original_sizes, prediction_ids, at, np.column_stack([scores, flags]))
        return probabilities, ood


def load_model(path: Path, tag: str, version: str, labels: dict[str, str], metadata: dict[str, Any],
               source: str, served_spec: PreprocessSpec) -> LoadedModel:
    """Open and warm up a session, and check it fits the schema this process serves."""
    spec = PreprocessSpec(**metadata["spec"])
    if spec != served_spec:
        raise RegistryError(
            f"{tag} expects {spec.channels}×{spec.height}×{spec.width} images but this server's API "
            f"takes {served_spec.channels}×{served_spec.height}×{served_spec.width}; restart the service to "
            "change geometry"
        )
    session = open_session(path)
    logits = onnx_logits(session, np.zeros((1, spec.channels, spec.height, spec.width), np.float32))
    class_names = [str(c) for c in metadata["class_names"]]
    if logits.shape != (1, len(class_names)):
        raise RegistryError(f"{tag} returns logits of shape {logits.shape} for {len(class_names)} classes")
    return LoadedModel(version, tag, session, class_names, dict(labels), dict(metadata), source,
                       ood=calibration_of(metadata))


class ServesAModel(Protocol):
    active: LoadedModel
    swaps: int


class ProductionWatcher:
    """Stats the production pointer and swaps the service's model when the named version changes."""

    def __init__(self, service: ServesAModel, registry: ModelRegistry, interval: float,
                 served_spec: PreprocessSpec) -> None:
        self.service = service
        self.registry = registry
        self.interval = interval
        self.served_spec = served_spec
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
            except Exception as exc:  # noqa: BLE001 - the watcher must outlive any one bad pointer or model
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
        except Exception as exc:  # noqa: BLE001 - any unloadable version keeps the old one serving
            self.error = f"cannot serve {production.tag}: {exc}"
            logger.error("%s; still serving %s", self.error, self.service.active.tag)
            return
        previous = self.service.active
        self.service.active = model  # one reference: requests keep the model they started with
        self.service.swaps += 1
        self.error = None
        logger.info("now serving %s (was %s)", model.tag, previous.tag)

    def _load(self, version: ModelVersion) -> LoadedModel:
        return load_model(version.onnx_path, version.tag, version.version, version.labels,
                          version.metadata, source="production", served_spec=self.served_spec)
