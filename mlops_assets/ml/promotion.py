"""The promotion rule: when does a newly trained model replace the production one?"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str


def decide_promotion(
    candidate: dict[str, float],
    production: dict[str, float] | None,
    metric: str = "accuracy",
    floor: float = 0.90,
    max_regression: float = 0.005,
) -> PromotionDecision:
    """Promote only if the candidate clears an absolute floor and loses at most ``max_regression``.

    The floor keeps an obviously broken model out even when nothing is in production yet; the
    margin lets a retrained model on fresh data replace a slightly better stale one without
    letting quality drift downwards release after release.
    """
    if metric not in candidate:
        raise KeyError(f"candidate metrics have no {metric!r}; available: {sorted(candidate)}")
    value = float(candidate[metric])
    if value < floor:
        return PromotionDecision(False, f"{metric} {value:.4f} is below the floor {floor:.4f}")
    if production is None or metric not in production:
        return PromotionDecision(True, f"{metric} {value:.4f} ≥ floor {floor:.4f}; no production model yet")
    current = float(production[metric])
    if value < current - max_regression:
        return PromotionDecision(
            False,
            f"{metric} {value:.4f} is more than {max_regression:.4f} below production's {current:.4f}",
        )
    return PromotionDecision(
        True,
        f"{metric} {value:.4f} ≥ floor {floor:.4f} and within {max_regression:.4f} of production's "
        f"{current:.4f} (Δ {value - current:+.4f})",
    )
