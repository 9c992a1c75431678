"""The served CNN quickly trained on the 8×8 digits, and inputs unlike them, for the OOD tests and benchmark.

:func:`mlops_assets.core.model.train.build_model` (the served architecture), trained on a seeded 60 % of the digits and
exported to ONNX by the project's exporter; its validation and test parts are kept for calibration and scoring."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class DigitsModel:
    onnx_path: Path
    x_train: np.ndarray  # float32, training scale
    y_train: np.ndarray
    x_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    test_pixels: np.ndarray  # uint8 as decoded (0..255), what /classify_image's PNGs hold
    class_names: list[str]


def train_digits_cnn(directory: Path, hidden: int = 16, epochs: int = 8, seed: int = 0) -> DigitsModel:
    """A 60/20/20 split of the digits; the CNN trained with Adam on the first part (a few seconds on a CPU)."""
    import torch

    from mlops_assets.core.data.images import load_digits_dataset, to_training_scale
    from mlops_assets.core.model.onnx_model import export_onnx
    from mlops_assets.core.model.train import ModelConfig, build_model

    dataset = load_digits_dataset()
    order = np.random.default_rng(seed).permutation(len(dataset.labels))
    n_train, n_val = int(0.6 * len(order)), int(0.2 * len(order))
    train, val, test = order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]
    x = to_training_scale(dataset.images)
    torch.manual_seed(seed)
    model = build_model(ModelConfig(1, len(dataset.class_names), x.shape[2], x.shape[3], hidden))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    inputs, targets = torch.from_numpy(x[train]), torch.from_numpy(dataset.labels[train].astype(np.int64))
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(train), generator=generator).split(64):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(inputs[batch]), targets[batch]).backward()
            optimiser.step()
    model.eval()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "model.onnx"
    export_onnx(model, x[:1], path)
    return DigitsModel(path, x[train], dataset.labels[train], x[val], x[test], dataset.labels[test],
                       dataset.images[test], list(dataset.class_names))


def uniform_noise(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Uniform noise in [0, 1], the training scale: the issue's first example of a confident wrong answer."""
    return np.random.default_rng(seed).uniform(0.0, 1.0, (n, *shape)).astype(np.float32)


def constant_images(levels: int, shape: tuple[int, ...]) -> np.ndarray:
    """One image per grey level from 0 to 1 (all-ones is the issue's second example)."""
    return np.stack([np.full(shape, v, np.float32) for v in np.linspace(0.0, 1.0, levels)])
