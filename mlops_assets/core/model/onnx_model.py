"""ONNX export with a dynamic batch axis, graph validation, and onnxruntime inference.

Whole splits are scored a batch at a time (:func:`model_batch_rows` images), converted from the uint8 pixel store
to the training scale per batch, so scoring a split costs one batch of activations, not the split's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_assets.core.data.pixel_store import model_batch_rows

if TYPE_CHECKING:
    import numpy as np

    from mlops_assets.core.data.pixel_store import ImageRows

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
FEATURES_NAME = "features"  # the penultimate layer, channel-pooled: what the out-of-distribution score reads
ONNX_FILE = "model.onnx"


def with_features(model):
    """``model`` returning (logits, features): the features are the input of its ``Flatten`` (the last
    convolutional block's maps), averaged over height and width: one number per channel, as Lee et al. pool
    a layer's maps for their Mahalanobis score (NeurIPS 2018). None for a model that is not a ``Sequential``
    with a ``Flatten`` (it is exported with its logits only, and scored by the energy of its logits)."""
    import torch.nn as nn

    if not isinstance(model, nn.Sequential):
        return None
    flatten = next((i for i, layer in enumerate(model) if isinstance(layer, nn.Flatten)), None)
    if flatten is None:
        return None

    class LogitsAndFeatures(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body, self.head = model[:flatten], model[flatten:]

        def forward(self, x):
            maps = self.body(x)
            return self.head(maps), maps.mean(dim=(2, 3))

    return LogitsAndFeatures().eval()


def export_onnx(model, example: np.ndarray, path: str | Path, opset: int = 17) -> None:
    """Export with the TorchScript exporter: the dynamo exporter needs onnxscript, and this small
    CNN gains nothing from it. The batch axis is dynamic so the service can batch freely. The graph has a second
    output, :data:`FEATURES_NAME`, where the model allows it (:func:`with_features`); a run that asks only for
    the logits does not compute it."""
    import numpy as np
    import torch

    model.eval()
    both = with_features(model)
    outputs = [OUTPUT_NAME] if both is None else [OUTPUT_NAME, FEATURES_NAME]
    torch.onnx.export(
        model if both is None else both,
        (torch.from_numpy(np.ascontiguousarray(example, dtype=np.float32)),),
        str(path),
        dynamo=False,
        input_names=[INPUT_NAME],
        output_names=outputs,
        dynamic_axes={name: {0: "batch"} for name in (INPUT_NAME, *outputs)},
        opset_version=opset,
    )


def check_graph(path: str | Path) -> None:
    """Raise ``onnx.checker.ValidationError`` if the graph is not valid ONNX."""
    import onnx

    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def open_session(model: str | Path | bytes, threads: int = 1):
    """An onnxruntime CPU session over a model file or its bytes."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


def onnx_logits(session, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    import numpy as np
    x = np.ascontiguousarray(x, dtype=np.float32)
    outputs = [
        session.run([OUTPUT_NAME], {INPUT_NAME: x[start : start + batch_size]})[0]
        for start in range(0, len(x), batch_size)
    ]
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), dtype=np.float32)


def has_features(session) -> bool:
    """Whether the model gives :data:`FEATURES_NAME` (a version exported before it existed does not)."""
    return any(output.name == FEATURES_NAME for output in session.get_outputs())


def onnx_logits_and_features(session, x: np.ndarray, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Logits and features in one run per batch (the model must have :data:`FEATURES_NAME`)."""
    import numpy as np
    x = np.ascontiguousarray(x, dtype=np.float32)
    runs = [session.run([OUTPUT_NAME, FEATURES_NAME], {INPUT_NAME: x[start : start + batch_size]})
            for start in range(0, len(x), batch_size)]
    if not runs:
        return np.zeros((0, 0), dtype=np.float32), np.zeros((0, 0), dtype=np.float32)
    return np.concatenate([r[0] for r in runs]), np.concatenate([r[1] for r in runs])


def predict_labels(path: str | Path, x: np.ndarray) -> np.ndarray:
    """Predicted class indices of the ONNX model at ``path``: what evaluation and release compare."""
    return onnx_logits(open_session(path), x).argmax(1)


def predict_rows(path: str | Path, rows: ImageRows) -> np.ndarray:
    """Predicted class indices of the ONNX model at ``path`` for uint8 rows of a pixel store, a batch at a time."""
    return score_rows(path, rows).argmax(1)


def score_rows(path: str | Path, rows: ImageRows) -> np.ndarray:
    """Softmax (N×K float32) of the ONNX model at ``path`` for uint8 rows of a pixel store, a batch at a time: K
    numbers a row are kept, never the split as floats."""
    import numpy as np
    session = open_session(path)
    scored: np.ndarray | None = None
    for start, x in rows.training_batches(model_batch_rows(rows.shape)):
        probabilities = softmax(onnx_logits(session, x))
        if scored is None:
            scored = np.empty((len(rows), probabilities.shape[1]), dtype=np.float32)
        scored[start : start + len(x)] = probabilities
    return scored if scored is not None else np.zeros((0, 0), dtype=np.float32)


def torch_logits(model, x: np.ndarray) -> np.ndarray:
    import numpy as np
    import torch

    x = np.ascontiguousarray(x, dtype=np.float32)
    step = model_batch_rows(x.shape)
    with torch.no_grad():
        outputs = [model(torch.from_numpy(x[start : start + step])).numpy() for start in range(0, len(x), step)]
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), dtype=np.float32)


@dataclass(frozen=True)
class Parity:
    """How far the ONNX model's logits are from torch's on the same images."""

    max_abs_diff: float
    same_prediction_share: float
    n_images: int


def parity(model, session, rows: ImageRows) -> Parity:
    """torch and onnxruntime logits on every row, compared batch by batch (nothing kept but the running figures)."""
    import numpy as np
    max_diff, same, n = 0.0, 0, 0
    for _, x in rows.training_batches(model_batch_rows(rows.shape)):
        expected, actual = torch_logits(model, x), onnx_logits(session, x)
        max_diff = max(max_diff, float(np.max(np.abs(expected - actual))))
        same += int(np.sum(expected.argmax(1) == actual.argmax(1)))
        n += len(x)
    return Parity(max_diff, same / n if n else 1.0, n)


def softmax(logits: np.ndarray) -> np.ndarray:
    import numpy as np
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)
