"""The service's front door, an ASGI middleware: nothing malformed reaches BentoML, and every refusal has one shape.

- When a token is configured (MLOPS_API_TOKEN), the prediction and feedback endpoints (``PROTECTED_PATHS``)
  answer 401 to a request without ``Authorization: Bearer <token>``, before its body is read. Health, metrics,
  ``/model`` and the API documents stay open. Two ``Authorization`` headers are a 400 on those endpoints,
  token or not: which one counts must not depend on who reads them (a proxy may read the last).
- A body over ``MLOPS_MAX_BODY_BYTES`` is a 413, declared or streamed, before anything is parsed.
- Each API takes one media type (``/classify``, ``/explain`` and ``/model`` JSON, ``/classify_image`` and
  ``/explain_image`` multipart, or the image itself as the body with its ``image/*`` type, which is turned into
  the same one-part upload); another is a 415.
  A multipart body is parsed here first: no boundary, a part without a name, a text field instead of a file, a
  second field or another field name are 400s naming the field. Only then does BentoML see it, so it
  never tries to fetch a string as a URL (what it does with a text field for a file parameter).
- While the service has no model to answer with (started before any was promoted), the endpoints that need one
  (``MODEL_PATHS``) are a 503 saying what is waited for, answered here: BentoML would hide a 5xx's message.
- Every error answer of the APIs, BentoML's own included, is rewritten into :class:`bentos.openapi.ErrorResponse`
  (``{"error": ..., "field": ...}``), which is what the OpenAPI document served at ``/docs.json`` declares.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from bentoml.exceptions import BentoMLException

JSON = "application/json"
MULTIPART = "multipart/form-data"
IMAGE_PREFIX = "image/"  # /classify_image also takes the file itself as the body (Content-Type: image/png, ...)
API_MEDIA_TYPES = {"/classify": JSON, "/classify_image": MULTIPART, "/explain": JSON, "/explain_image": MULTIPART,
                   "/feedback": JSON, "/model": JSON}
PROTECTED_PATHS = frozenset({"/classify", "/classify_image", "/explain", "/explain_image", "/feedback"})
# no answer without a served model
MODEL_PATHS = frozenset({"/classify", "/classify_image", "/explain", "/explain_image", "/model"})
UPLOAD_FIELD = "image"


class RequestTooLarge(BentoMLException):
    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class ApiRefusal(BentoMLException):
    """A refusal raised inside an API, after BentoML parsed the request, that names the field it concerns.

    BentoML renders an exception as ``{"error": str(exc)}``; so the ErrorResponse travels as that string's
    JSON, and :func:`normalise_error` unpacks it into the body the client gets."""

    def __init__(self, status: HTTPStatus, message: str, field: str | None = None) -> None:
        super().__init__(json.dumps(error_body(message, field)), error_code=status)


class Refusal(Exception):
    """A request refused at the door, with its status and the ErrorResponse body."""

    def __init__(self, status: HTTPStatus, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


def rewriting_send(send: Callable[[dict], Awaitable[None]], holds: Callable[[int], bool],
                   finish: Callable[[dict, bytes], Awaitable[None]]) -> Callable[[dict], Awaitable[None]]:
    """An ASGI ``send`` that passes responses through unless ``holds(status)``; a held response is buffered whole
    (its start and every body chunk) and handed to ``finish(start, body)``, which sends what replaces it. The one
    way this service rewrites an answer (errors into ErrorResponse, a flagged prediction into a 422)."""
    state: dict[str, Any] = {"start": None, "chunks": []}

    async def buffering_send(event: dict) -> None:
        if event["type"] == "http.response.start":
            if holds(event["status"]):
                state["start"] = event
            else:
                await send(event)
            return
        if event["type"] != "http.response.body" or state["start"] is None:
            await send(event)
            return
        state["chunks"].append(event.get("body", b""))
        if not event.get("more_body", False):
            await finish(state["start"], b"".join(state["chunks"]))

    return buffering_send


def error_body(message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": message, "field": field}


def json_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", JSON.encode()), (b"content-length", str(len(body)).encode())]


async def send_body(send: Callable[[dict], Awaitable[None]], status: int, body: bytes,
                    headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """A whole JSON response in one go."""
    await send({"type": "http.response.start", "status": int(status), "headers": [*json_headers(body), *headers]})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Callable[[dict], Awaitable[None]], status: int, payload: Any,
                    headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    await send_body(send, status, json.dumps(payload).encode(), headers)


AUTHORIZATION = "Authorization"


def authorization_headers(scope: dict) -> list[bytes]:
    return [value for name, value in scope.get("headers") or [] if name.lower() == b"authorization"]


def bearer_token(scope: dict) -> str | None:
    """The token of the request's one ``Authorization: Bearer <token>`` header; None without one, or with two
    (which one counts would be a matter of who reads them: a proxy that reads the last would disagree)."""
    values = authorization_headers(scope)
    if len(values) != 1:
        return None
    scheme, _, token = values[0].decode("latin-1").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def normalise_error(status: int, body: bytes) -> dict[str, Any]:
    """BentoML's error bodies (a pydantic error list, a one-element list, plain text) → ErrorResponse."""
    try:
        payload = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        text = body.decode("utf-8", "replace").strip()
        return error_body(text or HTTPStatus(status).phrase)
    if isinstance(payload, list) and len(payload) == 1:
        payload = payload[0]
    if not isinstance(payload, dict):
        return error_body(HTTPStatus(status).phrase)
    details = payload.get("detail")
    if isinstance(details, list) and details and isinstance(details[0], dict):
        first = details[0]
        message = str(first.get("msg", payload.get("error", ""))).removeprefix("Value error, ")
        location = [str(part) for part in first.get("loc", []) if part not in ("body",)]
        if first.get("type") == "missing" and location:
            message = f"the field '{'.'.join(location)}' is required"
        return error_body(message, ".".join(location) or None)
    if "error" in payload and set(payload) <= {"error", "field"}:
        inner = _as_error_body(payload["error"])  # an ApiRefusal's ErrorResponse, carried as its message
        return inner or error_body(str(payload["error"]), payload.get("field"))
    return error_body(str(payload.get("error") or HTTPStatus(status).phrase))


