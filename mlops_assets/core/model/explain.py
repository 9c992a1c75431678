"""Explanations a person can check: occlusion maps, the deletion test that proves them, and the sanity check.

Why occlusion: it needs only the model's forward pass, so the service explains with the very ONNX model it serves
(onnxruntime, no torch in the Bento) and the report explains with the same method it checks. A patch of the image
is set to the baseline (0, black) and the drop of the class's probability is spread over the patch's pixels; each
pixel's attribution is the mean drop over the patches that cover it (Zeiler & Fergus, ECCV 2014).

Two checks decide whether a map may be shown as an explanation at all:

- **fidelity** (the deletion test): deleting the 10 % most-attributed pixels must lower the explained class's
  probability at least twice as much as deleting a random 10 % (10 seeded draws per image, averaged over the
  images). Random deletions draw from the pixels a deletion changes (not already black): otherwise any map that
  points at ink beats chance. Measured on digits: the trained CNN's own maps 5.0×; maps of the same CNN with
  random weights, judged on the trained model, 0.9–1.8× (three draws of the weights): the test tells maps that
  come from the served weights from maps that do not. (A random-weights model explained by itself is explained
  faithfully; what is wrong there is the model, which the gate's accuracy floor refuses.)
- **sanity** (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018): the maps of the same architecture
  with random weights must not look like the trained model's (mean Spearman rank correlation below 0.5); a method
  that passes it explains the model, not the image's edges.

Pure numpy (scipy for the rank correlation, onnx/onnxruntime for the randomised model), imported where used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

Predict = Callable[["np.ndarray"], "np.ndarray"]  # (N, C, H, W) float32 in [0, 1] → (N, K) probabilities

FIDELITY_MIN_RATIO = 2.0
SANITY_MAX_SPEARMAN = 0.5
DELETED_FRACTION = 0.10
RANDOM_DRAWS = 10
BASELINE = 0.0
EXPLAIN_BATCH_ROWS = 64  # rows per onnxruntime run when explaining (see onnx_predict)
METHOD = "occlusion"
REGISTRY_KEY = "explanations"  # the registered version's metadata key for its check's verdict (stored_verdict)


@dataclass(frozen=True)
class Explanation:
    target: int
    probability: float
    attribution: np.ndarray  # (H, W) float32: the drop of ``target``'s probability a pixel accounts for


def occlusion_window(height: int, width: int) -> tuple[int, int]:
    """Patch side and stride for an image: 2 and 1 at 8×8, 4 and 2 at 32×32 (about 8 patches a side)."""
    patch = max(2, min(height, width) // 8)
    return patch, max(1, patch // 2)


def occlusion(predict: Predict, image: np.ndarray, target: int | None = None) -> Explanation:
    """The occlusion map of one (C, H, W) image for ``target`` (default: the predicted class), in one batch."""
    import numpy as np

    channels, height, width = image.shape
    patch, stride = occlusion_window(height, width)
    corners = [(top, left) for top in _starts(height, patch, stride) for left in _starts(width, patch, stride)]
    batch = np.repeat(image[None].astype(np.float32), len(corners) + 1, axis=0)
    for i, (top, left) in enumerate(corners, start=1):
        batch[i, :, top:top + patch, left:left + patch] = BASELINE
    probabilities = predict(batch)
    chosen = int(np.argmax(probabilities[0])) if target is None else int(target)
    drops = probabilities[0, chosen] - probabilities[1:, chosen]
    total = np.zeros((height, width), dtype=np.float64)
    covered = np.zeros((height, width), dtype=np.float64)
    for drop, (top, left) in zip(drops, corners, strict=True):
        total[top:top + patch, left:left + patch] += drop
        covered[top:top + patch, left:left + patch] += 1
    return Explanation(chosen, float(probabilities[0, chosen]), (total / np.maximum(covered, 1)).astype(np.float32))


def _starts(size: int, patch: int, stride: int) -> list[int]:
    starts = list(range(0, max(size - patch, 0) + 1, stride))
    if starts[-1] + patch < size:
        starts.append(size - patch)  # the last row/column is covered too
    return starts


def deletion_drops(predict: Predict, image: np.ndarray, explanation: Explanation, rng: np.random.Generator,
                   fraction: float = DELETED_FRACTION, draws: int = RANDOM_DRAWS) -> tuple[float, float]:
    """(drop when the most-attributed ``fraction`` of pixels is deleted, mean drop over ``draws`` random deletions
    of as many pixels), of the explained class's probability; one batch."""
    import numpy as np

    channels, height, width = image.shape
    k = max(1, int(round(fraction * height * width)))
    top = np.argsort(explanation.attribution.ravel(), kind="stable")[::-1][:k]
    # random deletions draw from the pixels a deletion changes: on a digit most pixels are already black, and
    # "deleting" them changes nothing, which would make any map pointing at ink look twice as good as chance
    changed = np.flatnonzero((image != BASELINE).any(axis=0).ravel())
    pool = changed if len(changed) >= k else np.arange(height * width)
    masks = [top] + [rng.choice(pool, size=k, replace=False) for _ in range(draws)]
    batch = np.repeat(image[None].astype(np.float32), len(masks), axis=0)
    for i, flat in enumerate(masks):
        rows, cols = np.unravel_index(flat, (height, width))
        batch[i][:, rows, cols] = BASELINE
    probabilities = predict(batch)[:, explanation.target]
    drops = explanation.probability - probabilities
    return float(drops[0]), float(drops[1:].mean())


