"""Promotion is the last step: the registry refuses traffic to a version whose Bento was not built and
application-tested (a passed release test, recorded per version with who, when and which Bento)."""

import time

import pytest

from mlops_assets.core.registry.registry import ModelRegistry, NotReleasableError, RegistryError
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
    registry.record_release_test(
        "v0",
        bento_tag="image_classifier_service:abc",
        passed=True,
        reason="served predictions equal the offline predictions",
        by="dagster run r1",
    )
    registry.promote("v0", reason="first", actor="ops")
    registry.record_release_test(
        "v1",
        bento_tag="image_classifier_service:def",
        passed=False,
        reason="p99 latency 12.0 ms over the budget of 0.0 ms",
        by="dagster run r2",
    )
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


def test_rollback_never_returns_to_a_version_whose_latest_release_test_failed(tmp_path):
    registry = make_registry(tmp_path, require_approval=False)
    record_release_test_without_a_bento(registry, "v0", "v1")
    registry.promote("v0", actor="ops")
    registry.promote("v1", actor="ops")
    registry.record_release_test(
        "v0",
        bento_tag="image_classifier_service:old",
        passed=False,
        reason="12 of 200 predictions differ from the offline ONNX model",
        by="dagster run r3",
    )
    with pytest.raises(RegistryError, match="no previous production version"):
        registry.rollback(reason="bad", actor="ops")
    assert registry.production_version() == "v1"


# -- the real release: build, application test, promotion, with a running service following production ---------
FAST = {"trained_model": {"config": {"learning_rates": [3e-3], "hidden": [16], "epochs": [15]}}}
LENIENT_GATE = {"registered_model": {"config": {"floor": 0.0, "min_gain_over_baseline": 0.0, "max_regression": 1.0}}}


def build_and_release(root, ops: dict):
    """build_job's steps (the build and deploy groups) on the digits, exactly as the code location defines them."""
    import dagster as dg

    from mlops_assets.definitions import ASSET_CHECKS, ASSETS
    from testkit.fixtures import make_resources

    return dg.materialize(
        [*ASSETS, *ASSET_CHECKS],
        selection=dg.AssetSelection.groups("build", "deploy"),
        resources=make_resources(root),
        instance=dg.DagsterInstance.ephemeral(),
        run_config={"ops": ops},
        raise_on_error=False,
    )


def materialised(result, key: str) -> dict | None:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == key]
    return {k: v.value for k, v in events[-1].materialization.metadata.items()} if events else None


@pytest.mark.slow
def test_a_failed_release_test_leaves_production_and_the_running_service_untouched(tmp_path):
    """A version the gate passes whose release test fails (its Bento misses the latency budget of 0 ms) never
    reaches production: the registry records why, and the running service never answers with it (/model polled
    throughout the run)."""
    import threading

    import httpx

    from mlops_assets.infra.bento_server import SERVICE_TARGET, serve_bento

    first = build_and_release(tmp_path, FAST)
    assert first.success
    registry = ModelRegistry(tmp_path / "bentoml", "image_classifier")
    released = materialised(first, "production_release")
    production = registry.production_version()
    assert released["promoted"] and released["version"] == production
    assert registry.release_test(production)["passed"]
    # the release test ran before the promotion: the registry's events say so, in that order
    actions = [(e["action"], e.get("version", e["to"])) for e in registry.events()]
    assert actions.index(("release-test", production)) < actions.index(("promote", production))

    env = {
        "MLOPS_MODEL_NAME": "image_classifier",
        "MLOPS_POLL_SECONDS": "0.2",
        "MLOPS_FOLLOW_PRODUCTION": "1",
        "MLOPS_SERVICE_WORKERS": "1",
        "MLOPS_ARTIFACT_ROOT": str(tmp_path / "service-artifacts"),
    }
    seen: list[str] = []
    stop = threading.Event()
    with (
        serve_bento(SERVICE_TARGET, tmp_path / "bentoml", tmp_path / "service.log", env=env) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):

        def poll() -> None:
            while not stop.is_set():
                seen.append(client.get("/model").json()["version"])
                time.sleep(0.1)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        try:
            failing = build_and_release(
                tmp_path,
                {
                    "trained_model": {"config": {"learning_rates": [3e-3], "hidden": [12], "epochs": [15]}},
                    **LENIENT_GATE,
                    "bento_bento_application_test": {"config": {"max_p99_latency_ms": 0.0}},
                },
            )
            time.sleep(2.0)  # past the service's poll interval: a switch would have been seen by now
        finally:
            stop.set()
            poller.join(timeout=10)
    candidate = materialised(failing, "registered_model")
    version = candidate["tag"].split(":")[1]
    assert version != production and candidate["release_pending"], candidate["gate_reason"]
    assert not failing.success
    check = next(e for e in failing.get_asset_check_evaluations() if e.check_name == "bento_application_test")
    assert not check.passed and "over the budget of 0.0 ms" in check.metadata["reason"].value
    assert materialised(failing, "production_release") is None  # the promotion step never ran
    assert registry.production_version() == production
    test = registry.release_test(version)
    assert (
        not test["passed"]
        and "over the budget" in test["reason"]
        and test["bento_tag"].startswith("image_classifier_service:")
    )
    assert len(seen) > 20 and set(seen) == {production}, set(seen)
    with pytest.raises(NotReleasableError, match="its release test failed"):
        registry.promote(version, reason="by hand", actor="ops")
