"""The watcher that follows a named registry slot and swaps the service's model when the slot's version changes.

``production`` is the slot the service serves from; a second watcher on another slot (a shadow, an A/B arm) is the
same class with another name. A swap builds and warms the new onnxruntime session first, then replaces one
reference, so a request uses the session it started with. A version that cannot be loaded, or whose signature
(classes, input geometry) differs from the API this process serves, is refused: the old model keeps serving (or,
while none is served yet, the 503s go on) and ``/model`` says why. With no model served yet, the first version of
the served signature put in the slot is adopted the same way. The production slot is never emptied by the
registry; another slot is (a shadow cleared), and then its watcher stops serving from it.

``on_change`` (optional) is told the slot's version (None: empty, or unreadable) on every change of the pointer
record, whether or not the version changed: the A/B gate asks the registry then whether the shadow may answer
clients (``bentos/ab_routing.py``), since a release test, a rejection or the policy can change that alone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from bentos.served_model import LoadedModel, load_model
from mlops_assets.core.model.signature import ModelSignature
from mlops_assets.core.registry.model_versions import PRODUCTION_SLOT
from mlops_assets.core.registry.registry import ModelRegistry, ModelVersion, RegistryError

logger = logging.getLogger("bentoml.mlops.classifier")


class ServesAModel(Protocol):
    active: LoadedModel | None  # None: no model served yet
    swaps: int


class SlotWatcher:
    """Stats the registry's pointer record and swaps the service's model when the version in ``slot`` changes.

    ``served``: the classes and geometry of the API this process serves (fixed at start-up)."""

    def __init__(
        self,
        service: ServesAModel,
        registry: ModelRegistry,
        interval: float,
        served: ModelSignature,
        slot: str = PRODUCTION_SLOT,
        on_change: Callable[[ModelRegistry, str | None], None] | None = None,
    ) -> None:
        self.service = service
        self.registry = registry
        self.interval = interval
        self.served = served
        self.slot = slot
        self.on_change = on_change
        self.slot_version: str | None = None  # what the slot named at the last check
        self.error: str | None = None
        self._seen: tuple[int, int, int] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{slot}-watcher", daemon=True)

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
                logger.exception("%s watcher failed", self.slot)
                self.error = f"{type(exc).__name__}: {exc}"

    def _serving(self) -> str:
        active = self.service.active
        return f"still serving {active.tag}" if active else "still serving no model"

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
            version = self.registry.in_slot(self.slot)
        except RegistryError as exc:
            self.error = str(exc)
            logger.error("%s slot unreadable, %s: %s", self.slot, self._serving(), exc)
            self._tell(None)
            return
        self._tell(version.version if version is not None else None)
        if version is None:
            self.slot_version = None
            active = self.service.active
            if self.slot != PRODUCTION_SLOT and active is not None:
                self.service.active = None
                self.service.swaps += 1
                self.error = None
                logger.info("the %s slot is empty: stopped serving %s from it", self.slot, active.tag)
            return
        self.slot_version = version.version
        active = self.service.active
        if active is not None and version.version == active.version:
            self.error = None
            return
        signature = ModelSignature.from_metadata(version.metadata)
        differences = (
            self.served.differences(signature)
            if signature is not None
            else ["signature unknown (registered without class names and input geometry)"]
        )
        if differences:
            served = active.tag if active else f"API ({self.served.geometry}, {len(self.served.class_names)} classes)"
            self.error = (
                f"not swapping to {version.tag}: its signature differs from the served {served}: "
                f"{'; '.join(differences)}; restart the service to serve it"
            )
            logger.error("%s; %s", self.error, self._serving())
            return
        try:
            model = self._load(version)
        except Exception as exc:  # noqa: BLE001 - any unloadable version keeps the old one serving
            self.error = f"cannot serve {version.tag}: {exc}"
            logger.error("%s; %s", self.error, self._serving())
            return
        self.service.active = model  # one reference: requests keep the model they started with
        self.service.swaps += 1
        self.error = None
        logger.info(
            "now serving %s from the %s slot (was %s)", model.tag, self.slot, active.tag if active else "no model"
        )

    def _tell(self, version: str | None) -> None:
        if self.on_change is not None:
            self.on_change(self.registry, version)

    def _load(self, version: ModelVersion) -> LoadedModel:
        return load_model(
            version.onnx_path,
            version.tag,
            version.version,
            version.labels,
            version.metadata,
            source=self.slot,
            served=self.served,
        )
