"""BentoML's model store opened at an explicit path: the registry's one use of a BentoML private API.

The registry serves one ``BENTOML_HOME`` per instance, while BentoML's public API reads the home once, at import;
``bentoml._internal.models.ModelStore`` opens a store anywhere. ``tests/test_bentoml_private.py`` fails when an
upgrade removes or changes it (the service's server patches, the other private uses, live beside the service in
``bentos/bentoml_private.py`` and are checked against the same version).
"""

from __future__ import annotations

from pathlib import Path

WRITTEN_FOR = "1.4.39"  # also pinned in pyproject.toml and bentos/bentofile.yaml


def installed_version() -> str:
    from importlib.metadata import version

    return version("bentoml")


def model_store(path: str | Path, create: bool = False):
    """BentoML's model store rooted at ``path``; created only when ``create`` (a read never writes)."""
    from bentoml._internal.models import ModelStore

    if create:
        Path(path).mkdir(parents=True, exist_ok=True)
    return ModelStore(Path(path))
