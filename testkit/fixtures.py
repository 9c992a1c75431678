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
