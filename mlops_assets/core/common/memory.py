"""A process's memory: freed pages handed back, and a long-lived server's heap kept out of the collector's way.

glibc keeps freed heap pages in its arenas for reuse, so a process that once built a large temporary (a burst of
big uploads in the service, the data-quality tables of 200k images in a build) keeps that resident size for the
rest of its life, and the next build step starts from it. :func:`release_freed_memory` hands them back.

Python's full (generation 2) garbage collection scans every tracked object; in a serving worker that is the
whole startup heap (BentoML, pydantic, onnxruntime's bindings, the model: 120-160k objects), scanned again every
few seconds under traffic for nothing, since none of it ever becomes garbage: 60-80 ms pauses, the c=1 latency
tail. :func:`freeze_startup_heap` moves it out of the collector's reach once startup is done (``gc.freeze``,
as Python's documentation advises for long-lived servers); the pauses drop under 1 ms (BENCHMARKS.md, serving).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc


@functools.cache
def _libc_malloc_trim():
    """glibc's ``malloc_trim``, looked up on first use: the lookup runs ``ldconfig``, which every process that
    merely imports this module (the code location, at each load) would pay otherwise."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None


def release_freed_memory() -> None:
    """Return free heap pages of every malloc arena to the operating system (glibc; a no-op elsewhere)."""
    malloc_trim = _libc_malloc_trim()
    if malloc_trim is not None:
        malloc_trim(0)


def freeze_startup_heap() -> None:
    """Exclude every object alive now from future garbage collections (call once startup is done)."""
    gc.collect()  # what startup left as garbage goes first: frozen objects are never collected
    gc.freeze()


def heap_stats() -> dict[str, int]:
    """The collector's view of this process: objects it tracks (and scans), objects frozen out of its scans,
    full collections so far. A tracked count that grows with traffic is a leak."""
    return {"tracked_objects": len(gc.get_objects()), "frozen_objects": gc.get_freeze_count(),
            "full_collections": gc.get_stats()[2]["collections"]}
