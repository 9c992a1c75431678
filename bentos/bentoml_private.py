"""Every BentoML private API the service's server needs, beside the service, checked against the version it was written
for (the registry's one use, the model store at an explicit path, is in
``mlops_assets/core/registry/bentoml_store.py``).

BentoML 1.4 offers no public way to do these things the server needs:

- cap how long the adaptive-batching dispatcher holds a lone request (it learns its wait from the last
  batches and decays it slowly; after a burst single requests were measured at ~14 req/s for minutes):
  ``bentoml._internal.marshal.dispatcher.Optimizer.trigger_refresh``;
- declare an API's response media type (BentoML otherwise rebuilds the output model's JSON schema on
  every response to find it, ~20% of the worker's CPU at concurrency 64): ``service.apis[name].output_spec``;
- log a client's error as one WARNING line instead of an ERROR traceback (BentoML logs every 400 with its
  traceback): ``_bentoml_impl.server.app.log_exception``;
- end each request's timeout timer with the request: BentoML's ``TimeoutMiddleware`` schedules one per request
  and never cancels it, which kept every finished request's future, context and tracing span alive for the
  whole ``traffic.timeout`` (60 s): the heap grew with the request rate, and the worker's full garbage
  collections stalled it for 100-300 ms every few seconds, the c=1 latency tail (BENCHMARKS.md, serving):
  ``bentoml._internal.server.http.traffic.TimeoutMiddleware``.

``tests/test_bentoml_private.py`` fails when an upgrade removes or changes any of them; at run time a
different version only logs a warning, since the patches degrade to BentoML's own behaviour.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
from typing import Any

from mlops_assets.core.registry.bentoml_store import WRITTEN_FOR, installed_version

logger = logging.getLogger(__name__)


def source_digest(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def warn_if_untested_version() -> None:
    if installed_version() != WRITTEN_FOR:
        logger.warning("BentoML %s is installed; %s relies on private APIs of %s", installed_version(),
                       __name__, WRITTEN_FOR)


def patch_server(max_batch_wait_ms: float) -> None:
    """Every server-side patch, as a service module applies them at import (idempotent)."""
    warn_if_untested_version()
    cap_batching_wait(max_batch_wait_ms)
    quiet_client_errors()
    cancel_request_timers()


def cap_batching_wait(max_wait_ms: float) -> None:
    """Cap the dispatcher's learned wait for a batch to form at ``max_wait_ms`` (idempotent)."""
    from bentoml._internal.marshal import dispatcher

    if getattr(dispatcher.Optimizer.trigger_refresh, "_mlops_capped", False):
        return
    refresh = dispatcher.Optimizer.trigger_refresh

    def capped_refresh(self) -> None:
        refresh(self)
        self.wait = min(self.wait, max_wait_ms / 1000)

    capped_refresh._mlops_capped = True
    dispatcher.Optimizer.trigger_refresh = capped_refresh


def declare_json_response(service: Any, api_name: str) -> None:
    """Tell BentoML the API answers JSON, so it does not derive the media type per response."""
    service.apis[api_name].output_spec.media_type = "application/json"


def quiet_client_errors() -> None:
    """Client errors (validation, 4xx) log one WARNING line; server faults keep BentoML's ERROR traceback."""
    import sys

    from _bentoml_impl.server import app
    from bentoml.exceptions import BentoMLException
    from pydantic import ValidationError

    if getattr(app.log_exception, "_mlops_quiet", False):
        return
    original = app.log_exception

    def log_exception(request: Any, exc_info: Any = True) -> None:
        error = sys.exc_info()[1]
        client_error = isinstance(error, ValidationError) or (
            isinstance(error, BentoMLException) and int(error.error_code) < 500
        )
        if not client_error:
            original(request, exc_info)
            return
        if isinstance(error, ValidationError) and error.errors():
            first = error.errors()[0]
            message = f"{'.'.join(map(str, first.get('loc', ()))) or 'body'}: {first.get('msg')}"
        else:
            message = str(error) or type(error).__name__
        logger.warning("client error on %s [%s]: %s", request.url.path, request.method,
                       " ".join(message.split())[:300])

    log_exception._mlops_quiet = True
    app.log_exception = log_exception


# BentoML 1.4.39's TimeoutMiddleware.__call__, which cancel_request_timers re-implements with one line added.
TIMEOUT_MIDDLEWARE_DIGEST = "fd8b9e3da28ed2b4"
ORIGINAL_TIMEOUT_MIDDLEWARE_CALL = None


def cancel_request_timers() -> None:
    """Make BentoML's TimeoutMiddleware cancel a request's timer when the request ends (idempotent); its
    behaviour is otherwise BentoML's: a 504 when no response has started within the timeout."""
    global ORIGINAL_TIMEOUT_MIDDLEWARE_CALL
    from bentoml._internal.server.http import traffic
    from starlette.responses import JSONResponse

    middleware = traffic.TimeoutMiddleware
    if getattr(middleware.__call__, "_mlops_cancels_timer", False):
        return
    ORIGINAL_TIMEOUT_MIDDLEWARE_CALL = middleware.__call__
    if source_digest(inspect.getsource(middleware.__call__)) != TIMEOUT_MIDDLEWARE_DIGEST:
        logger.warning("BentoML's TimeoutMiddleware is not the one %s patches: left as it is", __name__)
        return

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

        async def _send(message) -> None:
            if not waiter.done():
                waiter.set_result(None)
            await send(message)

        fut = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)
        try:
            await waiter
        except TimeoutError:
            if fut.cancel():
                response = JSONResponse({"error": f"Not able to process the request in {self.timeout} seconds"},
                                        status_code=504)
                await response(scope, receive, send)
        else:
            await fut
        finally:
            timer.cancel()  # the one line BentoML lacks

    __call__._mlops_cancels_timer = True
    middleware.__call__ = __call__
