"""Promotion from evidence: what to do with a live comparison's verdict on the challenger (the shadow), a pure
decision. The sensor (``sensors/evidence_sensor.py``) gathers the verdict and the registry's state and carries out
the step; the registry's state machine still decides whether a promotion may happen (approval, release test).

``MLOPS_PROMOTE_FROM_EVIDENCE``: ``off`` (the default: nothing happens), ``alert`` (a person is told, with the
figures), ``promote`` (the challenger is promoted by ``promote_challenger_job``; when the stored policy requires an
approval it lacks, a person is told instead, with the figures and the command that approves it). Only a "better"
verdict about the CURRENT shadow against the CURRENT production acts; "worse" and "not enough evidence" never do,
and neither does a verdict about versions that have moved since. Each verdict acts once (the sensor's cursor; the
run key names the window and both versions). No Dagster here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OFF, ALERT, PROMOTE = "off", "alert", "promote"
EVIDENCE_MODES = (OFF, ALERT, PROMOTE)
BETTER = "better"  # live_comparison's verdict (mlops_assets.core.monitoring.live_comparison.BETTER)
NONE = "none"  # the step that does nothing


@dataclass(frozen=True)
class EvidenceStep:
    """What to do with one verdict: ``promote`` (``run_key`` names the run), ``alert`` (``alert``) or ``none``;
    ``reason`` says why, with the figures."""

    action: str
    reason: str
    run_key: str = ""
    alert: dict[str, Any] | None = None


def check_mode(mode: str, setting: str = "MLOPS_PROMOTE_FROM_EVIDENCE") -> str:
    if mode not in EVIDENCE_MODES:
        raise ValueError(f"{setting}={mode!r} is not one of {', '.join(EVIDENCE_MODES)}")
    return mode


def figures(verdict: Any) -> str:
    """The verdict's figures in one sentence a person reads."""
    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f} %"

    p = "n/a" if verdict.p_value is None else f"{verdict.p_value:.3g}"
    return (f"{verdict.challenger_version} vs production {verdict.production_version} on the same live requests of "
            f"window {verdict.window}: accuracy {pct(verdict.challenger_accuracy)} vs "
            f"{pct(verdict.production_accuracy)} on {verdict.labelled_pairs} labelled pairs, McNemar exact p = {p} "
            f"(alpha {verdict.alpha:g}): {verdict.verdict}")


def evidence_alert(verdict: Any, text: str, action: str) -> dict[str, Any]:
    return {"kind": "promotion_evidence", "action": action, "window": verdict.window,
            "production_version": verdict.production_version, "challenger_version": verdict.challenger_version,
            "verdict": verdict.verdict, "labelled_pairs": verdict.labelled_pairs,
            "production_accuracy": verdict.production_accuracy, "challenger_accuracy": verdict.challenger_accuracy,
            "p_value": verdict.p_value, "alpha": verdict.alpha, "text": text}


def step_for(mode: str, verdict: Any, production: str | None, shadow: str | None,
             approval_missing: str | None) -> EvidenceStep:
    """The step for ``verdict`` (a ``ComparisonVerdict``) under ``mode``, with ``production`` and ``shadow`` the
    registry's versions now and ``approval_missing`` why the policy would refuse the promotion (None: it would
    not: approval not required, or given)."""
    check_mode(mode)
    said = figures(verdict)
    if mode == OFF:
        return EvidenceStep(NONE, f"promotion from evidence is off: {said}")
    if verdict.verdict != BETTER:
        return EvidenceStep(NONE, f"only a 'better' verdict acts: {said}")
    if (verdict.production_version, verdict.challenger_version) != (production, shadow):
        return EvidenceStep(NONE, f"the verdict is about {verdict.challenger_version} vs {verdict.production_version}"
                                  f", but production is now {production} and the shadow {shadow}: {said}")
    if mode == ALERT:
        text = (f"the challenger is better on live traffic: {said}; promote it with `mlops-registry promote "
                f"{shadow} --reason ...` (MLOPS_PROMOTE_FROM_EVIDENCE=alert: nothing was promoted)")
        return EvidenceStep(ALERT, text, alert=evidence_alert(verdict, text, ALERT))
    if approval_missing is not None:
        text = (f"the challenger is better on live traffic, but not promoted: {approval_missing}; {said}. A reviewer "
                f"approves it with `mlops-registry approve {shadow} --by NAME --reason ...` or review_model_job")
        return EvidenceStep(ALERT, text, alert=evidence_alert(verdict, text, "approval needed"))
    return EvidenceStep(PROMOTE, f"promoting {shadow}: {said}",
                        run_key=f"evidence-{verdict.window}-{shadow}-over-{production}")
