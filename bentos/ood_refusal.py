"""MLOPS_OOD_REFUSE=1: a 422 that says why instead of a prediction for an out-of-distribution input.

An ASGI middleware, not a check inside the API: ``/classify`` is batched, and a request whose images are flagged
must not fail the requests batched with it. The model answers every request as usual (and the inference log keeps
the flagged rows, so the flagged share is still counted); this middleware reads the successful answers of
``/classify``, ``/classify_image`` and the explain endpoints and replaces one that holds a flagged prediction by an
ErrorResponse 422 naming the first flagged image and the reason. Off (the default), it is not installed and costs
nothing.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from bentos.request_guard import error_body, json_headers, rewriting_send

REFUSING_PATHS = frozenset({"/classify", "/classify_image", "/explain", "/explain_image"})


def refusal(answer: Any) -> dict[str, Any] | None:
    """The ErrorResponse for an answer (a prediction or a list of them) with a flagged prediction, else None."""
    predictions = answer if isinstance(answer, list) else [answer]
    flagged = [i for i, p in enumerate(predictions) if isinstance(p, dict) and p.get("ood_flag") is True]
    if not flagged:
        return None
    first = predictions[flagged[0]]
    where = "image" if not isinstance(answer, list) else f"images[{flagged[0]}]"
    count = "" if len(flagged) == 1 else f" ({len(flagged)} of {len(predictions)} images are)"
    return error_body(
        f"{where} refused{count}: {first.get('ood_reason')}; this server refuses such inputs (MLOPS_OOD_REFUSE=1)",
        where,
    )


class OodRefusal:
    """See the module docstring."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") not in REFUSING_PATHS:
            await self.app(scope, receive, send)
            return

        async def finish(start: dict, body: bytes) -> None:
            try:
                refused = refusal(json.loads(body))
            except ValueError:
                refused = None
            if refused is None:
                await send(start)
                await send({"type": "http.response.body", "body": body})
                return
            body = json.dumps(refused).encode()
            headers = [
                (k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-length", b"content-type")
            ]
            await send({**start, "status": HTTPStatus.UNPROCESSABLE_ENTITY, "headers": headers + json_headers(body)})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, rewriting_send(send, lambda status: status == HTTPStatus.OK, finish))
