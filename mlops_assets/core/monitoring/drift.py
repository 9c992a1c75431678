"""Profiles of feature frames and drift between them: whylogs sketches in, a verdict a person can read out.

A profile is a whylogs ``DatasetProfileView``: per column, mergeable sketches (counts, a KLL
quantile sketch for numbers, frequent items for strings). Profiles of adjacent windows merge into
the profile of their union, so a day or a week is a merge of hourly profiles, never a re-scan of
rows. Drift is computed from the sketches alone:

- numeric features: the Kolmogorov-Smirnov test (p-value) and the Hellinger distance (effect size),
  both from the KLL sketches; a feature drifts when the shift is significant *and* material
  (``p < p_value`` and ``distance >= distance``), so a large window does not alarm on a shift too
  small to matter;
- the predicted class: a chi-square test and the Hellinger distance on the frequent-items sketch,
  with the same two thresholds.

The drift share is the fraction of scored features that drifted; the window alarms when it reaches
``drift_share``. A window with fewer than ``min_rows`` rows is "too little data", never an alarm.

whylogs is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import html
import math
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mlops_assets.core.common.markdown import markdown_table
from mlops_assets.core.common.settings import DRIFT_DISTANCE, DRIFT_MIN_ROWS, DRIFT_P_VALUE, DRIFT_SHARE, default_value
from mlops_assets.core.common.storage import atomic_write_bytes
from mlops_assets.core.data.features import BOOKKEEPING_COLUMNS, PREDICTED_CLASS


class ProfileError(ValueError):
    """A profile file that is missing or cannot be read as a whylogs profile."""


@dataclass(frozen=True)
class DriftThresholds:
    """When a feature drifts, and when a window alarms."""

    drift_share: float = default_value(DRIFT_SHARE)  # share of scored features that must drift for an alarm
    p_value: float = default_value(DRIFT_P_VALUE)  # a feature's test p-value below this is significant
    distance: float = default_value(DRIFT_DISTANCE)  # ... and its Hellinger distance at least this is material
    min_rows: int = default_value(DRIFT_MIN_ROWS)  # fewer rows in a window: too little data to judge

    def __post_init__(self) -> None:
        if not 0.0 < self.drift_share <= 1.0:
            raise ValueError(f"drift_share must be in (0, 1], got {self.drift_share}")
        if not 0.0 < self.p_value < 1.0:
            raise ValueError(f"p_value must be in (0, 1), got {self.p_value}")
        if not 0.0 <= self.distance <= 1.0:
            raise ValueError(f"distance must be in [0, 1], got {self.distance}")
        if self.min_rows < 1:
            raise ValueError(f"min_rows must be at least 1, got {self.min_rows}")

    def describe(self) -> str:
        return (
            f"drift share ≥ {self.drift_share:.2f}; a feature drifts at p < {self.p_value:g} "
            f"and Hellinger ≥ {self.distance:g}; at least {self.min_rows} rows"
        )


@dataclass(frozen=True)
class FeatureDrift:
    column: str
    algorithm: str  # "ks+hellinger" (numbers) or "chi-square+hellinger" (the predicted class)
    statistic: float | None  # KS D or chi-square statistic
    p_value: float | None
    distance: float | None  # Hellinger distance between the two distributions
    category: str  # NO_DRIFT | POSSIBLE_DRIFT | DRIFT | NOT_SCORED
    drifted: bool


@dataclass(frozen=True)
class DriftVerdict:
    """The decision on one window: drift or not, and a sentence that says why."""

    window: str
    n_rows: int
    reference_rows: int
    drift_share: float
    drifted_features: list[str]
    features: list[FeatureDrift]
    thresholds: DriftThresholds
    enough_data: bool
    is_drift: bool
    reason: str = field(default="")

    def markdown(self) -> str:
        rows = [
            [f.column, f.algorithm, _fmt(f.statistic), _fmt(f.p_value), _fmt(f.distance), f.category,
             "yes" if f.drifted else "no"]
            for f in self.features
        ]
        return markdown_table(
            ["feature", "test", "statistic", "p-value", "Hellinger", "category", "drifted"], rows
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "n_rows": self.n_rows,
            "reference_rows": self.reference_rows,
            "drift_share": self.drift_share,
            "drifted_features": self.drifted_features,
            "enough_data": self.enough_data,
            "is_drift": self.is_drift,
            "reason": self.reason,
            "thresholds": vars(self.thresholds),
            "features": [vars(f) for f in self.features],
        }


# -- profiles ---------------------------------------------------------------------------------
def profile_frame(frame: pd.DataFrame):
    """The whylogs profile of a feature frame (bookkeeping columns such as the timestamp left out)."""
    import whylogs as why

    columns = [c for c in frame.columns if c not in BOOKKEEPING_COLUMNS]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return why.log(frame[columns]).view()


def merge_profiles(views: Iterable[Any]):
    """One profile of the union of the windows the given profiles describe; None for no profiles."""
    merged = None
    for view in views:
        merged = view if merged is None else merged.merge(view)
    return merged


def write_profile(view, path: str | Path) -> Path:
    """Serialise a profile to ``path`` atomically (readers see the whole file or none)."""
    path = Path(path)
    atomic_write_bytes(path, view.serialize())
    return path


def read_profile(path: str | Path):
    from whylogs.core import DatasetProfileView

    path = Path(path)
    try:
        return DatasetProfileView.deserialize(path.read_bytes())
    except FileNotFoundError as exc:
        raise ProfileError(f"profile {path} does not exist") from exc
    except Exception as exc:  # whylogs raises DeserializationError and protobuf errors
        raise ProfileError(f"profile {path} cannot be read: {exc}") from exc


def profile_rows(view) -> int:
    """Rows the profile has seen (the largest column count; 0 for an empty profile)."""
    if view is None:
        return 0
    counts = [
        int(col.get_metric("counts").n.value)
        for col in view.get_columns().values()
        if col.get_metric("counts") is not None
    ]
    return max(counts, default=0)


# -- drift ------------------------------------------------------------------------------------
def score_features(target, reference, thresholds: DriftThresholds) -> list[FeatureDrift]:
    """Per-feature drift of ``target`` against ``reference``, from their sketches only."""
    from whylogs.viz.drift.column_drift_algorithms import KS, ChiSquare, Hellinger

    target_columns, reference_columns = target.get_columns(), reference.get_columns()
    scores: list[FeatureDrift] = []
    for column in sorted(set(target_columns) & set(reference_columns)):
        t, r = target_columns[column], reference_columns[column]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if column == PREDICTED_CLASS or _is_categorical(t) or _is_categorical(r):
                result = ChiSquare().calculate(target_column_view=t, reference_column_view=r)
                if result is None:
                    scores.append(FeatureDrift(column, "chi-square", None, None, None, "NOT_SCORED", False))
                    continue
                p = _finite(result.pvalue)
                distance = _categorical_hellinger(t, r)
                significant = p is not None and p < thresholds.p_value
                material = distance is not None and distance >= thresholds.distance
                scores.append(
                    FeatureDrift(column, "chi-square+hellinger", _finite(result.statistic), p, distance,
                                 _category(significant, material), significant and material)
                )
                continue
            ks = KS().calculate(target_column_view=t, reference_column_view=r)
            hellinger = _hellinger(t, r, Hellinger)
        if ks is None:
            scores.append(FeatureDrift(column, "ks+hellinger", None, None, hellinger, "NOT_SCORED", False))
            continue
        p = _finite(ks.pvalue)
        significant = p is not None and p < thresholds.p_value
        material = hellinger is not None and hellinger >= thresholds.distance
        scores.append(
            FeatureDrift(column, "ks+hellinger", _finite(ks.statistic), p, hellinger,
                         _category(significant, material), significant and material)
        )
    return scores


def evaluate_drift(target, reference, window: str, thresholds: DriftThresholds) -> DriftVerdict:
    """The verdict on one window's profile against the reference profile."""
    n_rows, reference_rows = profile_rows(target), profile_rows(reference)
    if target is None or n_rows < thresholds.min_rows:
        return too_little_data(window, n_rows, thresholds, reference_rows)
    features = score_features(target, reference, thresholds)
    scored = [f for f in features if f.category != "NOT_SCORED"]
    drifted = [f.column for f in scored if f.drifted]
    share = len(drifted) / len(scored) if scored else 0.0
    is_drift = bool(scored) and share >= thresholds.drift_share
    named = f" ({', '.join(drifted)})" if drifted else ""
    if is_drift:
        reason = (
            f"drift share {share:.2f} ≥ {thresholds.drift_share:.2f} on window {window}: "
            f"{len(drifted)}/{len(scored)} features drifted{named}, {n_rows} rows"
        )
    else:
        reason = (
            f"drift share {share:.2f} < {thresholds.drift_share:.2f} on window {window}"
            f"{': ' + str(len(drifted)) + '/' + str(len(scored)) + ' features drifted' + named if drifted else ''}"
            f", {n_rows} rows"
        )
    return DriftVerdict(
        window, n_rows, reference_rows, share, drifted, features, thresholds,
        enough_data=True, is_drift=is_drift, reason=reason,
    )


