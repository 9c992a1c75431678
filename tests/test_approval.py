"""Approval before release on the real build graph: with MLOPS_REQUIRE_APPROVAL the gate's yes waits for a
reviewer; review_model_job approves (→ production, with the audit record and the new reference profile) or
rejects; nothing else promotes an unapproved version."""

import dagster as dg
import pytest

from mlops_assets.automation import compare_model_job, review_model_job, rollback_job
from mlops_assets.core.registry.registry import ModelRegistry
from mlops_assets.definitions import ASSET_CHECKS, ASSETS, defs
from resources.model_registry import ModelRegistryResource
from testkit.fixtures import make_resources
from testkit.release_tests import record_release_test_without_a_bento

pytestmark = pytest.mark.slow

FAST = {"ops": {"trained_model": {"config": {"learning_rates": [3e-3], "hidden": [16], "epochs": [15]}}}}


def strict_resources(root):
    resources = make_resources(root)
    resources["model_registry"] = ModelRegistryResource(home=str(root / "bentoml"), require_approval=True)
    return resources


def build(root):
    """build_job's build and deploy groups: the candidate's Bento is built and application-tested before a reviewer
    can approve it (the registry refuses an approval of an untested version)."""
    return dg.materialize([*ASSETS, *ASSET_CHECKS], selection=dg.AssetSelection.groups("build", "deploy"),
                          resources=strict_resources(root), instance=dg.DagsterInstance.ephemeral(),
                          run_config=FAST, raise_on_error=False)


def review(root, version: str, decision: str, reviewer: str = "dana (QA)", reason: str = "checked the report"):
    return review_model_job.execute_in_process(
        resources=strict_resources(root), instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
        run_config={"ops": {"review_candidate": {"config": {
            "version": version, "decision": decision, "reviewer": reviewer, "reason": reason}}}},
    )


def registered(result) -> dict:
    event = next(e for e in result.get_asset_materialization_events()
                 if e.asset_key.to_user_string() == "registered_model")
    return {k: v.value for k, v in event.materialization.metadata.items()}


@pytest.fixture(scope="module")
def awaiting(tmp_path_factory):
    root = tmp_path_factory.mktemp("approval")
    result = build(root)
    assert result.success
    return root, result


def test_a_candidate_that_clears_the_gate_waits_for_a_reviewer_and_the_ui_says_so(awaiting):
    root, result = awaiting
    meta = registered(result)
    version = meta["tag"].split(":")[1]
    registry = ModelRegistry(root / "bentoml", "image_classifier")
    assert registry.production() is None
    assert meta["promoted"] is False and meta["awaiting_approval"] is True
    assert meta["gate_reason"].startswith("awaiting approval (the registry's policy requires it): ")
    assert meta["approval_policy"].startswith("approval before release required")
    assert meta["awaiting_approval_count"] == 1 and version in meta["awaiting_approval_versions"]
    gate = next(e for e in result.get_asset_check_evaluations() if e.check_name == "promoted_to_production")
    assert gate.passed and gate.metadata["outcome"].value == "awaiting approval"  # an outcome, not a failure
    assert "awaiting approval" in gate.metadata["reason"].value
    assert registry.get(version).stage == "awaiting-approval"
    # a second build, its run config turning approval off: the stored policy applies, the run says so, and the
    # gate's second yes on the same version is the same request, not a second one
    lenient = defs.get_job_def("build_job").execute_in_process(
        resources=strict_resources(root), instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
        run_config={**FAST, "resources": {"model_registry": {"config": {
            "home": str(root / "bentoml"), "require_approval": False}}}})
    again = registered(lenient)
    assert again["promoted"] is False and again["awaiting_approval"] is True and again["awaiting_approval_count"] == 1
    assert "this run (the model_registry resource's require_approval) sets require_approval off" in \
        again["approval_policy_conflict"]
    assert registry.production() is None
    assert [e["action"] for e in registry.events() if e["action"] != "release-test"] == ["policy", "request-approval"]
    assert registry.release_test(version)["passed"]  # tested before a reviewer sees it
    # no job promotes it: rollback has nothing to return to, a plain promotion is refused
    rollback = rollback_job.execute_in_process(resources=strict_resources(root), raise_on_error=False,
                                               instance=dg.DagsterInstance.ephemeral())
    assert rollback.success and registry.production() is None  # a refusal in one line, not a failed run
    with pytest.raises(Exception, match="approval before release is required"):
        ModelRegistry(root / "bentoml", "image_classifier", require_approval=True).promote(version)


