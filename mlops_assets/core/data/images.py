"""Image loading and the one preprocessing that training and serving share.

Every image, whether it comes from scikit-learn's digits, a folder on disk or an HTTP upload, goes
through :func:`decode_image` (to uint8 ``C×H×W``) and then :func:`to_training_scale` (to float32 in
[0, 1]). Keeping both in one module is what makes "the service applies exactly the training
preprocessing" true by construction rather than by care.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_assets.core.common.settings import MAX_IMAGE_PIXELS, default_value

if TYPE_CHECKING:
    import numpy as np


# The one list of image formats: the folder loader reads these files and the service decodes these uploads.
SUPPORTED_FORMATS = {"PNG": (".png",), "JPEG": (".jpg", ".jpeg"), "WEBP": (".webp",), "BMP": (".bmp",),
                     "GIF": (".gif",), "TIFF": (".tif", ".tiff")}
IMAGE_SUFFIXES = tuple(suffix for suffixes in SUPPORTED_FORMATS.values() for suffix in suffixes)
# Decoding is bounded: an image with more pixels than this (read from its header, before decoding) is refused.
DEFAULT_MAX_PIXELS: int = default_value(MAX_IMAGE_PIXELS)


# Why an image is not decoded, in words that start the reason a folder's skipped file is listed with.
EMPTY = "empty file"
TRUNCATED = "truncated"
NOT_AN_IMAGE = "not an image"
TOO_LARGE = "too large"
UNREADABLE_IMAGE = "unreadable"


class ImageDecodeError(ValueError):
    """An image that cannot be decoded; the message names the file or upload, ``kind`` says why in a word
    (:data:`EMPTY`, :data:`TRUNCATED`, :data:`NOT_AN_IMAGE`, :data:`TOO_LARGE`, :data:`UNREADABLE_IMAGE`) and
    ``detail`` is the message without the name."""

    def __init__(self, label: str, detail: str, kind: str = UNREADABLE_IMAGE) -> None:
        super().__init__(f"cannot decode image {label}: {detail}")
        self.kind, self.detail = kind, detail

    @property
    def reason(self) -> str:
        """The detail, led by its kind: what a folder listing shows for a skipped file."""
        return self.detail if self.detail.startswith(self.kind) else f"{self.kind}: {self.detail}"


class ImageTooLargeError(ImageDecodeError):
    """An image whose header declares more pixels than the limit; it is never decoded."""

    def __init__(self, label: str, detail: str) -> None:
        ValueError.__init__(self, f"image {label} is {detail}")
        self.kind, self.detail = TOO_LARGE, detail


class DatasetError(ValueError):
    """A dataset that cannot be trained on as given (no classes, one class, an empty class, ...)."""


@dataclass(frozen=True)
class PreprocessSpec:
    """The fixed geometry every image is converted to before it reaches the model."""

    height: int
    width: int
    channels: int  # 1 = grayscale ("L"), 3 = RGB

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.height < 4 or self.width < 4:
            raise ValueError(f"image size must be at least 4×4, got {self.height}×{self.width}")

    @property
    def pil_mode(self) -> str:
        return "L" if self.channels == 1 else "RGB"

    def as_dict(self) -> dict[str, int]:
        return {"height": self.height, "width": self.width, "channels": self.channels}


@dataclass
class ImageDataset:
    """Decoded images (uint8 N×C×H×W), integer labels and the class names they index."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    spec: PreprocessSpec
    sources: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    original_sizes: np.ndarray | None = None  # N×2 (height, width) before resizing, for the monitor

    def content_hash(self) -> str:
        """A hash of what a model would learn from: pixels, labels, class names and geometry."""
        return content_hash(self.class_names, self.spec, self.images, self.labels, self.original_sizes)


def content_hash(
    class_names: list[str], spec: PreprocessSpec, images: np.ndarray, labels: np.ndarray,
    original_sizes: np.ndarray | None, batch: int = 8192,
) -> str:
    """The dataset's identity: class names, geometry, every pixel, label and original size, hashed.

    Pixels are fed a batch at a time (a memory-mapped store is read, never copied whole), in the order an
    in-memory array would be, so a stored dataset and the same images in memory hash alike.
    """
    import numpy as np
    digest = hashlib.sha256()
    digest.update(repr((class_names, spec.as_dict(), tuple(int(n) for n in images.shape))).encode())
    for start in range(0, len(images), batch):
        digest.update(np.ascontiguousarray(images[start : start + batch], dtype=np.uint8).data)
    digest.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    if original_sizes is not None:
        digest.update(np.ascontiguousarray(original_sizes, dtype=np.int64).tobytes())
    return digest.hexdigest()


