"""PNG figures for the UI: the confusion matrix, training curves and attribution maps (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix_png(matrix: np.ndarray, class_names: list[str], path: str | Path, title: str) -> Path:
    plt = _pyplot()
    matrix = np.asarray(matrix)
    size = max(4.0, 0.5 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center",
                color="white" if value > threshold else "black", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def training_curves_png(history: list[dict[str, Any]], path: str | Path, title: str) -> Path:
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(9, 3.5))
    loss_ax.plot(epochs, [r["train_loss"] for r in history], label="train")
    loss_ax.plot(epochs, [r["val_loss"] for r in history], label="val")
    loss_ax.set_title("loss")
    acc_ax.plot(epochs, [r["train_accuracy"] for r in history], label="train")
    acc_ax.plot(epochs, [r["val_accuracy"] for r in history], label="val")
    acc_ax.set_title("accuracy")
    for ax in (loss_ax, acc_ax):
        ax.set_xlabel("epoch")
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def attribution_grid_png(images: np.ndarray, maps: list[np.ndarray], titles: list[str], path: str | Path,
                         title: str) -> Path:
    """Each image (grey) beside its attribution map (red supports the class, blue speaks against it), in pairs."""
    plt = _pyplot()
    n = len(maps)
    columns = min(n, 5)
    rows = -(-n // columns) if n else 1
    fig, axes = plt.subplots(rows, 2 * columns, figsize=(2.0 * 2 * columns, 2.2 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, (attribution, label) in enumerate(zip(maps, titles, strict=True)):
        row, col = divmod(i, columns)
        image = images[i]
        grey = image.mean(axis=0) if image.ndim == 3 else image
        axes[row, 2 * col].imshow(grey, cmap="gray", vmin=0, vmax=1)
        axes[row, 2 * col].set_title(label, fontsize=8)
        bound = float(np.abs(attribution).max()) or 1.0
        axes[row, 2 * col + 1].imshow(attribution, cmap="bwr", vmin=-bound, vmax=bound)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def comparison_over_windows_png(history: list[dict[str, Any]], path: str | Path, title: str) -> Path:
    """The live comparison over windows: agreement between production and the challenger, and both versions'
    accuracy on the same labelled requests with their 95 % intervals (error bars). ``history``: one dict per window,
    oldest first (``window``, ``agreement``, ``production_accuracy``, ``production_ci``, ``challenger_accuracy``,
    ``challenger_ci``; None where a window has none)."""
    plt = _pyplot()
    x = np.arange(len(history))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(history) + 3), 3.8))

    def series(key: str) -> np.ndarray:
        return np.array([np.nan if row.get(key) is None else float(row[key]) for row in history])

    ax.plot(x, series("agreement"), "o-", color="grey", label="agreement")
    for offset, (name, colour) in zip((-0.08, 0.08), (("production", "tab:blue"), ("challenger", "tab:orange")),
                                      strict=True):
        accuracy = series(f"{name}_accuracy")
        ci = [row.get(f"{name}_ci") or [np.nan, np.nan] for row in history]
        below = np.maximum(0.0, [a - c[0] for a, c in zip(accuracy, ci, strict=True)])  # NaN stays NaN
        above = np.maximum(0.0, [c[1] - a for a, c in zip(accuracy, ci, strict=True)])
        ax.errorbar(x + offset, accuracy, yerr=[below, above], fmt="s", color=colour, capsize=3,
                    label=f"{name} accuracy (95 % CI)")
    ax.set_xticks(x, [str(row["window"]) for row in history], rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0.0, 1.02)
    ax.set_ylabel("share")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
