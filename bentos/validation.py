"""What ``/classify`` accepts: numbers in the training scale [0, 1] of the served shape, validated before
batching (so one bad request never fails the others batched with it). Every refusal says what was wrong and,
where it can, the likely mistake (0–255 pixels sent instead of pixels / 255). And what ``/feedback`` accepts:
a batch of {prediction_id, label}, the label one of the served model's class names."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import numpy as np
from bentoml.validators import DType
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, WithJsonSchema, create_model

from mlops_assets.core.data.images import PreprocessSpec


def _contains_bool(value: Any) -> bool:
    """JSON ``true``/``false`` anywhere in a nested list (numpy would silently read them as 1.0 and 0.0)."""
    if isinstance(value, bool):
        return True
    if isinstance(value, list):
        if value and not isinstance(value[0], list):
            return any(item is True or item is False for item in value)
        return any(_contains_bool(item) for item in value)
    return False


def as_float_array(value: Any) -> np.ndarray:
    """Anything JSON can carry → float32 array, or a ValueError (→ 400) that says what was wrong."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "fiu":
            raise ValueError(f"images must be numbers, got an array of dtype {value.dtype}")
        return checked(value.astype(np.float64))
    if not isinstance(value, list):
        raise ValueError(f"images must be a nested list of numbers, got {type(value).__name__}")
    if _contains_bool(value):
        raise ValueError("images must contain only numbers in [0, 1]; got true/false")
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            "images must be a rectangular nested list of numbers (N×C×H×W or N×H×W); "
            f"it could not be read as one: {exc}"
        ) from None
    if array.dtype == object:  # integers beyond int64, or strings/nulls/objects mixed in
        if not all(isinstance(item, int | float) for item in array.ravel()):
            raise ValueError("images must contain only numbers; got strings, nulls or objects")
        try:
            array = array.astype(np.float64)
        except OverflowError:
            raise ValueError("images contain a number too large to be a pixel value (beyond float64)") from None
    elif array.size and array.dtype.kind not in "fiu":
        raise ValueError("images must contain only numbers; got strings, nulls or objects")
    return checked(array.astype(np.float64))


def checked(array: np.ndarray) -> np.ndarray:
    """Finite numbers in the training scale, as float32."""
    if not np.isfinite(array).all():
        raise ValueError("images contain NaN or infinite values")
    check_training_scale(array)
    return array.astype(np.float32)


def check_training_scale(array: np.ndarray) -> None:
    """Values outside [0, 1] are refused, naming the likely mistake; a model answers garbage with confidence."""
    if not array.size:
        return
    low, high = float(array.min()), float(array.max())
    if low >= 0.0 and high <= 1.0:
        return
    if low >= 0.0 and high <= 255.0 and float(np.abs(array - np.rint(array)).max()) == 0.0:
        raise ValueError(
            f"images have values up to {high:g}: these look like 0–255 pixels; send pixels / 255 "
            "(the training scale is [0, 1])"
        )
    raise ValueError(f"images must be in the training scale [0, 1] (pixels / 255); got values from {_number(low)} to "
                     f"{_number(high)}")


def _number(value: float) -> str:
    """Short, but never rounded into the range: 1.0000001 is not shown as 1."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def expected_shape(spec: PreprocessSpec) -> str:
    return f"N×{spec.channels}×{spec.height}×{spec.width}" + (
        f" or N×{spec.height}×{spec.width}" if spec.channels == 1 else ""
    )


def image_checker(spec: PreprocessSpec, max_images: int):
    """Shape, size and finiteness against the served geometry; N×H×W gains its channel axis."""

    def check(images: np.ndarray) -> np.ndarray:
        if images.ndim >= 1 and images.shape[0] == 0:
            raise ValueError("the batch is empty: send at least one image")
        if images.ndim == 3 and spec.channels == 1:
            images = images[:, None, :, :]
        if images.ndim != 4 or images.shape[1:] != (spec.channels, spec.height, spec.width):
            raise ValueError(
                f"images must have shape {expected_shape(spec)}, got {'×'.join(map(str, images.shape))}"
            )
        if images.shape[0] > max_images:
            raise ValueError(f"the batch has {images.shape[0]} images; at most {max_images} per request")
        return np.ascontiguousarray(images)

    return check


def image_batch_type(spec: PreprocessSpec, max_images: int) -> Any:
    """The ``images`` parameter's type: validation and the OpenAPI schema both come from it."""
    return Annotated[
        np.ndarray,
        DType("float32"),
        BeforeValidator(as_float_array),
        AfterValidator(image_checker(spec, max_images)),
        Field(description=f"Images in the training scale [0, 1]: {expected_shape(spec)}, 1 ≤ N ≤ {max_images}."),
    ]