def to_training_scale(images: np.ndarray) -> np.ndarray:
    """uint8 pixels → float32 in [0, 1], the scale the model is trained and served in."""
    import numpy as np
    return np.asarray(images, dtype=np.float32) / np.float32(255.0)


def write_png(path: str | Path, pixels: np.ndarray) -> Path:
    """One uint8 C×H×W image as a PNG file, written aside and renamed into place (a folder loader or fingerprint
    reading the folder meanwhile sees the whole file or none; the hidden temporary name is skipped by both)."""
    import numpy as np
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = pixels[0] if pixels.shape[0] == 1 else np.transpose(pixels, (1, 2, 0))
    tmp = path.parent / f".{path.name}.tmp"
    try:
        Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def image_hashes(images: np.ndarray) -> list[str]:
    """One content hash per image, so identical images can be found across splits."""
    import numpy as np
    return [hashlib.sha1(np.ascontiguousarray(img).tobytes()).hexdigest() for img in images]


# What PIL raises for a file it cannot read (UnidentifiedImageError is an OSError).
UNREADABLE = (OSError, ValueError, SyntaxError, EOFError)


def open_image(source):
    """PIL's lazy open (the header only) of a supported format.

    ``max_pixels``, checked by the callers on every image, replaces PIL's process-wide bomb limit (which
    warns at 89M pixels and refuses at 179M without saying the size), so messages name the image's size.
    """
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    return Image.open(source, formats=list(SUPPORTED_FORMATS))


# EXIF orientation (tag 0x0112): 1 upright; 2-4 mirrored or upside down; 5-8 stored a quarter turn from upright.
EXIF_ORIENTATION = 0x0112
_TURNED_ORIENTATIONS = (5, 6, 7, 8)


def _exif_orientation(img) -> int:
    """The orientation an image's EXIF declares (1 when it has none or the tag is unreadable)."""
    try:
        return int(img.getexif().get(EXIF_ORIENTATION, 1))
    except (*UNREADABLE, TypeError):
        return 1


def image_pixels(data: bytes) -> int:
    """How many pixels an encoded image declares, from its header alone (nothing is decoded)."""
    try:
        with open_image(io.BytesIO(data)) as img:
            return img.width * img.height
    except UNREADABLE:
        return 0  # not readable as an image: decoding will say why


def _file_size(path: Path | str) -> int | None:
    """A file's size, or None when it cannot be stat-ed (opening it will then say why)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def decode_image(data: bytes | Path | str, spec: PreprocessSpec, name: str | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a PNG/JPEG/… into uint8 C×H×W of the given geometry (see :func:`decode_image_with_size`)."""
    return decode_image_with_size(data, spec, name, max_pixels)[0]


