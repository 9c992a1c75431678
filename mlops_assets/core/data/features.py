"""Per-image features the monitor profiles: the same function for the reference and for traffic.

The drift monitor never sees pixels. It sees, per image, a handful of statistics that move when
the input distribution moves (brighter or darker images, noisier ones, inverted colours, other
sizes), computed by :func:`image_features`. The reference profile is built by calling it on the
production model's training split and the Bento service calls it on every batch it serves, so a
difference between the two is a difference in the data, never in the code that measured it.

Pure numpy and pandas; no Dagster, no whylogs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

# Luminance weights (ITU-R BT.601), for the channel-independent statistics of RGB images.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# A pixel within one grey level of white is saturated (clipped highlights); of black, clipped shadows.
_DARK, _BRIGHT = 1.0 / 255.0, 254.0 / 255.0

CONTRAST = "contrast"
SATURATED_FRACTION = "saturated_fraction"
DARK_FRACTION = "dark_fraction"
ORIGINAL_HEIGHT = "original_height"
ORIGINAL_WIDTH = "original_width"
PREDICTED_CLASS = "predicted_class"
CONFIDENCE = "confidence"
MODEL_VERSION = "model_version"
TIMESTAMP = "timestamp"
PREDICTION_ID = "prediction_id"
OOD_SCORE = "ood_score"  # the answer's out-of-distribution score (mlops_assets/core/model/ood.py)
OOD_FLAGGED = "ood_flagged"  # 1.0 flagged, 0.0 not, NaN: the version had no calibration (or none was logged)
# The wall time (ms) of the model call that answered the row's batch: the whole batch's call, the same for each of its
# rows (what each prediction waited for the model); NaN when not measured (rows logged before it was, or by a caller
# that gave none).
MODEL_MS = "model_ms"

# Columns the inference log carries beside the image features. Only the first two are profiled.
PREDICTION_COLUMNS = (PREDICTED_CLASS, CONFIDENCE)
# The OOD columns are counted per window by inference_profiles, not profiled: the training reference has none; nor
# has it the model's latency.
BOOKKEEPING_COLUMNS = (MODEL_VERSION, TIMESTAMP, PREDICTION_ID, OOD_SCORE, OOD_FLAGGED, MODEL_MS)


class FeatureInputError(ValueError):
    """Images that are not a N×C×H×W batch of uint8 or [0, 1] floats, or sizes that do not match."""


def feature_columns(channels: int) -> list[str]:
    """The image feature columns, in order, for images with ``channels`` channels (1 or 3)."""
    per_channel = [f"{stat}_c{i}" for i in range(channels) for stat in ("mean", "std")]
    return [*per_channel, CONTRAST, SATURATED_FRACTION, DARK_FRACTION, ORIGINAL_HEIGHT, ORIGINAL_WIDTH]


def image_features(
    images: np.ndarray, original_sizes: Sequence[tuple[float, float]] | np.ndarray | None = None
) -> pd.DataFrame:
    """One row of statistics per image.

    ``images`` is N×C×H×W, either uint8 (0..255, as decoded) or float in [0, 1] (the training
    scale the service receives); floats outside [0, 1] are clipped. ``original_sizes`` gives each
    image's (height, width) before it was resized to the model's geometry, NaN where unknown; by
    default all unknown. Unknown is not the array's own H×W: an array posted to the batch endpoint
    was resized by the client, and pretending its size was the model's geometry would show as size
    drift against training images of any other size. Columns (see :func:`feature_columns`):

    - ``mean_c{i}``, ``std_c{i}``: brightness mean and spread of channel ``i``, in [0, 1];
    - ``contrast``: the 5th-to-95th percentile range of luminance (robust to a few hot pixels);
    - ``saturated_fraction``: share of pixels within one grey level of white (clipped highlights);
    - ``dark_fraction``: share within one grey level of black (clipped shadows); the two apart
      tell a bright image from its inverse, which every other statistic here confuses;
    - ``original_height``, ``original_width``: the size before resizing (float, NaN = unknown;
      the drift scores leave a column out of a window where it is all unknown).
    """
    x = _unit_scale(images)
    n, channels, height, width = x.shape
    flat = x.reshape(n, channels, height * width)
    columns: dict[str, np.ndarray] = {}
    means, stds = flat.mean(axis=2, dtype=np.float64), flat.std(axis=2, dtype=np.float64)
    for i in range(channels):
        columns[f"mean_c{i}"] = means[:, i]
        columns[f"std_c{i}"] = stds[:, i]
    luminance = flat[:, 0, :] if channels == 1 else np.einsum("c,ncp->np", _LUMA, flat)
    columns[CONTRAST] = _percentile(luminance, 95.0) - _percentile(luminance, 5.0)
    columns[SATURATED_FRACTION] = (luminance >= _BRIGHT).mean(axis=1, dtype=np.float64)
    columns[DARK_FRACTION] = (luminance <= _DARK).mean(axis=1, dtype=np.float64)
    if original_sizes is None:
        sizes = np.full((n, 2), np.nan)
    else:
        sizes = np.asarray(original_sizes, dtype=np.float64).reshape(-1, 2)
        if len(sizes) != n:
            raise FeatureInputError(f"{len(sizes)} original sizes for {n} images")
    columns[ORIGINAL_HEIGHT], columns[ORIGINAL_WIDTH] = sizes[:, 0], sizes[:, 1]
    return pd.DataFrame(columns, copy=False)


def _percentile(values: np.ndarray, q: float) -> np.ndarray:
    """Row-wise percentile with numpy's default (linear) interpolation; a sort is cheaper for small rows."""
    if values.shape[0] == 0:
        return np.zeros(0, dtype=np.float64)
    ordered = np.sort(values, axis=1)
    position = q / 100.0 * (ordered.shape[1] - 1)
    low = int(np.floor(position))
    high = min(low + 1, ordered.shape[1] - 1)
    fraction = position - low
    return ordered[:, low].astype(np.float64) * (1.0 - fraction) + ordered[:, high].astype(np.float64) * fraction


def with_predictions(
    features: pd.DataFrame, predicted_labels: Sequence[str], confidences: Sequence[float]
) -> pd.DataFrame:
    """The feature frame plus the predicted class (as its name) and the model's confidence."""
    labels = [str(label) for label in predicted_labels]
    conf = np.asarray(confidences, dtype=np.float64).reshape(-1)
    if len(labels) != len(features) or len(conf) != len(features):
        raise FeatureInputError(
            f"{len(features)} feature rows, {len(labels)} labels and {len(conf)} confidences"
        )
    out = features.reset_index(drop=True).copy()
    out[PREDICTED_CLASS] = labels
    out[CONFIDENCE] = conf
    return out


def _unit_scale(images: np.ndarray) -> np.ndarray:
    array = np.asarray(images)
    if array.ndim == 3:  # one image C×H×W
        array = array[None]
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise FeatureInputError(f"expected images shaped N×C×H×W with C in (1, 3), got {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255.0)
    if not np.issubdtype(array.dtype, np.floating):
        raise FeatureInputError(f"expected uint8 or float images, got {array.dtype}")
    return np.clip(array.astype(np.float32, copy=False), 0.0, 1.0)
