"""Feedback: the true label of a served prediction, stored beside the inference log so the two join.

Layout (through :mod:`mlops_assets.core.serving.inference_log`, the owner of the hour partitions)::

    <artifact_root>/feedback/dt=YYYY-MM-DD/hour=HH/part-<received ms>-<first ms>-<last ms>-<random>.parquet

A feedback row sits in the hour of the *prediction* it labels (read from the prediction id, a UUIDv7), so the
labels of a window are found next to its predictions; part files are named by when they were received, so they
sort by arrival, and by the prediction times they label, so checking an id opens only the files that can hold
it (log part files are named by their prediction times too). Rows: ``prediction_id``, ``label`` (the true
class's name), ``timestamp`` (the prediction's, from its log row) and ``received_at``. Files are written once and
never rewritten, nor is the inference log.

:class:`FeedbackStore` validates a batch as a whole (unknown prediction, unknown class, a prediction labelled
twice) and writes nothing when any item is refused. One process appends at a time (a file lock in the feedback
folder: the service's workers share it); readers keep the first label of a prediction all the same.

No Dagster here; pandas and pyarrow only.
"""

from __future__ import annotations

import fcntl
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from mlops_assets.core.data.features import MODEL_VERSION, PREDICTED_CLASS, PREDICTION_ID, TIMESTAMP
from mlops_assets.core.serving.inference_journal import journal_predictions
from mlops_assets.core.serving.inference_log import (
    CHANNELS,
    HEIGHT,
    IMAGES_KIND,
    LOG_KIND,
    PIXELS,
    WIDTH,
    hour_part_files,
    log_root,
    part_span,
    partition_hours,
    read_parts,
    read_window,
    span_name,
    write_part,
)
from mlops_assets.core.serving.prediction_ids import canonical, epoch_ms, prediction_time

FEEDBACK_KIND = "feedback"
LABEL = "label"
RECEIVED_AT = "received_at"
FEEDBACK_COLUMNS = (PREDICTION_ID, LABEL, TIMESTAMP, RECEIVED_AT)


class FeedbackError(ValueError):
    """One item of a feedback batch refused; ``index`` and ``field`` say which (the whole batch is refused)."""

    def __init__(self, index: int, attribute: str, message: str) -> None:
        super().__init__(message)
        self.index, self.attribute = index, attribute

    @property
    def field(self) -> str:
        return f"feedback.{self.index}.{self.attribute}"


class UnknownPrediction(FeedbackError):
    """No logged prediction has this id: neither the inference log nor the journal of answered predictions."""


class UnknownClass(FeedbackError):
    """The label is not one of the model's classes."""


class DuplicateFeedback(FeedbackError):
    """The prediction has feedback already, or appears twice in the batch."""


@dataclass(frozen=True)
class FeedbackItem:
    prediction_id: str
    label: str


