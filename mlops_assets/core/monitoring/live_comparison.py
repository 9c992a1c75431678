"""The live comparison: production and its challenger (the shadow) on the SAME live requests, per window.

Every request production answers is logged in ``inference_log``; the shadow's answer to the same images is logged
in ``shadow_log`` under the same prediction id (:mod:`mlops_assets.core.serving.inference_log`), and a label given to
that id labels both (:mod:`mlops_assets.core.serving.feedback`). This module joins them and says:

- ``answered``: the window's served predictions; ``compared``: those the challenger answered too (joined on id);
  ``share_mirrored`` = compared / answered (over the whole window, so a shadow set mid-window shows below 1);
- ``agreement``: the share of compared requests both versions gave the same class, and the confusion between the
  two versions' answers (production's class × the challenger's, counts);
- latency per version: p50 / p95 over the compared predictions of ``model_ms``, the wall time of the model call
  that answered each prediction's batch (the whole batch's call: what that prediction waited for the model; the
  shadow scores the same batches, so like is compared with like);
- on the labelled compared requests (``labelled_pairs``), each version's accuracy on the same requests with a 95 %
  Wilson interval, and McNemar's exact test on the discordant pairs: ``production_only_right`` (b) and
  ``challenger_only_right`` (c). Under "the two are equally accurate on this traffic", c given b + c is
  Binomial(b + c, ½); the two-sided exact p-value is ``min(1, 2·P[X ≤ min(b, c)])``. The verdict is
  :data:`BETTER` (p ≤ alpha and c > b), :data:`WORSE` (p ≤ alpha and b > c), else :data:`NOT_ENOUGH`. A verdict of
  better or worse when the versions are equally accurate happens with probability at most alpha (type I error ≤
  alpha, exactly, at any sample size: the exact test is conservative, never anti-conservative). The chance of
  missing a real difference (type II) is not bounded: it shrinks as labels accumulate, and "not enough evidence"
  says so rather than "equal". Each window is its own test: judging many windows (or a window again as labels
  arrive) and acting on the first "better" raises the chance of a false "better" above alpha over the whole run.

Minimums: no minimum on the discordant pairs, since the exact test keeps its error rate at any count and simply
cannot reach alpha with few of them (:func:`min_discordant`: 6 at alpha 0.05; the reason says so). A pair of
versions with fewer than ``min_labelled`` labelled pairs (the performance policy's MLOPS_PERF_MIN_LABELLED, the same
floor under which production_performance does not judge a version) is not judged: a handful of labels in a window is
rarely a sample of its traffic (the first labels to arrive come from whoever labels fastest).

Versions: rows are paired by the two versions that answered the request. With A/B answering (a challenger answers
some clients, production's answer is the shadow record), both orientations of a pair of versions are one comparison;
its production side is the version that answered clients for more of its requests (a tie: the name sorting first).
A window with several pairs (a swap mid-window) compares each; the headline is the pair with the most labelled
pairs, then the most compared requests.

The file :data:`COMPARISON_FILE` (this module writes and reads it) holds the headline's figures at the top level
(:class:`ComparisonVerdict` reads them) and every pair's under ``pairs``. No Dagster here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_assets.core.common.storage import atomic_write_json
from mlops_assets.core.data.features import MODEL_MS, MODEL_VERSION, PREDICTED_CLASS, PREDICTION_ID

BETTER = "better"
WORSE = "worse"
NOT_ENOUGH = "not enough evidence"
COMPARISON_FILE = "comparison.json"
NO_CHALLENGER = "no challenger in this window"
NO_PREDICTION = "no prediction in this window"
Z_95 = 1.959963984540054  # the standard normal's 97.5th percentile: a two-sided 95 % interval
TEST = ("McNemar's exact test (two-sided binomial on the discordant pairs): 'better' or 'worse' when the two versions "
        "are equally accurate happens with probability ≤ alpha (type I error ≤ alpha); 'not enough evidence' is not "
        "'equal' (type II error not bounded)")
READ_COLUMNS = [PREDICTION_ID, PREDICTED_CLASS, MODEL_VERSION, MODEL_MS]


class ComparisonError(ValueError):
    """A comparison file that is not one :func:`write_comparison` wrote, or a setting out of range."""


@dataclass(frozen=True)
class ComparisonVerdict:
    """A window's headline verdict as another process reads it (:func:`read_verdict`)."""

    window: str
    production_version: str  # "" when the window served nothing
    challenger_version: str  # "" when no challenger answered in the window
    verdict: str  # BETTER, WORSE or NOT_ENOUGH
    labelled_pairs: int
    production_accuracy: float | None
    challenger_accuracy: float | None
    p_value: float | None
    alpha: float
    status: str = ""
    reason: str = ""
    compared: int = 0
    answered: int = 0


