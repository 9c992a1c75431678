"""Decoding uploads with bounded memory.

A maximal upload (MLOPS_MAX_IMAGE_PIXELS, 4096² by default) needs a few hundred MB while it is decoded and
converted; four worker threads doing that at once, and glibc keeping the freed memory in its per-thread
arenas, left the server ~400 MB larger after a burst (BENCHMARKS.md). So large images are decoded one at a
time (small ones, the common case, are not held up), and after each the freed memory is handed back to the
operating system.
"""

from __future__ import annotations

import threading

import numpy as np

from mlops_assets.core.common.memory import release_freed_memory
from mlops_assets.core.data.images import PreprocessSpec, decode_image_with_size, image_pixels

LARGE_IMAGE_PIXELS = 1024 * 1024  # above this, decodes queue for the one large-decode slot
_large_decodes = threading.BoundedSemaphore(1)


def decode_upload(data: bytes, spec: PreprocessSpec, max_pixels: int) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`decode_image_with_size` of an upload, one large image at a time, memory released after it."""
    if image_pixels(data) <= LARGE_IMAGE_PIXELS:
        return decode_image_with_size(data, spec, name="upload", max_pixels=max_pixels)
    with _large_decodes:
        try:
            return decode_image_with_size(data, spec, name="upload", max_pixels=max_pixels)
        finally:
            release_freed_memory()
