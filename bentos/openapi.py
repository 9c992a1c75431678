"""The service's OpenAPI document: what every endpoint accepts and every answer it can give, exactly.

BentoML 1.4's generated document disagrees with what the service answers (error bodies, nullable fields,
``GET /model`` missing, an ``images`` schema that accepts any array of numbers), so the service serves this
one at ``/docs.json`` instead (``bentos/request_guard.py``). Request and response schemas come from the
served geometry and the pydantic models, not from hand-written JSON; ``tests/test_serving.py`` runs
schemathesis with all its checks against it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from mlops_assets.core.data.images import SUPPORTED_FORMATS, PreprocessSpec

OPENAPI_VERSION = "3.0.3"  # what the Swagger UI bundled with BentoML 1.4 renders
REF = "#/components/schemas/{model}"


class ErrorResponse(BaseModel):
    """Every refusal and every fault has this body."""

    error: str = Field(description="What was wrong, in a sentence a client can act on.")
    field: str | None = Field(default=None, description="The request field it concerns, when there is one.")


def openapi_30(schema: Any) -> Any:
    """pydantic's JSON Schema → OpenAPI 3.0: ``anyOf [X, null]`` becomes ``X`` with ``nullable: true``."""
    if isinstance(schema, list):
        return [openapi_30(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    options = schema.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [option for option in options if option != {"type": "null"}]
        merged = {k: v for k, v in schema.items() if k != "anyOf"}
        merged.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
        merged["nullable"] = True
        if merged.get("default", 0) is None:
            merged.pop("default")
        return openapi_30(merged)
    return {key: openapi_30(value) for key, value in schema.items()}


def image_array_schema(spec: PreprocessSpec, max_images: int, channel_axis: bool) -> dict[str, Any]:
    """N×C×H×W (or N×H×W) numbers in the training scale [0, 1], with every axis's exact length."""
    pixel: dict[str, Any] = {"type": "number", "minimum": 0, "maximum": 1}
    row = {"type": "array", "items": pixel, "minItems": spec.width, "maxItems": spec.width}
    plane = {"type": "array", "items": row, "minItems": spec.height, "maxItems": spec.height}
    image = ({"type": "array", "items": plane, "minItems": spec.channels, "maxItems": spec.channels}
             if channel_axis else plane)
    return {"type": "array", "items": image, "minItems": 1, "maxItems": max_images}


def classify_request_schema(spec: PreprocessSpec, max_images: int) -> dict[str, Any]:
    shapes = [image_array_schema(spec, max_images, channel_axis=True)]
    if spec.channels == 1:
        shapes.append(image_array_schema(spec, max_images, channel_axis=False))
    images = shapes[0] if len(shapes) == 1 else {"anyOf": shapes}
    shape = f"N×{spec.channels}×{spec.height}×{spec.width}" + (
        f" or N×{spec.height}×{spec.width}" if spec.channels == 1 else "")
    images["description"] = f"Images in the training scale [0, 1] (pixels / 255): {shape}, 1 ≤ N ≤ {max_images}."
    return {"type": "object", "required": ["images"], "properties": {"images": images}}


def explain_request_schema(spec: PreprocessSpec, n_classes: int) -> dict[str, Any]:
    """One image (C×H×W, or H×W for one channel: one image of /classify) and the optional class to explain."""
    shapes = [image_array_schema(spec, 1, channel_axis=True)["items"]]
    if spec.channels == 1:
        shapes.append(image_array_schema(spec, 1, channel_axis=False)["items"])
    image = shapes[0] if len(shapes) == 1 else {"anyOf": shapes}
    shape = f"{spec.channels}×{spec.height}×{spec.width}" + (
        f" or {spec.height}×{spec.width}" if spec.channels == 1 else "")
    image = {**image, "description": f"One image in the training scale [0, 1] (pixels / 255): {shape}."}
    return {"type": "object", "required": ["image"], "properties": {"image": image, "target": {
        **target_schema(n_classes), "nullable": True}}}


def target_schema(n_classes: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": 0, "maximum": n_classes - 1,
            "description": "The class index to explain; omitted: the predicted class."}


def _json(schema: dict[str, Any] | str) -> dict[str, Any]:
    ref = {"$ref": REF.format(model=schema)} if isinstance(schema, str) else schema
    return {"application/json": {"schema": ref}}


def _errors(*statuses: tuple[int, str]) -> dict[str, Any]:
    return {str(code): {"description": text, "content": _json("ErrorResponse")} for code, text in statuses}


def feedback_link(prediction: str) -> dict[str, Any]:
    """How an answer's prediction is labelled: its id (and here its own class) in a POST /feedback body."""
    return {"Feedback": {
        "operationId": "feedback",
        "description": "Send the true label of this prediction (here: the predicted class) to POST /feedback.",
        "requestBody": {"feedback": [{"prediction_id": f"{prediction}/prediction_id",
                                      "label": f"{prediction}/class_name"}]},
    }}


SERVER_FAULT = (500, "A fault of the server (never a consequence of the request); logged with its traceback.")
NO_MODEL_YET = (503, "No model served yet: the service started before one was promoted (the message says what it "
                     "waits for); it answers as soon as one is, without a restart.")
WRONG_MEDIA_TYPE = (415, "The request body is not of the media type this endpoint takes.")
NOT_EXPLAINED = (409, "The served version's explanations did not pass their fidelity/sanity check (or it has "
                      "none): the request is fine, the version is not explained; the error names it and says why.")
EXPLAIN_BUSY = (503, "Too many explanations waiting in this worker, or no model served yet (the message says "
                     "which); retry.")


def api_document(spec: PreprocessSpec, max_images: int, max_body_bytes: int, max_pixels: int,
                 models: dict[str, type[BaseModel]], version: str, n_classes: int, token_required: bool = False,
                 refuse_ood: bool = False) -> dict[str, Any]:
    """The whole document: the APIs, BentoML's infrastructure endpoints, and the schemas they use.

    ``models`` are the pydantic models of the answers (``Prediction``, ``ExplainedPrediction``, ``ModelInfo``,
    ``FeedbackReceipt``) and of the feedback request (``FeedbackRequest``, whose labels are the served classes);
    ``n_classes`` bounds the class an explanation may be asked for. With ``token_required`` the prediction, explain
    and feedback endpoints declare the bearer token they require (and their 401)."""
    formats = ", ".join(SUPPORTED_FORMATS)
    schemas: dict[str, Any] = {}
    for model in (ErrorResponse, *models.values()):
        schema = model.model_json_schema(ref_template=REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    schemas = openapi_30(schemas)
    infra = {
        "/healthz": "Liveness (deprecated name of /livez).",
        "/livez": "200 while the server process is alive.",
        "/readyz": "200 once a model is loaded and the server accepts traffic (503, saying why, before).",
    }
    paths: dict[str, Any] = {
        path: {"get": {"tags": ["Infrastructure"], "summary": text, "operationId": path.strip("/"),
                       "responses": {"200": {"description": text}}}}
        for path, text in infra.items()
    }
    paths["/metrics"] = {"get": {
        "tags": ["Infrastructure"], "operationId": "metrics", "summary": "Prometheus metrics.",
        "responses": {"200": {"description": "Prometheus text format.",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}},
    }}
    too_large = (413, f"The body is over {max_body_bytes} bytes (MLOPS_MAX_BODY_BYTES).")
    paths["/classify"] = {"post": {
        "tags": ["Service APIs"], "operationId": "classify",
        "summary": "Classify a batch of images already in the training scale; one prediction per image.",
        "requestBody": {"required": True, "content": _json(classify_request_schema(spec, max_images))},
        "responses": {
            "200": {"description": "One prediction per image, in order.",
                    "content": _json({"type": "array", "items": {"$ref": REF.format(model="Prediction")}}),
                    "links": feedback_link("$response.body#/0")},
            **_errors(
                (400, "Not JSON, or images that are not numbers in [0, 1] of the served shape (the message says "
                      "which; 0–255 pixels are named as such)."),
                too_large, WRONG_MEDIA_TYPE,
                (503, "Too many requests queued for the model, or no model served yet (the message says which); "
                      "retry."), SERVER_FAULT,
            ),
        },
    }}
    paths["/feedback"] = {"post": {
        "tags": ["Service APIs"], "operationId": "feedback",
        "summary": "Record the true labels of served predictions (a batch, stored all or none), so accuracy and "
                   "bias are measured on production traffic.",
        "requestBody": {"required": True, "content": _json("FeedbackRequest")},
        "responses": {
            "200": {"description": "Every label stored.", "content": _json("FeedbackReceipt")},
            **_errors(
                (400, "Not JSON, not a batch of {prediction_id, label}, or a label that is not a class of the "
                      "model (the field names the item)."),
                (404, "A prediction_id that no logged prediction has (the field names the item)."),
                (409, "A prediction that already has feedback, or appears twice in the batch."),
                too_large, WRONG_MEDIA_TYPE, SERVER_FAULT,
            ),
        },
    }}
    paths["/classify_image"] = {"post": {
        "tags": ["Service APIs"], "operationId": "classify_image",
        "summary": "Classify one uploaded image, decoded and scaled exactly as in training.",
        "description": (
            f"The body is the image file itself, with its image type (`curl --data-binary @digit.png -H "
            f"'Content-Type: image/png'`). The same upload is taken as multipart/form-data with one file part named "
            f"`image` (`curl -F image=@digit.png`); that form is not declared here because a multipart part's "
            f"schema cannot say 'the bytes of an image', so a fuzzer would send it arbitrary bytes as valid data "
            f"(they are a 422). Formats: {formats}; the format is read from the bytes."),
        "requestBody": {"required": True, "content": {"image/*": {"schema": {
            "type": "string", "format": "binary",
            "description": f"One image file ({formats}). Bytes only: a URL or a path is never fetched or opened.",
        }}}},
        "responses": {
            "200": {"description": "The prediction.", "content": _json("Prediction"),
                    "links": feedback_link("$response.body#")},
            **_errors(
                (400, "A malformed multipart body, or anything but exactly one file field named 'image' (the "
                      "multipart form)."),
                (413, f"The body is over {max_body_bytes} bytes (MLOPS_MAX_BODY_BYTES), or the image's header "
                      f"declares more than {max_pixels} pixels (MLOPS_MAX_IMAGE_PIXELS); it is not decoded."),
                WRONG_MEDIA_TYPE,
                (422, f"The file is not an image of a supported format ({formats})."),
                NO_MODEL_YET, SERVER_FAULT,
            ),
        },
    }}
    explain_answer = {"description": "The prediction and the map of the explained class.",
                      "content": _json("ExplainedPrediction"), "links": feedback_link("$response.body#")}
    paths["/explain"] = {"post": {
        "tags": ["Service APIs"], "operationId": "explain",
        "summary": "Classify one image already in the training scale and map which pixels the decision rests on "
                   "(occlusion, with the served model).",
        "requestBody": {"required": True, "content": _json(explain_request_schema(spec, n_classes))},
        "responses": {
            "200": explain_answer,
            **_errors(
                (400, "Not JSON, an image that is not numbers in [0, 1] of the served shape, or a target that is "
                      "not a class index (the message says which)."),
                too_large, WRONG_MEDIA_TYPE, NOT_EXPLAINED, EXPLAIN_BUSY, SERVER_FAULT,
            ),
        },
    }}
    upload = paths["/classify_image"]["post"]
    paths["/explain_image"] = {"post": {
        "tags": ["Service APIs"], "operationId": "explain_image",
        "summary": "Classify one uploaded image (as /classify_image) and map which pixels the decision rests on.",
        "description": upload["description"] + " The class to explain, if not the predicted one, is the query "
                                               "parameter `target`.",
        "parameters": [{"name": "target", "in": "query", "required": False, "schema": target_schema(n_classes)}],
        "requestBody": upload["requestBody"],
        "responses": {
            "200": explain_answer,
            **{code: answer for code, answer in upload["responses"].items()
               if code not in ("200", "400", "503", "500")},
            **_errors(
                (400, upload["responses"]["400"]["description"] + " Or a target that is not one class index."),
                NOT_EXPLAINED, EXPLAIN_BUSY, SERVER_FAULT),
        },
    }}
    model_info = {"200": {"description": "The served model, its data version and the pointer's state.",
                          "content": _json("ModelInfo")}, **_errors(NO_MODEL_YET)}
    paths["/model"] = {
        "get": {"tags": ["Service APIs"], "operationId": "model_info_get",
                "summary": "Which model and data version this server answers with.", "responses": model_info},
        "post": {"tags": ["Service APIs"], "operationId": "model_info",
                 "summary": "The same as GET /model (for BentoML clients).",
                 "requestBody": {"required": False, "content": _json({"type": "object"})},
                 "responses": {**model_info, **_errors(
                     (400, "A body that is not a JSON object."), too_large, WRONG_MEDIA_TYPE, SERVER_FAULT)}},
    }
    components: dict[str, Any] = {"schemas": schemas}
    if token_required:
        components["securitySchemes"] = {"bearerAuth": {
            "type": "http", "scheme": "bearer", "description": "The service's token (MLOPS_API_TOKEN)."}}
        unauthorised = _errors((401, "No bearer token, or not the service's (MLOPS_API_TOKEN)."))
        for path in ("/classify", "/classify_image", "/explain", "/explain_image", "/feedback"):
            operation = paths[path]["post"]
            operation["security"] = [{"bearerAuth": []}]
            operation["responses"] = {**operation["responses"], **unauthorised}
    if refuse_ood:  # MLOPS_OOD_REFUSE=1: bentos/ood_refusal.py
        paths["/classify"]["post"]["responses"] |= _errors(
            (422, "An image is out of distribution (its ood_flag would be true) and this server refuses such "
                  "inputs (MLOPS_OOD_REFUSE=1); the field names the first such image, the error says why."))
        paths["/explain"]["post"]["responses"] |= _errors(
            (422, "The image is out of distribution and this server refuses such inputs (MLOPS_OOD_REFUSE=1): the "
                  "error says why."))
        for path in ("/classify_image", "/explain_image"):
            responses = paths[path]["post"]["responses"]
            responses["422"] = {**responses["422"], "description": responses["422"]["description"] + (
                " Or the image is out of distribution and this server refuses such inputs (MLOPS_OOD_REFUSE=1): "
                "the error says why.")}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "image_classifier_service", "version": version,
                 "description": "# image_classifier_service\n\nThe production image classifier (ONNX, "
                                "onnxruntime) with adaptive batching. Every error body is an ErrorResponse."},
        "paths": paths,
        "components": components,
    }
