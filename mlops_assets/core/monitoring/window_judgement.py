"""Judging traffic windows: each window's pixel verdict against the reference profile, its output verdict against
the production version's validation record, and the retraining decision on it, under one drift policy.

One way for the drift sensor and ``drift_report`` alike, so a window is judged the same way whichever records it.
The profiles are read here (through the one owner of their layout); the verdicts and decisions are pure
(:mod:`~mlops_assets.core.monitoring.drift`, :mod:`~mlops_assets.core.monitoring.retrain_decision`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlops_assets.core.monitoring.output_checks import judge_and_decide, production_output_reference
from mlops_assets.core.monitoring.profile_layout import ProfileStore, window_label
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


def judge_window(profiles: ProfileStore, window: str, reference_view, thresholds: DriftThresholds):
    """The pixel verdict on one profiled window against the reference (too few rows: a verdict that says so)."""
    from mlops_assets.core.monitoring.drift import evaluate_drift, too_little_data

    n_rows = int(profiles.summary(window).get("n_rows", -1))
    if 0 <= n_rows < thresholds.min_rows:  # no need to open the profile
        return too_little_data(window_label(window), n_rows, thresholds)
    return evaluate_drift(profiles.read(window), reference_view, window_label(window), thresholds)


def judge_windows(profiles: ProfileStore, windows: list[str], reference_view, production,
                  policy: DriftDecisionPolicy) -> list[JudgedWindow]:
    """Every window of ``windows`` judged against the production ``ModelVersion`` (None: none), oldest first."""
    output_reference, missing = production_output_reference(production)
    judged = []
    for window in windows:  # pixel verdict, output verdict and the decision (which signal decides: the policy's)
        verdict = judge_window(profiles, window, reference_view, policy.thresholds)
        outputs, decision = judge_and_decide(profiles, window, verdict, output_reference, missing, policy.trigger)
        judged.append(JudgedWindow(window, verdict, outputs, decision, missing))
    return judged