def _as_error_body(message: Any) -> dict[str, Any] | None:
    try:
        inner = json.loads(message) if isinstance(message, str) and message.startswith("{") else None
    except json.JSONDecodeError:
        return None
    if isinstance(inner, dict) and set(inner) == {"error", "field"} and isinstance(inner["error"], str):
        return error_body(inner["error"], inner["field"])
    return None


def as_upload(scope: dict, image: bytes, media: str) -> bytes:
    """A raw image body (``Content-Type: image/png``, the file as the body) as the one-part multipart upload the
    API takes: the same bytes, in the part named ``image``. The scope's headers are rewritten to match."""
    boundary = secrets.token_hex(16)
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{UPLOAD_FIELD}\"; filename=\"upload\"\r\n"
            f"Content-Type: {media}\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    kept = [(k, v) for k, v in scope.get("headers") or [] if k.lower() not in (b"content-type", b"content-length")]
    scope["headers"] = [*kept, (b"content-type", f"{MULTIPART}; boundary={boundary}".encode()),
                        (b"content-length", str(len(body)).encode())]
    return body


async def check_upload(headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    """Exactly one multipart part, a file, named ``image``; anything else is a Refusal."""
    from starlette.datastructures import Headers, UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def stream():
        yield body

    try:
        form = await MultiPartParser(Headers(raw=headers), stream(), max_files=2, max_fields=2).parse()
    except MultiPartException as exc:
        raise Refusal(HTTPStatus.BAD_REQUEST, f"malformed multipart body: {exc}") from None
    try:
        items = list(form.multi_items())
        names = [name for name, _ in items]
        hint = f"send exactly one file field named '{UPLOAD_FIELD}' (curl -F {UPLOAD_FIELD}=@digit.png)"
        if names != [UPLOAD_FIELD]:
            got = ", ".join(f"'{n}'" for n in names) or "no field"
            raise Refusal(HTTPStatus.BAD_REQUEST, f"{hint}; got {got}", UPLOAD_FIELD)
        if not isinstance(items[0][1], UploadFile):
            raise Refusal(HTTPStatus.BAD_REQUEST, f"'{UPLOAD_FIELD}' must be a file upload, not a text field: URLs and "
                          "paths are never fetched or opened; send the image's bytes", UPLOAD_FIELD)
    finally:
        await form.close()


class RequestGuard:
    """See the module docstring. ``openapi`` builds the document served at ``/docs.json``; ``token`` (empty: no
    access control) is what a protected endpoint requires as its bearer token; ``unavailable`` says why the service
    cannot answer with a model yet (None: it can)."""

    def __init__(self, app: Any, max_bytes: int, setting_name: str, openapi: Callable[[], dict],
                 token: str = "", token_setting: str = "",
                 unavailable: Callable[[], str | None] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.setting_name = setting_name
        self.openapi = openapi
        self.token = token.encode()
        self.token_setting = token_setting
        self.unavailable = unavailable
        self._document: bytes | None = None
        self._methods: dict[str, str] | None = None

    def document(self) -> bytes:
        if self._document is None:
            document = self.openapi()
            self._document = json.dumps(document).encode()
            self._methods = {path: ", ".join(m.upper() for m in operations)
                             for path, operations in document["paths"].items()}
        return self._document

    def too_large(self) -> Refusal:
        return Refusal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                       f"request body larger than {self.max_bytes} bytes (set {self.setting_name} to change)")

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope.get("path", ""), scope.get("method", "GET")
        if path == "/docs.json" and method == "GET":
            await send_body(send, 200, self.document())
            return
        if path in PROTECTED_PATHS and len(authorization_headers(scope)) > 1:
            await send_json(send, HTTPStatus.BAD_REQUEST, error_body(
                f"{path} takes one Authorization header, got {len(authorization_headers(scope))}; send only "
                "'Authorization: Bearer <token>'", AUTHORIZATION))
            return
        if self.token and path in PROTECTED_PATHS and not self.authorised(scope):
            await send_json(send, HTTPStatus.UNAUTHORIZED, error_body(
                f"{path} requires 'Authorization: Bearer <token>' with the service's token ({self.token_setting})",
                AUTHORIZATION), headers=((b"www-authenticate", b'Bearer realm="image_classifier_service"'),))
            return
        if self.unavailable is not None and path in MODEL_PATHS and (reason := self.unavailable()):
            await send_json(send, HTTPStatus.SERVICE_UNAVAILABLE, error_body(reason))
            return
        expected = API_MEDIA_TYPES.get(path) if method == "POST" else None
        try:
            receive = await self.admit(scope, receive, expected)
        except Refusal as refusal:
            await send_json(send, refusal.status, error_body(refusal.message, refusal.field))
            return
        if path in API_MEDIA_TYPES:
            self.document()
            send = self.normalising(send, (self._methods or {}).get(path))
        await self.app(scope, receive, send)

    def authorised(self, scope: dict) -> bool:
        token = bearer_token(scope)
        return token is not None and hmac.compare_digest(token.encode(), self.token)

    async def admit(self, scope: dict, receive: Any, expected: str | None) -> Any:
        """Check size and media type (and the multipart structure); the ``receive`` to pass on."""
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            raise self.too_large()
        if expected is None:
            return self.limited(receive)
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        media = content_type.split(";")[0].strip().lower()
        raw_image = expected == MULTIPART and media.startswith(IMAGE_PREFIX) and len(media) > len(IMAGE_PREFIX)
        if media != expected and not (expected == JSON and media == "") and not raw_image:
            takes = f"{expected} or a raw image body (image/*)" if expected == MULTIPART else expected
            raise Refusal(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"this endpoint takes {takes}, got "
                          f"{media or 'no content type'}")
        if expected != MULTIPART:
            return self.limited(receive)
        body = await self.read_body(receive)
        if raw_image:
            body = as_upload(scope, body, media)
        await check_upload(scope.get("headers") or [], body)
        return self.replay(body)

    async def read_body(self, receive: Any) -> bytes:
        chunks, size = [], 0
        while True:
            event = await receive()
            if event["type"] == "http.disconnect":
                raise Refusal(HTTPStatus.BAD_REQUEST, "the client disconnected before sending the whole body")
            chunk = event.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise self.too_large()
            chunks.append(chunk)
            if not event.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    def replay(body: bytes) -> Callable[[], Awaitable[dict]]:
        sent = False

        async def receive() -> dict:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return receive

    def limited(self, receive: Any) -> Callable[[], Awaitable[dict]]:
        """Streamed bodies without a declared length: refused as soon as they cross the limit."""
        received = 0

        async def limited_receive() -> dict:
            nonlocal received
            event = await receive()
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > self.max_bytes:
                    raise RequestTooLarge(self.too_large().message)
            return event

        return limited_receive

    @staticmethod
    def normalising(send: Any, allowed: str | None) -> Callable[[dict], Awaitable[None]]:
        """Error answers of the APIs rewritten into ErrorResponse (successful answers pass untouched); a 405
        lists every method the path serves (BentoML's route and the GET /model route each know only theirs)."""

        async def finish(start: dict, whole: bytes) -> None:
            body = json.dumps(normalise_error(start["status"], whole)).encode()
            replaced = (b"content-length", b"content-type") + ((b"allow",) if start["status"] == 405 else ())
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in replaced]
            headers += json_headers(body)
            if start["status"] == 405 and allowed:
                headers.append((b"allow", allowed.encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        return rewriting_send(send, lambda status: status >= 400, finish)