@dataclass(frozen=True)
class PairComparison:
    """Production and one challenger on the requests both answered in a window."""

    production_version: str
    challenger_version: str
    compared: int
    agreement: float
    classes: list[str]
    confusion: list[list[int]]  # [production's class][challenger's class], in ``classes`` order
    latency_ms: dict[str, dict[str, float | None]]  # "production" / "challenger" → {"p50", "p95", "measured"}
    labelled_pairs: int
    production_correct: int
    challenger_correct: int
    production_only_right: int  # b: production right, challenger wrong
    challenger_only_right: int  # c: challenger right, production wrong
    production_accuracy: float | None
    challenger_accuracy: float | None
    production_ci: list[float] | None  # 95 % Wilson interval
    challenger_ci: list[float] | None
    p_value: float | None
    verdict: str
    reason: str


@dataclass(frozen=True)
class WindowComparison:
    window: str
    answered: int
    compared: int
    share_mirrored: float
    alpha: float
    min_labelled: int
    pairs: list[PairComparison] = field(default_factory=list)
    served_version: str = ""  # the version that answered most of the window (for a window with no challenger)

    @property
    def headline(self) -> PairComparison | None:
        return self.pairs[0] if self.pairs else None

    @property
    def status(self) -> str:
        head = self.headline
        if head is None:
            return NO_PREDICTION if not self.answered else NO_CHALLENGER
        return f"{head.verdict}: {head.reason}"

    def verdict(self) -> ComparisonVerdict:
        head = self.headline
        if head is None:
            return ComparisonVerdict(self.window, self.served_version, "", NOT_ENOUGH, 0, None, None, None,
                                     self.alpha, self.status, self.status, self.compared, self.answered)
        return ComparisonVerdict(self.window, head.production_version, head.challenger_version, head.verdict,
                                 head.labelled_pairs, head.production_accuracy, head.challenger_accuracy,
                                 head.p_value, self.alpha, self.status, head.reason, self.compared, self.answered)

    def payload(self) -> dict[str, Any]:
        """What :data:`COMPARISON_FILE` holds: the headline verdict's fields, the window's counts, every pair."""
        return {**asdict(self.verdict()), "share_mirrored": self.share_mirrored, "min_labelled": self.min_labelled,
                "test": TEST, "pairs": [asdict(pair) for pair in self.pairs]}


# -- the statistics ------------------------------------------------------------------------------------------
def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (95 % by default); None for no trial."""
    if n <= 0:
        return None
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact_p(b: int, c: int) -> float:
    """McNemar's exact two-sided p-value for ``b`` and ``c`` discordant pairs: min(1, 2·P[X ≤ min(b, c)]) with
    X ~ Binomial(b + c, ½); 1.0 for no discordant pair. Exact integer arithmetic (math.comb), no approximation."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return min(1.0, 2.0 * tail / 2.0**n)


def min_discordant(alpha: float) -> int:
    """The fewest discordant pairs with which the exact test can reach ``alpha`` (all of them one way)."""
    check_alpha(alpha)
    n = 1
    while mcnemar_exact_p(0, n) > alpha:
        n += 1
    return n


def check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ComparisonError(f"alpha must be in (0, 1), got {alpha} (MLOPS_COMPARISON_ALPHA)")


