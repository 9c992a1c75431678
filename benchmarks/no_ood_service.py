"""bench_ood's baseline: the real service with the out-of-distribution score skipped (the answer and the log as
before issue 36: no score, no flag; the three answer fields stay, constant), to price the score in one run.
Benchmarks only; never served.  ``bentoml serve benchmarks.no_ood_service:ClassifierService``."""

from __future__ import annotations

import numpy as np

from bentos import served_model
from mlops_assets.core.model.onnx_model import onnx_logits, softmax
from mlops_assets.core.model.ood import OodAnswer

_SKIPPED = OodAnswer(0.0, None, "skipped by the benchmark baseline")


def _answer_without_ood(self, images):
    probabilities = softmax(onnx_logits(self.session, images))
    return probabilities, np.zeros(len(probabilities)), [_SKIPPED] * len(probabilities)


served_model.LoadedModel.answer = _answer_without_ood

from bentos.service import ClassifierService  # noqa: E402  (after the baseline's answer is in place)

__all__ = ["ClassifierService"]
