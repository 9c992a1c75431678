"""The promotion rule: when does a newly trained model (the challenger) replace production (the champion)?

A decision compares like with like: both models scored by onnxruntime on the same rows, the challenger's
test split less every image the champion trained on. The champion's figure stored when it was registered
comes from another split and is shown for context only, never compared. Compared rows whose label changed since
production was trained (a relabelling) make production look wrong by definition: the gate refuses such a comparison
unless the relabelling was accepted on purpose, and says how many rows it concerns either way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

COMPARED = "compared"
NO_PRODUCTION = "no production model yet"
INCOMPATIBLE = "incompatible"
NOT_COMPARABLE = "not comparable"


@dataclass(frozen=True)
class ChampionComparison:
    """The challenger and the champion on the same rows, or why there is no such comparison."""

    status: str  # COMPARED, NO_PRODUCTION, INCOMPATIBLE or NOT_COMPARABLE
    production_version: str | None = None
    splits_version: str | None = None
    n: int = 0  # rows both were scored on
    n_test: int = 0  # rows of the challenger's test split
    excluded: int = 0  # test rows left out because the champion trained (or selected) on them
    candidate: dict[str, float] = field(default_factory=dict)  # challenger on the compared rows
    production: dict[str, float] = field(default_factory=dict)  # champion on the compared rows
    production_stored: dict[str, float] = field(default_factory=dict)  # champion's own, older split: context
    reason: str = ""  # for INCOMPATIBLE / NOT_COMPARABLE, and notes (e.g. overlap unchecked)
    # Compared rows whose label differs from the one production's split gave the same image: production is scored
    # against labels it never saw. Refused unless the label ledger recorded the relabelling as accepted.
    relabelled: int = 0
    relabelled_transitions: dict[str, int] = field(default_factory=dict)  # "from → to" → rows
    relabel_accepted: str = ""  # the accepted relabellings' reasons since production's dataset, "; "-joined

    def relabel_text(self) -> str:
        """How many compared rows changed label since production was trained, and how (empty when none)."""
        if not self.relabelled:
            return ""
        moves = ", ".join(f"{k} ×{n}" for k, n in self.relabelled_transitions.items())
        return f"{self.relabelled} of the {self.n} compared test images changed label since production " \
               f"{self.production_version} was trained ({moves})"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChampionComparison:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class PromotionPolicy:
    """When a candidate may replace production (see :func:`decide_promotion`).

    The floor keeps an obviously useless model out even when nothing is in production. A fixed figure means
    different things on different data: 0.90 is easy for ten balanced digits yet refused a good first model
    on a small three-class folder (0.889), and on a split that is 90 % one class, answering that class every
    time scores 0.90. So by default the floor is relative to the majority-class baseline (what that constant
    answer scores on the same test images): the candidate must get right at least ``min_gain_over_baseline``
    (half) of the images the constant answer gets wrong, i.e. floor = baseline + 0.5 × (1 − baseline): 0.55
    for ten balanced classes, 0.75 for two, 0.95 for a 90/10 split. Half is far above what noise reaches on a
    few dozen test images and below what any model that learned the classes scores. ``floor`` stays as an
    absolute minimum on top (0 by default); the higher of the two applies.
    """

    metric: str = "accuracy"
    floor: float = 0.0  # an absolute minimum, on top of the relative one
    max_regression: float = 0.005  # a fresh model may be this much worse than a stale one on the same rows
    min_compared_rows: int = 30  # fewer shared rows than this is no evidence either way
    allow_incompatible: bool = False  # replace a production model of other classes or geometry
    min_gain_over_baseline: float = 0.5  # share of the majority-class baseline's misses the candidate must fix


def majority_baseline(metric: str, class_counts) -> float | None:
    """What always answering the commonest test class scores on ``metric`` (None: no such baseline, or no counts).

    Macro figures average over the classes present, as :func:`mlops_assets.core.model.metrics.classification_report`
    does: only the majority class has a recall (1) and a precision (its share p), so macro recall is 1/K,
    macro precision p/K and macro F1 2p/(1+p)/K."""
    counts = [int(c) for c in class_counts or () if int(c) > 0]
    if not counts:
        return None
    share, present = max(counts) / sum(counts), len(counts)
    return {
        "accuracy": share,
        "macro_recall": 1 / present,
        "macro_precision": share / present,
        "macro_f1": 2 * share / (1 + share) / present,
    }.get(metric)


def promotion_floor(policy: PromotionPolicy, baseline: float | None) -> tuple[float, str]:
    """The floor that applies and where it comes from, in words for the gate's reason."""
    if baseline is None:
        return policy.floor, "the absolute floor; no test class counts, so no majority-class baseline"
    gain = policy.min_gain_over_baseline
    relative = baseline + gain * (1 - baseline)
    rule = f"majority-class baseline {baseline:.4f} + {gain:.2f} of the {1 - baseline:.4f} it misses"
    if policy.floor > relative:
        return policy.floor, f"the absolute floor; {rule} is {relative:.4f}"
    return relative, rule


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str
    incompatible_override: bool = False


