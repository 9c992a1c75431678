"""The inference log: what the service predicted, on which kind of image, appended off the hot path.

Layout (the one place that knows it)::

    <artifact_root>/inference_log/dt=YYYY-MM-DD/hour=HH/part-<uuid>.parquet

Each part file is written once, to a hidden temporary name in the same directory and renamed into
place, so a reader (the hourly profiler) sees whole files or nothing. Rows are hour-partitioned by
their own UTC timestamp, so a late flush still lands in the hour the prediction was made.

:class:`InferenceLogWriter` is what the Bento service holds. ``log(...)`` only appends to a
bounded in-memory queue and returns at once; a background thread writes batches. A full queue, a
full disk or an unwritable directory drop rows and count them (``dropped``, ``last_error``) and log
a warning; they never raise into, or block, a prediction.

No Dagster here; pandas and pyarrow only.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_assets.ml.features import (
    MODEL_VERSION,
    TIMESTAMP,
    FeatureInputError,
    image_features,
    with_predictions,
)

LOG_KIND = "inference_log"
logger = logging.getLogger(__name__)


def log_root(artifact_root: str | Path) -> Path:
    return Path(artifact_root).expanduser() / LOG_KIND


def hour_dir(artifact_root: str | Path, hour: datetime) -> Path:
    """The partition directory of the UTC hour containing ``hour``."""
    hour = _as_utc(hour)
    return log_root(artifact_root) / f"dt={hour:%Y-%m-%d}" / f"hour={hour:%H}"


@dataclass(frozen=True)
class WriterStats:
    written: int
    dropped: int
    queued: int
    files: int
    last_error: str | None


@dataclass
class _Pending:
    """One logged batch as the caller handed it; turned into rows off the request path."""

    kind: str  # "features" or "images"
    payload: Any
    labels: list
    confidences: np.ndarray
    model_version: str
    original_sizes: Any
    timestamp: pd.Timestamp
    n: int

    def frame(self) -> pd.DataFrame:
        features = self.payload if self.kind == "features" else image_features(self.payload, self.original_sizes)
        frame = with_predictions(features, self.labels, self.confidences)
        frame[MODEL_VERSION] = self.model_version
        frame[TIMESTAMP] = self.timestamp
        return frame


class InferenceLogWriter:
    """Batched, asynchronous, append-only Parquet writer for the inference log.

    ``max_queue_rows`` bounds memory: beyond it new rows are dropped (and counted) rather than
    slowing the caller. The background thread writes when ``flush_rows`` rows are waiting or
    ``flush_interval_s`` has passed since the oldest waiting row, whichever comes first.
    """

    def __init__(
        self,
        artifact_root: str | Path,
        *,
        max_queue_rows: int = 100_000,
        flush_rows: int = 5_000,
        flush_interval_s: float = 2.0,
        clock=None,
    ) -> None:
        self.artifact_root = Path(artifact_root).expanduser()
        self.max_queue_rows = max_queue_rows
        self.flush_rows = flush_rows
        self.flush_interval_s = flush_interval_s
        self._clock = clock or (lambda: datetime.now(UTC))
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._queued_rows = 0
        self._in_flight_rows = 0
        self.written = 0
        self.dropped = 0
        self.files = 0
        self.last_error: str | None = None
        self._last_warning = 0.0
        self._idle = threading.Condition(self._lock)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="inference-log-writer", daemon=True)
        self._thread.start()

    # -- the hot path ------------------------------------------------------------------------
    def log(
        self,
        features: pd.DataFrame,
        predicted_labels: Sequence[str],
        confidences: Sequence[float],
        model_version: str,
    ) -> bool:
        """Queue one batch of predictions with their features (from :func:`image_features`).

        True if queued, False if dropped (counted in ``dropped``, reason in ``last_error``). Never
        raises and never waits for the disk: the rows are assembled and written by the background
        thread.
        """
        return self._enqueue("features", features, predicted_labels, confidences, model_version, None)

    def log_images(
        self,
        images: np.ndarray,
        predicted_labels: Sequence[str],
        confidences: Sequence[float],
        model_version: str,
        original_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> bool:
        """Like :meth:`log`, but the features of ``images`` (N×C×H×W, uint8 or [0, 1] floats) are
        computed by the background thread too, so the request pays only for a copy of the batch."""
        return self._enqueue("images", images, predicted_labels, confidences, model_version, original_sizes)

    def _enqueue(self, kind, payload, predicted_labels, confidences, model_version, original_sizes) -> bool:
        n = 0
        try:
            n = len(payload)
            if n == 0:
                return True
            if len(predicted_labels) != n or len(confidences) != n:
                raise FeatureInputError(
                    f"{n} images, {len(predicted_labels)} labels and {len(confidences)} confidences"
                )
            if self._closed:
                raise RuntimeError("inference log writer is closed")
            with self._lock:
                full = self._queued_rows + n > self.max_queue_rows
                if not full:
                    self._queued_rows += n
            if full:
                self._drop(n, f"queue full ({self.max_queue_rows} rows waiting)")
                return False
            if kind == "images":  # the caller may reuse its buffer once we return
                payload = np.array(payload, copy=True)
            self._queue.put(
                _Pending(kind, payload, list(predicted_labels), np.array(confidences, dtype=np.float64),
                         str(model_version), original_sizes, pd.Timestamp(self._clock()), n)
            )
            return True
        except Exception as exc:  # a logging failure must never fail a prediction
            self._drop(n, f"{type(exc).__name__}: {exc}")
            return False

    # -- counters, flushing, shutdown ----------------------------------------------------------
    def stats(self) -> WriterStats:
        with self._lock:
            return WriterStats(self.written, self.dropped, self._queued_rows, self.files, self.last_error)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued row is written (or dropped); False on timeout."""
        self._queue.put(None)  # wakes the writer so it does not wait out its interval
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._queued_rows > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the background thread."""
        self.flush(timeout)
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)

    def __enter__(self) -> InferenceLogWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the background thread ---------------------------------------------------------------
    def _run(self) -> None:
        pending: list[_Pending] = []
        pending_rows = 0
        oldest = 0.0
        while True:
            timeout = None if not pending else max(0.0, oldest + self.flush_interval_s - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None  # the oldest waiting row has waited flush_interval_s
            if item is not None:
                if not pending:
                    oldest = time.monotonic()
                pending.append(item)
                pending_rows += item.n
                if pending_rows < self.flush_rows:
                    continue
            if pending:  # enough rows, the interval elapsed, or flush()/close() asked
                self._write(pending, pending_rows)
                pending, pending_rows = [], 0
            else:
                with self._idle:
                    self._idle.notify_all()
            if self._closed and self._queue.empty():
                return

    def _write(self, items: list[_Pending], n: int) -> None:
        frames, rows = [], 0
        for group in _groups(items):
            try:
                frames.append(_group_frame(group))
                rows += sum(item.n for item in group)
                continue
            except Exception:  # noqa: BLE001 - find the malformed batch: each item on its own
                pass
            for item in group:
                try:
                    frames.append(item.frame())
                    rows += item.n
                except Exception as exc:  # one malformed batch loses its own rows only
                    self._drop(item.n, f"{type(exc).__name__}: {exc}")
        try:
            if not frames:
                return
            batch = pd.concat(frames, ignore_index=True)
            hours = batch[TIMESTAMP].dt.floor("h")
            for hour, part in batch.groupby(hours, sort=True):
                write_part(self.artifact_root, hour.to_pydatetime(), part)
                with self._lock:
                    self.files += 1
            with self._lock:
                self.written += rows
        except Exception as exc:  # disk full, permissions, ...: count, report, keep serving
            self._drop(rows, f"{type(exc).__name__}: {exc}")
        finally:
            with self._idle:
                self._queued_rows -= n
                self._idle.notify_all()

    def _drop(self, n: int, reason: str) -> None:
        with self._lock:
            self.dropped += n
            self.last_error = reason
            now = time.monotonic()
            warn = now - self._last_warning > 10.0
            if warn:
                self._last_warning = now
        if warn:  # at most one warning every 10 s, so a broken disk does not flood the service log
            logger.warning("inference log dropped %d row(s) (%d so far): %s", n, self.dropped, reason)


def _groups(items: list[_Pending]) -> list[list[_Pending]]:
    """Image batches of one geometry and scale go through feature extraction together."""
    groups: dict[tuple, list[_Pending]] = {}
    for index, item in enumerate(items):
        payload = item.payload
        key = (
            ("images", payload.dtype.kind == "u", payload.shape[1:])
            if item.kind == "images" and isinstance(payload, np.ndarray) and payload.ndim == 4
            else ("single", index)
        )
        groups.setdefault(key, []).append(item)
    return list(groups.values())


def _group_frame(group: list[_Pending]) -> pd.DataFrame:
    """One feature frame for many small logged batches: a service answering one image per request
    queues thousands of them, and building a DataFrame per request would hold the GIL for longer
    than the predictions themselves took."""
    if len(group) == 1:
        return group[0].frame()
    images = np.concatenate([item.payload for item in group])
    sizes = np.concatenate([
        np.asarray(item.original_sizes, dtype=np.float64).reshape(-1, 2) if item.original_sizes is not None
        else np.full((item.n, 2), np.nan)
        for item in group
    ])
    frame = with_predictions(
        image_features(images, sizes),
        [label for item in group for label in item.labels],
        np.concatenate([item.confidences for item in group]),
    )
    counts = [item.n for item in group]
    frame[MODEL_VERSION] = np.repeat([item.model_version for item in group], counts)
    frame[TIMESTAMP] = pd.DatetimeIndex([item.timestamp for item in group]).repeat(counts)
    return frame


def write_part(artifact_root: str | Path, hour: datetime, frame: pd.DataFrame) -> Path:
    """Write one immutable part file into the hour's partition (temp file + rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory = hour_dir(artifact_root, hour)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"part-{uuid.uuid4().hex}.parquet"
    tmp = directory / f".{name}.tmp"
    try:
        table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, directory / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return directory / name


