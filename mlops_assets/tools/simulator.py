"""Traffic simulator: real HTTP requests from the test split, clean or drifted, to the running service.

It shows the monitoring loop close: clean traffic → no drift → no retraining; drifted traffic →
the drift sensor fires → the retraining run → a new model promoted if it is better → served.
With ``--add-labelled DIR`` it also drops drifted images, with their true labels, into an image
folder source (one sub-folder per class), as a labelling team would after seeing the drift.

    python -m mlops_assets.tools.simulator --url http://127.0.0.1:3001 --n 500
    python -m mlops_assets.tools.simulator --url http://127.0.0.1:3001 --drift brightness --n 500
    python -m mlops_assets.tools.simulator --drift invert --n 0 --add-labelled ./images --labelled-n 200
    python -m mlops_assets.tools.simulator --drift invert --n 500 --feedback-share 0.5   # and true labels
    python -m mlops_assets.tools.simulator --export-digits ./images     # digits as an image-folder source

With ``--feedback-share`` it also sends the true labels of that share of its predictions to ``POST /feedback``,
as a labelling team would, so ``production_performance`` measures accuracy and bias on them. When the service
requires a token (MLOPS_API_TOKEN, or ``--token``), every request carries it.

The test split is the production model's (found through the registry), or ``--splits DIR``.
The request formats live in :func:`predict_request` and :func:`feedback_request` only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mlops_assets.core.data.images import to_training_scale

DRIFT_KINDS = ("none", "brightness", "noise", "rotation", "invert", "blur", "class_prior")
PREDICT_PATH = "/classify"
FEEDBACK_PATH = "/feedback"

SERVICE_URL = "http://127.0.0.1:3001"  # `make serve`; the Dagster UI (`make dev`) is on 3000


class SimulatorError(RuntimeError):
    """The simulator cannot find its data or reach the service; the message says what to do."""


def predict_request(images: np.ndarray) -> tuple[str, dict[str, Any]]:
    """The service's batch endpoint: its path and the JSON body for N×C×H×W floats in [0, 1].

    The one place that knows the request format; change it here if the service's API changes.
    """
    return PREDICT_PATH, {"images": np.asarray(images, dtype=np.float32).round(5).tolist()}


def feedback_request(prediction_ids: list[str], labels: list[str]) -> tuple[str, dict[str, Any]]:
    """The feedback endpoint: its path and the JSON body labelling predictions by id with class names."""
    return FEEDBACK_PATH, {"feedback": [{"prediction_id": i, "label": label}
                                        for i, label in zip(prediction_ids, labels, strict=True)]}


def auth_headers(token: str) -> dict[str, str]:
    """The service's bearer token, when it has one (MLOPS_API_TOKEN)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


