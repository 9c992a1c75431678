"""Promotion is the last step: the registry refuses traffic to a version whose Bento was not built and
application-tested (a passed release test, recorded per version with who, when and which Bento)."""

import pytest

from mlops_assets.ml.registry import ModelRegistry, NotReleasableError
from mlops_assets.tools.registry_cli import main as registry_cli
from testkit.release_tests import record_release_test_without_a_bento

SIGNATURE = {"class_names": ["cat", "dog"], "spec": {"height": 8, "width": 8, "channels": 1}}


def make_registry(tmp_path, require_approval: bool) -> ModelRegistry:
    registry = ModelRegistry(tmp_path / "bentoml", "clf", require_approval=require_approval)
    for i, version in enumerate(("v0", "v1", "v2")):
        onnx = tmp_path / f"{version}.onnx"
        onnx.write_bytes(f"model {i}".encode())
        registry.register(onnx, version, {"splits_version": "s"}, {"metrics": {}, **SIGNATURE})
    return registry


def test_promote_of_a_version_without_a_passed_release_test_is_refused(tmp_path, capsys):
    registry = make_registry(tmp_path, require_approval=False)
    with pytest.raises(NotReleasableError, match="no release test"):
        registry.promote("v0", reason="looks good", actor="ops")
    assert registry.production_version() is None
    assert registry_cli(["--home", str(registry.home), "--model", "clf", "promote", "v0"]) != 0
    assert "no release test" in capsys.readouterr().err
    released, reason = registry.release("v0", "gate: better", "dagster run r", False)  # the gate's yes
    assert not released and "no release test" in reason and registry.production_version() is None


def test_a_failed_release_test_blocks_promotion_and_says_why(tmp_path):
    registry = make_registry(tmp_path, require_approval=False)
    registry.record_release_test("v0", bento_tag="image_classifier_service:abc", passed=True,
                                 reason="served predictions equal the offline predictions", by="dagster run r1")
    registry.promote("v0", reason="first", actor="ops")
    registry.record_release_test("v1", bento_tag="image_classifier_service:def", passed=False,
                                 reason="p99 latency 12.0 ms over the budget of 0.0 ms", by="dagster run r2")
    with pytest.raises(NotReleasableError, match="p99 latency 12.0 ms over the budget") as refused:
        registry.promote("v1", reason="better", actor="ops")
    assert "image_classifier_service:def" in str(refused.value)
    assert registry.production_version() == "v0"
    test = registry.release_test("v0")
    assert test["passed"] and test["bento_tag"] == "image_classifier_service:abc" and test["by"] == "dagster run r1"
    assert test["at"]
    assert any(e["action"] == "release-test" and e["version"] == "v1" for e in registry.events())


def test_approve_of_a_version_without_a_passed_release_test_is_refused(tmp_path):
    registry = make_registry(tmp_path, require_approval=True)
    record_release_test_without_a_bento(registry, "v0")
    registry.request_approval("v0", reason="gate: first", actor="dagster run r")
    registry.approve("v0", by="dana", reason="checked")
    registry.request_approval("v1", reason="gate: better", actor="dagster run r")
    with pytest.raises(NotReleasableError, match="no release test"):
        registry.approve("v1", by="dana", reason="checked")
    assert registry.production_version() == "v0" and registry.approval_state("v1").startswith("awaiting")


def test_rollback_and_reinstate_return_to_versions_that_served_before(tmp_path):
    """A version that served before passed its release test then: rollback and reinstate need no new one."""
    registry = make_registry(tmp_path, require_approval=False)
    record_release_test_without_a_bento(registry, "v0", "v1")
    registry.promote("v0", actor="ops")
    registry.promote("v1", actor="ops")
    assert registry.rollback(reason="bad", actor="ops").version == "v0"
    assert registry.reinstate("v1", by="ops", reason="it was fine").stage == "production"
