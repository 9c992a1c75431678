"""Image loading: sizes, modes, corrupt files and the dataset errors a user can act on."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlops_assets.core.data.image_folder import load_image_folder
from mlops_assets.core.data.images import (
    DatasetError,
    ImageDecodeError,
    PreprocessSpec,
    decode_image,
    decode_image_with_size,
    load_digits_dataset,
    to_training_scale,
)
from testkit.fixtures import draw_shape_folder, png_header_only


def png_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "LA", "I;16", "CMYK"])
@pytest.mark.parametrize("channels", [1, 3])
def test_decode_any_mode_to_spec(mode, channels):
    source = Image.new("RGB", (37, 21), (200, 100, 50)).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    array = decode_image(png_bytes(source, fmt), PreprocessSpec(16, 12, channels))
    assert array.dtype == np.uint8
    assert array.shape == (channels, 16, 12)


def test_decode_grayscale_values_are_kept_exactly():
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    decoded = decode_image(png_bytes(Image.fromarray(pixels, "L")), PreprocessSpec(8, 8, 1))
    np.testing.assert_array_equal(decoded[0], pixels)


def test_transparent_pixels_become_white_background():
    img = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    decoded = decode_image(png_bytes(img), PreprocessSpec(8, 8, 1))
    assert decoded.min() == 255


def test_corrupt_bytes_raise_a_named_error():
    with pytest.raises(ImageDecodeError, match="upload.png"):
        decode_image(b"definitely not an image", PreprocessSpec(8, 8, 1), name="upload.png")


def test_training_scale_is_unit_interval():
    scaled = to_training_scale(np.array([0, 128, 255], dtype=np.uint8))
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled, [0.0, 128 / 255, 1.0])


def test_digits_round_trip_through_png_is_identical():
    """A digit saved as PNG and decoded again is the tensor the model was trained on."""
    digits = load_digits_dataset()
    assert digits.images.shape == (1797, 1, 8, 8)
    first = digits.images[0, 0]
    again = decode_image(png_bytes(Image.fromarray(first, "L")), digits.spec)
    np.testing.assert_array_equal(again[0], first)
    assert digits.class_names == [str(i) for i in range(10)]


def test_folder_skips_corrupt_file_and_reports_it(tmp_path):
    root = draw_shape_folder(tmp_path / "shapes", per_class=6)
    dataset = load_image_folder(root, PreprocessSpec(16, 16, 3))
    assert dataset.class_names == ["circles", "squares"]
    assert dataset.images.shape == (12, 3, 16, 16)
    assert np.bincount(dataset.labels).tolist() == [6, 6]
    assert len(dataset.skipped) == 1 and dataset.skipped[0][0].endswith("broken.png")
    # the size before resizing is kept for the drift monitor (uploads report theirs)
    from PIL import Image as PILImage

    first = root / dataset.sources[0]
    with PILImage.open(first) as img:
        assert tuple(dataset.original_sizes[0]) == (img.height, img.width)
    assert dataset.original_sizes.shape == (12, 2) and (dataset.original_sizes >= 24).all()


def test_folder_hash_changes_when_an_image_is_added(tmp_path):
    root = draw_shape_folder(tmp_path / "shapes", per_class=4, corrupt=False)
    before = load_image_folder(root, PreprocessSpec(8, 8, 1)).content_hash()
    assert load_image_folder(root, PreprocessSpec(8, 8, 1)).content_hash() == before
    Image.new("L", (10, 10), 255).save(root / "squares" / "new.png")
    assert load_image_folder(root, PreprocessSpec(8, 8, 1)).content_hash() != before


def test_folder_with_one_class_is_a_clear_error(tmp_path):
    (tmp_path / "only").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "only" / "a.png")
    with pytest.raises(DatasetError, match="at least two"):
        load_image_folder(tmp_path, PreprocessSpec(8, 8, 1))


def test_folder_with_an_empty_class_is_a_clear_error(tmp_path):
    root = draw_shape_folder(tmp_path / "shapes", per_class=3, corrupt=False)
    (root / "triangles").mkdir()
    (root / "triangles" / "bad.png").write_bytes(b"nope")
    with pytest.raises(DatasetError, match="triangles"):
        load_image_folder(root, PreprocessSpec(8, 8, 1))


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_image_folder(tmp_path / "nowhere", PreprocessSpec(8, 8, 1))


def test_bad_spec_is_rejected():
    with pytest.raises(ValueError, match="channels"):
        PreprocessSpec(8, 8, 2)


def test_folder_fingerprint_changes_with_the_labelled_content_and_only_then(tmp_path):
    """The drift sensor's cheap 'is there new labelled data?' check: no pixel read, every change seen."""
    import os

    from mlops_assets.core.data.images import folder_fingerprint

    for name in ("cats", "dogs"):
        (tmp_path / name).mkdir()
    (tmp_path / "cats" / "a.png").write_bytes(b"a")
    (tmp_path / "dogs" / "b.png").write_bytes(b"b")
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")
    first = folder_fingerprint(tmp_path)
    assert first.startswith("folder-2-")
    (tmp_path / "cats" / "a.png").read_bytes()
    (tmp_path / "dogs" / "notes.txt").write_text("edited, still not an image")
    assert folder_fingerprint(tmp_path) == first
    seen = {first}

    def changed() -> str:
        value = folder_fingerprint(tmp_path)
        assert value not in seen
        seen.add(value)
        return value

    (tmp_path / "cats" / "c.png").write_bytes(b"c")  # added
    changed()
    (tmp_path / "cats" / "c.png").rename(tmp_path / "dogs" / "c.png")  # relabelled
    changed()
    (tmp_path / "dogs" / "c.png").write_bytes(b"cc")  # rewritten
    changed()
    stat = (tmp_path / "dogs" / "b.png").stat()
    os.utime(tmp_path / "dogs" / "b.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched
    changed()
    (tmp_path / "dogs" / "c.png").unlink()  # removed
    assert changed().startswith("folder-2-")


@pytest.mark.parametrize("width, height", [(10_000, 10_000), (20_000, 20_000)])
def test_the_pixel_limit_is_checked_from_the_header_before_decoding(width, height):
    from mlops_assets.core.data.images import ImageTooLargeError, decode_image

    spec = PreprocessSpec(height=8, width=8, channels=1)
    with pytest.raises(ImageTooLargeError, match=f"{width}×{height}"):
        decode_image(png_header_only(width, height), spec, name="bomb.png")


def test_every_supported_format_decodes_and_others_are_refused(tmp_path):
    from PIL import Image

    from mlops_assets.core.data.images import SUPPORTED_FORMATS, ImageDecodeError, decode_image

    spec = PreprocessSpec(height=8, width=8, channels=1)
    for image_format in SUPPORTED_FORMATS:
        buffer = io.BytesIO()
        Image.new("RGB", (20, 12), (200, 100, 50)).save(buffer, format=image_format)
        assert decode_image(buffer.getvalue(), spec).shape == (1, 8, 8), image_format
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, format="ICO")
    with pytest.raises(ImageDecodeError, match=r"not an image of a supported format \(PNG, JPEG, WEBP, BMP"):
        decode_image(buffer.getvalue(), spec, name="icon.ico")


