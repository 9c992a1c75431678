"""Schemathesis hooks for the service's API (``SCHEMATHESIS_HOOKS=testkit.schemathesis_hooks``).

The OpenAPI document says ``/classify_image`` takes an image (the ``image`` part's encoding lists the image
media types); these strategies make schemathesis generate real images of those types (random size, mode and
pixels), so its positive cases are images the service must accept, and its negative cases everything else.
"""

from __future__ import annotations

import io

import schemathesis
from hypothesis import strategies as st

FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP", "image/bmp": "BMP",
           "image/gif": "GIF", "image/tiff": "TIFF"}


@st.composite
def encoded_image(draw, image_format: str) -> bytes:
    from PIL import Image

    width, height = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    mode = draw(st.sampled_from(["L", "RGB"] if image_format == "JPEG" else ["L", "RGB", "RGBA", "P"]))
    channels = {"L": 1, "P": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = draw(st.binary(min_size=width * height * channels, max_size=width * height * channels))
    image = Image.frombytes("L" if mode == "P" else mode, (width, height), pixels)
    if mode == "P":
        image = image.convert("P")
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


for media_type, image_format in FORMATS.items():
    schemathesis.openapi.media_type(media_type, encoded_image(image_format))
