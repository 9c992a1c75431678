"""Out-of-distribution flags of the served model (issue 36), and what the score costs per request.

A real build (the build assets, a short training run, as bench_serving) registers a version whose calibration
``registered_model`` computed on its validation split (MLOPS_OOD_FPR, 5 %). Then, with the served version's own
stored threshold:

- the share of its test split flagged (≈ the calibrated rate: held-out images of the training distribution);
- uniform noise in [0, 1] and constant images (every grey level) — the issue's confident wrong answers;
- letters A–Z rendered with PIL like the digits are stored (white strokes on black, cropped, centred, 8×8, the
  0–16 intensity scale of sklearn's digits mapped to 0–255), flagged share per letter;
- c=64 throughput of the real service (wrk, single-image /classify requests) with the score, against the same
  service with the score skipped (``benchmarks/no_ood_service.py``), in the same run.

``python -m benchmarks.bench_ood [--seconds 10]`` writes the ``bench_ood`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import string
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.report import write_section

LETTER_FONT_PX = 48
CONNECTIONS = 64


def render_letters(letters: str = string.ascii_uppercase, variants: int = 4) -> dict[str, np.ndarray]:
    """Each letter as uint8 N×1×8×8 images made like sklearn's digits: ink bright on black, the glyph's box
    centred in a square with a small margin, area-averaged to 8×8, quantised to 17 levels (0..16) and mapped to
    0..255. Variants: small shifts and stroke widths, so a letter is not judged on one drawing."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=LETTER_FONT_PX)
    out: dict[str, np.ndarray] = {}
    for letter in letters:
        images = []
        for variant in range(variants):
            canvas = Image.new("L", (LETTER_FONT_PX * 2, LETTER_FONT_PX * 2), 0)
            ImageDraw.Draw(canvas).text(
                (LETTER_FONT_PX // 2, LETTER_FONT_PX // 4),
                letter,
                fill=255,
                font=font,
                stroke_width=variant % 3,
                stroke_fill=255,
            )
            glyph = canvas.crop(canvas.getbbox())
            side = int(max(glyph.size) * (1.15 + 0.05 * variant))
            square = Image.new("L", (side, side), 0)
            square.paste(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2))
            small = np.asarray(square.resize((8, 8), Image.Resampling.BOX), dtype=np.float64)
            levels = np.rint(small / small.max() * 16.0)  # the digits' 0..16 scale, ink at full intensity
            images.append(np.rint(levels * 255.0 / 16.0).astype(np.uint8)[None])
        out[letter] = np.stack(images)
    return out


def flagged(session, calibration, x: np.ndarray) -> np.ndarray:
    """The served version's flags, scored as the service scores them (bentos/served_model.py)."""
    from mlops_assets.core.model.onnx_model import onnx_logits, onnx_logits_and_features

    x = np.ascontiguousarray(x, np.float32)
    logits, features = (onnx_logits_and_features(session, x) if calibration.needs_features
                        else (onnx_logits(session, x), None))
    return calibration.flags(calibration.scores(logits, features))


def quality(model, splits_path: str) -> dict[str, object]:
    from mlops_assets.core.data.artifacts import read_split
    from mlops_assets.core.data.images import to_training_scale
    from mlops_assets.core.model.onnx_model import onnx_logits, open_session
    from mlops_assets.core.model.ood import calibration_of
    from mlops_assets.core.registry.registry import ModelRegistry
    from testkit.ood_models import constant_images, uniform_noise

    stored = ModelRegistry(model.home, model.tag.split(":")[0]).get(model.version)
    calibration = calibration_of(stored.metadata)
    if calibration is None:
        raise RuntimeError(f"{model.tag} was registered without an OOD calibration")
    session = open_session(model.onnx_path)
    x_test, y_test = read_split(splits_path, "test")
    x_test = x_test.reshape(-1, *model.shape)
    letters = {k: flagged(session, calibration, to_training_scale(v)) for k, v in render_letters().items()}
    letter_labels = {
        k: model.class_names[int(np.bincount(onnx_logits(session, to_training_scale(v)).argmax(1)).argmax())]
        for k, v in render_letters().items()
    }
    return {
        "calibration": calibration,
        "test": float(flagged(session, calibration, x_test).mean()),
        "n_test": len(x_test),
        "test_accuracy": float((onnx_logits(session, x_test).argmax(1) == y_test).mean()),
        "noise": float(flagged(session, calibration, uniform_noise(2000, model.shape)).mean()),
        "constant": float(flagged(session, calibration, constant_images(256, model.shape)).mean()),
        "letters": {k: float(v.mean()) for k, v in letters.items()},
        "letter_labels": letter_labels,
    }


