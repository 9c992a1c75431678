"""The live comparison's figures (mlops_assets/core/monitoring/live_comparison.py): production and the challenger on the
same requests of a window, each figure against a hand computation, and the verdict's error rate as stated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_assets.core.monitoring.live_comparison import (
    BETTER,
    COMPARISON_FILE,
    NO_CHALLENGER,
    NOT_ENOUGH,
    WORSE,
    ComparisonError,
    ComparisonVerdict,
    compare_window,
    judge,
    mcnemar_exact_p,
    min_discordant,
    read_verdict,
    wilson_interval,
    write_comparison,
)


def log_rows(version: str, classes: list[str], ms: list[float | None], ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"prediction_id": ids, "predicted_class": classes, "model_version": version,
                         "model_ms": [np.nan if v is None else v for v in ms]})


def labels_of(pairs: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({"prediction_id": list(pairs), "label": list(pairs.values())})


# Ten answered requests p0..p9; the challenger scored p0..p7; six of those are labelled.
#        p0   p1   p2   p3   p4   p5   p6   p7   p8   p9
PROD = ["a", "a", "a", "b", "b", "b", "b", "b", "a", "b"]
CHAL = ["a", "a", "b", "b", "a", "a", "a", "b"]
TRUTH = {"p0": "a", "p1": "b", "p2": "b", "p3": "b", "p4": "a", "p5": "b"}
IDS = [f"p{i}" for i in range(10)]


def small_window(min_labelled: int = 1):
    served = log_rows("v1", PROD, [1, 2, 3, 4, 5, 6, 7, 8, None, 9], IDS)
    shadowed = log_rows("v2", CHAL, [10] * 8, IDS[:8])
    return compare_window("w", served, shadowed, labels_of(TRUTH), alpha=0.05, min_labelled=min_labelled)


def test_the_figures_of_a_small_window_equal_a_hand_computation():
    window = small_window()
    assert (window.answered, window.compared, window.share_mirrored) == (10, 8, 0.8)
    pair = window.headline
    assert (pair.production_version, pair.challenger_version) == ("v1", "v2")
    # agree on p0, p1, p3, p7
    assert pair.agreement == 0.5
    # production's class × the challenger's: (a,a) p0 p1; (a,b) p2; (b,a) p4 p5 p6; (b,b) p3 p7
    assert pair.classes == ["a", "b"] and pair.confusion == [[2, 1], [3, 2]]
    # labelled: production right on p0 p3 p5 (3/6), the challenger on p0 p2 p3 p4 (4/6);
    # b (production only) = p5, c (challenger only) = p2 p4
    assert (pair.labelled_pairs, pair.production_correct, pair.challenger_correct) == (6, 3, 4)
    assert (pair.production_only_right, pair.challenger_only_right) == (1, 2)
    assert pair.production_accuracy == 0.5 and pair.challenger_accuracy == pytest.approx(4 / 6)
    # Wilson 95 %: 3/6 → [0.1876, 0.8124], 4/6 → [0.3000, 0.9032] (published tables)
    assert pair.production_ci == pytest.approx([0.1876, 0.8124], abs=1e-4)
    assert pair.challenger_ci == pytest.approx([0.3000, 0.9032], abs=1e-4)
    # exact McNemar: 2·P[Binomial(3, ½) ≤ 1] = 2·(1 + 3)/8 = 1
    assert pair.p_value == 1.0 and pair.verdict == NOT_ENOUGH
    assert "3 discordant pair(s): the test needs at least 6" in pair.reason
    # latency over the compared predictions: production 1..8 ms → p50 4.5, p95 1 + 0.95·7 = 7.65; challenger 10
    assert pair.latency_ms["production"] == {"p50": 4.5, "p95": pytest.approx(7.65), "measured": 8}
    assert pair.latency_ms["challenger"] == {"p50": 10.0, "p95": 10.0, "measured": 8}


def test_mcnemar_exact_p_equals_hand_values_and_the_binomial_test():
    assert mcnemar_exact_p(0, 6) == 2 / 64  # all six discordant pairs one way
    assert mcnemar_exact_p(1, 9) == pytest.approx(2 * (1 + 10) / 1024)
    assert mcnemar_exact_p(0, 5) == 2 / 32 and mcnemar_exact_p(0, 0) == 1.0 and mcnemar_exact_p(7, 7) == 1.0
    assert mcnemar_exact_p(3, 12) == mcnemar_exact_p(12, 3)
    assert min_discordant(0.05) == 6 and min_discordant(0.01) == 8
    stats = pytest.importorskip("scipy.stats")
    for b, c in [(2, 11), (15, 30), (40, 41), (0, 17), (60, 100)]:
        assert mcnemar_exact_p(b, c) == pytest.approx(stats.binomtest(c, b + c, 0.5).pvalue, rel=1e-9)


def test_the_wilson_interval_at_the_edges():
    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(10, 10)
    assert high == pytest.approx(1.0) and low == pytest.approx(0.7225, abs=1e-4)
    low, high = wilson_interval(0, 20)
    assert low == pytest.approx(0.0) and high == pytest.approx(0.1611, abs=1e-4)


def labelled_window(n: int, production_right: np.ndarray, challenger_right: np.ndarray, min_labelled: int = 50):
    """``n`` requests, all labelled, each version right where its mask says (wrong: a class that is not the label)."""
    classes = [str(d) for d in range(10)]
    rng = np.random.default_rng(3)
    truth = rng.choice(classes, n)
    wrong = np.array([classes[(int(t) + 1) % 10] for t in truth])
    other = np.array([classes[(int(t) + 2) % 10] for t in truth])
    ids = [f"id{i}" for i in range(n)]
    served = log_rows("v1", list(np.where(production_right, truth, wrong)), [2.0] * n, ids)
    shadowed = log_rows("v2", list(np.where(challenger_right, truth, other)), [3.0] * n, ids)
    return compare_window("w", served, shadowed, labels_of(dict(zip(ids, truth, strict=True))), 0.05, min_labelled)


def test_a_truly_better_challenger_is_better_and_a_worse_one_worse():
    """A drifted window: production right on 80 %, the retrained challenger on 92 % of the same 200 requests
    (discordant: 6 only production, 30 only the challenger)."""
    n = 200
    production = np.arange(n) >= 40  # wrong on the first 40
    challenger = np.ones(n, bool)
    challenger[:10] = False  # wrong on 10 production also got wrong ...
    challenger[40:46] = False  # ... and on 6 production got right
    window = labelled_window(n, production, challenger)
    pair = window.headline
    assert (pair.production_only_right, pair.challenger_only_right) == (6, 30)
    assert pair.production_accuracy == 0.8 and pair.challenger_accuracy == 0.92
    assert pair.verdict == BETTER and pair.p_value == pytest.approx(mcnemar_exact_p(6, 30)) and pair.p_value < 1e-4
    assert window.verdict().verdict == BETTER and window.status.startswith("better: ")
    swapped = labelled_window(n, challenger, production).headline
    assert swapped.verdict == WORSE and swapped.p_value == pair.p_value


def test_equal_models_are_not_enough_evidence():
    n = 200
    same = np.arange(n) % 10 != 0  # one model in both slots: no discordant pair
    assert labelled_window(n, same, same).headline.verdict == NOT_ENOUGH
    # equally accurate (90 %), wrong on different requests: 20 discordant each way
    production, challenger = np.arange(n) % 10 != 0, np.arange(n) % 10 != 5
    pair = labelled_window(n, production, challenger).headline
    assert (pair.production_only_right, pair.challenger_only_right) == (20, 20)
    assert pair.verdict == NOT_ENOUGH and pair.p_value == 1.0


def test_too_few_labelled_pairs_are_not_judged_whatever_the_difference():
    n = 40
    pair = labelled_window(n, np.arange(n) >= 20, np.ones(n, bool)).headline  # 20 only the challenger got right
    assert pair.verdict == NOT_ENOUGH and pair.p_value is None and "fewer than 50" in pair.reason
    assert labelled_window(n, np.arange(n) >= 20, np.ones(n, bool), min_labelled=40).headline.verdict == BETTER


def test_the_false_verdict_rate_of_equally_accurate_versions_is_at_most_alpha():
    """2,000 windows of 150 labelled pairs, both versions 85 % accurate with independent errors: 'better' or 'worse'
    in at most alpha of them (the exact test is conservative)."""
    rng = np.random.default_rng(7)
    wrong = 0
    for _ in range(2000):
        production, challenger = rng.random(150) < 0.85, rng.random(150) < 0.85
        b, c = int((production & ~challenger).sum()), int((challenger & ~production).sum())
        wrong += judge(b, c, 150, 0.05, 50)[0] != NOT_ENOUGH
    assert wrong / 2000 <= 0.05


def test_a_window_without_a_challenger_says_so():
    served = log_rows("v1", ["a", "b"], [1.0, 1.0], ["x", "y"])
    window = compare_window("w", served, pd.DataFrame(), pd.DataFrame(), 0.05, 50)
    verdict = window.verdict()
    assert window.status == NO_CHALLENGER and verdict.verdict == NOT_ENOUGH
    assert (verdict.production_version, verdict.challenger_version, verdict.answered) == ("v1", "", 2)


def test_a_b_answers_are_oriented_by_the_version_answering_most_clients():
    """With A/B answering, a request the challenger answered has production's answer as its shadow record: the
    pair is one comparison, production being the version that answered more clients."""
    served = pd.concat([log_rows("v1", ["a"] * 6, [1.0] * 6, [f"p{i}" for i in range(6)]),
                        log_rows("v2", ["b"] * 2, [5.0] * 2, ["p6", "p7"])])
    shadowed = pd.concat([log_rows("v2", ["b"] * 6, [5.0] * 6, [f"p{i}" for i in range(6)]),
                          log_rows("v1", ["a"] * 2, [1.0] * 2, ["p6", "p7"])])
    window = compare_window("w", served, shadowed, labels_of({f"p{i}": "b" for i in range(8)}), 0.05, 1)
    assert len(window.pairs) == 1
    pair = window.headline
    assert (pair.production_version, pair.challenger_version, pair.compared) == ("v1", "v2", 8)
    assert pair.confusion == [[0, 8], [0, 0]] and (pair.production_correct, pair.challenger_correct) == (0, 8)
    assert pair.latency_ms["production"]["p50"] == 1.0 and pair.latency_ms["challenger"]["p50"] == 5.0
    assert pair.verdict == BETTER and pair.p_value == 2 / 256


def test_the_comparison_file_round_trips_and_a_foreign_file_is_refused(tmp_path):
    window = small_window()
    write_comparison(tmp_path, window.payload())
    verdict = read_verdict(tmp_path / COMPARISON_FILE)
    assert isinstance(verdict, ComparisonVerdict) and verdict == window.verdict()
    assert (verdict.window, verdict.production_version, verdict.challenger_version, verdict.labelled_pairs,
            verdict.alpha) == ("w", "v1", "v2", 6, 0.05)
    (tmp_path / "other.json").write_text('{"window": "w"}')
    with pytest.raises(ComparisonError, match="other.json is not a live comparison file"):
        read_verdict(tmp_path / "other.json")
    with pytest.raises(ComparisonError, match="MLOPS_COMPARISON_ALPHA"):
        compare_window("w", pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), 1.5, 50)