def too_little_data(window: str, n_rows: int, thresholds: DriftThresholds, reference_rows: int = 0) -> DriftVerdict:
    """The verdict on a window with fewer than ``min_rows`` rows: a skip, never an alarm."""
    return DriftVerdict(
        window, n_rows, reference_rows, 0.0, [], [], thresholds, enough_data=False, is_drift=False,
        reason=f"too little data on window {window}: {n_rows} rows < {thresholds.min_rows} (minimum)",
    )


def write_html_report(target, reference, path: str | Path) -> Path:
    """whylogs' own drift summary (an HTML page, interactive in a browser) for the two profiles."""
    from whylogs.viz import NotebookProfileVisualizer

    visualizer = NotebookProfileVisualizer()
    visualizer.set_profiles(target_profile_view=target, reference_profile_view=reference)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snippet = visualizer.summary_drift_report().data
    # whylogs renders for notebooks: the page sits escaped in an iframe's srcdoc. Unwrap it into a
    # standalone page a browser opens from the asset's metadata link.
    match = re.search(r'srcdoc="(.*?)"', snippet, flags=re.DOTALL)
    page = html.unescape(match.group(1)) if match else f"<!DOCTYPE html><html><body>{snippet}</body></html>"
    atomic_write_bytes(path, page.encode())
    return Path(path)