def decide_promotion(
    candidate: dict[str, float], comparison: ChampionComparison, policy: PromotionPolicy = PromotionPolicy(),
    test_class_counts=None,
) -> PromotionDecision:
    """Promote only if the candidate clears the floor (relative to the majority-class baseline of its test
    split, whose per-class image counts are ``test_class_counts``; see :class:`PromotionPolicy`) and, against
    the production model on the same rows, loses at most ``max_regression``; never over an incompatible
    production model unless explicitly allowed."""
    metric = policy.metric
    if metric not in candidate:
        raise KeyError(f"candidate metrics have no {metric!r}; available: {sorted(candidate)}")
    value = float(candidate[metric])
    floor, why = promotion_floor(policy, majority_baseline(metric, test_class_counts))
    if value < floor:
        return PromotionDecision(False, f"{metric} {value:.4f} is below the floor {floor:.4f} ({why})")
    if comparison.status == NO_PRODUCTION:
        return PromotionDecision(True, f"{metric} {value:.4f} ≥ floor {floor:.4f} ({why}); no production model yet")
    champion = comparison.production_version
    if comparison.status == INCOMPATIBLE:
        if policy.allow_incompatible:
            return PromotionDecision(
                True, f"replaces incompatible production {champion} as explicitly allowed: {comparison.reason}",
                incompatible_override=True,
            )
        return PromotionDecision(
            False, f"not compatible with production {champion}: {comparison.reason} "
            "(set allow_incompatible to replace it on purpose)",
        )
    if comparison.status != COMPARED:
        return PromotionDecision(False, f"cannot compare with production {champion}: {comparison.reason}")
    if comparison.n < policy.min_compared_rows:
        return PromotionDecision(
            False,
            f"only {comparison.n} test image(s) of split {comparison.splits_version} were not trained on by "
            f"production {champion} ({comparison.excluded} excluded); at least {policy.min_compared_rows} are "
            "needed to compare them",
        )
    if comparison.relabelled and not comparison.relabel_accepted:
        return PromotionDecision(
            False,
            f"{comparison.relabel_text()}: production is scored against labels it never saw, so the comparison "
            "says nothing about the models. Restore the labels, or accept the relabelling with a reason "
            "(label_ledger config accept_label_changes) and rebuild",
        )
    challenger, current = float(comparison.candidate[metric]), float(comparison.production[metric])
    stored = comparison.production_stored.get(metric)
    same_rows = (
        f"on the same {comparison.n} test images of split {comparison.splits_version}"
        + (f", {comparison.excluded} that production trained on excluded" if comparison.excluded else "")
        + (f"; production's figure at its registration was {float(stored):.4f}, on its own split"
           if stored is not None else "")
        + (f"; {comparison.relabelled} of them changed label since production {champion} was trained, "
           f"relabelling accepted: {comparison.relabel_accepted}" if comparison.relabelled else "")
    )
    if challenger < current - policy.max_regression:
        return PromotionDecision(
            False,
            f"{metric} {challenger:.4f} is more than {policy.max_regression:.4f} below production {champion}'s "
            f"{current:.4f} {same_rows}",
        )
    return PromotionDecision(
        True,
        f"{metric} {challenger:.4f} vs production {champion}'s {current:.4f} (Δ {challenger - current:+.4f}, "
        f"allowed −{policy.max_regression:.4f}) {same_rows}",
    )
