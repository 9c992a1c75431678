"""The inference log: what the service predicted, on which kind of image, appended off the hot path.

Layout (the one place that knows it)::

    <artifact_root>/<dataset>/dt=YYYY-MM-DD/hour=HH/part-<name>.parquet

for four datasets: ``inference_log`` (features, prediction, model version, time and id of every prediction
answered, and ``model_ms``: the wall time of the model call that answered its batch, the whole batch's, null in part
files written before it was logged), ``shadow_log`` (the same columns for the shadow model's answers to the same
requests, under the answered prediction's id and time: never read as served traffic, so drift profiles and
performance are built from served answers only),
``inference_images`` (the image each prediction was made on, as uint8 pixels of the served geometry, when
the service keeps them: MLOPS_KEEP_IMAGES) and ``feedback`` (true labels, :mod:`mlops_assets.core.serving.feedback`).
Each part file is written once, to a hidden temporary name in the same directory and renamed into
place, so a reader (the hourly profiler) sees whole files or nothing. Rows are hour-partitioned by
their prediction's UTC timestamp, so a late flush still lands in the hour the prediction was made, and
feedback lands beside the predictions it labels.

What writes it is :class:`mlops_assets.core.serving.inference_log_writer.InferenceLogWriter`, which the Bento service
holds; it journals each prediction first (:mod:`mlops_assets.core.serving.inference_journal`, beside these datasets
under ``inference_journal/``) and builds these Parquet parts from the journal.

No Dagster here; pandas and pyarrow only.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from mlops_assets.core.data.features import TIMESTAMP
from mlops_assets.core.serving.prediction_ids import as_utc, epoch_ms

LOG_KIND = "inference_log"
SHADOW_KIND = "shadow_log"  # the shadow model's answers, one row per answered prediction it scored, joined by id
IMAGES_KIND = "inference_images"
PIXELS, CHANNELS, HEIGHT, WIDTH = "pixels", "channels", "height", "width"  # columns of inference_images


def log_root(artifact_root: str | Path, dataset: str = LOG_KIND) -> Path:
    return Path(artifact_root).expanduser() / dataset


def hour_dir(artifact_root: str | Path, hour: datetime, dataset: str = LOG_KIND) -> Path:
    """The partition directory of the UTC hour containing ``hour``."""
    hour = as_utc(hour)
    return log_root(artifact_root, dataset) / f"dt={hour:%Y-%m-%d}" / f"hour={hour:%H}"


def write_part(artifact_root: str | Path, hour: datetime, frame: pd.DataFrame, dataset: str = LOG_KIND,
               name: str | None = None) -> Path:
    """Write one immutable part file into the hour's partition of ``dataset`` (temp file + rename).

    ``name`` (default: random) must be new in the partition; a part file is never rewritten."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory = hour_dir(artifact_root, hour, dataset)
    directory.mkdir(parents=True, exist_ok=True)
    name = name or f"part-{uuid.uuid4().hex}.parquet"
    if (directory / name).exists():
        raise FileExistsError(f"{directory / name} exists; part files are written once")
    tmp = directory / f".{name}.tmp"
    try:
        table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, directory / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return directory / name


def span_name(first: datetime, last: datetime, prefix: str = "", token: str | None = None) -> str:
    """A part file's name saying which prediction times it holds (ms), so a lookup by prediction id (whose time
    it carries) opens only the files that can hold it: ``part-[<prefix>-]<first ms>-<last ms>-<token>.parquet``.

    ``token`` (hex, no dash; default random) lets a writer that may write the same rows twice (a retried journal
    segment) name the part the same both times."""
    lead = f"{prefix}-" if prefix else ""
    return f"part-{lead}{epoch_ms(first):013d}-{epoch_ms(last):013d}-{token or uuid.uuid4().hex[:12]}.parquet"


