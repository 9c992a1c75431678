"""The promotion rule and the registry: register, promote, refuse, roll back, and the CLI."""

import json
import threading

import pytest

from mlops_assets.ml.promotion import decide_promotion
from mlops_assets.ml.registry import ModelRegistry, RegistryError
from mlops_assets.registry_cli import main as registry_cli


def test_promote_when_nothing_in_production():
    decision = decide_promotion({"accuracy": 0.95}, None, floor=0.9)
    assert decision.promote and "no production model" in decision.reason


def test_refuse_below_floor_even_without_production():
    decision = decide_promotion({"accuracy": 0.85}, None, floor=0.9)
    assert not decision.promote and "below the floor" in decision.reason


def test_refuse_regression_beyond_margin():
    decision = decide_promotion({"accuracy": 0.95}, {"accuracy": 0.97}, floor=0.9, max_regression=0.01)
    assert not decision.promote and "below production" in decision.reason


def test_accept_small_regression_within_margin():
    assert decide_promotion({"accuracy": 0.965}, {"accuracy": 0.97}, floor=0.9, max_regression=0.01).promote


def test_unknown_metric_is_an_error():
    with pytest.raises(KeyError, match="macro_f1"):
        decide_promotion({"accuracy": 0.9}, None, metric="macro_f1")


@pytest.fixture
def registry(tmp_path):
    registry = ModelRegistry(tmp_path / "bentoml", "clf")
    for i, accuracy in enumerate([0.91, 0.93, 0.95]):
        onnx = tmp_path / f"m{i}.onnx"
        onnx.write_bytes(f"model {i}".encode())
        registry.register(onnx, f"v{i}", {"splits_version": "s"}, {"metrics": {"accuracy": accuracy}})
    return registry


def test_register_is_idempotent_and_keeps_lineage(registry, tmp_path):
    again = registry.register(tmp_path / "m0.onnx", "v0", {"splits_version": "other"}, {})
    assert again.labels == {"splits_version": "s"}  # an existing version is never rewritten
    assert again.onnx_path.read_bytes() == b"model 0"
    assert {v.version for v in registry.list_versions()} == {"v0", "v1", "v2"}


def test_promote_and_rollback(registry):
    assert registry.production() is None
    registry.promote("v0")
    registry.promote("v2")
    assert registry.production().version == "v2"
    stages = {v.version: v.stage for v in registry.list_versions()}
    assert stages == {"v2": "production", "v0": "previous-production", "v1": "candidate"}
    assert registry.rollback().version == "v0"
    assert registry.production().version == "v0"
    with pytest.raises(RegistryError, match="no previous production"):
        registry.rollback()
    assert [e["action"] for e in registry.events()] == ["promote", "promote", "rollback"]


def test_promoting_an_unknown_version_is_refused(registry):
    with pytest.raises(RegistryError, match="no version 'nope'"):
        registry.promote("nope")
    assert registry.production() is None


def test_pointer_is_always_readable_while_switching(registry):
    """Readers racing promotions see the old or the new pointer, never a torn file."""
    registry.promote("v0")
    stop = threading.Event()
    errors: list[Exception] = []

    def read():
        while not stop.is_set():
            try:
                json.loads(registry.pointer_path.read_text())
            except Exception as exc:  # noqa: BLE001 - any failure is the bug under test
                errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    for _ in range(30):
        registry.promote("v1")
        registry.promote("v2")
        registry.rollback()
    stop.set()
    reader.join()
    assert errors == []


def test_cli_list_promote_rollback(registry, capsys):
    home = ["--home", str(registry.home), "--model", "clf"]
    assert registry_cli([*home, "promote", "v1"]) == 0
    assert registry_cli([*home, "promote", "v2"]) == 0
    assert registry_cli([*home, "rollback"]) == 0
    assert registry_cli([*home, "production"]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == "clf:v1"
    assert registry_cli([*home, "list"]) == 0
    listing = capsys.readouterr().out
    assert "v1  production" in listing and "accuracy=0.9300" in listing
    assert registry_cli([*home, "promote", "missing"]) == 2
    assert "no version 'missing'" in capsys.readouterr().err
