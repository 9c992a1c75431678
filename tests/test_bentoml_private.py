"""BentoML's private APIs this project relies on still exist with the shape it relies on: an upgrade that
changes them fails here, not in production (see bentos/bentoml_private.py)."""

import inspect

from bentos import bentoml_private
from mlops_assets.core.registry import bentoml_store


def test_the_installed_bentoml_is_the_version_the_patches_were_written_for():
    assert bentoml_private.installed_version() == bentoml_private.WRITTEN_FOR


def test_the_model_store_opens_at_an_explicit_path_and_a_read_creates_nothing(tmp_path):
    bentoml_store.model_store(tmp_path / "models")
    assert not (tmp_path / "models").exists()
    store = bentoml_store.model_store(tmp_path / "models", create=True)
    assert (tmp_path / "models").is_dir() and list(store.list()) == []


def test_the_dispatcher_still_learns_a_wait_that_the_cap_bounds():
    from bentoml._internal.marshal import dispatcher

    source = inspect.getsource(dispatcher.Optimizer)
    assert "def trigger_refresh" in source and "self.wait" in source
    bentoml_private.cap_batching_wait(2)
    assert dispatcher.Optimizer.trigger_refresh._mlops_capped
    bentoml_private.cap_batching_wait(2)  # idempotent: not wrapped twice
    assert getattr(dispatcher.Optimizer.trigger_refresh, "__wrapped__", None) is None


def test_an_api_still_carries_an_output_spec_with_a_media_type():
    import bentoml

    @bentoml.service
    class Echo:
        @bentoml.api
        def echo(self, text: str) -> dict:
            return {"text": text}

    bentoml_private.declare_json_response(Echo, "echo")
    assert Echo.apis["echo"].output_spec.media_type == "application/json"


def run_timeout_middleware(app, timeout: float, requests: int = 1) -> tuple[list, list]:
    """``requests`` HTTP requests through BentoML's TimeoutMiddleware (as the server builds it, by name from its
    module) around ``app``; returns the messages sent and every timer the middleware scheduled."""
    import asyncio

    from bentoml._internal.server.http import traffic

    sent, timers = [], []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    async def main():
        loop = asyncio.get_running_loop()
        call_later = loop.call_later

        def recording_call_later(*args, **kwargs):
            timers.append(call_later(*args, **kwargs))
            return timers[-1]

        loop.call_later = recording_call_later
        middleware = traffic.TimeoutMiddleware(app, timeout=timeout)
        for _ in range(requests):
            await middleware({"type": "http", "path": "/classify"}, receive, send)

    asyncio.run(main())
    return sent, timers


async def answer_at_once(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def test_a_finished_request_leaves_no_timer_behind():
    """BentoML schedules a timer of ``traffic.timeout`` (60 s) per request and never cancels it: every finished
    request's future, context and tracing span stayed alive for a minute, and the worker's full garbage
    collections grew to 100-300 ms pauses (the c=1 tail, BENCHMARKS.md). Patched, each timer ends with its request."""
    bentoml_private.cancel_request_timers()
    sent, timers = run_timeout_middleware(answer_at_once, timeout=60, requests=50)
    assert [m["type"] for m in sent[:2]] == ["http.response.start", "http.response.body"] and len(sent) == 100
    assert len(timers) == 50 and all(timer.cancelled() for timer in timers)


def test_a_request_over_the_timeout_still_gets_504():
    import asyncio

    async def slow(scope, receive, send):
        await asyncio.sleep(5)

    bentoml_private.cancel_request_timers()
    sent, _ = run_timeout_middleware(slow, timeout=0.05)
    assert sent[0]["status"] == 504 and b"0.05 seconds" in sent[1]["body"]


def test_the_timeout_middleware_is_the_one_the_patch_replaces():
    """The patch re-implements BentoML's TimeoutMiddleware.__call__ with one added line: an upgrade that changes
    the original must be looked at (and the patch dropped if upstream cancels its timer)."""

    bentoml_private.cancel_request_timers()
    original = inspect.getsource(bentoml_private.ORIGINAL_TIMEOUT_MIDDLEWARE_CALL)
    assert bentoml_private.source_digest(original) == bentoml_private.TIMEOUT_MIDDLEWARE_DIGEST
    assert "loop.call_later(self.timeout, self._set_timer_out, waiter)" in original
    from bentoml._internal.server import base_app

    # replaced by name in its module: the server must look it up there when it builds the app
    assert "from .http.traffic import TimeoutMiddleware" in inspect.getsource(base_app.BaseAppFactory.middlewares.fget)
