"""Returning freed memory to the operating system.

glibc keeps freed heap pages in its arenas for reuse, so a process that once built a large temporary (a burst of
big uploads in the service, the data-quality tables of 200k images in a build) keeps that resident size for the
rest of its life, and the next build step starts from it. :func:`release_freed_memory` hands them back.
"""

from __future__ import annotations

import ctypes
import ctypes.util


def _libc_malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None


_malloc_trim = _libc_malloc_trim()


def release_freed_memory() -> None:
    """Return free heap pages of every malloc arena to the operating system (glibc; a no-op elsewhere)."""
    if _malloc_trim is not None:
        _malloc_trim(0)
