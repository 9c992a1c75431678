"""The output-only side of judging a window, for the drift sensor and ``drift_report``: the production version's
validation record, the window's output verdict, the retraining decision, and what the UI shows of them.

Kept apart from the pixel verdict (:mod:`~mlops_assets.core.monitoring.drift`; both are judged together in
:mod:`~mlops_assets.core.monitoring.window_judgement`) so that each window's record carries both signals side by
side: estimated accuracy, confidence shift and class mix are numeric metadata, plotted per window beside the drift
share.
"""

from __future__ import annotations

from typing import Any

from mlops_assets.core.monitoring.output_reference import OutputReference, OutputReferenceError, output_reference_of
from mlops_assets.core.monitoring.profile_layout import ProfileStore
from mlops_assets.core.monitoring.retrain_decision import TriggerPolicy, WindowDecision, decide_window


def production_output_reference(production) -> tuple[OutputReference | None, str]:
    """The validation record of the production ``ModelVersion`` and, when there is none, why (said in reasons)."""
    if production is None:
        return None, "no production model"
    try:
        reference = output_reference_of(production.metadata)
    except OutputReferenceError as exc:
        return None, f"production model {production.version}'s validation record cannot be read ({exc})"
    if reference is None:
        return None, (
            f"production model {production.version} was registered without a validation output record "
            "(before the harm trigger existed), so its accuracy cannot be estimated"
        )
    return reference, ""


def judge_window_outputs(profiles: ProfileStore, window: str, reference: OutputReference | None, pixel,
                         answered_by: str | None = None):
    """The window's output verdict (None without a validation record, a confidence column or enough rows);
    ``answered_by``: the rows that version answered, when the window was answered by several."""
    from mlops_assets.core.monitoring.output_verdict import judge_outputs, outputs_from_profile

    if reference is None or not pixel.enough_data:
        return None
    view = profiles.read_answered(window, answered_by)
    outputs = outputs_from_profile(view) if view is not None else None
    return judge_outputs(reference, outputs) if outputs is not None else None


def judge_and_decide(
    profiles: ProfileStore, window: str, pixel, reference: OutputReference | None, missing: str, policy: TriggerPolicy,
    answered_by: str | None = None,
) -> tuple[Any, WindowDecision]:
    """Output verdict and decision of one window whose pixel verdict is ``pixel`` (``answered_by``: as above)."""
    outputs = judge_window_outputs(profiles, window, reference, pixel, answered_by)
    if reference is not None and outputs is None and pixel.enough_data:
        missing = f"window {pixel.window}'s profile has no model confidence column"
    return outputs, decide_window(pixel, outputs, policy, missing)


def output_metadata(outputs, decision: WindowDecision | None = None, missing: str = "") -> dict[str, Any]:
    """The window's output figures as numeric metadata (plotted over time) and the decision's signal."""
    metadata: dict[str, Any] = {}
    if decision is not None:
        metadata["retrain_signal"] = decision.signal
        metadata["retrain"] = bool(decision.retrain)
        metadata["decision"] = decision.reason
    if outputs is None:
        if missing:
            metadata["estimated_accuracy_note"] = missing
        return metadata
    metadata.update(
        {
            "estimated_accuracy": float(outputs.estimated_accuracy),
            "estimate_method": outputs.method,
            "validation_accuracy": float(outputs.validation_accuracy),
            "estimated_accuracy_drop_points": float(outputs.drop_points),
            "atc_threshold": float(outputs.atc_threshold),
            "confidence_mean": float(outputs.mean_confidence),
            "confidence_ks": float(outputs.confidence_ks),
            "confidence_ks_p_value": float(outputs.confidence_p),
        }
    )
    if outputs.class_p is not None:
        metadata["class_mix_chi2"] = float(outputs.class_chi2)
        metadata["class_mix_p_value"] = float(outputs.class_p)
    return metadata


def estimate_beside_measured(profiles: ProfileStore, window: str, production, measured: float | None) -> dict[str, Any]:
    """For ``production_performance``: the window's label-free estimate (production's validation record against
    the window's profile) beside the accuracy measured on its labelled rows, so the estimator's own error shows
    per window over time. Empty when the window has no profile or production no record."""
    from mlops_assets.core.monitoring.output_verdict import judge_outputs, outputs_from_profile

    reference, missing = production_output_reference(production)
    if reference is None or not profiles.exists(window):
        return {"estimated_accuracy_note": missing or f"window {window} has no profile yet"}
    outputs = outputs_from_profile(profiles.read(window))
    if outputs is None:
        return {"estimated_accuracy_note": f"window {window}'s profile has no model confidence column"}
    verdict = judge_outputs(reference, outputs)
    metadata: dict[str, Any] = {
        "estimated_accuracy": float(verdict.estimated_accuracy),
        "estimate_method": f"{verdict.method} (production {production.version}, all rows of the window)",
    }
    if measured is not None:
        metadata["estimate_error_points"] = float(100.0 * (verdict.estimated_accuracy - measured))
    return metadata
