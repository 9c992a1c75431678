"""Whether a judged traffic window calls for retraining, and which signal decided: a pure decision, no Dagster.

Two triggers (``MLOPS_RETRAIN_TRIGGER``):

- ``harm`` (the default): retrain when the accuracy estimated without labels (ATC, from the model's own
  confidences) is at least ``harm_points`` percentage points (``MLOPS_HARM_POINTS``, default 5) below the
  production version's validation accuracy. Pixel drift is reported beside it as context, and decides
  nothing: a brightness change the model shrugs off launches no retraining.
- ``pixel``: retrain when the whylogs drift share of the window reaches its threshold (the monitor's behaviour
  before the harm trigger; it also retrains on shifts the model shrugs off, docs/drift-decision.md).

A production version registered before the validation record existed has no output reference: the harm
trigger cannot judge it, so the pixel policy decides, and the reason says so. The tick's decision
(:mod:`~mlops_assets.core.monitoring.drift_tick`) adds the rules on the facts the sensor gathers (a run in
flight, the cooldown, new labelled data); the drift cursor, pure too, lives here.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass

HARM, PIXEL = "harm", "pixel"
TRIGGERS = (HARM, PIXEL)


@dataclass(frozen=True)
class TriggerPolicy:
    """Which signal decides, and the harm trigger's margin (validated here, where it is used)."""

    trigger: str = HARM
    harm_points: float = 5.0

    def __post_init__(self) -> None:
        if self.trigger not in TRIGGERS:
            raise ValueError(
                f"retrain trigger must be one of {', '.join(TRIGGERS)} (MLOPS_RETRAIN_TRIGGER), got {self.trigger!r}"
            )
        if not 0.0 < self.harm_points <= 100.0:
            raise ValueError(f"harm_points must be in (0, 100] (MLOPS_HARM_POINTS), got {self.harm_points}")

    def describe(self) -> str:
        if self.trigger == HARM:
            return f"harm: estimated accuracy ≥ {self.harm_points:g} points below validation accuracy"
        return "pixel: drift share at or above its threshold"


@dataclass(frozen=True)
class WindowDecision:
    """Retrain or not on one window, the signal that decided (``harm``, ``pixel``) and a sentence saying why."""

    retrain: bool
    signal: str
    reason: str


def decide_window(pixel, outputs, policy: TriggerPolicy, missing_reference: str = "") -> WindowDecision:
    """The decision on one window from its pixel verdict (``DriftVerdict``) and output verdict (``OutputVerdict``,
    None when the production version has no validation record: ``missing_reference`` says why)."""
    if not pixel.enough_data:
        return WindowDecision(False, "none", pixel.reason)
    if policy.trigger == PIXEL or outputs is None:
        why = (
            ""
            if policy.trigger == PIXEL
            else f" [pixel policy used: {missing_reference or 'no validation output record for production'}]"
        )
        context = f"; {outputs.describe()} (context)" if outputs is not None else ""
        verb = "retrain (pixel trigger)" if pixel.is_drift else "no retrain (pixel trigger)"
        return WindowDecision(pixel.is_drift, PIXEL, f"{pixel.reason} → {verb}{context}{why}")
    drop = outputs.drop_points
    retrain = drop >= policy.harm_points
    sign = "−" if drop >= 0 else "+"
    reason = (
        f"estimated accuracy {outputs.estimated_accuracy:.2f} ({outputs.method}) vs "
        f"{outputs.validation_accuracy:.2f} at registration: {sign}{abs(drop):.1f} points "
        f"{'≥' if retrain else '<'} {policy.harm_points:g} → {'retrain' if retrain else 'no retrain'} "
        f"(harm trigger) on window {pixel.window}; pixel drift share {pixel.drift_share:.2f} "
        f"{'≥' if pixel.is_drift else '<'} {pixel.thresholds.drift_share:.2f}"
        f"{' (would alarm under the pixel trigger)' if pixel.is_drift else ' (context)'}, {pixel.n_rows} rows"
    )
    return WindowDecision(retrain, HARM, reason)


@dataclass(frozen=True)
class DriftCursor:
    """What the sensor has already judged: the last window evaluated and the reference it used."""

    window: str | None = None
    reference: str | None = None
    last_run_key: str | None = None
    pending_window: str | None = None  # drift seen, but no new labelled data to retrain on yet
    pending_share: float | None = None
    pending_signal: str | None = None  # the signal (harm, pixel) that called for the pending retraining
    alerted_episode: str | None = None  # "<reference>|<fingerprint>" already alerted about
    retrained_fingerprint: str | None = None  # the source fingerprint of the last retraining launched
    blind_since: str | None = None  # since when the production version has had no reference (ISO time)
    blind_alerted: str | None = None  # the production version whose blind spell a person was told about

    @classmethod
    def parse(cls, raw: str | None) -> DriftCursor:
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
            return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})
        except (json.JSONDecodeError, AttributeError, TypeError):
            return cls()  # an unreadable cursor: start from the latest window rather than fail every tick

    def replace(self, **changes) -> DriftCursor:
        return dataclasses.replace(self, **changes)

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)
