"""The shadow: a second model scores the requests production answers, off the request path, and answers no one.

The request's thread only offers its images to a bounded queue (:meth:`ShadowMirror.offer`: one ``put_nowait``, never a
wait); one background thread takes each batch, has the shadow model answer it and hands the answer to ``record`` with
the model call's wall time in ms (the service logs both under the answered prediction's ids). When the queue is full the
batch is dropped and counted, never the client's request; a shadow that raises is counted as failed; a shadow that hangs
holds only its own thread (the queue fills, later batches are dropped and counted). So a shadow never changes a client's
answer or status. The model in the slot is what a :class:`bentos.model_watcher.SlotWatcher` on the ``shadow`` slot swaps
into :attr:`ShadowMirror.active` (None: no shadow, nothing is queued).

The thread runs at a lower CPU priority (nice :data:`NICE`, as explanations do): on idle cores it mirrors every
request, but when production's threads need both cores (c=64 on 2 cores) they get them first, the queue fills and
the shadow's work is what gives (dropped and counted, the mirrored share says how much); measured in
``benchmarks/bench_shadow.py``.

The counters (``/model``'s ``shadow``) count images: ``mirrored`` (the shadow answered and its answer was handed to
``record``), ``dropped`` (the queue was full), ``failed`` (the shadow or ``record`` raised). This module does not
log: what is logged is decided by the service (``tests/test_architecture.py``).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bentos.explainer import lower_priority
from bentos.served_model import LoadedModel

logger = logging.getLogger("bentoml.mlops.classifier")
QUEUE_BATCHES = 256  # batches waiting for the shadow; beyond it they are dropped (counted)
NICE = 10  # the shadow thread's nice value: production's threads have the cores first


@dataclass(frozen=True)
class MirroredRequest:
    """What production answered, as the shadow needs it: the images, and the ids and time the answer carried."""

    images: Any  # N×C×H×W, the request's own array (never written to after the request)
    prediction_ids: list[str]
    at: datetime
    original_sizes: list[tuple[int, int]] | None


@dataclass(frozen=True)
class MirrorStats:
    mirrored: int
    dropped: int
    failed: int
    queued: int  # batches waiting
    last_error: str | None


Answer = tuple[Any, Any, list]  # LoadedModel.answer's (probabilities, OOD scores, OOD answers)


class ShadowMirror:
    """Scores production's requests with :attr:`active`, one background thread, a queue of ``capacity`` batches."""

    def __init__(self, record: Callable[[LoadedModel, MirroredRequest, Answer, float], Any],
                 capacity: int = QUEUE_BATCHES, nice: int = NICE) -> None:
        self.record = record
        self.active: LoadedModel | None = None  # set by the shadow slot's watcher
        self.swaps = 0
        self.mirrored = self.dropped = self.failed = 0
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[LoadedModel, MirroredRequest] | None] = queue.Queue(maxsize=capacity)
        self._idle = threading.Condition(self._lock)
        self._pending = 0  # offered and not yet done (queued or being scored)
        self._nice = nice
        self._thread = threading.Thread(target=self._run, name="shadow-mirror", daemon=True)
        self._thread.start()

    # -- the request path: never waits, never raises -----------------------------------------------
    def offer(self, request: MirroredRequest, model: LoadedModel | None = None) -> bool:
        """Queue the request for the shadow (False: no shadow, or dropped because the queue is full). ``model``:
        the one to score it instead of :attr:`active` (production, when the challenger answered the client: A/B)."""
        model = model or self.active
        if model is None:
            return False
        with self._lock:
            self._pending += 1
        try:
            self._queue.put_nowait((model, request))
            return True
        except queue.Full:
            with self._lock:
                self._pending -= 1
                self.dropped += len(request.prediction_ids)
            return False

    # -- off the request path -----------------------------------------------------------------------
    def _run(self) -> None:
        lower_priority(self._nice)
        while True:
            item = self._queue.get()
            if item is None:
                return
            model, request = item
            n = len(request.prediction_ids)
            try:
                self.record(model, request, *model.timed_answer(request.images))
                with self._lock:
                    self.mirrored += n
            except Exception as exc:  # noqa: BLE001 - a failing shadow is counted, never raised into anything
                with self._lock:
                    self.failed += n
                    self.last_error = f"{model.tag}: {type(exc).__name__}: {exc}"
                logger.warning("shadow %s failed on %d image(s): %s", model.tag, n, exc)
            finally:
                with self._lock:
                    self._pending -= 1
                    self._idle.notify_all()

    def stats(self) -> MirrorStats:
        with self._lock:
            return MirrorStats(self.mirrored, self.dropped, self.failed, self._queue.qsize(), self.last_error)

    def describe(self, watcher) -> dict[str, Any]:
        """``/model``'s ``shadow``: what the slot names (``watcher``: the shadow slot's), what scores, the counters."""
        model = self.active
        return {"slot_version": watcher.slot_version, "version": model.version if model else None,
                "swap_error": watcher.error, **vars(self.stats())}

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every offered batch was scored (or failed); False if ``timeout`` passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        """Stop the thread once the batches already queued are done (a hung shadow keeps its daemon thread)."""
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
