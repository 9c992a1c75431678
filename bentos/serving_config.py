"""What one service process serves, decided once at start-up: the serving config, passed to what needs it.

BentoML 1.4 reads a service's shape when its module is imported (the model declared at class scope, the request
schema in the API signatures, the batching options in the decorators), so the config is built once there, from the
settings and the registry, and everything else (the watcher, the inference log, the OpenAPI document, the answers
when no model is served yet) receives it instead of reading module globals or the environment.

Which classes and geometry the API takes:

- the pinned model's (``--arg model_tag=NAME:VERSION``, stored in a built Bento), or
- the model in the followed registry slot (``production``) at start-up, or
- with no model there yet (a fresh home, a first model that stayed below the gate's floor), the dataset settings:
  the digits' 1×8×8 and classes 0–9, or the image folder's class sub-folders at ``MLOPS_IMAGE_*``. The service
  starts anyway, answers 503 until a version of that signature is put in the slot, and then serves it without a
  restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_assets.core.common import settings
from mlops_assets.core.data.image_folder import class_folders
from mlops_assets.core.data.images import DIGITS_CLASS_NAMES, DIGITS_SPEC, PreprocessSpec
from mlops_assets.core.model.signature import ModelSignature
from mlops_assets.core.registry.model_versions import PRODUCTION_SLOT
from mlops_assets.core.registry.registry import ModelRegistry, RegistryError

DIGITS, IMAGE_FOLDER = "digits", "image_folder"


class ServingConfigError(RuntimeError):
    """The service cannot start as configured (the message names the setting or the registry)."""


@dataclass(frozen=True)
class ServingConfig:
    """Everything the service reads from its settings and the registry, read once."""

    model_name: str
    registry_home: Path
    slot: str  # the registry slot the watcher follows
    pinned_tag: str | None  # the model declared at class scope; None: the slot was empty at start-up
    spec: PreprocessSpec  # the API's input geometry, fixed for the life of the process
    class_names: tuple[str, ...]  # ... and its classes (feedback labels name one of them)
    signature_origin: str  # where the two above come from, in words
    follow: bool
    poll_seconds: float
    max_images: int
    max_pixels: int
    max_body_bytes: int
    api_token: str
    inference_log: bool
    keep_images: bool
    artifact_root: Path
    batch_max_size: int
    batch_max_latency_ms: int
    batch_max_wait_ms: int
    ab_fraction: float = 0.0  # the share of keyed clients the shadow answers when it may (bentos/ab_routing.py)

    @classmethod
    def from_settings(
        cls, model_tag: str | None = None, built_artifact_root: str | None = None, slot: str = PRODUCTION_SLOT
    ) -> ServingConfig:
        """The config of a process serving ``model_tag`` (a built Bento's), else the model in ``slot``, else no
        model yet (the dataset settings' signature). ``built_artifact_root``: where the Bento was built to log."""
        registry = ModelRegistry(settings.resolve(settings.BENTOML_HOME), settings.resolve(settings.MODEL_NAME))
        pinned_tag, signature, origin = _startup_model(registry, model_tag, slot)
        if signature is None:
            signature, origin = dataset_signature()
        return cls(
            model_name=registry.model_name,
            registry_home=registry.home,
            slot=slot,
            pinned_tag=pinned_tag,
            spec=PreprocessSpec(height=signature.height, width=signature.width, channels=signature.channels),
            class_names=signature.class_names,
            signature_origin=origin,
            follow=settings.resolve_flag(settings.FOLLOW_PRODUCTION),
            poll_seconds=settings.resolve_float(settings.POLL_SECONDS),
            max_images=settings.resolve_int(settings.MAX_BATCH),
            max_pixels=settings.resolve_int(settings.MAX_IMAGE_PIXELS),
            max_body_bytes=settings.resolve_int(settings.MAX_BODY_BYTES),
            api_token=settings.resolve(settings.API_TOKEN),
            inference_log=settings.resolve_flag(settings.INFERENCE_LOG),
            keep_images=settings.resolve_flag(settings.KEEP_IMAGES),
            artifact_root=_artifact_root(built_artifact_root),
            batch_max_size=settings.resolve_int(settings.BATCH_MAX_SIZE),
            batch_max_latency_ms=settings.resolve_int(settings.BATCH_MAX_LATENCY_MS),
            batch_max_wait_ms=settings.resolve_int(settings.BATCH_MAX_WAIT_MS),
            ab_fraction=_ab_fraction(),
        )

    @property
    def signature(self) -> ModelSignature:
        """The classes and geometry of the API: a version is served only if its own are the same."""
        return ModelSignature(self.class_names, self.spec.channels, self.spec.height, self.spec.width)

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.registry_home, self.model_name)

    def bento_model(self) -> Any:
        """The model to declare at class scope (``bentoml build`` packages it), or None when none is served yet."""
        import bentoml

        return bentoml.models.BentoModel(self.pinned_tag) if self.pinned_tag else None

    def no_model_message(self, watcher_error: str | None = None) -> str:
        """The 503's message while no model is served: what is waited for, where, and how it comes."""
        names = list(self.class_names)
        shown = ", ".join(names[:10]) + (f", ... ({len(names)} classes)" if len(names) > 10 else "")
        message = (
            f"no {self.slot} model yet: this server follows the '{self.slot}' slot of {self.model_name} in "
            f"the registry at {self.registry_home} and serves the first version put there that takes "
            f"{self.signature.geometry} images (channels×height×width) of the classes [{shown}] "
            f"({self.signature_origin}), without a restart (mlops-registry promote VERSION)"
        )
        if not self.follow:
            message += f"; following is off ({settings.FOLLOW_PRODUCTION}=0): restart the service once one is there"
        return message + (f"; {watcher_error}" if watcher_error else "")


def _startup_model(
    registry: ModelRegistry, model_tag: str | None, slot: str
) -> tuple[str | None, ModelSignature | None, str]:
    """The tag to declare at class scope and its signature; (None, None, "") when the slot is empty."""
    if model_tag:
        import bentoml

        metadata = dict(bentoml.models.BentoModel(model_tag).resolve().info.metadata)
        return model_tag, _signature_of(model_tag, metadata), f"the pinned model {model_tag}"
    try:
        version = registry.in_slot(slot)
    except RegistryError as exc:
        raise ServingConfigError(f"cannot read the '{slot}' slot of the registry at {registry.home}: {exc}") from exc
    if version is None:
        return None, None, ""
    return version.tag, _signature_of(version.tag, version.metadata), f"the {slot} model {version.tag} at start-up"


def _signature_of(tag: str, metadata: dict[str, Any]) -> ModelSignature:
    signature = ModelSignature.from_metadata(metadata)
    if signature is None:
        raise ServingConfigError(f"{tag} was registered without class names and input geometry; it cannot be served")
    return signature


def dataset_signature() -> tuple[ModelSignature, str]:
    """The classes and geometry a first model of the configured dataset will have, from the settings alone."""
    kind = settings.resolve(settings.DATASET_KIND)
    if kind == DIGITS:
        return (
            ModelSignature(tuple(DIGITS_CLASS_NAMES), DIGITS_SPEC.channels, DIGITS_SPEC.height, DIGITS_SPEC.width),
            f"the dataset settings: {settings.DATASET_KIND}={DIGITS}",
        )
    if kind != IMAGE_FOLDER:
        raise ServingConfigError(f"{settings.DATASET_KIND} must be {DIGITS} or {IMAGE_FOLDER}, got {kind!r}")
    folder = settings.resolve(settings.IMAGE_FOLDER)
    if not folder:
        raise ServingConfigError(
            f"no model is served yet and {settings.DATASET_KIND}={IMAGE_FOLDER} names no "
            f"folder: set {settings.IMAGE_FOLDER} so the service knows the classes to serve"
        )
    names = tuple(path.name for path in class_folders(folder))
    if len(names) < 2:
        raise ServingConfigError(
            f"no model is served yet and the image folder {folder} ({settings.IMAGE_FOLDER}) "
            f"has {len(names)} class sub-folder(s); the service takes its classes from them"
        )
    spec = PreprocessSpec(
        height=settings.resolve_int(settings.IMAGE_HEIGHT),
        width=settings.resolve_int(settings.IMAGE_WIDTH),
        channels=settings.resolve_int(settings.IMAGE_CHANNELS),
    )
    return (
        ModelSignature(names, spec.channels, spec.height, spec.width),
        f"the dataset settings: the class folders of {settings.IMAGE_FOLDER}={folder}, "
        f"{settings.IMAGE_CHANNELS}/{settings.IMAGE_HEIGHT}/{settings.IMAGE_WIDTH}",
    )


def _ab_fraction() -> float:
    fraction = settings.resolve_float(settings.AB_FRACTION)
    if not 0.0 <= fraction <= 1.0:
        raise ServingConfigError(f"{settings.AB_FRACTION} must be between 0 (off) and 1 (every keyed client), got "
                                 f"{fraction}")
    return fraction


def _artifact_root(built_artifact_root: str | None) -> Path:
    """Where the inference log goes: MLOPS_ARTIFACT_ROOT, else the root the Bento was built for, else the default;
    always absolute, so a Bento served from the store never writes into the store."""
    if settings.is_set(settings.ARTIFACT_ROOT) or not built_artifact_root:
        return Path(settings.resolve(settings.ARTIFACT_ROOT)).expanduser().resolve()
    return Path(built_artifact_root)