# -- drift ------------------------------------------------------------------------------------
def apply_drift(
    images: np.ndarray, labels: np.ndarray, kind: str, severity: float = 1.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Drifted copies of uint8 N×C×H×W ``images`` (and their labels), still uint8.

    ``brightness`` adds 0.25·severity of full scale; ``noise`` adds Gaussian noise of σ 0.15·severity;
    ``rotation`` rotates by ±25°·severity; ``invert`` swaps dark and light; ``blur`` smooths each image with a
    Gaussian of σ 2.5·severity pixels (on the 8×8 digits: a camera badly out of focus); ``class_prior``
    resamples the batch so that a third of the classes make up 90 % of it.

    Inversion and blur both cost the digits model most of its accuracy, but it stays sure of itself on
    inverted digits, so its label-free accuracy estimate (ATC, the harm trigger's signal) hardly moves; on
    blurred digits its confidence falls with its accuracy, so the harm trigger sees the harm (the loop demo's
    drift; docs/drift-decision.md).
    """
    rng = np.random.default_rng(seed)
    x = images.astype(np.float32) / 255.0
    y = np.asarray(labels)
    if kind == "none":
        pass
    elif kind == "brightness":
        x = x + 0.25 * severity
    elif kind == "noise":
        x = x + rng.normal(0.0, 0.15 * severity, size=x.shape).astype(np.float32)
    elif kind == "rotation":
        from scipy.ndimage import rotate

        angles = rng.choice([-1.0, 1.0], size=len(x)) * 25.0 * severity
        x = np.stack([rotate(img, angle, axes=(1, 2), reshape=False, order=1, mode="constant")
                      for img, angle in zip(x, angles, strict=True)])
    elif kind == "invert":
        x = 1.0 - x
    elif kind == "blur":
        from scipy.ndimage import gaussian_filter

        x = gaussian_filter(x, sigma=(0, 0, 2.5 * severity, 2.5 * severity))
    elif kind == "class_prior":
        classes = np.unique(y)
        favoured = classes[: max(1, len(classes) // 3)]
        weights = np.where(np.isin(y, favoured), 0.9 / np.isin(y, favoured).sum(),
                           0.1 / max(1, (~np.isin(y, favoured)).sum()))
        idx = rng.choice(len(y), size=len(y), replace=True, p=weights / weights.sum())
        x, y = x[idx], y[idx]
    else:
        raise ValueError(f"unknown drift {kind!r}; expected one of {DRIFT_KINDS}")
    return (np.clip(x, 0.0, 1.0) * 255.0).round().astype(np.uint8), y


# -- data -------------------------------------------------------------------------------------
def load_test_split(splits_dir: str | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """uint8 test images, labels and class names: of ``splits_dir``, or of the production model."""
    from mlops_assets.core.data.artifacts import open_split, read_manifest

    if splits_dir is None:
        splits_dir = str(_production_splits_dir())
    test = open_split(splits_dir, "test")
    return test.images(), test.labels, list(read_manifest(splits_dir)["class_names"])


def _production_splits_dir() -> Path:
    from mlops_assets.core.common.settings import ARTIFACT_ROOT, BENTOML_HOME, MODEL_NAME, resolve
    from mlops_assets.core.registry.registry import ModelRegistry

    production = ModelRegistry(resolve(BENTOML_HOME), resolve(MODEL_NAME)).production()
    if production is None:
        raise SimulatorError("no production model in the registry; run build_job first or pass --splits")
    version = production.labels.get("splits_version")
    directory = Path(resolve(ARTIFACT_ROOT)) / "splits" / str(version)
    if not directory.is_dir():
        raise SimulatorError(f"the production model's splits {directory} are missing; pass --splits")
    return directory


def write_labelled_images(
    folder: str | Path, images: np.ndarray, labels: np.ndarray, class_names: list[str], prefix: str
) -> int:
    """PNG files in ``folder/<class>/``: new labelled images for the image-folder source."""
    from mlops_assets.core.data.images import write_png

    for i, (img, label) in enumerate(zip(images, labels, strict=True)):
        write_png(Path(folder) / class_names[int(label)] / f"{prefix}_{i:05d}.png", img)
    return len(images)


# -- traffic ----------------------------------------------------------------------------------
def send_traffic(
    url: str,
    images: np.ndarray,
    batch_size: int = 16,
    timeout_s: float = 30.0,
    post: Callable[[str, dict[str, Any]], Any] | None = None,
    token: str = "",
) -> dict[str, Any]:
    """POST ``images`` (uint8) to the service in batches; counts of requests, errors and latency, and the
    prediction ids answered (``None`` for an image whose request failed), in the order of ``images``."""
    import httpx

    sent = errors = 0
    latencies: list[float] = []
    ids: list[str | None] = []
    client = None
    if post is None:
        client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s, headers=auth_headers(token))
        post = lambda path, body: client.post(path, json=body)  # noqa: E731
    try:
        for start in range(0, len(images), batch_size):
            batch = to_training_scale(images[start : start + batch_size])
            path, body = predict_request(batch)
            began = time.perf_counter()
            answered: list[str | None] = [None] * len(batch)
            try:
                response = post(path, body)
                ok = getattr(response, "status_code", 200) < 400
                if ok:
                    answered = _prediction_ids(response, len(batch))
                elif sent == 0 and errors == 0:
                    print(f"request to {url}{path}: HTTP {response.status_code} {response.text[:200]}", file=sys.stderr)
            except Exception as exc:  # the service is down or slow: count it and go on
                ok = False
                if sent == 0 and errors == 0:
                    print(f"request to {url}{path} failed: {exc}", file=sys.stderr)
            latencies.append(time.perf_counter() - began)
            ids += answered
            sent += len(batch) if ok else 0
            errors += 0 if ok else 1
    finally:
        if client is not None:
            client.close()
    return {
        "images_sent": sent,
        "failed_requests": errors,
        "requests": len(latencies),
        "p50_ms": float(np.percentile(latencies, 50) * 1000) if latencies else None,
        "p95_ms": float(np.percentile(latencies, 95) * 1000) if latencies else None,
        "prediction_ids": ids,
    }


def _prediction_ids(response: Any, n: int) -> list[str | None]:
    try:
        answers = response.json()
    except ValueError:
        return [None] * n
    if not isinstance(answers, list) or len(answers) != n:
        return [None] * n
    return [a.get("prediction_id") if isinstance(a, dict) else None for a in answers]


def send_feedback(url: str, prediction_ids: list[str | None], labels: list[str], token: str = "",
                  batch_size: int = 100, timeout_s: float = 30.0) -> dict[str, Any]:
    """POST the true ``labels`` of the predictions ``prediction_ids`` (skipping failed ones) in batches."""
    import httpx

    pairs = [(i, label) for i, label in zip(prediction_ids, labels, strict=True) if i]
    accepted, refused = 0, []
    with httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s, headers=auth_headers(token)) as client:
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start:start + batch_size]
            path, body = feedback_request([i for i, _ in chunk], [label for _, label in chunk])
            response = client.post(path, json=body)
            if response.status_code == 200:
                accepted += int(response.json().get("accepted", 0))
            else:
                refused.append(f"HTTP {response.status_code}: {response.text[:200]}")
    return {"labels_sent": len(pairs), "accepted": accepted, "refused": refused}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops_assets.tools.simulator", description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=SERVICE_URL, help="The Bento service's base URL.")
    parser.add_argument("--drift", choices=DRIFT_KINDS, default="none", help="Drift applied to the images.")
    parser.add_argument("--severity", type=float, default=1.0, help="Drift strength (1 = the documented one).")
    parser.add_argument("--n", type=int, default=500, help="Images to send (the test split, repeated).")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--splits", default=None, help="A splits artifact directory (default: production's).")
    parser.add_argument("--add-labelled", metavar="DIR", default=None,
                        help="Also write drifted, labelled PNGs into this image folder (one sub-folder per class).")
    parser.add_argument("--labelled-n", type=int, default=200, help="How many labelled images to add.")
    parser.add_argument("--export-digits", metavar="DIR", default=None,
                        help="Write scikit-learn's digits as an image folder (PNG per class) and exit: the "
                        "image-folder source the loop adds labelled images to.")
    parser.add_argument("--feedback-share", type=float, default=0.0,
                        help="Also send the true labels of this share (0–1) of the predictions to POST /feedback.")
    parser.add_argument("--token", default=None,
                        help="The service's bearer token (default: $MLOPS_API_TOKEN; none when unset).")
    parser.add_argument("--sample-image", metavar="PNG", default=None,
                        help="Write one digit as a PNG file (e.g. for curl -F image=@digit.png) and exit.")
    args = parser.parse_args(argv)
    if args.sample_image:
        from PIL import Image

        from mlops_assets.core.data.images import load_digits_dataset

        digits = load_digits_dataset()
        Image.fromarray(digits.images[0][0]).save(args.sample_image, format="PNG")
        print(json.dumps({"image": args.sample_image, "label": digits.class_names[int(digits.labels[0])]}))
        return 0
    if args.export_digits:
        from mlops_assets.core.data.images import load_digits_dataset

        digits = load_digits_dataset()
        n = write_labelled_images(args.export_digits, digits.images, digits.labels, digits.class_names, "digit")
        print(json.dumps({"exported": n, "folder": args.export_digits}))
        return 0

    try:
        images, labels, class_names = load_test_split(args.splits)
    except (SimulatorError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from mlops_assets.core.common.settings import API_TOKEN, resolve

    token = resolve(API_TOKEN) if args.token is None else args.token
    report: dict[str, Any] = {"drift": args.drift, "severity": args.severity}
    if args.n > 0:
        idx = np.resize(np.arange(len(images)), args.n)
        drifted, drifted_labels = apply_drift(images[idx], labels[idx], args.drift, args.severity, args.seed)
        traffic = send_traffic(args.url, drifted, args.batch_size, token=token)
        ids = traffic.pop("prediction_ids")
        report["traffic"] = traffic
        if args.feedback_share > 0:
            chosen = np.random.default_rng(args.seed).random(len(ids)) < args.feedback_share
            report["feedback"] = send_feedback(
                args.url, [i if pick else None for i, pick in zip(ids, chosen, strict=True)],
                [class_names[int(y)] for y in drifted_labels], token)
    if args.add_labelled:
        idx = np.resize(np.arange(len(images)), args.labelled_n)
        drifted, drifted_labels = apply_drift(images[idx], labels[idx], args.drift, args.severity, args.seed + 1)
        prefix = f"sim_{args.drift}_{int(time.time())}"
        report["labelled_added"] = write_labelled_images(
            args.add_labelled, drifted, drifted_labels, class_names, prefix
        )
        report["labelled_folder"] = str(args.add_labelled)
    print(json.dumps(report, indent=2))
    failed = report.get("traffic", {}).get("failed_requests", 0)
    return 1 if failed and not report["traffic"]["images_sent"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