def feedback_item_type(class_names: list[str]) -> type[BaseModel]:
    """One label for one served prediction; the label must name one of the served model's classes."""
    names = [str(name) for name in class_names]
    known = set(names)

    def known_class(label: str) -> str:
        if label not in known:
            raise ValueError(f"label {label!r} is not a class of the model; send a class name (the prediction's "
                             f"class_name), one of {names[:20]}")
        return label

    label_type = Annotated[str, AfterValidator(known_class), WithJsonSchema({
        "type": "string", "enum": names, "description": "The true class, by name (as a prediction's class_name)."})]
    return create_model(
        "FeedbackItem",
        prediction_id=(UUID, Field(description="The prediction_id of a /classify or /classify_image answer.")),
        label=(label_type, ...),
    )


def feedback_batch_type(class_names: list[str], max_items: int) -> Any:
    """The ``feedback`` parameter's type: validation and the OpenAPI schema both come from it."""
    return Annotated[
        list[feedback_item_type(class_names)],
        Field(min_length=1, max_length=max_items,
              description=f"True labels of served predictions, 1 to {max_items}; stored all or none."),
    ]


def single_image_checker(spec: PreprocessSpec):
    """One image of the served geometry: C×H×W (or H×W for one channel), the shape /classify takes per image."""
    shape = f"{spec.channels}×{spec.height}×{spec.width}" + (
        f" or {spec.height}×{spec.width}" if spec.channels == 1 else "")

    def check(image: np.ndarray) -> np.ndarray:
        if image.ndim == 2 and spec.channels == 1:
            image = image[None, :, :]
        if image.shape != (spec.channels, spec.height, spec.width):
            raise ValueError(f"image must have shape {shape} (one image; /classify takes batches), got "
                             f"{'×'.join(map(str, image.shape))}")
        return np.ascontiguousarray(image)

    return check


def single_image_type(spec: PreprocessSpec) -> Any:
    """The ``image`` parameter of ``/explain``: one image, validated as /classify validates each of its images."""
    return Annotated[
        np.ndarray,
        DType("float32"),
        BeforeValidator(as_float_array),
        AfterValidator(single_image_checker(spec)),
        Field(description=f"One image in the training scale [0, 1]: {expected_shape(spec).replace('N×', '')}."),
    ]


def target_message(n_classes: int) -> str:
    return f"target must be a class index from 0 to {n_classes - 1} (omit it to explain the predicted class)"


def parse_target(value: Any, n_classes: int, text: bool = False) -> int | None:
    """A class index from JSON (an integer, not a boolean or a string) or, with ``text``, from a query string (its
    digits); None: none given. ValueError (→ 400 naming ``target``) for anything else."""
    if value is None:
        return None
    if text and isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < n_classes:
        raise ValueError(target_message(n_classes))
    return value


def target_type(n_classes: int) -> Any:
    """The optional ``target`` of ``/explain``: which class to explain (default: the predicted one)."""
    return Annotated[
        int | None,
        BeforeValidator(lambda value: parse_target(value, n_classes)),
        WithJsonSchema({"type": "integer", "minimum": 0, "maximum": n_classes - 1, "nullable": True}),
        Field(description="The class index to explain; omitted or null: the predicted class."),
    ]
