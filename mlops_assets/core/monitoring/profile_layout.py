"""The one owner of the whylogs profile layout, used by the monitor's assets, the drift sensor and the report.

``<artifact root>/profiles/<version>/`` holds ``profile.bin`` (a serialised whylogs profile) and
``summary.json`` (row count, window, model). Versions name what was profiled:

- ``reference-<model version>``: the training split of one production model;
- ``window-<YYYYmmddTHHMM>``: one time window of the inference log (they sort by time). A window whose rows were
  answered by more than one model version (A/B: the challenger answers a share of the clients; or a promotion
  inside the window) also holds ``answered-<model version>.bin`` per version: the profile of the rows that
  version answered, so each is judged against its own version's reference (:meth:`ProfileStore.read_answered`).

A version directory is written once (built aside, renamed into place) and never rewritten.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops_assets.core.common.storage import publish_directory

PROFILE_FILE = "profile.bin"
SUMMARY_FILE = "summary.json"
WINDOW_PREFIX = "window-"
REFERENCE_PREFIX = "reference-"
ANSWERED_PREFIX = "answered-"  # in a window's directory: the rows one model version answered


def window_version(start: datetime) -> str:
    """The version of the profile of the window starting at ``start`` (sorts by time)."""
    return f"{WINDOW_PREFIX}{start.astimezone(UTC):%Y%m%dT%H%M}"


def window_start(version: str) -> datetime:
    return datetime.strptime(version.removeprefix(WINDOW_PREFIX), "%Y%m%dT%H%M").replace(tzinfo=UTC)


def window_label(version: str) -> str:
    """"window-20261122T1000" → "2026-11-22T10" (minutes shown only when not on the hour)."""
    stamp = window_start(version)
    return f"{stamp:%Y-%m-%dT%H}" + (f":{stamp:%M}" if stamp.minute else "")


def reference_version(model_version: str) -> str:
    return f"{REFERENCE_PREFIX}{model_version}"


class ProfileStore:
    """The profiles under one artifact root."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def directory(self, version: str) -> Path:
        if not version or "/" in version or version.startswith("."):
            raise ValueError(f"invalid profile version {version!r}")
        return self.root / version

    def profile_path(self, version: str) -> Path:
        return self.directory(version) / PROFILE_FILE

    def exists(self, version: str) -> bool:
        return self.profile_path(version).is_file()

    def windows(self) -> list[str]:
        """Versions of every profiled window, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name.startswith(WINDOW_PREFIX))

    def answered_path(self, window: str, model_version: str) -> Path:
        """Where the profile of the rows ``model_version`` answered in ``window`` is (a multi-version window's)."""
        if not model_version or "/" in model_version or model_version.startswith("."):
            raise ValueError(f"invalid model version {model_version!r}")
        return self.directory(window) / f"{ANSWERED_PREFIX}{model_version}.bin"

    def answering_versions(self, window: str) -> dict[str, int]:
        """The model versions that answered the window's rows, with their row counts (its summary's)."""
        return {str(k): int(v) for k, v in (self.summary(window).get("model_versions") or {}).items()}

    def answered_rows(self, window: str, model_version: str | None) -> int:
        """The rows of ``window`` judged for ``model_version``: a window answered by one version (or a profile
        that does not say) is judged whole, as it always was (-1: its summary has no count); in a window answered
        by several, the rows ``model_version`` answered (None: the whole window)."""
        versions = self.answering_versions(window)
        if model_version is None or len(versions) <= 1:
            return int(self.summary(window).get("n_rows", -1))
        return versions.get(model_version, 0)

    def read_answered(self, window: str, model_version: str | None):
        """The profile view of the rows :meth:`answered_rows` counts (None: ``model_version`` answered none of a
        multi-version window)."""
        from mlops_assets.core.monitoring.drift import read_profile

        if model_version is None or len(self.answering_versions(window)) <= 1:
            return self.read(window)
        path = self.answered_path(window, model_version)
        return read_profile(path) if path.is_file() else None

    def summary(self, version: str) -> dict[str, Any]:
        try:
            return json.loads((self.directory(version) / SUMMARY_FILE).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def read(self, version: str):
        """The whylogs profile view (whylogs is imported here, not at module import)."""
        from mlops_assets.core.monitoring.drift import read_profile

        return read_profile(self.profile_path(version))

    def publish(self, version: str, view, summary: dict[str, Any],
                answered: dict[str, Any] | None = None) -> tuple[Path, bool]:
        """Write a profile once (with ``answered``: a window's views per answering model version, in the same
        directory); returns its directory and whether this call wrote it."""
        from mlops_assets.core.monitoring.drift import write_profile

        def build(directory: Path) -> None:
            write_profile(view, directory / PROFILE_FILE)
            for model_version, answered_view in (answered or {}).items():
                write_profile(answered_view, directory / self.answered_path(version, model_version).name)
            (directory / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))

        target = self.directory(version)
        return target, publish_directory(target, build)
