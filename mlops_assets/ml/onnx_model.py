"""ONNX export with a dynamic batch axis, graph validation, and onnxruntime inference."""

from __future__ import annotations

from pathlib import Path

import numpy as np

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
ONNX_FILE = "model.onnx"


def export_onnx(model, example: np.ndarray, path: str | Path, opset: int = 17) -> None:
    """Export with the TorchScript exporter: the dynamo exporter needs onnxscript, and this small
    CNN gains nothing from it. The batch axis is dynamic so the service can batch freely."""
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


def open_session(path: str | Path, threads: int = 1):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def onnx_logits(session, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    outputs = [
        session.run([OUTPUT_NAME], {INPUT_NAME: x[start : start + batch_size]})[0]
        for start in range(0, len(x), batch_size)
    ]
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), dtype=np.float32)


def predict_labels(path: str | Path, x: np.ndarray) -> np.ndarray:
    """Predicted class indices of the ONNX model at ``path``: what evaluation and release compare."""
    return onnx_logits(open_session(path), x).argmax(1)


def torch_logits(model, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)
