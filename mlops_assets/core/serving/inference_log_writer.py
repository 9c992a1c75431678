"""The inference log's writer: what the Bento service holds, journaling on the hot path, Parquet off it.

``log(...)`` appends the batch to this process's inference journal (:mod:`mlops_assets.core.serving.inference_journal`)
with one ``write`` system call and returns: the rows are the kernel's before the prediction is answered, so a
killed service loses none. A background thread turns journal segments into the Parquet parts of the inference
log (the layout is :mod:`mlops_assets.core.serving.inference_log`'s) and deletes them; it also converts the segments of
writers that died. A failed journal write (full disk, unwritable directory), a backlog over ``max_queue_rows``
or a malformed batch drop rows and count them (``dropped``, ``last_error``) and log a warning; they never raise
into a prediction. A failed Parquet write keeps the segment and is retried. The background thread holds the GIL
while it builds frames, so it builds few: a request's thread is stalled by every Python-level step it takes
(BENCHMARKS.md, serving).

No Dagster here; pandas and pyarrow only.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_assets.core.data.features import (
    MODEL_MS,
    MODEL_VERSION,
    OOD_FLAGGED,
    OOD_SCORE,
    PREDICTION_ID,
    TIMESTAMP,
    FeatureInputError,
    image_features,
    with_predictions,
)
from mlops_assets.core.serving.inference_journal import Segment, claim_orphans, encode, journal_root, read_records
from mlops_assets.core.serving.inference_log import (
    CHANNELS,
    HEIGHT,
    IMAGES_KIND,
    LOG_KIND,
    PIXELS,
    SHADOW_KIND,
    WIDTH,
    span_name,
    write_part,
)
from mlops_assets.core.serving.prediction_ids import new_prediction_ids

logger = logging.getLogger(__name__)
RETRY_S = 1.0  # how soon a journal segment the disk refused is converted again


@dataclass(frozen=True)
class WriterStats:
    written: int
    dropped: int
    queued: int
    files: int
    last_error: str | None
    images_dropped: int = 0  # predictions logged without their image (the features row was written)
    recovered: int = 0  # rows a dead writer journaled, written to Parquet by this one


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
    prediction_ids: list[str]
    ood: np.ndarray | None = None  # N×2 (score, flagged), or None when the caller gave none
    dataset: str = LOG_KIND  # LOG_KIND (answered) or SHADOW_KIND (a shadow's answers to the same requests)
    model_ms: float | None = None  # the model call's wall time for the whole batch (each of its rows carries it)

    def ood_rows(self) -> np.ndarray:
        return self.ood if self.ood is not None else np.full((self.n, 2), np.nan)

    def frame(self) -> pd.DataFrame:
        features = self.payload if self.kind == "features" else image_features(self.payload, self.original_sizes)
        frame = with_predictions(features, self.labels, self.confidences)
        frame[MODEL_VERSION] = self.model_version
        frame[TIMESTAMP] = self.timestamp
        frame[PREDICTION_ID] = self.prediction_ids
        frame[OOD_SCORE], frame[OOD_FLAGGED] = self.ood_rows()[:, 0], self.ood_rows()[:, 1]
        frame[MODEL_MS] = self.ms()
        return frame

    def ms(self) -> float:
        return np.nan if self.model_ms is None else float(self.model_ms)

    def pixels(self) -> np.ndarray:
        """The images as uint8 pixels (the training scale × 255, exact for pixels sent as pixels / 255)."""
        return self.payload if self.payload.dtype == np.uint8 else np.clip(
            np.rint(self.payload.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)


class InferenceLogWriter:
    """Journaled, append-only, hour-partitioned Parquet writer for the inference log.

    :meth:`log` and :meth:`log_images` hand the batch to the kernel (the journal) before they return, and never
    raise. ``max_queue_rows`` bounds the backlog (rows journaled but not yet in Parquet, e.g. while the disk
    refuses Parquet): beyond it new rows are dropped (and counted). The background thread converts the journal
    when ``flush_rows`` rows are waiting or ``flush_interval_s`` has passed since the oldest waiting row,
    whichever comes first. With ``keep_images`` the images given to :meth:`log_images` are kept too
    (``inference_images``), so labelled production images can later be exported to the labelled source.
    """

    def __init__(
        self,
        artifact_root: str | Path,
        *,
        max_queue_rows: int = 100_000,
        flush_rows: int = 5_000,
        flush_interval_s: float = 2.0,
        clock=None,
        keep_images: bool = False,
    ) -> None:
        self.artifact_root = Path(artifact_root).expanduser()
        self.keep_images = keep_images
        self.images_dropped = 0
        self.max_queue_rows = max_queue_rows
        self.flush_rows = flush_rows
        self.flush_interval_s = flush_interval_s
        self._clock = clock or (lambda: datetime.now(UTC))
        # The journal segment being appended to; the writer thread takes it (a new one is opened by the next
        # log call) and converts it. The writer wakes when flush_rows are waiting, when the oldest has waited
        # flush_interval_s, or when flush()/close() ask: not per request (one GIL hand-off per prediction was 10%
        # of the worker's CPU at c=1).
        self._journal_dir = journal_root(self.artifact_root)
        self._segment: Segment | None = None
        self._retry: list[Segment] = []  # this writer's segments whose conversion failed: tried again later
        self._retry_at = 0.0
        self._retry_now = threading.Event()  # flush() asks for the retry at once
        self._pending_rows = 0  # rows in the current segment
        self._oldest = 0.0  # when its first row was journaled (monotonic)
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._queued_rows = 0  # journaled, not yet in Parquet
        self._enqueued = 0  # batches journaled so far ...
        self._completed = 0  # ... and the count the background thread has taken through a conversion
        self.written = 0
        self.recovered = 0  # rows of writers that died, converted by this one
        self.dropped = 0
        self.files = 0
        self.last_error: str | None = None
        self._last_warning = 0.0
        self._idle = threading.Condition(self._lock)
        self._closed = False
        # imported now, at the service's startup, not by the first flush: an import holds the GIL (~20 ms of
        # stalled requests)
        import pyarrow.parquet  # noqa: F401

        self._thread = threading.Thread(target=self._run, name="inference-log-writer", daemon=True)
        self._thread.start()

    # -- the hot path ------------------------------------------------------------------------
    def log(
        self,
        features: pd.DataFrame,
        predicted_labels: Sequence[str],
        confidences: Sequence[float],
        model_version: str,
        prediction_ids: Sequence[str] | None = None,
        timestamp: datetime | None = None,
        ood: np.ndarray | None = None,
        model_ms: float | None = None,
    ) -> bool:
        """Journal one batch of predictions with their features (from :func:`image_features`).

        ``prediction_ids`` (as answered to the client) and ``timestamp`` (when they were made) default to new
        ids and now. True once the batch is in the journal (the kernel has it: a killed process loses none of
        it), False if dropped (counted in ``dropped``, reason in ``last_error``). Never raises; never waits for
        the Parquet write, which the background thread does."""
        return self._enqueue("features", features, predicted_labels, confidences, model_version, None,
                             prediction_ids, timestamp, ood, model_ms=model_ms)

    def log_images(
        self,
        images: np.ndarray,
        predicted_labels: Sequence[str],
        confidences: Sequence[float],
        model_version: str,
        original_sizes: Sequence[tuple[int, int]] | None = None,
        prediction_ids: Sequence[str] | None = None,
        timestamp: datetime | None = None,
        ood: np.ndarray | None = None,
        dataset: str = LOG_KIND,
        model_ms: float | None = None,
    ) -> bool:
        """Like :meth:`log`, but the features of ``images`` (N×C×H×W, uint8 or [0, 1] floats) are
        computed by the background thread, so the request pays only for journaling the images' bytes. ``ood`` (both
        methods): N×2, each answer's out-of-distribution score and flag (1/0, NaN for none), logged with it.
        ``dataset``: :data:`SHADOW_KIND` for a shadow model's answers to requests production answered (their ids
        and time): journaled alike, written to their own dataset, their images never kept (production's are).
        ``model_ms`` (both methods): the wall time of the model call that answered the whole batch, in ms; each of
        the batch's rows carries it as ``model_ms`` (not divided by the batch's size: it is what each prediction
        waited for the model), null when not given."""
        if dataset not in (LOG_KIND, SHADOW_KIND):
            raise ValueError(f"unknown inference log dataset {dataset!r}")
        return self._enqueue("images", images, predicted_labels, confidences, model_version, original_sizes,
                             prediction_ids, timestamp, ood, dataset, model_ms)

    def _enqueue(self, kind, payload, predicted_labels, confidences, model_version, original_sizes,
                 prediction_ids, timestamp, ood=None, dataset=LOG_KIND, model_ms=None) -> bool:
        n = 0
        try:
            n = len(payload)
            if n == 0:
                return True
            stamp = timestamp or self._clock()
            ids = list(prediction_ids) if prediction_ids is not None else new_prediction_ids(n, stamp)
            if len(predicted_labels) != n or len(confidences) != n or len(ids) != n or (
                    ood is not None and np.shape(ood) != (n, 2)):
                raise FeatureInputError(
                    f"{n} images, {len(predicted_labels)} labels, {len(confidences)} confidences, "
                    f"{len(ids)} prediction ids" + ("" if ood is None else f" and OOD rows {np.shape(ood)}")
                )
            if self._closed:
                raise RuntimeError("inference log writer is closed")
            record = encode(kind, payload, list(predicted_labels), np.asarray(confidences, dtype=np.float64),
                            str(model_version), original_sizes, pd.Timestamp(stamp), ids, ood, dataset, model_ms)
            due = False
            with self._lock:  # journaled and counted together: the segment holds exactly the batches counted
                full = self._queued_rows + n > self.max_queue_rows
                if not full:
                    if self._segment is None:
                        self._segment = Segment(self._journal_dir)
                    self._segment.append(record, n)
                    self._queued_rows += n
                    self._enqueued += 1
                    if not self._pending_rows:
                        self._oldest = time.monotonic()
                    self._pending_rows += n
                    due = self._pending_rows >= self.flush_rows
            if due:
                self._wake.set()
            if full:
                self._drop(n, f"queue full ({self.max_queue_rows} rows journaled, not yet in Parquet)")
                return False
            return True
        except Exception as exc:  # a logging failure must never fail a prediction
            self._drop(n, f"{type(exc).__name__}: {exc}")
            return False

    # -- counters, flushing, shutdown ----------------------------------------------------------
    def stats(self) -> WriterStats:
        with self._lock:
            return WriterStats(self.written, self.dropped, self._queued_rows, self.files, self.last_error,
                               self.images_dropped, self.recovered)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row journaled before this call went through a conversion (written to Parquet, or
        kept in the journal for a retry when the disk refused it: ``last_error``); False on timeout. Rows
        journaled meanwhile by other threads are not waited for, so a flush ends under continuous traffic too."""
        with self._lock:
            target = self._enqueued
        self._retry_now.set()
        self._wake.set()  # the writer does not wait out its interval
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._completed < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Write what is journaled, then stop the background thread. A segment it could not convert stays in
        the journal, unlocked, for the next writer on this artifact root."""
        self.flush(timeout)
        self._closed = True
        self._wake.set()
        self._thread.join(timeout)
        with self._lock:
            left = [*self._retry, *([self._segment] if self._segment else [])]
            self._retry, self._segment = [], None
        for segment in left:
            segment.release()

    def __enter__(self) -> InferenceLogWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the background thread ---------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._lock:  # idle: look again in flush_interval_s, so a row never waits longer than that
                due = (self._oldest if self._pending_rows else time.monotonic()) + self.flush_interval_s
            self._wake.wait(max(0.0, due - time.monotonic()))
            self._wake.clear()  # before taking the segment: a wake-up set after this finds the next one
            with self._lock:
                segment, target = self._segment, self._enqueued
                self._segment, self._pending_rows = None, 0
            retry: list[Segment] = []
            if self._retry and (self._retry_now.is_set() or time.monotonic() >= self._retry_at):
                self._retry_now.clear()
                retry, self._retry = self._retry, []
            for own in [*retry, *([segment] if segment is not None else [])]:
                self._convert(own, mine=True)
            for orphan in claim_orphans(self.artifact_root, set()):
                self._convert(orphan, mine=False)
            with self._idle:
                self._completed = max(self._completed, target)
                self._idle.notify_all()
            if self._closed:
                with self._lock:
                    if self._segment is None:
                        return

    def _convert(self, segment: Segment, mine: bool) -> None:
        """A journal segment's records as Parquet parts, then the segment deleted. If the disk refuses a part,
        the segment is kept (and converted again: part names are derived from the segment, so a part written
        before the failure is not written twice)."""
        try:
            for index, items in enumerate(self._chunks(segment)):
                token = hashlib.sha1(f"{segment.path.name}:{index}".encode()).hexdigest()[:12]
                rows = self._write(items, token)
                with self._lock:
                    if mine:
                        self.written += rows
                    else:
                        self.recovered += rows
        except Exception as exc:  # disk full, permissions, ...: report, keep the journal, keep serving
            self._report(f"{type(exc).__name__}: {exc}", f"inference log kept {segment.path.name} to retry: %s")
            if mine:  # a refusing disk is tried again in RETRY_S (or at the next flush), not at every wake-up
                self._retry.append(segment)
                self._retry_at = time.monotonic() + RETRY_S
            else:
                segment.release()
            return
        segment.discard()
        if mine:
            with self._lock:
                self._queued_rows -= segment.rows

    def _chunks(self, segment: Segment):
        """The segment's records as writer batches of about ``flush_rows`` rows."""
        items, rows = [], 0
        for record in read_records(segment.path):
            items.append(_Pending(record.kind, record.payload, record.labels, record.confidences,
                                  record.model_version, record.original_sizes, record.timestamp,
                                  len(record.prediction_ids), record.prediction_ids, record.ood, record.dataset,
                                  record.model_ms))
            rows += len(record.prediction_ids)
            if rows >= self.flush_rows:
                yield items
                items, rows = [], 0
        if items:
            yield items

    def _write(self, items: list[_Pending], token: str) -> int:
        """The rows of ``items`` as Parquet parts of their datasets; how many. A malformed batch is dropped
        (counted); a failed write raises."""
        served = [item for item in items if item.dataset == LOG_KIND]
        shadow = [item for item in items if item.dataset != LOG_KIND]
        rows = self._write_dataset(served, LOG_KIND, token) if served else 0
        return rows + (self._write_dataset(shadow, SHADOW_KIND, token) if shadow else 0)

    def _write_dataset(self, items: list[_Pending], dataset: str, token: str) -> int:
        frames, rows, framed = [], 0, []
        for group in _groups(items):
            try:
                frames.append(_group_frame(group))
                rows += sum(item.n for item in group)
                framed += group
                continue
            except Exception:  # noqa: BLE001 - find the malformed batch: each item on its own
                pass
            for item in group:
                try:
                    frames.append(item.frame())
                    rows += item.n
                    framed.append(item)
                except Exception as exc:  # one malformed batch loses its own rows only
                    self._drop(item.n, f"{type(exc).__name__}: {exc}")
        if not frames:
            return 0
        self._write_hours(pd.concat(frames, ignore_index=True), dataset, token)
        if self.keep_images and dataset == LOG_KIND:
            self._write_images([item for item in framed if item.kind == "images"], token)
        return rows

    def _write_hours(self, batch: pd.DataFrame, dataset: str, token: str) -> None:
        for hour, part in batch.groupby(batch[TIMESTAMP].dt.floor("h"), sort=True):
            stamps = part[TIMESTAMP]
            name = span_name(stamps.min().to_pydatetime(), stamps.max().to_pydatetime(), token=token)
            try:
                write_part(self.artifact_root, hour.to_pydatetime(), part, dataset, name)
            except FileExistsError:  # written by an earlier attempt at this segment
                continue
            with self._lock:
                self.files += 1

    def _write_images(self, items: list[_Pending], token: str) -> None:
        """The images of predictions whose rows were written; a failure here loses images, never rows."""
        if not items:
            return
        try:
            self._write_hours(_images_frame(items), IMAGES_KIND, token)
        except Exception as exc:  # noqa: BLE001 - counted and reported like dropped rows
            lost = sum(item.n for item in items)
            with self._lock:
                self.images_dropped += lost
                self.last_error = f"images: {type(exc).__name__}: {exc}"
            logger.warning("inference log kept %d prediction(s) without their image: %s", lost, exc)

    def _drop(self, n: int, reason: str) -> None:
        with self._lock:
            self.dropped += n
        self._report(reason, f"inference log dropped {n} row(s) ({self.dropped} so far): %s")

    def _report(self, reason: str, message: str) -> None:
        with self._lock:
            self.last_error = reason
            now = time.monotonic()
            warn = now - self._last_warning > 10.0
            if warn:
                self._last_warning = now
        if warn:  # at most one warning every 10 s, so a broken disk does not flood the service log
            logger.warning(message, reason)


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
    frame[PREDICTION_ID] = [prediction_id for item in group for prediction_id in item.prediction_ids]
    ood = np.concatenate([item.ood_rows() for item in group])
    frame[OOD_SCORE], frame[OOD_FLAGGED] = ood[:, 0], ood[:, 1]
    frame[MODEL_MS] = np.repeat([item.ms() for item in group], counts)
    return frame


def _images_frame(items: list[_Pending]) -> pd.DataFrame:
    """The kept images of many logged batches as one frame per geometry. The writer thread holds the GIL while
    it builds frames: one DataFrame per request (0.3 ms each) stalled the service's requests for ~300 ms per
    1000 of them (BENCHMARKS.md, serving)."""
    by_shape: dict[tuple, list[_Pending]] = {}
    for item in items:
        by_shape.setdefault(item.payload.shape[1:], []).append(item)
    frames = []
    for (channels, height, width), group in by_shape.items():
        pixels = np.concatenate([item.pixels() for item in group])
        frames.append(pd.DataFrame({
            PREDICTION_ID: [prediction_id for item in group for prediction_id in item.prediction_ids],
            TIMESTAMP: pd.DatetimeIndex([item.timestamp for item in group]).repeat([item.n for item in group]),
            PIXELS: [image.tobytes() for image in pixels],
            CHANNELS: channels, HEIGHT: height, WIDTH: width,
        }))
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
