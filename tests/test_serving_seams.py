"""The serving seams (issue 28): a config built once from the settings and the registry, a watcher that follows a
named registry slot, and a service that starts with no production model and serves the first one promoted."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bentos.model_watcher import SlotWatcher
from bentos.served_model import LoadedModel
from bentos.serving_config import ServingConfig, ServingConfigError
from mlops_assets.core.common.storage import atomic_write_json
from mlops_assets.core.model.onnx_model import predict_labels
from mlops_assets.core.model.signature import ModelSignature
from mlops_assets.core.registry.model_versions import SLOTS_KEY
from mlops_assets.core.registry.registry import ModelRegistry
from testkit.release_tests import record_release_test_without_a_bento
from tests import serving_fixtures
from tests.serving_fixtures import MODEL_NAME

serving_world = serving_fixtures.serving_world
DIGITS_SIGNATURE = ModelSignature(tuple(str(d) for d in range(10)), 1, 8, 8)


class Served:
    """What a watcher swaps models into (the service's two attributes it touches, nothing else)."""

    def __init__(self) -> None:
        self.active: LoadedModel | None = None
        self.swaps = 0


def register(registry: ModelRegistry, world, version: str, onnx_file: Path, height: int = 8) -> None:
    registry.register(
        onnx_file, version, labels={"splits_version": "splits-test", "dataset_version": f"dataset-{version}"},
        metadata={"class_names": world.class_names, "spec": {"height": height, "width": height, "channels": 1},
                  "metrics": {}, "onnx_version": version},
    )
    record_release_test_without_a_bento(registry, version)  # the registry serves only a release-tested version


def test_the_watcher_follows_the_slot_it_is_named(serving_world, tmp_path):
    registry = ModelRegistry(tmp_path / "bentoml", MODEL_NAME)
    for version in ("v1", "v2"):
        register(registry, serving_world, version, serving_world.versions[version])
    registry.promote("v1", reason="test")
    # A second slot as the pointer record holds it (the shadow work writes it; here the test does).
    atomic_write_json(registry.pointer_path, {**registry.read_pointer(), SLOTS_KEY: {"shadow": "v2"}})

    production, shadow = Served(), Served()
    SlotWatcher(production, registry, 60.0, DIGITS_SIGNATURE).check()
    shadow_watcher = SlotWatcher(shadow, registry, 60.0, DIGITS_SIGNATURE, slot="shadow")
    shadow_watcher.check()

    assert (production.active.version, production.active.source) == ("v1", "production")
    assert (shadow.active.version, shadow.active.source) == ("v2", "shadow")
    assert shadow_watcher.slot_version == "v2" and shadow_watcher.error is None

    empty = Served()
    SlotWatcher(empty, registry, 60.0, DIGITS_SIGNATURE, slot="canary").check()
    assert empty.active is None  # a slot nothing was put in serves nothing


def test_with_no_model_the_first_version_of_the_served_signature_is_adopted(serving_world, tmp_path):
    registry = ModelRegistry(tmp_path / "bentoml", MODEL_NAME)
    service = Served()
    watcher = SlotWatcher(service, registry, 60.0, DIGITS_SIGNATURE)
    watcher.check()  # an empty home: no pointer record yet
    assert service.active is None and watcher.error is None

    register(registry, serving_world, "big", serving_world.versions["v1"], height=16)
    registry.promote("big", reason="another geometry first")
    watcher.check()
    assert service.active is None
    assert "input 1×16×16 instead of 1×8×8" in watcher.error and "restart the service" in watcher.error

    register(registry, serving_world, "v1", serving_world.versions["v1"])
    registry.promote("v1", reason="the served geometry", allow_incompatible=True)
    watcher.check()
    assert service.active.version == "v1" and service.swaps == 1 and watcher.error is None
    images = serving_world.x_test[:16]
    assert (service.active.probabilities(images).argmax(1) == predict_labels(serving_world.versions["v1"],
                                                                             images)).all()


def test_the_config_takes_the_dataset_settings_when_no_model_is_served(tmp_path, monkeypatch):
    folder = tmp_path / "images"
    for name in ("dogs", "cats", ".hidden"):
        (folder / name).mkdir(parents=True)
    for name, value in {"BENTOML_HOME": str(tmp_path / "empty"), "MLOPS_DATASET_KIND": "image_folder",
                        "MLOPS_IMAGE_FOLDER": str(folder), "MLOPS_IMAGE_HEIGHT": "12", "MLOPS_IMAGE_WIDTH": "10",
                        "MLOPS_IMAGE_CHANNELS": "3", "MLOPS_FOLLOW_PRODUCTION": "0"}.items():
        monkeypatch.setenv(name, value)
    config = ServingConfig.from_settings()
    assert config.pinned_tag is None and config.bento_model() is None
    assert config.signature == ModelSignature(("cats", "dogs"), 3, 12, 10)
    message = config.no_model_message()
    assert message.startswith("no production model yet: ") and "3×12×10" in message and "cats, dogs" in message
    assert "MLOPS_FOLLOW_PRODUCTION=0" in message  # nothing will be adopted: the message says so

    monkeypatch.setenv("MLOPS_IMAGE_FOLDER", "")
    with pytest.raises(ServingConfigError, match="MLOPS_IMAGE_FOLDER"):
        ServingConfig.from_settings()


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels[0]).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.slow
def test_a_service_started_on_an_empty_store_answers_503_then_serves_the_first_promoted_version(
        serving_world, tmp_path):
    """A fresh home (no model yet): the service starts, says why it cannot answer, and serves the first version
    promoted into the store it follows, in the same process."""
    from mlops_assets.infra.bento_server import SERVICE_TARGET, serve_bento_process

    home = tmp_path / "bentoml"
    env = {"MLOPS_MODEL_NAME": MODEL_NAME, "MLOPS_POLL_SECONDS": "0.2", "MLOPS_FOLLOW_PRODUCTION": "1",
           "MLOPS_SERVICE_WORKERS": "1", "MLOPS_DATASET_KIND": "digits", "MLOPS_IMAGE_FOLDER": "",
           "MLOPS_ARTIFACT_ROOT": str(tmp_path / "artifacts"), "MLOPS_API_TOKEN": serving_fixtures.API_TOKEN}
    images = serving_world.x_test[:4]
    log = tmp_path / "server.log"
    with serve_bento_process(SERVICE_TARGET, home, log, env=env, ready_path="/livez") as (url, process), \
            serving_fixtures.client(url) as client:
        assert client.get("/livez").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.text.startswith("no production model yet: ")
        assert "1×8×8" in ready.text and "mlops-registry promote" in ready.text
        for answer in (client.post("/classify", json={"images": images.tolist()}),
                       client.post("/classify_image", content=png_bytes(serving_world.pixels_test[0]),
                                   headers={"Content-Type": "image/png"}),
                       client.get("/model")):
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"].startswith("no production model yet: ")
        document = json.dumps(client.get("/docs.json").json(), ensure_ascii=False)
        assert "N×1×8×8" in document  # the API takes the dataset's geometry

        registry = ModelRegistry(home, MODEL_NAME)
        register(registry, serving_world, "v1", serving_world.versions["v1"])
        registry.promote("v1", reason="the first model")
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)

        answer = client.post("/classify", json={"images": images.tolist()})
        assert answer.status_code == 200, answer.text
        assert [p["model_version"] for p in answer.json()] == ["v1"] * len(images)
        assert [p["label"] for p in answer.json()] == predict_labels(serving_world.versions["v1"], images).tolist()
        info = client.get("/model").json()
        assert (info["version"], info["source"], info["swaps"]) == ("v1", "production", 1)
        assert process.poll() is None  # the process started with no model is the one answering
    assert "now serving image_classifier:v1 from the production slot (was no model)" in log.read_text()