def test_the_folder_loader_lists_every_file_it_does_not_use(tmp_path):
    from PIL import Image

    for name in ("cats", "dogs"):
        (tmp_path / name).mkdir()
        for i, image_format in enumerate(("WEBP", "BMP", "GIF", "TIFF")):
            suffix = {"WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif", "TIFF": ".tif"}[image_format]
            Image.new("RGB", (10, 10), (i * 40, 0, 0)).save(tmp_path / name / f"{i}{suffix}", format=image_format)
    (tmp_path / "cats" / "notes.txt").write_text("not an image")
    (tmp_path / "dogs" / "huge.png").write_bytes(png_header_only(10_000, 10_000))
    (tmp_path / "README.md").write_text("beside the classes")
    dataset = load_image_folder(tmp_path, PreprocessSpec(height=8, width=8, channels=1))
    assert len(dataset.labels) == 8
    reasons = {Path(path).name: reason for path, reason in dataset.skipped}
    assert set(reasons) == {"notes.txt", "huge.png", "README.md"}
    assert "not an image file (suffix .txt)" in reasons["notes.txt"]
    assert "10000×10000" in reasons["huge.png"] and "belongs to no class" in reasons["README.md"]


def test_nested_class_folders_are_an_error_naming_the_path(tmp_path):
    from PIL import Image

    for folder in ("animals/circle", "animals/square", "other/triangle"):
        (tmp_path / folder).mkdir(parents=True)
        Image.new("L", (8, 8)).save(tmp_path / folder / "a.png")
    with pytest.raises(DatasetError, match=r"animals/circle.*move nested classes up one level"):
        load_image_folder(tmp_path, PreprocessSpec(height=8, width=8, channels=1))