def hour_part_files(artifact_root: str | Path, hour: datetime) -> list[Path]:
    directory = hour_dir(artifact_root, hour)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("part-*.parquet") if p.is_file())


def window_part_files(artifact_root: str | Path, start: datetime, end: datetime) -> list[Path]:
    """The log files of every hour partition overlapping [start, end) (a directory listing, nothing read)."""
    hour = _as_utc(start).replace(minute=0, second=0, microsecond=0)
    files: list[Path] = []
    while hour < _as_utc(end):
        files += hour_part_files(artifact_root, hour)
        hour += timedelta(hours=1)
    return files


def read_window(artifact_root: str | Path, start: datetime, end: datetime) -> pd.DataFrame:
    """Every logged row with ``start <= timestamp < end`` (UTC), from the hour partitions overlapping it."""
    start, end = _as_utc(start), _as_utc(end)
    files = window_part_files(artifact_root, start, end)
    if not files:
        return pd.DataFrame()
    import pyarrow.parquet as pq

    frame = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    stamps = frame[TIMESTAMP]
    mask = (stamps >= pd.Timestamp(start)) & (stamps < pd.Timestamp(end))
    return frame.loc[mask.to_numpy()].reset_index(drop=True)


def read_hour(artifact_root: str | Path, hour: datetime) -> pd.DataFrame:
    """The rows logged in one UTC hour."""
    start = _as_utc(hour).replace(minute=0, second=0, microsecond=0)
    return read_window(artifact_root, start, start + timedelta(hours=1))


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)

