"""The explanation thread imports nothing: a module first imported there races BentoML's event loop.

Seen in bench_explain (44 of ~20k /classify answers a 500): the first explanation's heatmap imported PIL in the
explanation thread while a /classify batch, on another thread, asked BentoML's container registry for its type;
the registry reads ``sys.modules["PIL.Image"]`` without the import lock and found it half-initialised
("partially initialized module 'PIL.Image' has no attribute 'Image'"). So the service's Explainer imports, in the
thread that builds it, everything an explanation will: this test runs one real explanation after building it and
lists what the explanation still imported.
"""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = r"""
import json, sys
import numpy as np
from bentos.explainer import Explainer

explainer = Explainer()  # as the service builds it, before its first request
from mlops_assets.core.model import explain

weights = np.random.default_rng(0).normal(size=(64, 10)).astype(np.float32)
def predict(batch):
    logits = batch.reshape(len(batch), -1) @ weights
    odds = np.exp(logits - logits.max(axis=1, keepdims=True))
    return odds / odds.sum(axis=1, keepdims=True)

image = np.random.default_rng(1).random((1, 8, 8)).astype(np.float32)
before = set(sys.modules)
def one_explanation():
    result = explain.occlusion(predict, image, 3)
    return explain.heatmap_png(image, result.attribution, 16)

png = explainer._pool.submit(one_explanation).result(timeout=60)
explainer.close()
print(json.dumps({"png": png[:8].hex(), "imported": sorted(set(sys.modules) - before)}))
"""


def test_an_explanation_imports_no_module_in_the_explanation_thread():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True)
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["png"] == b"\x89PNG\r\n\x1a\n".hex()  # the explanation ran and drew its heatmap
    assert seen["imported"] == [], f"the explanation thread imported {seen['imported']}"