def decode_image_with_size(
    data: bytes | Path | str, spec: PreprocessSpec, name: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode an image of a supported format (any size up to ``max_pixels``, any mode) into uint8 C×H×W.

    The pixel count is read from the header and checked before anything is decoded
    (:class:`ImageTooLargeError`), so a small file that expands to gigabytes is refused for the price of its
    header. The EXIF orientation a camera or phone records is applied, so the pixels (and the size returned)
    are the image as a viewer shows it, in the build, its checks and serving alike (the feedback export
    writes the served pixels, so it inherits this). Palette, alpha, 16-bit and CMYK images are converted
    through PIL's own conversions; images are resized with bilinear filtering (JPEGs are first decoded at a
    reduced scale when much larger than the target). Anything PIL cannot read raises :class:`ImageDecodeError`
    naming ``name`` (or the path), so one bad file is reported and never aborts a whole load.
    """
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    label = name or (str(data) if not isinstance(data, bytes) else "<upload>")
    if (len(data) if isinstance(data, bytes) else _file_size(data)) == 0:
        raise ImageDecodeError(label, EMPTY, EMPTY)
    try:
        source = io.BytesIO(data) if isinstance(data, bytes) else open(data, "rb")  # noqa: SIM115
        with source, open_image(source) as img:
            size = (img.height, img.width)
            if img.width * img.height > max_pixels:
                raise ImageTooLargeError(
                    label, f"{img.width}×{img.height} = {img.width * img.height} pixels; at most "
                    f"{max_pixels} are decoded"
                )
            turned = _exif_orientation(img) in _TURNED_ORIENTATIONS
            if img.format == "JPEG":  # decode at 1/2, 1/4 or 1/8 scale when that still covers the target
                img.draft(img.mode, (spec.height, spec.width) if turned else (spec.width, spec.height))
            img.load()
            img = ImageOps.exif_transpose(img)  # as every viewer shows it: phones store pixels sideways
            if turned:  # the size as shown, from the header (draft decoding may have shrunk the pixels)
                size = (size[1], size[0])
            if img.mode in ("I;16", "I;16B", "I"):
                img = img.point(lambda v: v * (1 / 256)).convert("L")
            if img.mode in ("RGBA", "LA", "P", "PA"):
                img = img.convert("RGBA")
                background = Image.new("RGBA", img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, img)
            img = img.convert(spec.pil_mode)
            if img.size != (spec.width, spec.height):
                img = img.resize((spec.width, spec.height), Image.Resampling.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
    except ImageTooLargeError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(
            label, f"not an image of a supported format ({', '.join(SUPPORTED_FORMATS)})", NOT_AN_IMAGE
        ) from exc
    except UNREADABLE as exc:
        kind = TRUNCATED if "truncated" in str(exc) else UNREADABLE_IMAGE
        raise ImageDecodeError(label, str(exc), kind) from exc
    if array.ndim == 2:
        array = array[None, :, :]
    else:
        array = np.transpose(array, (2, 0, 1))
    return np.ascontiguousarray(array), size


def folder_fingerprint(root: str | Path) -> str:
    """A cheap identity of an image folder's labelled content: every image file's class, name, size and
    modification time, hashed. No pixel is read, so it costs one ``stat`` per file (a 200k-image folder
    in well under a second) and can run on every sensor tick. Adding, removing, renaming, moving between
    classes or rewriting a file changes it; reading does not."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist or is not a directory")
    entries: list[str] = []
    stack = [""]  # paths relative to root, so no per-file relpath
    while stack:
        relative_dir = stack.pop()
        with os.scandir(root / relative_dir if relative_dir else root) as listing:
            for entry in listing:
                name = entry.name
                if name.startswith("."):
                    continue
                relative = f"{relative_dir}/{name}" if relative_dir else name
                if entry.is_dir(follow_symlinks=True):
                    stack.append(relative)
                elif name.lower().endswith(IMAGE_SUFFIXES):
                    stat = entry.stat()
                    entries.append(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}")
    entries.sort()
    digest = hashlib.sha256("\n".join(entries).encode("utf-8", "surrogateescape"))
    return f"folder-{len(entries)}-{digest.hexdigest()[:16]}"


def digits_fingerprint() -> str:
    """The bundled digits change only with scikit-learn itself."""
    from importlib.metadata import version

    return f"sklearn-digits-{version('scikit-learn')}"


DIGITS_SPEC = PreprocessSpec(height=8, width=8, channels=1)
DIGITS_CLASS_NAMES = [str(digit) for digit in range(10)]  # scikit-learn's target_names, as strings


def load_digits_dataset() -> ImageDataset:
    """scikit-learn's bundled 8×8 digits, as the same uint8 images an upload would decode to.

    The 0..16 intensities are mapped to 0..255 once here, so a digit saved as PNG and uploaded to
    the service yields exactly the tensor the model was trained on.
    """
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.rint(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    return ImageDataset(
        images=pixels[:, None, :, :],
        labels=digits.target.astype(np.int64),
        class_names=[str(c) for c in digits.target_names],
        spec=DIGITS_SPEC,
        sources=[f"sklearn-digits/{i}" for i in range(len(digits.target))],
        original_sizes=np.full((len(digits.target), 2), 8, dtype=np.int64),
    )
