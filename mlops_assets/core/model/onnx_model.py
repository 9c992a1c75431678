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
ONNX_FILE = "model.onnx"


def export_onnx(model, example: np.ndarray, path: str | Path, opset: int = 17) -> None:
    """Export with the TorchScript exporter: the dynamo exporter needs onnxscript, and this small
    CNN gains nothing from it. The batch axis is dynamic so the service can batch freely."""
    import numpy as np
    import torch

    model.eval()
    torch.onnx.export(
        model,
        (torch.from_numpy(np.ascontiguousarray(example, dtype=np.float32)),),
        str(path),
        dynamo=False,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
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