@dataclass(frozen=True)
class FidelityResult:
    n_images: int
    top_drop: float  # mean drop when the most-attributed pixels are deleted
    random_drop: float  # mean drop when as many random pixels are deleted
    ratio: float
    passed: bool

    def as_dict(self) -> dict:
        return {"n_images": self.n_images, "top_drop": round(self.top_drop, 5),
                "random_drop": round(self.random_drop, 5), "ratio": round(self.ratio, 3), "passed": self.passed,
                "rule": f"top {DELETED_FRACTION:.0%} deletion ≥ {FIDELITY_MIN_RATIO:g}× random deletion "
                        f"({RANDOM_DRAWS} seeded draws per image)"}


def fidelity(predict: Predict, images: np.ndarray, explanations: list[Explanation], seed: int = 0) -> FidelityResult:
    """The deletion test over ``images`` with their ``explanations``, averaged over the images."""
    import numpy as np

    rng = np.random.default_rng(seed)
    pairs = [deletion_drops(predict, image, explanation, rng) for image, explanation in zip(images, explanations,
                                                                                           strict=True)]
    top = float(np.mean([p[0] for p in pairs]))
    random = float(np.mean([p[1] for p in pairs]))
    ratio = top / random if random > 1e-9 else (float("inf") if top > 1e-9 else 0.0)
    return FidelityResult(len(pairs), top, random, ratio, bool(ratio >= FIDELITY_MIN_RATIO))


def mean_rank_correlation(maps_a: list[np.ndarray], maps_b: list[np.ndarray]) -> float:
    """Mean Spearman rank correlation of paired maps (a constant map correlates 0 with anything)."""
    import numpy as np
    from scipy.stats import spearmanr

    values = []
    for a, b in zip(maps_a, maps_b, strict=True):
        if np.ptp(a) == 0 or np.ptp(b) == 0:
            values.append(0.0)
            continue
        values.append(float(spearmanr(a.ravel(), b.ravel()).statistic))
    return float(np.mean(values)) if values else 0.0


