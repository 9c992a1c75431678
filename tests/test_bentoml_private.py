"""BentoML's private APIs this project relies on still exist with the shape it relies on: an upgrade that
changes them fails here, not in production (see mlops_assets/ml/bentoml_private.py)."""

import inspect

from mlops_assets.ml import bentoml_private


def test_the_installed_bentoml_is_the_version_the_patches_were_written_for():
    assert bentoml_private.installed_version() == bentoml_private.WRITTEN_FOR


def test_the_model_store_opens_at_an_explicit_path_and_a_read_creates_nothing(tmp_path):
    bentoml_private.model_store(tmp_path / "models")
    assert not (tmp_path / "models").exists()
    store = bentoml_private.model_store(tmp_path / "models", create=True)
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