def judge(b: int, c: int, labelled: int, alpha: float, min_labelled: int) -> tuple[str, float | None, str]:
    """The verdict, the p-value (None when not tested) and the sentence saying why."""
    if labelled < max(1, min_labelled):
        return NOT_ENOUGH, None, (f"{labelled} labelled pair(s), fewer than {max(1, min_labelled)} "
                                  "(MLOPS_PERF_MIN_LABELLED): not judged")
    p = mcnemar_exact_p(b, c)
    figures = f"on {labelled} labelled pairs, {c} only the challenger got right, {b} only production; " \
              f"McNemar exact p = {p:.4g}"
    if p <= alpha:
        return (BETTER if c > b else WORSE), p, f"{figures} ≤ alpha {alpha:g}"
    needed = min_discordant(alpha)
    short = f"; {b + c} discordant pair(s): the test needs at least {needed} to reach alpha" if b + c < needed else ""
    return NOT_ENOUGH, p, f"{figures} > alpha {alpha:g}{short}"


# -- the comparison --------------------------------------------------------------------------------------------
def _latency(values: pd.Series) -> dict[str, float | None]:
    measured = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=np.float64)
    if not len(measured):
        return {"p50": None, "p95": None, "measured": 0}
    return {"p50": float(np.percentile(measured, 50)), "p95": float(np.percentile(measured, 95)),
            "measured": int(len(measured))}


def _class_order(seen: set[str], class_names: Sequence[str] | None) -> list[str]:
    known = [str(c) for c in class_names or []]
    return known + sorted(seen - set(known), key=lambda c: (len(c), c))


def compare_pair(rows: pd.DataFrame, production: str, challenger: str, alpha: float, min_labelled: int,
                 class_names: Sequence[str] | None = None) -> PairComparison:
    """One pair's figures from oriented rows: columns ``production_class``, ``challenger_class``,
    ``production_ms``, ``challenger_ms`` and ``label`` (null where unlabelled)."""
    prod, chal = rows["production_class"].astype(str), rows["challenger_class"].astype(str)
    classes = _class_order(set(prod) | set(chal), class_names)
    index = {name: i for i, name in enumerate(classes)}
    confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(confusion, (prod.map(index).to_numpy(), chal.map(index).to_numpy()), 1)
    labelled = rows[rows["label"].notna()]
    truth = labelled["label"].astype(str)
    prod_right = (labelled["production_class"].astype(str) == truth).to_numpy()
    chal_right = (labelled["challenger_class"].astype(str) == truth).to_numpy()
    n = len(labelled)
    b, c = int((prod_right & ~chal_right).sum()), int((chal_right & ~prod_right).sum())
    verdict, p, reason = judge(b, c, n, alpha, min_labelled)
    prod_ci, chal_ci = wilson_interval(int(prod_right.sum()), n), wilson_interval(int(chal_right.sum()), n)
    return PairComparison(
        production, challenger, len(rows), float((prod == chal).mean()) if len(rows) else 0.0, classes,
        confusion.tolist(),
        {"production": _latency(rows["production_ms"]), "challenger": _latency(rows["challenger_ms"])},
        n, int(prod_right.sum()), int(chal_right.sum()), b, c,
        float(prod_right.mean()) if n else None, float(chal_right.mean()) if n else None,
        list(prod_ci) if prod_ci else None, list(chal_ci) if chal_ci else None, p, verdict, reason)


def _side(joined: pd.DataFrame, straight: np.ndarray, column: str, production: bool) -> np.ndarray:
    """Production's (or the challenger's) ``column`` per joined row: the served record's where production answered
    the client (``straight``), the shadow record's where the challenger did."""
    served, shadow = joined[f"{column}_served"], joined[f"{column}_shadow"]
    return np.where(straight, served, shadow) if production else np.where(straight, shadow, served)


