"""What registration stores for the output-only verdict: the model's outputs on its own validation split.

The ONNX model as it will serve scores the validation split (by batch, as the reference profile does); the
record (:class:`~mlops_assets.core.monitoring.output_reference.OutputReference`: confidence sample, predicted-class mix,
validation accuracy, ATC threshold) goes into the version's metadata, so every later window is judged
against the version actually in production, whoever promoted it.
"""

from __future__ import annotations

from pathlib import Path


def validation_output_record(onnx_path: str | Path, splits_dir: str | Path, class_names: list[str]) -> dict | None:
    """The validation record of the model at ``onnx_path``, as stored in its registry metadata; None when the
    validation split is empty (a tiny dataset): the version is then judged by the pixel policy, which says so."""
    import numpy as np

    from mlops_assets.core.data.artifacts import open_split
    from mlops_assets.core.data.pixel_store import model_batch_rows
    from mlops_assets.core.model.onnx_model import onnx_logits, open_session, softmax
    from mlops_assets.core.monitoring.output_reference import fit_output_reference

    val = open_split(splits_dir, "val")
    session = open_session(onnx_path)
    confidences, predicted = [], []
    for _, x in val.training_batches(model_batch_rows(val.shape)):
        probabilities = softmax(onnx_logits(session, x))
        confidences.append(probabilities.max(axis=1))
        predicted.append(probabilities.argmax(axis=1))
    if not confidences:
        return None
    indices = np.concatenate(predicted)
    names = [class_names[i] if i < len(class_names) else str(i) for i in indices]
    correct = indices == np.asarray(val.labels)
    return fit_output_reference(np.concatenate(confidences), names, correct).as_dict()