class FeedbackStore:
    """Validates and appends feedback under ``artifact_root``; remembers the ids of the part files it read
    (they never change) for the next batches, up to ``cached_files`` files."""

    def __init__(self, artifact_root: str | Path, cached_files: int = 64) -> None:
        self.artifact_root = Path(artifact_root).expanduser()
        self.cached_files = cached_files
        self._cache: OrderedDict[Path, pd.Series] = OrderedDict()

    def record(self, items: Sequence[FeedbackItem], class_names: Sequence[str],
               received_at: datetime | None = None) -> int:
        """Append ``items`` (all or none); the number stored. Raises the first :class:`FeedbackError` by index.

        Every answered prediction is in the inference log or, made in the last seconds, still in a writer's
        journal (:mod:`mlops_assets.core.serving.inference_journal`), so an id is known or unknown at once: nothing is
        waited for, and an unknown id holds no thread. Validation and the write happen under an exclusive lock on
        the feedback folder, so two processes never store two labels for one prediction."""
        received = received_at or datetime.now(UTC)
        with _exclusive(log_root(self.artifact_root, FEEDBACK_KIND) / ".lock"):
            rows, errors = self._check(items, class_names, received)
            if errors:
                raise min(errors, key=lambda error: error.index)
            stamp = pd.Timestamp(received)
            for hour, entries in sorted(rows.items()):
                frame = pd.DataFrame(entries, columns=[PREDICTION_ID, LABEL, TIMESTAMP])
                frame[RECEIVED_AT] = stamp
                name = span_name(frame[TIMESTAMP].min().to_pydatetime(), frame[TIMESTAMP].max().to_pydatetime(),
                                 prefix=f"{epoch_ms(received):013d}")
                write_part(self.artifact_root, hour, frame, FEEDBACK_KIND, name=name)
        return sum(len(entries) for entries in rows.values())

    def _check(self, items: Sequence[FeedbackItem], class_names: Sequence[str],
               received: datetime) -> tuple[dict[datetime, list[tuple[str, str, pd.Timestamp]]], list[FeedbackError]]:
        """The rows to store per hour, and every item's refusal."""
        known_classes = set(class_names)
        errors: list[FeedbackError] = []
        by_hour: dict[datetime, list[tuple[int, str, str, int]]] = {}
        first_seen: dict[str, int] = {}
        for index, item in enumerate(items):
            prediction_id = canonical(item.prediction_id)
            when = prediction_time(prediction_id) if prediction_id else None
            if prediction_id in first_seen:
                errors.append(DuplicateFeedback(index, "prediction_id", (
                    f"prediction {prediction_id} appears twice in this batch (items {first_seen[prediction_id]} "
                    f"and {index}); send one label per prediction")))
                continue
            if item.label not in known_classes:
                errors.append(UnknownClass(index, "label", (
                    f"label {item.label!r} is not a class of the model; send the class name (as the prediction's "
                    f"class_name), one of {sorted(known_classes)[:20]}")))
            if prediction_id is None or when is None or when > received + timedelta(minutes=5):
                errors.append(UnknownPrediction(index, "prediction_id", (
                    f"no prediction has id {item.prediction_id!r}: use the prediction_id of a /classify or "
                    "/classify_image answer")))
                continue
            first_seen[prediction_id] = index
            by_hour.setdefault(when.replace(minute=0, second=0, microsecond=0), []).append(
                (index, prediction_id, item.label, epoch_ms(when)))
        rows: dict[datetime, list[tuple[str, str, pd.Timestamp]]] = {}
        journal: dict[str, pd.Timestamp] | None = None
        for hour, entries in by_hour.items():
            times = {ms for *_, ms in entries}
            logged = self._ids(_covering(hour_part_files(self.artifact_root, hour, LOG_KIND), times))
            if any(prediction_id not in logged.index for _, prediction_id, *_ in entries):
                # not in Parquet yet: in a journal, or converted (journal deleted after its Parquet part is in
                # place) since the listing above, so the journal is read before the Parquet files again
                journal = journal_predictions(self.artifact_root) if journal is None else journal
                again = self._ids(_covering(hour_part_files(self.artifact_root, hour, LOG_KIND), times))
                fresh = pd.Series(journal, dtype="datetime64[ns, UTC]") if journal else again.iloc[:0]
                logged = pd.concat([logged, again, fresh])
                logged = logged[~logged.index.duplicated()]
            labelled = self._ids(_covering(hour_part_files(self.artifact_root, hour, FEEDBACK_KIND), times))
            for index, prediction_id, label, _ in entries:
                if prediction_id not in logged.index:
                    errors.append(UnknownPrediction(index, "prediction_id", (
                        f"no logged prediction has id {prediction_id} (made {hour:%Y-%m-%d %H}:00–:59 UTC by its "
                        "id); it is unknown, or the service did not log it (MLOPS_INFERENCE_LOG=0, or rows dropped)")))
                elif prediction_id in labelled.index:
                    errors.append(DuplicateFeedback(index, "prediction_id", (
                        f"prediction {prediction_id} already has feedback (received "
                        f"{labelled[prediction_id]:%Y-%m-%d %H:%M:%S} UTC); a prediction is labelled once")))
                else:
                    rows.setdefault(hour, []).append((prediction_id, label, logged[prediction_id]))
        return rows, errors

    def _ids(self, files: list[Path]) -> pd.Series:
        """prediction id → the file's second column (the prediction's time, or feedback's arrival)."""
        parts = [self._file_ids(path) for path in files]
        if not parts:
            return pd.Series(dtype="datetime64[ns, UTC]")
        ids = pd.concat(parts)
        return ids[~ids.index.duplicated()]

    def _file_ids(self, path: Path) -> pd.Series:
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        second = RECEIVED_AT if path.is_relative_to(log_root(self.artifact_root, FEEDBACK_KIND)) else TIMESTAMP
        frame = read_parts([path], [PREDICTION_ID, second])
        ids = pd.Series(frame[second].to_numpy(), index=frame[PREDICTION_ID].astype(str).to_numpy())
        self._cache[path] = ids
        if len(self._cache) > self.cached_files:
            self._cache.popitem(last=False)
        return ids


@contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    """An exclusive lock between threads and processes on this host (the service's workers) for ``lock_file``."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _covering(files: list[Path], times_ms: set[int]) -> list[Path]:
    """The part files whose declared prediction times can include one of ``times_ms`` (all, for unnamed spans)."""
    lo, hi = min(times_ms), max(times_ms)
    kept = []
    for path in files:
        span = part_span(path)
        if span is None or (span[0] <= hi and lo <= span[1] and any(span[0] <= t <= span[1] for t in times_ms)):
            kept.append(path)
    return kept


# -- readers -----------------------------------------------------------------------------------------
def read_feedback(artifact_root: str | Path, start: datetime, end: datetime) -> pd.DataFrame:
    """Feedback on the predictions made in [start, end): one row per prediction (the first label received)."""
    frame = read_window(artifact_root, start, end, FEEDBACK_KIND, columns=FEEDBACK_COLUMNS)
    if frame.empty:
        return pd.DataFrame(columns=list(FEEDBACK_COLUMNS))
    return frame.sort_values(RECEIVED_AT, kind="stable").drop_duplicates(PREDICTION_ID).reset_index(drop=True)


def labelled_predictions(artifact_root: str | Path, start: datetime, end: datetime,
                         dataset: str = LOG_KIND) -> tuple[pd.DataFrame, dict[str, int]]:
    """The predictions made in [start, end) that have feedback, with their true ``label``; and how many
    predictions each model version made in the window in all. ``dataset``: the served answers (the default) or
    the shadow's (``shadow_log``): a label given to a prediction id labels the shadow's answer to that request
    too, as both carry the id."""
    predictions = read_window(artifact_root, start, end, dataset,
                              columns=[PREDICTION_ID, PREDICTED_CLASS, MODEL_VERSION])
    if predictions.empty:
        return pd.DataFrame(columns=[PREDICTION_ID, PREDICTED_CLASS, MODEL_VERSION, TIMESTAMP, LABEL]), {}
    feedback = read_feedback(artifact_root, start, end)[[PREDICTION_ID, LABEL]]
    joined = predictions.dropna(subset=[PREDICTION_ID]).merge(feedback, on=PREDICTION_ID, how="inner")
    per_version = {str(k): int(v) for k, v in predictions[MODEL_VERSION].value_counts().items()}
    return joined, per_version


def feedback_hours(artifact_root: str | Path, start: datetime, end: datetime) -> list[datetime]:
    """The UTC hours overlapping [start, end) that hold feedback (a directory listing, nothing read)."""
    return partition_hours(artifact_root, start, end, FEEDBACK_KIND)


# -- export to the labelled source ----------------------------------------------------------------------
@dataclass
class ExportReport:
    written: int = 0  # new PNG files in the labelled source
    existing: int = 0  # exported before (same file name): left as they are
    without_image: int = 0  # labelled, but the service did not keep the image (MLOPS_KEEP_IMAGES=0, or older)
    by_class: dict[str, int] = field(default_factory=dict)  # new files per class


def export_labelled_images(artifact_root: str | Path, folder: str | Path, since: datetime | None = None,
                           until: datetime | None = None) -> ExportReport:
    """Every labelled production image (predictions made in [since, until)) as ``folder/<label>/production_<id>.png``:
    new labelled images for the image-folder source, so the retraining policy sees them. Idempotent: a file
    exported before is never written again, so exporting twice changes nothing (nor the source's fingerprint)."""
    from mlops_assets.core.data.images import write_png

    folder = Path(folder).expanduser()
    start = since or datetime(1970, 1, 1, tzinfo=UTC)
    end = until or datetime.now(UTC) + timedelta(hours=1)
    report = ExportReport()
    for hour in feedback_hours(artifact_root, start, end):
        feedback = read_feedback(artifact_root, max(start, hour), min(end, hour + timedelta(hours=1)))
        if feedback.empty:
            continue
        images = read_parts(hour_part_files(artifact_root, hour, IMAGES_KIND),
                            [PREDICTION_ID, PIXELS, CHANNELS, HEIGHT, WIDTH])
        images = images.drop_duplicates(PREDICTION_ID).set_index(PREDICTION_ID)
        for prediction_id, label in zip(feedback[PREDICTION_ID], feedback[LABEL], strict=True):
            target = folder / str(label) / f"production_{prediction_id}.png"
            if target.exists():
                report.existing += 1
                continue
            if prediction_id not in images.index:
                report.without_image += 1
                continue
            row = images.loc[prediction_id]
            pixels = np.frombuffer(row[PIXELS], dtype=np.uint8).reshape(
                int(row[CHANNELS]), int(row[HEIGHT]), int(row[WIDTH]))
            write_png(target, pixels)
            report.written += 1
            report.by_class[str(label)] = report.by_class.get(str(label), 0) + 1
    return report