# -- photos as phones save them: the EXIF orientation tag ----------------------------------------------------------
# PIL's transposition for each orientation (exif_transpose applies it); the stored pixels are its inverse
_STORE_AS = {3: "ROTATE_180", 6: "ROTATE_90", 8: "ROTATE_270", 5: "TRANSPOSE"}


def upright_pattern(height: int = 48, width: int = 64) -> np.ndarray:
    """An asymmetric picture of 8×8 blocks (JPEG's own blocks, so quality 100 keeps it nearly exact)."""
    rng = np.random.default_rng(7)
    blocks = rng.integers(0, 256, size=(height // 8, width // 8), dtype=np.uint8)
    return np.kron(blocks, np.ones((8, 8), dtype=np.uint8))


def exif_jpeg(upright: np.ndarray, orientation: int) -> bytes:
    """The JPEG a phone writes: pixels as the sensor read them, plus the tag saying how to show them upright."""
    stored = Image.fromarray(upright, "L").transpose(getattr(Image.Transpose, _STORE_AS[orientation]))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", quality=100, subsampling=0, exif=exif.tobytes())
    return buffer.getvalue()


def upright_jpeg(upright: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(upright, "L").save(buffer, format="JPEG", quality=100, subsampling=0)
    return buffer.getvalue()


@pytest.mark.parametrize("orientation", sorted(_STORE_AS))
def test_an_exif_rotated_jpeg_decodes_to_the_upright_pixels(orientation):
    upright = upright_pattern()
    spec = PreprocessSpec(height=24, width=32, channels=1)  # half size: JPEG draft decoding is used too
    expected = decode_image(upright_jpeg(upright), spec).astype(int)
    decoded, size = decode_image_with_size(exif_jpeg(upright, orientation), spec)
    assert np.abs(decoded.astype(int) - expected).max() <= 8
    assert size == (48, 64)  # the size as a viewer shows it


def test_the_folder_loader_reads_exif_rotated_photos_upright(tmp_path):
    upright = upright_pattern()
    for name in ("photos", "scans"):
        (tmp_path / name).mkdir()
    (tmp_path / "photos" / "phone.jpg").write_bytes(exif_jpeg(upright, 6))
    (tmp_path / "scans" / "upright.jpg").write_bytes(upright_jpeg(upright))
    dataset = load_image_folder(tmp_path, PreprocessSpec(height=24, width=32, channels=1))
    assert dataset.sources == ["photos/phone.jpg", "scans/upright.jpg"]
    assert np.abs(dataset.images[0].astype(int) - dataset.images[1].astype(int)).max() <= 8
    assert dataset.original_sizes.tolist() == [[48, 64], [48, 64]]
