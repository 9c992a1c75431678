"""Accuracy and bias of the model on labelled production traffic, and the sentence a product owner reads.

The offline evaluation judges a model on its test split once; production traffic drifts, and a model can keep
its accuracy on the whole while failing one class. With feedback (true labels of served predictions,
:mod:`mlops_assets.core.serving.feedback`), each window of traffic is measured per model version: accuracy, macro and
per-class precision and recall, and the worst recall gap (best class recall minus worst, among classes with
enough labels), the same bias signal ``evaluation_report`` shows offline. A version breaches when its accuracy
falls below ``min_accuracy`` or its gap exceeds ``max_recall_gap``; each breach comes with a sentence
("model v3 recalls class '7' 34% less often than class '1' ...").

Pure numpy/pandas (and scikit-learn through :mod:`mlops_assets.core.model.metrics`); no Dagster.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_assets.core.common.settings import (
    PERF_MAX_RECALL_GAP,
    PERF_MIN_ACCURACY,
    PERF_MIN_CLASS_LABELLED,
    PERF_MIN_LABELLED,
    default_value,
)
from mlops_assets.core.data.features import MODEL_VERSION, PREDICTED_CLASS
from mlops_assets.core.serving.feedback import LABEL

ACCURACY = "accuracy"  # the kinds of breach
RECALL_GAP = "recall_gap"
ALL_VERSIONS = "all"  # the window's whole labelled traffic, whatever version answered
VERDICTS_FILE = "performance.json"  # one window's verdicts as measured once: this module writes and reads it


@dataclass(frozen=True)
class PerformanceThresholds:
    min_accuracy: float = default_value(PERF_MIN_ACCURACY)
    max_recall_gap: float = default_value(PERF_MAX_RECALL_GAP)
    # fewer labelled predictions of a version in a window: not judged
    min_labelled: int = default_value(PERF_MIN_LABELLED)
    # a class with fewer labels is left out of the recall gap
    min_class_labelled: int = default_value(PERF_MIN_CLASS_LABELLED)

    def __post_init__(self) -> None:
        for name in ("min_accuracy", "max_recall_gap"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("min_labelled", "min_class_labelled"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    def describe(self) -> str:
        return (f"accuracy ≥ {self.min_accuracy:.2f}, recall gap ≤ {self.max_recall_gap:.2f} (classes with ≥ "
                f"{self.min_class_labelled} labels), judged from {self.min_labelled} labelled predictions")


@dataclass(frozen=True)
class VersionPerformance:
    """One model version (or ``all``) on the labelled predictions of one window."""

    model_version: str
    predictions: int
    labelled: int
    judged: bool
    reason: str
    accuracy: float | None = None
    macro_precision: float | None = None
    macro_recall: float | None = None
    per_class: list[dict[str, Any]] = field(default_factory=list)
    worst_class: str | None = None
    best_class: str | None = None
    worst_recall: float | None = None
    best_recall: float | None = None
    recall_gap: float | None = None
    breaches: dict[str, str] = field(default_factory=dict)  # kind → the sentence for a person

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_window(labelled: pd.DataFrame, predictions_per_version: dict[str, int],
                   class_names_of: dict[str, list[str]], thresholds: PerformanceThresholds,
                   window: str) -> list[VersionPerformance]:
    """Every version that answered in the window (most labelled first), then the whole window as ``all``.

    ``labelled`` has one row per labelled prediction (``model_version``, ``predicted_class``, ``label``);
    ``class_names_of`` gives each version's classes in order (unknown versions: the classes seen)."""
    versions = sorted(predictions_per_version, key=lambda v: (-int((labelled[MODEL_VERSION] == v).sum()), v))
    results = [
        measure(labelled[labelled[MODEL_VERSION] == version], version, predictions_per_version[version],
                class_names_of.get(version), thresholds, window)
        for version in versions
    ]
    if len(versions) > 1:
        every_class = sorted({c for v in versions for c in class_names_of.get(v) or []})
        results.append(measure(labelled, ALL_VERSIONS, sum(predictions_per_version.values()), every_class or None,
                               thresholds, window))
    return results


