"""Where explanations run: one at a time per worker, in a thread of their own at a lower CPU priority.

An explanation is ~226 model rows at 32×32 (an occlusion batch) where a classification is one: run in BentoML's
worker threads (the ones ``/classify``'s batches run in) a few of them would take every thread and stall
``/classify``; run on the event loop they would stall everything. So ``/explain`` awaits a future of this one
thread: the event loop and BentoML's threads stay free, and the thread's nice value (:data:`NICE`, Linux: per
thread) lets ``/classify`` have the cores first when both are busy; an idle server gives an explanation all of one
core (onnxruntime runs on the calling thread: the session has one intra-op thread). At most :data:`MAX_WAITING`
explanations wait in a worker; one more is a 503 to retry, not a queue that grows until requests time out.

The thread must import nothing: BentoML's container registry looks types up in ``sys.modules`` without the import
lock, so a module half-imported by this thread (PIL, for the first heatmap) failed concurrent ``/classify`` batches
with "partially initialized module 'PIL.Image'" (seen under load). :func:`import_what_explanations_use` runs in
the thread that builds the Explainer, before the first request (tests/test_explainer_thread.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import TypeVar

from bentos.request_guard import ApiRefusal

logger = logging.getLogger("bentoml.mlops.classifier")
NICE = 10  # ~1/10 of a nice-0 thread's CPU share when both compete (CFS weights 110 vs 1024)
MAX_WAITING = 8
T = TypeVar("T")


def lower_priority(nice: int) -> None:
    """Raise the calling thread's nice value (Linux schedules threads; elsewhere this is a no-op)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError) as exc:  # not Linux, or not permitted: explanations run at normal priority
        logger.warning("explanations run at normal CPU priority: %s", exc)


def import_what_explanations_use() -> None:
    """Draw one tiny heatmap, so that drawing's imports (PIL, its PNG plugin) are done in the calling thread."""
    import numpy as np

    from mlops_assets.core.model.explain import heatmap_png

    heatmap_png(np.zeros((1, 2, 2), np.float32), np.zeros((2, 2), np.float32), scale=1)


class Explainer:
    """See the module docstring."""

    def __init__(self, nice: int = NICE, max_waiting: int = MAX_WAITING) -> None:
        import_what_explanations_use()
        self.max_waiting = max_waiting
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="explain", initializer=lower_priority,
                                        initargs=(nice,))
        self._waiting = threading.BoundedSemaphore(max_waiting)

    async def run(self, work: Callable[..., T], *args: object) -> T:
        """``work(*args)`` in the explanation thread, awaited without holding the event loop or a worker thread."""
        if not self._waiting.acquire(blocking=False):
            raise ApiRefusal(HTTPStatus.SERVICE_UNAVAILABLE, f"{self.max_waiting} explanations are already waiting in "
                             "this worker; retry shortly")
        try:
            return await asyncio.wrap_future(self._pool.submit(work, *args))
        finally:
            self._waiting.release()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
