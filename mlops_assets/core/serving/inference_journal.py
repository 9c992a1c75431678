"""The inference journal: every logged prediction handed to the operating system before its answer is sent.

The service's log writer (:mod:`mlops_assets.core.serving.inference_log_writer`) appends one record per logged batch to
a segment file of this process, with one ``write`` system call, before the request's thread goes on to answer. A
killed process (SIGKILL, OOM killer, a crash) therefore loses no answered prediction: what the kernel accepted
is in the file. A power loss or a kernel crash can still take what the kernel had not written to the disk yet
(the journal is not fsync'ed per request: that would cost a disk round trip per answer); the Parquet parts built
from it are not fsync'ed either.

Layout (beside the inference log, so every worker and replica sharing the artifact root sees it)::

    <artifact_root>/inference_journal/<pid>-<start ms>-<random>.journal

A segment is held under an exclusive ``flock`` by the process that writes it, for as long as it exists. Its
writer turns it into Parquet parts of the inference log and then deletes it; a segment whose lock can be taken
belongs to a process that died, and is converted by the next writer that finds it (:func:`claim_orphans`).

A record: ``MAGIC``, the header's and the payload's lengths, a CRC-32 of both, a JSON header (ids, labels,
confidences, version, time, payload shape, the model call's wall time when measured, and the dataset when it is
not the served answers' inference log: a shadow model's answers) and the payload (the images' bytes, or a feature
frame's columns).
A record cut short by a crash, or damaged, ends the segment's readable part.

No Dagster here; numpy and pandas only.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

JOURNAL_KIND = "inference_journal"
SUFFIX = ".journal"
MAGIC = b"MLJ1"
_FRAME = struct.Struct("<4sIQI")  # magic, header length, payload length, crc32(header + payload)


class JournalError(OSError):
    """A journal record could not be handed to the operating system (disk full, permissions, ...)."""


def journal_root(artifact_root: str | Path) -> Path:
    return Path(artifact_root).expanduser() / JOURNAL_KIND


@dataclass
class Record:
    """One logged batch as read back: the writer's ``_Pending`` fields, and where it came from."""

    kind: str  # "images" or "features"
    payload: Any  # N×C×H×W array, or a feature DataFrame
    labels: list[str]
    confidences: np.ndarray
    model_version: str
    original_sizes: list | None
    timestamp: pd.Timestamp
    prediction_ids: list[str]
    ood: np.ndarray | None = None  # N×2: out-of-distribution score, flagged (1/0, NaN: no calibration)
    dataset: str = "inference_log"  # the dataset its rows go to: the served answers', or the shadow's
    model_ms: float | None = None  # the wall time of the model call that answered the batch (None: not measured)


def encode(kind: str, payload: Any, labels: list, confidences: np.ndarray, model_version: str,
           original_sizes: Any, timestamp: pd.Timestamp, prediction_ids: list[str],
           ood: np.ndarray | None = None, dataset: str = "inference_log",
           model_ms: float | None = None) -> list[bytes]:
    """One record as the buffers to write (header and payload are not joined: the images are not copied)."""
    header: dict[str, Any] = {
        "kind": kind, "ids": [str(i) for i in prediction_ids], "labels": [str(label) for label in labels],
        "confidences": [float(c) for c in np.asarray(confidences, dtype=np.float64).reshape(-1)],
        "version": str(model_version), "at": timestamp.isoformat(),
        "sizes": None if original_sizes is None else [[float(v) for v in size] for size in original_sizes],
    }
    if dataset != "inference_log":  # the served answers' records carry no dataset: the format older journals have
        header["dataset"] = dataset
    if model_ms is not None:  # older journals have none: their rows read as not measured
        header["model_ms"] = float(model_ms)
    if ood is not None:  # NaN (no flag) travels as null
        header["ood"] = [[None if v != v else float(v) for v in row] for row in np.asarray(ood, np.float64)]
    if kind == "images":
        array = np.ascontiguousarray(payload)
        header["dtype"], header["shape"] = array.dtype.str, list(array.shape)
        body = memoryview(array).cast("B")
    else:
        body = _frame_bytes(payload)
    head = json.dumps(header, separators=(",", ":")).encode()
    crc = zlib.crc32(body, zlib.crc32(head))
    return [_FRAME.pack(MAGIC, len(head), len(body), crc), head, body]


def _frame_bytes(frame: pd.DataFrame) -> bytes:
    """A feature frame as bytes: numeric columns as their raw values, others as JSON (an Arrow IPC stream cost
    ~1.5 ms per call, on the caller's thread)."""
    spec, chunks = [], []
    for name in frame.columns:
        values = frame[name].to_numpy()
        if values.dtype.kind in "fiub":
            raw = np.ascontiguousarray(values).tobytes()
            spec.append([str(name), values.dtype.str, len(raw)])
            chunks.append(raw)
        else:
            spec.append([str(name), None, [None if pd.isna(v) else str(v) for v in values]])
    head = json.dumps({"rows": len(frame), "columns": spec}, separators=(",", ":")).encode()
    return b"".join([struct.pack("<I", len(head)), head, *chunks])