def randomized_onnx(model_bytes: bytes, seed: int = 0) -> bytes:
    """The same ONNX graph with every float weight drawn afresh (He-normal by fan-in): the sanity check's
    "model with random weights" (Adebayo et al.'s full randomisation)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(model_bytes)
    rng = np.random.default_rng(seed)
    for index, initializer in enumerate(model.graph.initializer):
        weights = numpy_helper.to_array(initializer)
        if weights.dtype != np.float32 or weights.ndim == 0:
            continue
        fan_in = int(np.prod(weights.shape[1:])) if weights.ndim > 1 else weights.shape[0]
        fresh = rng.normal(0.0, np.sqrt(2.0 / max(fan_in, 1)), size=weights.shape).astype(np.float32)
        model.graph.initializer[index].CopyFrom(numpy_helper.from_array(fresh, initializer.name))
    return model.SerializeToString()


def onnx_predict(model: bytes | str, threads: int = 1, batch_rows: int = EXPLAIN_BATCH_ROWS) -> Predict:
    """A :data:`Predict` over an ONNX model (a path or its bytes) whose output is logits: the project's own
    session, logits and softmax (:mod:`mlops_assets.core.model.onnx_model`), run ``batch_rows`` rows at a time."""
    from mlops_assets.core.model.onnx_model import onnx_logits, open_session, softmax

    # onnxruntime's arena keeps the largest run's activations: one image's occlusion batch (226 rows at 32x32) run
    # whole grows it by ~95 MB, run 64 rows at a time by ~30 MB, for the same speed; the evaluation step holds two
    # such sessions (trained and random weights) and is the build's closest step to its memory bound
    # (tests/test_build_memory.py). Without the arena every run mallocs and frees its activations and the heap
    # fragments (evaluation_report's RSS on 20k 32x32 images: 1.46 GB without, 0.98 GB with).
    session = open_session(model, threads)

    def predict(batch: np.ndarray) -> np.ndarray:
        return softmax(onnx_logits(session, batch, batch_rows))

    return predict


@dataclass(frozen=True)
class ExplanationCheck:
    """Both checks on one model: whether its occlusion maps may be shown to users as explanations."""

    fidelity: FidelityResult
    sanity_spearman: float

    @property
    def sanity_passed(self) -> bool:
        return self.sanity_spearman < SANITY_MAX_SPEARMAN

    @property
    def passed(self) -> bool:
        return self.fidelity.passed and self.sanity_passed

    def reason(self) -> str:
        f = self.fidelity
        parts = [f"deletion test: top {DELETED_FRACTION:.0%} lowers p by {f.top_drop:.3f} vs {f.random_drop:.3f} "
                 f"random ({f.ratio:.2f}×, needs ≥ {FIDELITY_MIN_RATIO:g}×)",
                 f"sanity: Spearman with random weights {self.sanity_spearman:.2f} (needs < {SANITY_MAX_SPEARMAN:g})"]
        return "; ".join(parts)

    def as_dict(self) -> dict:
        return {"passed": self.passed, "method": METHOD, "fidelity": self.fidelity.as_dict(),
                "sanity_spearman": round(self.sanity_spearman, 4), "sanity_passed": self.sanity_passed,
                "reason": self.reason()}


def stored_verdict(check: dict) -> dict:
    """What the registry keeps with a version (under :data:`REGISTRY_KEY`) of its check
    (:meth:`ExplanationCheck.as_dict`): whether it passed, for which method, and why."""
    return {key: check[key] for key in ("passed", "method", "reason")}


def refusal(metadata: dict, version: str) -> str | None:
    """Why ``version`` (registered with ``metadata``) must not be explained to users, or None when its stored check
    passed for the method the service runs. The one rule: the service explains only a version whose check passed."""
    verdict = metadata.get(REGISTRY_KEY)
    if not isinstance(verdict, dict) or "passed" not in verdict:
        return (f"explanations for version {version} were never checked (it was registered without the "
                f"evaluation_report's fidelity/sanity check); register it through the build to have them checked")
    if verdict.get("method") != METHOD:
        return (f"explanations for version {version} checked {verdict.get('method')}, not {METHOD}, which is what "
                "this service computes")
    if verdict["passed"] is not True:
        return (f"explanations for version {version} did not pass their fidelity/sanity check: "
                f"{verdict.get('reason', 'no reason stored')}")
    return None


def check_explanations(model_bytes: bytes, images: np.ndarray, seed: int = 0) -> tuple[ExplanationCheck,
                                                                                       list[Explanation]]:
    """Fidelity and sanity of the model's occlusion maps on ``images`` (N, C, H, W); returns the check and the
    maps (for the report)."""
    predict = onnx_predict(model_bytes)
    explanations = [occlusion(predict, image) for image in images]
    random_predict = onnx_predict(randomized_onnx(model_bytes, seed))
    random_maps = [occlusion(random_predict, image, e.target).attribution for image, e in zip(images, explanations,
                                                                                              strict=True)]
    check = ExplanationCheck(fidelity(predict, images, explanations, seed),
                             mean_rank_correlation([e.attribution for e in explanations], random_maps))
    return check, explanations


def heatmap_png(image: np.ndarray, attribution: np.ndarray, scale: int = 16) -> bytes:
    """A PNG of the image (grey) with the map over it: red where a pixel supports the class, blue where it
    speaks against it, opacity by strength. PIL only, so the service can draw it."""
    import io

    import numpy as np
    from PIL import Image

    grey = image.mean(axis=0) if image.ndim == 3 else image
    base = np.repeat((np.clip(grey, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2).astype(np.float32)
    strength = np.abs(attribution) / max(float(np.abs(attribution).max()), 1e-12)
    colour = np.where(attribution[..., None] >= 0, np.array([230, 30, 30], np.float32),
                      np.array([30, 90, 230], np.float32))
    alpha = (0.75 * strength)[..., None]
    blended = (base * (1 - alpha) + colour * alpha).clip(0, 255).astype(np.uint8)
    picture = Image.fromarray(blended, "RGB").resize((grey.shape[1] * scale, grey.shape[0] * scale),
                                                     Image.Resampling.NEAREST)
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()
