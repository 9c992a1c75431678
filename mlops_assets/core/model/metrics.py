"""Classification metrics: scikit-learn's, plus the per-class recall gap this project reports as its bias signal.

scikit-learn is imported inside the functions: the code location imports this module and must load fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np



def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes (every class has a row, present or not)."""
    import numpy as np
    from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix

    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has shape {y_true.shape} but y_pred has {y_pred.shape}")
    return sklearn_confusion_matrix(y_true, y_pred, labels=np.arange(n_classes)).astype(np.int64)


def classification_report(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]
) -> dict[str, Any]:
    """Accuracy, macro precision/recall/F1 over the classes present, per-class metrics and the worst recall gap.

    The recall gap (best class recall minus worst) is the bias signal: a large gap means the model
    serves one class much worse than another even when overall accuracy looks fine.
    """
    import numpy as np
    from sklearn.metrics import precision_recall_fscore_support

    n = len(class_names)
    matrix = confusion_matrix(y_true, y_pred, n)
    precision, recall, f1, support = precision_recall_fscore_support(
        np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64), labels=np.arange(n),
        zero_division=0,
    )
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