def part_span(path: Path) -> tuple[int, int] | None:
    """The (first, last) prediction time in ms a part file's name declares; None for a name without one."""
    fields = path.name.removesuffix(".parquet").split("-")[1:-1]
    if len(fields) < 2 or not (fields[-2].isdigit() and fields[-1].isdigit()):
        return None
    return int(fields[-2]), int(fields[-1])


def hour_part_files(artifact_root: str | Path, hour: datetime, dataset: str = LOG_KIND) -> list[Path]:
    directory = hour_dir(artifact_root, hour, dataset)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("part-*.parquet") if p.is_file())


def window_part_files(artifact_root: str | Path, start: datetime, end: datetime,
                      dataset: str = LOG_KIND) -> list[Path]:
    """The files of every hour partition overlapping [start, end) (a directory listing, nothing read)."""
    hour = as_utc(start).replace(minute=0, second=0, microsecond=0)
    files: list[Path] = []
    while hour < as_utc(end):
        files += hour_part_files(artifact_root, hour, dataset)
        hour += timedelta(hours=1)
    return files


def window_may_hold_rows(artifact_root: str | Path, start: datetime, end: datetime,
                         dataset: str = LOG_KIND) -> bool:
    """Whether any part file can hold a row with ``start <= timestamp < end``: its name's span overlaps the window
    (a name without a span counts as overlapping). A directory listing, nothing read: an hour's files serve
    several sub-hour windows, and a window whose hour has files but none of its rows needs no profiling run."""
    first_ms, end_ms = epoch_ms(start), epoch_ms(end)
    for path in window_part_files(artifact_root, start, end, dataset):
        span = part_span(path)
        if span is None or (span[0] < end_ms and span[1] >= first_ms):
            return True
    return False


def partition_hours(artifact_root: str | Path, start: datetime, end: datetime,
                    dataset: str = LOG_KIND) -> list[datetime]:
    """The UTC hours overlapping [start, end) that have a partition of ``dataset``, oldest first (a listing)."""
    first, end = as_utc(start).replace(minute=0, second=0, microsecond=0), as_utc(end)
    hours = []
    for day in sorted(log_root(artifact_root, dataset).glob("dt=*")):
        for directory in sorted(day.glob("hour=*")):
            try:
                hour = datetime.strptime(f"{day.name[3:]} {directory.name[5:]}", "%Y-%m-%d %H").replace(tzinfo=UTC)
            except ValueError:
                continue
            if first <= hour < end:
                hours.append(hour)
    return hours


def read_parts(files: Sequence[Path], columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The rows of some part files (only ``columns`` when given; a file without one of them has it null)."""
    if not files:
        return pd.DataFrame(columns=list(columns) if columns else None)
    import pyarrow.parquet as pq

    frames = []
    for path in files:
        present = pq.read_schema(path).names
        wanted = [c for c in columns if c in present] if columns else None
        frame = pq.read_table(path, columns=wanted).to_pandas()
        frames.append(frame.reindex(columns=list(columns)) if columns else frame)
    return pd.concat(frames, ignore_index=True)


def read_window(artifact_root: str | Path, start: datetime, end: datetime, dataset: str = LOG_KIND,
                columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Every row of ``dataset`` with ``start <= timestamp < end`` (UTC), from the hour partitions overlapping it
    (only ``columns`` when given; the timestamp is always read)."""
    start, end = as_utc(start), as_utc(end)
    files = window_part_files(artifact_root, start, end, dataset)
    if not files:
        return pd.DataFrame()
    frame = read_parts(files, [TIMESTAMP, *(c for c in columns if c != TIMESTAMP)] if columns else None)
    stamps = frame[TIMESTAMP]
    mask = (stamps >= pd.Timestamp(start)) & (stamps < pd.Timestamp(end))
    return frame.loc[mask.to_numpy()].reset_index(drop=True)


def read_hour(artifact_root: str | Path, hour: datetime) -> pd.DataFrame:
    """The rows logged in one UTC hour."""
    start = as_utc(hour).replace(minute=0, second=0, microsecond=0)
    return read_window(artifact_root, start, start + timedelta(hours=1))