def throughput(model, root: Path, seconds: float) -> dict[str, dict[str, float]]:
    from benchmarks.bench_serving import check_answers, run_level, write_bodies
    from mlops_assets.core.model.onnx_model import onnx_logits, open_session
    from mlops_assets.infra.bento_server import SERVICE_TARGET, serve_bento_process

    bodies = write_bodies(model.images, root / "bodies.jsonl")
    expected = onnx_logits(open_session(model.onnx_path), model.images).argmax(1)
    env = {
        "MLOPS_FOLLOW_PRODUCTION": "0",
        "BENTOML_HOME": str(model.home),
        "MLOPS_HOME": str(root),
        "MLOPS_ARTIFACT_ROOT": str(root / "artifacts"),
        "MLOPS_API_TOKEN": "",
    }
    results: dict[str, dict[str, float]] = {}
    for name, target in (
        ("without the score", "benchmarks.no_ood_service:ClassifierService"),
        ("with the score", SERVICE_TARGET),
        ("without the score, again", "benchmarks.no_ood_service:ClassifierService"),
    ):
        with serve_bento_process(target, model.home, root / f"{len(results)}.log", env=env, ready_timeout_s=180.0) as (
            url,
            process,
        ):
            check_answers(url, model, bodies, expected)
            run_level(url, process.pid, CONNECTIONS, min(3.0, seconds), bodies)  # warm-up
            results[name] = run_level(url, process.pid, CONNECTIONS, seconds, bodies)
    return results


def render(q: dict[str, object], t: dict[str, dict[str, float]] | None) -> str:
    c = q["calibration"]
    letters = q["letters"]
    lines = [
        "## bench_ood: out-of-distribution flags and their cost",
        "",
        f"The served version's {c.method} score (mlops_assets/core/model/ood.py), fitted on its training split "
        f"({c.n_fit} images), threshold {c.threshold:.3f} calibrated at registration on its validation split "
        f"({c.n_validation} images) to flag {c.target_fpr:.0%} (flagged there: {c.validation_fpr:.1%}). "
        f"Test accuracy {q['test_accuracy']:.3f}.",
        "",
        "| input | images | flagged |",
        "|---|---|---|",
        f"| test split (in distribution) | {q['n_test']} | {q['test']:.1%} |",
        f"| uniform noise in [0, 1] | 2000 | {q['noise']:.1%} |",
        f"| constant images (256 grey levels) | 256 | {q['constant']:.1%} |",
        f"| letters A–Z (PIL, 4 drawings each) | {4 * len(letters)} | {np.mean(list(letters.values())):.1%} |",
        "",
        "Per letter (flagged share of its 4 drawings; the digit the model answers most):",
        "",
        "| " + " | ".join(letters) + " |",
        "|" + "---|" * len(letters),
        "| " + " | ".join(f"{v:.0%}" for v in letters.values()) + " |",
        "| " + " | ".join(q["letter_labels"][k] for k in letters) + " |",
        "",
        "Letters that pass as digits (flagged in under half their drawings): "
        + (", ".join(f"{k} (as {q['letter_labels'][k]})" for k, v in letters.items() if v < 0.5) or "none")
        + ".",
    ]
    if t:
        base = [v["rps"] for k, v in t.items() if k.startswith("without")]
        ratio = t["with the score"]["rps"] / max(base)
        lines += [
            "",
            f"Cost per request: c={CONNECTIONS} single-image /classify, wrk, the real service, the same "
            "model, one after another in this run:",
            "",
            "| service | requests/s | p99 ms |",
            "|---|---|---|",
        ]
        lines += [f"| {k} | {v['rps']:.0f} | {v.get('p99_ms', float('nan')):.1f} |" for k, v in t.items()]
        lines += [
            "",
            f"With the score: **{ratio:.2f}×** the better of the two runs without it "
            f"({ratio / (min(base) / max(base)):.2f}× the worse; the two baselines differ by "
            f"{abs(base[0] - base[1]) / max(base):.1%}: the noise of this machine).",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk duration per server")
    parser.add_argument("--no-throughput", action="store_true", help="only the flag rates")
    args = parser.parse_args(argv)
    from benchmarks.bench_serving import build_registry

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = build_registry(root)
        splits = next(p for p in (root / "artifacts" / "splits").iterdir() if p.is_dir())
        q = quality(model, str(splits))
        t = None if args.no_throughput else throughput(model, root, args.seconds)
    body = render(q, t)
    print(body)
    write_section("bench_ood", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