def measure(rows: pd.DataFrame, version: str, predictions: int, class_names: list[str] | None,
            thresholds: PerformanceThresholds, window: str) -> VersionPerformance:
    """Metrics, gap and breaches of one version's labelled predictions in one window."""
    from mlops_assets.core.model.metrics import classification_report

    n = len(rows)
    if n == 0:
        return VersionPerformance(version, predictions, 0, False, f"no labelled prediction of {version} yet")
    seen = sorted(set(rows[LABEL].astype(str)) | set(rows[PREDICTED_CLASS].astype(str)))
    names = list(class_names or []) + [c for c in seen if c not in set(class_names or [])]
    index = {name: i for i, name in enumerate(names)}
    y_true = np.array([index[str(c)] for c in rows[LABEL]], dtype=np.int64)
    y_pred = np.array([index[str(c)] for c in rows[PREDICTED_CLASS]], dtype=np.int64)
    report = classification_report(y_true, y_pred, names)
    per_class = [row for row in report["per_class"] if row["support"] > 0 or row["class"] in seen]
    eligible = [row for row in report["per_class"] if row["support"] >= thresholds.min_class_labelled]
    gap: dict[str, Any] = {}
    if len(eligible) >= 2:
        worst = min(eligible, key=lambda row: row["recall"])
        best = max(eligible, key=lambda row: row["recall"])
        gap = {"worst_class": worst["class"], "best_class": best["class"], "worst_recall": worst["recall"],
               "best_recall": best["recall"], "recall_gap": best["recall"] - worst["recall"]}
    figures = {"accuracy": report["accuracy"], "macro_precision": report["macro_precision"],
               "macro_recall": report["macro_recall"], "per_class": per_class, **gap}
    if n < thresholds.min_labelled:
        return VersionPerformance(version, predictions, n, False, (
            f"{n} labelled prediction(s) of {version}: fewer than {thresholds.min_labelled}, too few to judge"),
            **figures)
    who = "the production traffic of all versions" if version == ALL_VERSIONS else f"model {version}"
    breaches = {}
    if report["accuracy"] < thresholds.min_accuracy:
        breaches[ACCURACY] = (
            f"In window {window}, {who} was right on only {report['accuracy']:.0%} of {n} labelled production "
            f"predictions; the threshold is {thresholds.min_accuracy:.0%} (MLOPS_PERF_MIN_ACCURACY)."
        )
    if gap and gap["recall_gap"] > thresholds.max_recall_gap:
        less = 1.0 - gap["worst_recall"] / gap["best_recall"]
        breaches[RECALL_GAP] = (
            f"In window {window}, {who} recalls class '{gap['worst_class']}' {less:.0%} less often than class "
            f"'{gap['best_class']}' ({gap['worst_recall']:.0%} vs {gap['best_recall']:.0%} of their labelled "
            f"images, {n} labelled predictions); the largest allowed recall gap is "
            f"{thresholds.max_recall_gap:.0%} points (MLOPS_PERF_MAX_RECALL_GAP)."
        )
    reason = " ".join(breaches.values()) or (
        f"{who}: accuracy {report['accuracy']:.3f} on {n} labelled predictions"
        + (f", recall gap {gap['recall_gap']:.3f} ('{gap['worst_class']}' vs '{gap['best_class']}')" if gap else "")
        + f": within thresholds ({thresholds.describe()})"
    )
    return VersionPerformance(version, predictions, n, True, reason, breaches=breaches, **figures)


def verdicts_payload(window: str, results: list[VersionPerformance], thresholds: PerformanceThresholds) -> dict:
    """What :data:`VERDICTS_FILE` holds: the window, the thresholds it was judged by, and every version's figures,
    breaches and their sentences (``all`` included)."""
    return {"window": window, "thresholds": asdict(thresholds), "versions": [r.as_dict() for r in results]}


def write_verdicts(directory: Path, payload: dict) -> Path:
    path = Path(directory) / VERDICTS_FILE
    path.write_text(json.dumps(payload, indent=2, sort_keys=True))
    return path


def read_verdicts(path: Path) -> list[dict[str, Any]]:
    """Every version's verdict in a file :func:`write_verdicts` wrote (``model_version``, ``judged``, ``breaches``:
    kind → sentence, and the figures)."""
    return list(json.loads(Path(path).read_text())["versions"])
