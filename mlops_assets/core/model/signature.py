"""A model's signature: the class names in order and the input geometry a caller relies on.

Two versions with different signatures are not interchangeable: replacing one with the other silently changes
what every answer means. The registry, the gate and the service's watcher all ask this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelSignature:
    """What a caller of the model relies on: the class names in order and the input geometry."""

    class_names: tuple[str, ...]
    channels: int
    height: int
    width: int

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> ModelSignature | None:
        """The signature stored with a version, or None for a version registered without one."""
        names, spec = metadata.get("class_names"), metadata.get("spec")
        if not names or not isinstance(spec, dict) or not {"channels", "height", "width"} <= spec.keys():
            return None
        return cls(tuple(str(n) for n in names), int(spec["channels"]), int(spec["height"]), int(spec["width"]))

    @property
    def geometry(self) -> str:
        return f"{self.channels}×{self.height}×{self.width}"

    def differences(self, other: ModelSignature) -> list[str]:
        """How ``other`` differs from this signature, in words; empty when they are compatible."""
        found = []
        if self.class_names != other.class_names:
            if set(self.class_names) == set(other.class_names):
                found.append(f"class order {list(other.class_names)} instead of {list(self.class_names)}")
            else:
                added = sorted(set(other.class_names) - set(self.class_names))
                removed = sorted(set(self.class_names) - set(other.class_names))
                found.append(
                    f"classes differ ({len(other.class_names)} instead of {len(self.class_names)}"
                    + (f"; new: {added[:5]}" if added else "") + (f"; missing: {removed[:5]}" if removed else "")
                    + ")"
                )
        if self.geometry != other.geometry:
            found.append(f"input {other.geometry} instead of {self.geometry} (channels×height×width)")
        return found


def signature_differences(current: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Why a model with metadata ``new`` cannot replace one with ``current`` (empty list: it can)."""
    before, after = ModelSignature.from_metadata(current), ModelSignature.from_metadata(new)
    if before is None or after is None:
        return ["signature unknown (registered without class names and input geometry)"]
    return before.differences(after)