def _hellinger(target_column, reference_column, algorithm) -> float | None:
    t_dist, r_dist = target_column.get_metric("distribution"), reference_column.get_metric("distribution")
    if t_dist is None or r_dist is None or t_dist.kll.value.is_empty() or r_dist.kll.value.is_empty():
        return None
    t, r = t_dist.kll.value, r_dist.kll.value
    if min(t.get_min_value(), r.get_min_value()) == max(t.get_max_value(), r.get_max_value()):
        return 0.0  # both constant and equal: whylogs' binning cannot place one bucket
    result = algorithm().calculate(target_column_view=target_column, reference_column_view=reference_column)
    return _finite(result.statistic) if result is not None else None


def _categorical_hellinger(target_column, reference_column) -> float | None:
    """Hellinger distance between two columns' value frequencies (from their frequent-items sketches)."""
    from whylogs.viz.utils.frequent_items_calculations import get_frequent_stats

    target = get_frequent_stats(target_column, config=None)
    reference = get_frequent_stats(reference_column, config=None)
    if not target or not reference:
        return None
    t = {item["value"]: float(item["estimate"]) for item in target["frequent_items"]}
    r = {item["value"]: float(item["estimate"]) for item in reference["frequent_items"]}
    t_total, r_total = sum(t.values()), sum(r.values())
    if t_total <= 0 or r_total <= 0:
        return None
    overlap = sum(math.sqrt(t.get(v, 0.0) / t_total * r.get(v, 0.0) / r_total) for v in set(t) | set(r))
    return math.sqrt(max(0.0, 1.0 - overlap))


def _category(significant: bool, material: bool) -> str:
    return "DRIFT" if significant and material else "POSSIBLE_DRIFT" if significant else "NO_DRIFT"


def _is_categorical(column) -> bool:
    dist = column.get_metric("distribution")
    return dist is None or dist.kll.value.is_empty()


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2e}" if 0 < abs(value) < 1e-3 else f"{value:.4f}"
