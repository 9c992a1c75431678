"""This worker's serving status, written to the artifact volume for Dagster to read
(:mod:`mlops_assets.core.serving.serving_status`: why files, and what is in them)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlops_assets.core.serving.serving_status import HEARTBEAT_SECONDS, write_status

logger = logging.getLogger("bentoml.mlops")


class StatusReporter:
    """Every ``interval`` seconds, writes ``status()`` to ``path`` if it changed or the last write is
    :data:`HEARTBEAT_SECONDS` old; removes the file when the worker stops cleanly."""

    def __init__(self, status: Callable[[], dict[str, Any]], path: Path, interval: float) -> None:
        self.status, self.path, self.interval = status, path, interval
        self._last: tuple[dict[str, Any], float] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-reporter", daemon=True)

    def start(self) -> None:
        self.report()
        self._thread.start()

    def report(self) -> None:
        status, now = self.status(), time.monotonic()
        if self._last is not None and status == self._last[0] and now - self._last[1] < HEARTBEAT_SECONDS:
            return
        try:
            write_status(self.path, status)
            self._last = (status, now)
        except OSError as exc:  # a full or read-only volume must not stop the service answering
            logger.warning("cannot write the serving status to %s: %s", self.path, exc)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.report()

    def stop(self) -> None:
        self._stop.set()
        self.path.unlink(missing_ok=True)
