"""bench_ood's baseline: the real service with the out-of-distribution score skipped (the answer and the log as
before issue 36: no energy score, no flag; the three answer fields stay, constant), to price the score in one run.
Benchmarks only; never served.  ``bentoml serve benchmarks.no_ood_service:ClassifierService``."""

from __future__ import annotations

from bentos import model_watcher
from mlops_assets.ml.onnx_model import onnx_logits, softmax
from mlops_assets.ml.ood import OodAnswer

_SKIPPED = OodAnswer(0.0, None, "skipped by the benchmark baseline")


def _answer_without_ood(self, images, log=None, original_sizes=None, prediction_ids=None, at=None):
    probabilities = softmax(onnx_logits(self.session, images))
    if log is not None:
        labels = probabilities.argmax(1)
        log.log_images(
            images,
            [self.class_names[i] for i in labels],
            probabilities.max(1),
            self.version,
            original_sizes,
            prediction_ids,
            at,
        )
    return probabilities, [_SKIPPED] * len(probabilities)


model_watcher.LoadedModel.answer = _answer_without_ood

from bentos.service import ClassifierService  # noqa: E402  (after the baseline's answer is in place)

__all__ = ["ClassifierService"]
