"""Metrics against hand-computed values and scikit-learn's reference implementation."""

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from mlops_assets.core.model.metrics import classification_report, confusion_matrix


def test_confusion_matrix_rows_are_truth():
    matrix = confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 0]), 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]


def test_report_matches_sklearn():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 500)
    y_pred = np.where(rng.random(500) < 0.8, y_true, rng.integers(0, 4, 500))
    report = classification_report(y_true, y_pred, ["a", "b", "c", "d"])
    assert report["accuracy"] == pytest.approx(np.mean(y_true == y_pred))
    assert report["macro_precision"] == pytest.approx(precision_score(y_true, y_pred, average="macro"))
    assert report["macro_recall"] == pytest.approx(recall_score(y_true, y_pred, average="macro"))
    assert report["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    per_class_recall = recall_score(y_true, y_pred, average=None)
    assert [r["recall"] for r in report["per_class"]] == pytest.approx(per_class_recall.tolist())


def test_recall_gap_names_the_favoured_and_neglected_class():
    y_true = np.array([0] * 10 + [1] * 10)
    y_pred = np.array([0] * 10 + [0] * 4 + [1] * 6)
    report = classification_report(y_true, y_pred, ["cats", "dogs"])
    assert report["best_class"] == "cats"
    assert report["worst_class"] == "dogs"
    assert report["worst_class_recall"] == pytest.approx(0.6)
    assert report["recall_gap"] == pytest.approx(0.4)


def test_absent_class_does_not_count_in_macro_averages():
    report = classification_report(np.array([0, 0, 1]), np.array([0, 0, 1]), ["a", "b", "c"])
    assert report["macro_recall"] == pytest.approx(1.0)
    assert report["worst_class"] in ("a", "b")


def test_mismatched_lengths_are_rejected():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.array([0, 1]), np.array([0]), 2)


def test_per_class_figures_match_sklearn_where_a_class_is_never_predicted_or_never_present():
    from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix
    from sklearn.metrics import precision_recall_fscore_support

    rng = np.random.default_rng(1)
    y_true = rng.choice([0, 1, 3], 300)  # class 2 never present
    y_pred = np.where(rng.random(300) < 0.7, y_true, rng.choice([0, 2], 300))  # class 3 predicted only when right
    y_pred[y_true == 1] = 0  # class 1 never predicted
    report = classification_report(y_true, y_pred, ["a", "b", "c", "d"])
    expected = precision_recall_fscore_support(y_true, y_pred, labels=np.arange(4), zero_division=0)
    for figure, values in zip(("precision", "recall", "f1", "support"), expected, strict=True):
        assert [row[figure] for row in report["per_class"]] == pytest.approx(values.tolist()), figure
    assert report["confusion_matrix"] == sklearn_confusion_matrix(y_true, y_pred, labels=np.arange(4)).tolist()
