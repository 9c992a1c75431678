"""Progress bars for long work (decoding a folder, training): one line that updates, not a line per step.

A bar is drawn only where a person watches a terminal (``make demo`` in a shell): in a run's captured
logs (the Dagster UI), CI or a pipe it draws nothing, and the per-epoch DEBUG lines of the run log stay
the record. tqdm is imported here, inside the function, so the code location does not pay for it.
"""

from __future__ import annotations

import sys
from typing import IO, Any


def progress(total: int, description: str, unit: str, stream: IO[str] | None = None) -> Any:
    """A ``tqdm`` bar over ``total`` ``unit``s on ``stream`` (stderr), disabled when it is not a terminal."""
    from tqdm import tqdm

    stream = stream or sys.stderr
    interactive = hasattr(stream, "isatty") and stream.isatty()
    return tqdm(total=total, desc=description, unit=unit, file=stream, disable=not interactive, leave=True,
                dynamic_ncols=True, mininterval=0.2)