def test_the_review_job_approves_with_an_audit_record_and_a_reference_profile(awaiting):
    root, result = awaiting
    version = registered(result)["tag"].split(":")[1]
    approved = review(root, version, "approve", reason="confusion matrix and per-class recall checked")
    assert approved.success
    registry = ModelRegistry(root / "bentoml", "image_classifier")
    assert registry.production().version == version
    event = registry.events()[-1]
    assert event["action"] == "approve" and event["to"] == version and event["from"] is None
    assert event["actor"].startswith("dana (QA) (dagster run ") and event["reason"].startswith("confusion matrix")
    review_record = registry.get(version).review
    assert review_record["state"] == "approved" and review_record["reviewed_at"]
    observed = [e for e in approved.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert observed and observed[0].event_specific_data.asset_observation.metadata[
        "awaiting_approval_count"].value == 0
    reference = [e.materialization for e in approved.get_asset_materialization_events()
                 if e.asset_key.to_user_string() == "reference_profile"]
    assert reference and reference[0].metadata["version"].value == f"reference-{version}"
    assert (root / "artifacts" / "profiles" / f"reference-{version}").is_dir()
    # approving twice is refused: it is production, nothing awaits
    assert not review(root, version, "approve").success


def test_the_review_job_rejects_and_production_stays(tmp_path):
    root = tmp_path
    result = build(root)
    version = registered(result)["tag"].split(":")[1]
    rejected = review(root, version, "reject", reviewer="erin", reason="too few images of class 7")
    assert rejected.success
    registry = ModelRegistry(root / "bentoml", "image_classifier")
    assert registry.production() is None and registry.get(version).stage == "rejected"
    assert registry.events()[-1]["action"] == "reject" and "too few images" in registry.events()[-1]["reason"]
    again = registered(build(root))  # the gate says yes again, but a reviewer said no
    assert again["promoted"] is False and "rejected by erin" in again["gate_reason"]
    assert registry.production() is None
    # a second look: a fresh comparison files a new request, and only a new explicit approval releases it
    compared = compare_model_job.execute_in_process(
        resources=strict_resources(root), instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
        run_config={"ops": {"compare_candidate": {"config": {"version": version}}}})
    assert compared.success
    assert registry.get(version).stage == "awaiting-approval" and registry.production() is None
    assert review(root, version, "approve", reviewer="erin", reason="more images of class 7 now").success
    assert registry.production().version == version


def test_a_rolled_back_version_is_not_re_promoted_by_a_rebuild_on_the_same_inputs(tmp_path):
    resources = make_resources(tmp_path)  # approval not required
    first = registered(dg.materialize([*ASSETS, *ASSET_CHECKS], selection=dg.AssetSelection.groups("build", "deploy"),
                                      resources=resources, instance=dg.DagsterInstance.ephemeral(), run_config=FAST))
    version = first["tag"].split(":")[1]
    registry = ModelRegistry(tmp_path / "bentoml", "image_classifier")
    assert first["release_pending"] and registry.production().version == version
    released = registry.get(version)  # an earlier release to roll back to: the same model under another version
    registry.register(released.onnx_path, "baseline", released.labels, released.metadata)
    record_release_test_without_a_bento(registry, "baseline")
    registry.promote("baseline", actor="test")
    registry.promote(version, actor="test")
    rollback = rollback_job.execute_in_process(
        resources=resources, instance=dg.DagsterInstance.ephemeral(),
        run_config={"ops": {"rollback_production": {"config": {"reason": "bad release: wrong answers"}}}})
    assert rollback.success and registry.production().version == "baseline"
    again = registered(dg.materialize([*ASSETS, *ASSET_CHECKS], selection=dg.AssetSelection.groups("build"),
                                      resources=resources, instance=dg.DagsterInstance.ephemeral(), run_config=FAST))
    assert again["tag"] == first["tag"] and again["promoted"] is False
    assert "withdrawn from production" in again["gate_reason"] and "bad release" in again["gate_reason"]
    assert registry.production().version == "baseline" and registry.get(version).stage == "withdrawn"
