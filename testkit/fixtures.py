"""Resources rooted in a temporary directory, and small generated image folders (tests and benchmarks)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import dagster as dg
import numpy as np

from resources.alerts import AlertSink
from resources.artifact_store import ArtifactStore
from resources.dataset_source import DatasetSource
from resources.drift_policy import DriftPolicy
from resources.model_registry import ModelRegistryResource
from resources.performance_policy import PerformancePolicy
from resources.service_auth import ServiceAuth


def make_resources(
    root: Path, dataset_source: DatasetSource | None = None, drift_policy: DriftPolicy | None = None
) -> dict[str, object]:
    """The same resources the code location uses, with every path under ``root``."""
    return {
        "artifact_store": ArtifactStore(root=str(root / "artifacts")),
        "dataset_source": dataset_source or DatasetSource(kind="digits"),
        "model_registry": ModelRegistryResource(home=str(root / "bentoml")),
        "drift_policy": drift_policy or DriftPolicy(),
        "performance_policy": PerformancePolicy(),
        "service_auth": ServiceAuth(),
        "alert_sink": AlertSink(file=str(root / "artifacts" / "alerts" / "alerts.jsonl")),
        "io_manager": dg.FilesystemIOManager(base_dir=str(root / "artifacts" / "dagster_io")),
    }


def write_split_arrays(directory: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]], manifest: dict) -> Path:
    """A self-contained splits directory from in-memory uint8 arrays: its pixel store inside it (``pixels/``),
    written by the product's own writers, so tests read it exactly as they read a built split."""
    from mlops_assets.core.data.artifacts import write_splits
    from mlops_assets.core.data.pixel_store import PixelStoreWriter

    directory.mkdir(parents=True, exist_ok=True)
    first_images = next(iter(splits.values()))[0]
    writer = PixelStoreWriter(directory / "pixels", first_images.shape[1:])
    indices, start = {}, 0
    for name, (images, labels) in splits.items():
        writer.append(images, labels, np.tile(images.shape[2:], (len(images), 1)))
        indices[name] = np.arange(start, start + len(images))
        start += len(images)
    writer.finish()
    write_splits(directory, directory / "pixels", indices, manifest)
    return directory


def draw_shape_folder(root: Path, per_class: int = 30, seed: int = 0, corrupt: bool = True) -> Path:
    """Two classes of drawn shapes (circles, squares) in mixed sizes and modes, plus one corrupt file."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    modes = ["L", "RGB", "RGBA", "P"]
    for shape in ("circles", "squares"):
        folder = root / shape
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            size = int(rng.integers(24, 80))
            img = Image.new("RGB", (size, size + int(rng.integers(0, 10))), (0, 0, 0))
            draw = ImageDraw.Draw(img)
            margin = size * rng.uniform(0.1, 0.25)
            box = [margin, margin, size - margin, size - margin]
            colour = tuple(int(c) for c in rng.integers(160, 256, size=3))
            (draw.ellipse if shape == "circles" else draw.rectangle)(box, fill=colour)
            mode = modes[i % len(modes)]
            img = img.convert(mode) if mode != "P" else img.convert("P", palette=Image.Palette.ADAPTIVE)
            suffix = ".jpg" if i % 5 == 0 and mode in ("L", "RGB") else ".png"
            img.save(folder / f"{shape}_{i:03d}{suffix}")
    if corrupt:
        (root / "circles" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    return root


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width×height pixels, with no pixel data: decoding it would need gigabytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


SCALE_CLASSES = ("circles", "squares", "stripes")


def _draw_scale_images(job: tuple[str, int, int, int, int, int]) -> int:
    """Draw ``count`` noisy 32×32-style grayscale PNGs of one class (a process-pool task)."""
    from PIL import Image

    root, label, start, count, size, seed = job
    rng = np.random.default_rng([seed, label, start])
    folder = Path(root) / SCALE_CLASSES[label]
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(start, start + count):
        cy, cx = rng.uniform(size * 0.3, size * 0.7, size=2)
        radius = rng.uniform(size * 0.15, size * 0.35)
        if label == 0:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        elif label == 1:
            mask = (np.abs(yy - cy) <= radius) & (np.abs(xx - cx) <= radius)
        else:
            mask = ((xx + yy) // max(2, int(radius / 2))) % 2 == 0
        pixels = rng.normal(40, 25, size=(size, size)) + mask * rng.uniform(120, 200)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L").save(
            folder / f"{SCALE_CLASSES[label]}_{i:07d}.png"
        )
    return count


def draw_scale_folder(root: Path, n_images: int, size: int = 32, seed: int = 0, workers: int = 2) -> Path:
    """``n_images`` distinct noisy grayscale PNGs of ``size``×``size`` in three classes (circles, squares,
    stripes), drawn by ``workers`` processes: the generated folders of the scale benchmark and memory test.

    Image ``i`` of a class depends only on (seed, class, i), so a smaller folder is a prefix of a larger one.
    """
    import concurrent.futures
    import multiprocessing

    per_class = [n_images // 3 + (1 if k < n_images % 3 else 0) for k in range(3)]
    chunk = 2000
    jobs = []
    for label, count in enumerate(per_class):
        (root / SCALE_CLASSES[label]).mkdir(parents=True, exist_ok=True)
        jobs += [(str(root), label, s, min(chunk, count - s), size, seed) for s in range(0, count, chunk)]
    if workers <= 1:
        for job in jobs:
            _draw_scale_images(job)
        return root
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        list(pool.map(_draw_scale_images, jobs))
    return root