def _frame_of(body: bytes) -> pd.DataFrame:
    (head_len,) = struct.unpack_from("<I", body)
    head = json.loads(body[4 : 4 + head_len])
    offset, columns = 4 + head_len, {}
    for name, dtype, extent in head["columns"]:
        if dtype is None:
            columns[name] = extent
        else:
            columns[name] = np.frombuffer(body, dtype=np.dtype(dtype), count=extent // np.dtype(dtype).itemsize,
                                          offset=offset)
            offset += extent
    return pd.DataFrame(columns, index=pd.RangeIndex(head["rows"]))


class Segment:
    """This process's open journal file, locked while it exists. Appends are serialised by the caller."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        name = f"{os.getpid()}-{time.time_ns() // 1_000_000:013d}-{secrets.token_hex(6)}{SUFFIX}"
        self.path = directory / name
        # locked under a name no orphan scan lists, then renamed: a scan never finds it unlocked
        hidden = directory / f".{name}.new"
        self.fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(hidden, self.path)
        self.size = 0
        self.records = 0
        self.rows = 0

    def append(self, buffers: list[bytes], rows: int) -> None:
        """Hand one record to the kernel (one ``writev``); on a short write the partial record is cut off again."""
        total = sum(len(b) for b in buffers)
        try:
            written = os.writev(self.fd, buffers)
            if written != total:
                raise OSError(f"short write to {self.path} ({written} of {total} bytes)")
        except OSError as exc:
            try:
                os.ftruncate(self.fd, self.size)
            except OSError:
                pass
            raise JournalError(f"inference journal {self.path}: {exc}") from exc
        self.size += total
        self.records += 1
        self.rows += rows

    def discard(self) -> None:
        """Delete the file (its records are in the inference log now), then let the lock go."""
        self.path.unlink(missing_ok=True)
        self.release()

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Claimed(Segment):
    """A dead process's segment, locked by this one while it converts it."""

    def __init__(self, path: Path, fd: int) -> None:  # not Segment's: no new file, the orphan's own
        self.path, self.fd, self.size, self.records, self.rows = path, fd, path.stat().st_size, 0, 0


def segment_files(artifact_root: str | Path) -> list[Path]:
    directory = journal_root(artifact_root)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.endswith(SUFFIX))


def claim_orphans(artifact_root: str | Path, own: set[Path]) -> Iterator[Claimed]:
    """The segments no living writer holds (their process died), each locked for the caller to convert.

    A segment deleted by its converter between the listing and the lock is skipped (the inode check), so two
    processes never convert one segment twice."""
    for path in segment_files(artifact_root):
        if path in own:
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.stat(path).st_ino != os.fstat(fd).st_ino:
                raise FileNotFoundError(path)
        except OSError:  # held by a living writer, or gone meanwhile
            os.close(fd)
            continue
        yield Claimed(path, fd)


def read_records(path: Path, headers_only: bool = False) -> Iterator[Record]:
    """The whole records of a segment, in order; a torn or damaged record ends it (a crash mid-write)."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return
    with handle:
        while True:
            frame = handle.read(_FRAME.size)
            if len(frame) < _FRAME.size:
                return
            magic, head_len, body_len, crc = _FRAME.unpack(frame)
            if magic != MAGIC:
                return
            head = handle.read(head_len)
            body = handle.read(body_len)
            if len(head) < head_len or len(body) < body_len or zlib.crc32(body, zlib.crc32(head)) != crc:
                return
            header = json.loads(head)
            payload: Any = None
            if not headers_only:
                payload = (np.frombuffer(body, dtype=np.dtype(header["dtype"])).reshape(header["shape"])
                           if header["kind"] == "images" else _frame_of(body))
            yield Record(header["kind"], payload, header["labels"], np.asarray(header["confidences"], np.float64),
                         header["version"], header["sizes"], pd.Timestamp(header["at"]), header["ids"],
                         None if header.get("ood") is None else np.asarray(header["ood"], np.float64),
                         header.get("dataset", "inference_log"), header.get("model_ms"))


def journal_predictions(artifact_root: str | Path) -> dict[str, pd.Timestamp]:
    """prediction id → its time, for every prediction in the journal (answered, maybe not in Parquet yet)."""
    found: dict[str, pd.Timestamp] = {}
    for path in segment_files(artifact_root):
        for record in read_records(path, headers_only=True):
            for prediction_id in record.prediction_ids:
                found.setdefault(prediction_id, record.timestamp)
    return found
