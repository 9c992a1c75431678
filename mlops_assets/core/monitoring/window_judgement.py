"""Judging traffic windows: each window's pixel verdict against the reference profile, its output verdict against
the production version's validation record, and the retraining decision on it, under one drift policy.

One way for the drift sensor and ``drift_report`` alike, so a window is judged the same way whichever records it.
The profiles are read here (through the one owner of their layout); the verdicts and decisions are pure
(:mod:`~mlops_assets.core.monitoring.drift`, :mod:`~mlops_assets.core.monitoring.retrain_decision`).

Rows are judged against the reference of the version that answered them: in a window answered by several versions
(A/B, or a promotion inside it) production's rows decide, against production's reference, and each other
version's rows are judged against that version's own reference (``others``: shown beside, deciding nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlops_assets.core.monitoring.output_checks import judge_and_decide, production_output_reference
from mlops_assets.core.monitoring.profile_layout import ProfileStore, reference_version, window_label
from mlops_assets.core.monitoring.retrain_decision import WindowDecision

if TYPE_CHECKING:
    from mlops_assets.core.monitoring.drift import DriftThresholds
    from mlops_assets.core.monitoring.drift_tick import DriftDecisionPolicy


@dataclass(frozen=True)
class JudgedWindow:
    """One window judged: its pixel verdict (``DriftVerdict``), output verdict (None without a validation record),
    the decision, and why the output verdict is missing (shown beside the window's figures)."""

    window: str
    verdict: Any
    outputs: Any
    decision: WindowDecision
    missing: str = ""
    others: tuple[AnsweredVerdict, ...] = ()  # the rows other versions answered, each against its own reference


@dataclass(frozen=True)
class AnsweredVerdict:
    """The rows one non-production version answered in a window, judged against its own reference (``verdict``
    None: that version has no reference profile, named in ``reference``)."""

    model_version: str
    rows: int
    reference: str
    verdict: Any = None


def judge_window(profiles: ProfileStore, window: str, reference_view, thresholds: DriftThresholds,
                 answered_by: str | None = None):
    """The pixel verdict on one profiled window against the reference (too few rows: a verdict that says so);
    ``answered_by``: only the rows that version answered, when the window was answered by several."""
    from mlops_assets.core.monitoring.drift import evaluate_drift, too_little_data

    n_rows = profiles.answered_rows(window, answered_by)
    if 0 <= n_rows < thresholds.min_rows:  # no need to open the profile
        return too_little_data(window_label(window), n_rows, thresholds)
    return evaluate_drift(profiles.read_answered(window, answered_by), reference_view, window_label(window),
                          thresholds)


def judge_others(profiles: ProfileStore, window: str, production_version: str | None,
                 thresholds: DriftThresholds) -> tuple[AnsweredVerdict, ...]:
    """The rows each non-production version answered in a multi-version window, against its own reference."""
    versions = profiles.answering_versions(window)
    if len(versions) <= 1:
        return ()
    judged = []
    for version, rows in sorted(versions.items()):
        if version == production_version:
            continue
        reference = reference_version(version)
        verdict = (judge_window(profiles, window, profiles.read(reference), thresholds, answered_by=version)
                   if profiles.exists(reference) else None)
        judged.append(AnsweredVerdict(version, rows, reference, verdict))
    return tuple(judged)


def others_metadata(others: tuple[AnsweredVerdict, ...]) -> dict[str, Any]:
    """The other versions' verdicts as metadata beside the window's (drift share per version is plotted)."""
    metadata: dict[str, Any] = {}
    for other in others:
        key = f"answered_by/{other.model_version}"
        if other.verdict is None:
            metadata[key] = (f"{other.rows} rows answered by {other.model_version}: not judged, no reference profile "
                             f"{other.reference} (materialise reference_profile for it)")
            continue
        metadata[key] = f"{other.rows} rows against {other.reference}: {other.verdict.reason}"
        metadata[f"drift_share/answered_by/{other.model_version}"] = float(other.verdict.drift_share)
    return metadata


def judge_windows(profiles: ProfileStore, windows: list[str], reference_view, production,
                  policy: DriftDecisionPolicy) -> list[JudgedWindow]:
    """Every window of ``windows`` judged against the production ``ModelVersion`` (None: none), oldest first."""
    output_reference, missing = production_output_reference(production)
    version = production.version if production is not None else None
    judged = []
    for window in windows:  # pixel verdict, output verdict and the decision (which signal decides: the policy's)
        verdict = judge_window(profiles, window, reference_view, policy.thresholds, answered_by=version)
        outputs, decision = judge_and_decide(profiles, window, verdict, output_reference, missing, policy.trigger,
                                             answered_by=version)
        judged.append(JudgedWindow(window, verdict, outputs, decision, missing,
                                   judge_others(profiles, window, version, policy.thresholds)))
    return judged
