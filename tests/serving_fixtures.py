"""Fixtures for the serving tests: a registry with two real (small, quickly trained) ONNX versions,
a test split on disk, and the service running as a real ``bentoml serve`` subprocess, with access control on
(a token made for the session, given through the environment): every test of a protected endpoint sends it."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from mlops_assets.core.data.images import load_digits_dataset, to_training_scale
from mlops_assets.core.registry.registry import ModelRegistry
from testkit.fixtures import write_split_arrays
from testkit.release_tests import record_release_test_without_a_bento

MODEL_NAME = "image_classifier"
N_TEST = 200
API_TOKEN = secrets.token_urlsafe(24)  # the dev server's MLOPS_API_TOKEN
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def client(url: str, timeout: float = 30) -> httpx.Client:
    """An HTTP client that sends the dev server's token."""
    return httpx.Client(base_url=url, timeout=timeout, headers=AUTH)


@dataclass
class ServingWorld:
    home: Path
    registry: ModelRegistry
    splits_dir: Path
    x_test: np.ndarray  # float32, training scale
    y_test: np.ndarray
    pixels_test: np.ndarray  # uint8 as decoded
    versions: dict[str, Path]  # version -> onnx file
    class_names: list[str]


def _train_linear_onnx(x: np.ndarray, y: np.ndarray, path: Path, seed: int, steps: int) -> None:
    """A softmax regression on the 8×8 digits: seconds to train, ~0.95 accuracy, real ONNX."""
    import torch

    from mlops_assets.core.model.onnx_model import export_onnx

    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(np.prod(x.shape[1:])), 10))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    inputs, targets = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(steps):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs), targets).backward()
        optimiser.step()
    export_onnx(model, x[:1], path)


def explanation_verdict(world: ServingWorld, onnx_file: Path) -> dict:
    """The explanation check of a version on the test images, as registration stores it (the service explains only
    a version whose check passed)."""
    from mlops_assets.core.model import explain

    check, _ = explain.check_explanations(onnx_file.read_bytes(), world.x_test[:100])
    return explain.stored_verdict(check.as_dict())


def register(world: ServingWorld, version: str, onnx_file: Path, explanations: dict | None = None) -> None:
    """Register ``version`` as registration does, with ``explanations`` (the stored check's verdict) when given."""
    world.registry.register(
        onnx_file, version,
        labels={"splits_version": "splits-test", "dataset_version": f"dataset-{version}"},
        metadata={"class_names": world.class_names, "spec": {"height": 8, "width": 8, "channels": 1},
                  "metrics": {}, "onnx_version": version,
                  **({"explanations": explanations} if explanations is not None else {})},
    )
    record_release_test_without_a_bento(world.registry, version)


@pytest.fixture(scope="session")
def serving_world(tmp_path_factory: pytest.TempPathFactory) -> ServingWorld:
    root = tmp_path_factory.mktemp("serving")
    dataset = load_digits_dataset()
    train_pixels, train_labels = dataset.images[:-N_TEST], dataset.labels[:-N_TEST]
    test_pixels, test_labels = dataset.images[-N_TEST:], dataset.labels[-N_TEST:]
    splits_dir = write_split_arrays(root / "splits", {"test": (test_pixels, test_labels)},
                                    {"class_names": dataset.class_names})
    world = ServingWorld(
        home=root / "bentoml", registry=ModelRegistry(root / "bentoml", MODEL_NAME), splits_dir=splits_dir,
        x_test=to_training_scale(test_pixels), y_test=test_labels, pixels_test=test_pixels, versions={},
        class_names=dataset.class_names,
    )
    for version, seed, steps in (("v1", 0, 150), ("v2", 1, 40)):
        onnx_file = root / f"{version}.onnx"
        _train_linear_onnx(to_training_scale(train_pixels), train_labels, onnx_file, seed, steps)
        register(world, version, onnx_file, explanation_verdict(world, onnx_file))
        world.versions[version] = onnx_file
    make_production(world, "v1", "test setup")
    return world


def make_production(world: ServingWorld, version: str, reason: str) -> None:
    """Put ``version`` in production for a test, whatever earlier tests did to it: the registry never re-promotes a
    rolled-back (withdrawn) version, so one is reinstated, as an operator would, explicitly and recorded."""
    if world.registry.get(version).stage == "withdrawn":
        world.registry.reinstate(version, by="test", reason=reason)
    else:
        world.registry.promote(version, reason=reason)


def wait_for_version(client, version: str, timeout_s: float = 30.0) -> dict:
    """Poll GET /model until the server answers with ``version`` (a deadline, no fixed sleeps)."""
    deadline = time.monotonic() + timeout_s
    info: dict = {}
    while time.monotonic() < deadline:
        info = client.get("/model").json()
        if info["version"] == version:
            return info
        time.sleep(0.1)
    raise AssertionError(f"server still serves {info.get('version')} (wanted {version}): {info}")


def dev_server_log(world: ServingWorld) -> Path:
    return world.home.parent / "dev_server.log"


@pytest.fixture(scope="module")
def dev_server(serving_world: ServingWorld, tmp_path_factory: pytest.TempPathFactory):
    """``bentoml serve bentos.service:ClassifierService`` following the production pointer."""
    from mlops_assets.infra.bento_server import SERVICE_TARGET, serve_bento

    log = dev_server_log(serving_world)
    # one worker: the tests read its counters (/model's are per worker); test_serving has a 2-worker test
    env = {"MLOPS_MODEL_NAME": MODEL_NAME, "MLOPS_POLL_SECONDS": "0.2", "MLOPS_FOLLOW_PRODUCTION": "1",
           "MLOPS_SERVICE_WORKERS": "1", "MLOPS_MAX_BATCH": "64", "MLOPS_MAX_BODY_BYTES": str(2 * 1024 * 1024),
           "MLOPS_ARTIFACT_ROOT": str(serving_world.home.parent / "artifacts"), "MLOPS_API_TOKEN": API_TOKEN}
    make_production(serving_world, "v1", "dev server start")
    with serve_bento(SERVICE_TARGET, serving_world.home, log, env=env) as url:
        yield url


def png_bytes(pixels: np.ndarray) -> bytes:
    """A PNG of one decoded (1, H, W) uint8 image, as a client uploads it."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels[0]).save(buffer, format="PNG")
    return buffer.getvalue()