def compare_window(window: str, served: pd.DataFrame, shadowed: pd.DataFrame, labels: pd.DataFrame,
                   alpha: float, min_labelled: int, class_names: Sequence[str] | None = None) -> WindowComparison:
    """The window's comparison from its ``inference_log`` rows (``served``), ``shadow_log`` rows (``shadowed``;
    both with prediction_id, predicted_class, model_version and model_ms, which may be null) and feedback
    (``labels``: prediction_id, label)."""
    check_alpha(alpha)
    served = served.dropna(subset=[PREDICTION_ID]).drop_duplicates(PREDICTION_ID) if len(served) else served
    answered = len(served)
    main = str(served[MODEL_VERSION].value_counts().idxmax()) if answered else ""
    if not answered or shadowed is None or not len(shadowed):
        return WindowComparison(window, answered, 0, 0.0, alpha, min_labelled, [], main)
    shadowed = shadowed.dropna(subset=[PREDICTION_ID]).drop_duplicates(PREDICTION_ID)
    joined = served[READ_COLUMNS].merge(shadowed[READ_COLUMNS], on=PREDICTION_ID, suffixes=("_served", "_shadow"))
    if len(labels):
        first = labels[[PREDICTION_ID, "label"]].drop_duplicates(PREDICTION_ID)
        joined = joined.merge(first, on=PREDICTION_ID, how="left")
    else:
        joined["label"] = None
    joined["label"] = joined["label"].astype(object).where(joined["label"].notna(), None)
    served_v, shadow_v = joined[f"{MODEL_VERSION}_served"].astype(str), joined[f"{MODEL_VERSION}_shadow"].astype(str)
    pairs: list[PairComparison] = []
    for versions in sorted({frozenset((a, b)) for a, b in zip(served_v, shadow_v, strict=True)}, key=sorted):
        ordered = sorted(versions)
        if len(ordered) == 1:  # a version shadowing itself: compared with itself, still a pair
            ordered = ordered * 2
        mask = served_v.isin(versions) & shadow_v.isin(versions)
        answering = served_v[mask].value_counts()
        production = max(ordered, key=lambda v: (int(answering.get(v, 0)), -ordered.index(v)))
        challenger = ordered[1] if production == ordered[0] else ordered[0]
        part = joined[mask]
        straight = (served_v[mask] == production).to_numpy()
        rows = pd.DataFrame({
            "production_class": _side(part, straight, PREDICTED_CLASS, True),
            "challenger_class": _side(part, straight, PREDICTED_CLASS, False),
            "production_ms": _side(part, straight, MODEL_MS, True),
            "challenger_ms": _side(part, straight, MODEL_MS, False),
            "label": part["label"].to_numpy(),
        })
        pairs.append(compare_pair(rows, production, challenger, alpha, min_labelled, class_names))
    pairs.sort(key=lambda p: (-p.labelled_pairs, -p.compared, p.production_version, p.challenger_version))
    return WindowComparison(window, answered, len(joined), len(joined) / answered, alpha, min_labelled, pairs, main)


def read_window_comparison(artifact_root: str | Path, start: datetime, end: datetime, window: str, alpha: float,
                           min_labelled: int, class_names: Sequence[str] | None = None) -> WindowComparison:
    """:func:`compare_window` on the rows logged and labelled for predictions made in [start, end)."""
    from mlops_assets.core.serving.feedback import LABEL, read_feedback
    from mlops_assets.core.serving.inference_log import LOG_KIND, SHADOW_KIND, read_window

    served = read_window(artifact_root, start, end, LOG_KIND, columns=READ_COLUMNS)
    shadowed = read_window(artifact_root, start, end, SHADOW_KIND, columns=READ_COLUMNS)
    labels = read_feedback(artifact_root, start, end)[[PREDICTION_ID, LABEL]] if len(shadowed) else pd.DataFrame()
    return compare_window(window, served, shadowed, labels.rename(columns={LABEL: "label"}), alpha, min_labelled,
                          class_names)


# -- the file ----------------------------------------------------------------------------------------------------
def write_comparison(directory: Path, payload: dict) -> None:
    """Write ``payload`` (:meth:`WindowComparison.payload`) as ``directory/comparison.json``, atomically."""
    atomic_write_json(Path(directory) / COMPARISON_FILE, payload)


def read_comparison(path: Path) -> dict[str, Any]:
    """The whole payload of a file :func:`write_comparison` wrote (every pair's figures)."""
    return json.loads(Path(path).read_text())


def read_verdict(path: Path) -> ComparisonVerdict:
    """The headline verdict of a file :func:`write_comparison` wrote; :class:`ComparisonError` naming the file and
    the missing field when it is not one."""
    payload = read_comparison(path)
    try:
        return ComparisonVerdict(**{f: payload[f] for f in ComparisonVerdict.__dataclass_fields__})
    except (KeyError, TypeError) as exc:
        raise ComparisonError(f"{path} is not a live comparison file ({type(exc).__name__}: {exc})") from None
