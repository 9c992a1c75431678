"""Prediction ids: every answer of the service carries one, and so do its inference log row and its feedback.

An id is a UUID version 7 (RFC 9562): the first 48 bits are the prediction's time in milliseconds, the rest random.
So an id says *when* its prediction was made, which is where its log row (and any feedback on it) lives in the
hour-partitioned Parquet files, without an index; and ids sort by time.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta

_RANDOM_BYTES = 10  # 80 random bits per id, of which 74 are used (12 + 62)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND = timedelta(milliseconds=1)


def epoch_ms(moment: datetime) -> int:
    """Whole milliseconds since the epoch, exactly (integer arithmetic, no float rounding)."""
    return (as_utc(moment) - EPOCH) // MILLISECOND


def new_prediction_ids(n: int, at: datetime) -> list[str]:
    """``n`` distinct ids for predictions made at ``at`` (canonical lowercase UUID strings)."""
    ms = epoch_ms(at)
    pool = secrets.token_bytes(_RANDOM_BYTES * n)
    ids = []
    for i in range(n):
        rand = int.from_bytes(pool[i * _RANDOM_BYTES:(i + 1) * _RANDOM_BYTES], "big")
        rand_a, rand_b = (rand >> 62) & 0xFFF, rand & ((1 << 62) - 1)
        ids.append(str(uuid.UUID(int=(ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b)))
    return ids


def canonical(prediction_id: str | uuid.UUID) -> str | None:
    """The canonical form of a version-7 id, or None when it is not one (then no prediction has it)."""
    try:
        value = prediction_id if isinstance(prediction_id, uuid.UUID) else uuid.UUID(str(prediction_id))
    except ValueError:
        return None
    return str(value) if value.version == 7 and value.variant == uuid.RFC_4122 else None


def prediction_time(prediction_id: str | uuid.UUID) -> datetime | None:
    """When the prediction was made (millisecond precision, UTC); None for a string that is not an id of ours."""
    value = canonical(prediction_id)
    if value is None:
        return None
    try:
        return EPOCH + (uuid.UUID(value).int >> 80) * MILLISECOND
    except OverflowError:  # a time no clock of ours wrote (beyond year 9999)
        return None


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
