"""Classification metrics from the confusion matrix, plus the per-class recall gap this project reports as its bias
signal.

Computed with numpy from the confusion matrix, as scikit-learn's ``precision_recall_fscore_support`` defines them
(``zero_division=0``; tests/test_metrics.py checks they agree): importing ``sklearn.metrics`` costs the build
process ~90-140 MB of resident memory in the evaluation step, the step closest to the memory bound
(tests/test_build_memory.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np



def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes (every class has a row, present or not)."""
    import numpy as np

    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has shape {y_true.shape} but y_pred has {y_pred.shape}")
    # a label outside 0..n_classes-1 is not counted (as scikit-learn's ``labels=`` leaves it out)
    known = (y_true >= 0) & (y_true < n_classes) & (y_pred >= 0) & (y_pred < n_classes)
    cells = np.bincount(y_true[known] * n_classes + y_pred[known], minlength=n_classes * n_classes)
    return cells.reshape(n_classes, n_classes).astype(np.int64)


def classification_report(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]
) -> dict[str, Any]:
    """Accuracy, macro precision/recall/F1 over the classes present, per-class metrics and the worst recall gap.

    The recall gap (best class recall minus worst) is the bias signal: a large gap means the model
    serves one class much worse than another even when overall accuracy looks fine.
    """
    import numpy as np

    n = len(class_names)
    matrix = confusion_matrix(y_true, y_pred, n)
    hits = np.diag(matrix).astype(np.float64)
    support, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    precision = np.divide(hits, predicted, out=np.zeros(n), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros(n), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros(n), where=both > 0)
    present = support > 0
    worst = int(np.argmin(np.where(present, recall, np.inf)))
    best = int(np.argmax(np.where(present, recall, -np.inf)))
    return {
        "accuracy": float(np.trace(matrix) / max(1, matrix.sum())),
        "macro_precision": float(precision[present].mean()) if present.any() else 0.0,
        "macro_recall": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": [
            {
                "class": class_names[i],
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i in range(n)
        ],
        "worst_class": class_names[worst],
        "worst_class_recall": float(recall[worst]),
        "best_class": class_names[best],
        "recall_gap": float(recall[best] - recall[worst]),
        "confusion_matrix": matrix.tolist(),
        "n": int(matrix.sum()),
    }


def per_class_markdown(report: dict[str, Any]) -> str:
    lines = ["| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for row in report["per_class"]:
        lines.append(
            f"| {row['class']} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | "
            f"{row['support']} |"
        )
    return "\n".join(lines)
