"""The rules that protect a release hold on every path, whatever one process is configured to do: the approval
policy is stored with the registry; rejected and withdrawn versions never come back by themselves; an approval
names the production version it was compared with. Black-box through the registry's API and its CLI."""

import json

import dagster as dg
import pytest

from mlops_assets.automation import review_model_job
from mlops_assets.core.registry.registry import ApprovalRequiredError, ModelRegistry, NotReleasableError, RegistryError
from mlops_assets.tools.registry_cli import main as registry_cli
from resources.artifact_store import ArtifactStore
from resources.model_registry import ModelRegistryResource
from testkit.release_tests import record_release_test_without_a_bento

SIGNATURE = {"class_names": ["cat", "dog"], "spec": {"height": 8, "width": 8, "channels": 1}}


def make_registry(tmp_path, require_approval, versions=("v0", "v1", "v2", "v3")) -> ModelRegistry:
    """A registry whose first writer had ``require_approval`` (so that is the stored policy)."""
    registry = ModelRegistry(tmp_path / "bentoml", "clf", require_approval=require_approval)
    for i, version in enumerate(versions):
        onnx = tmp_path / f"{version}.onnx"
        onnx.write_bytes(f"model {i}".encode())
        registry.register(onnx, version, {"splits_version": "s"}, {"metrics": {"accuracy": 0.9 + i / 100}, **SIGNATURE})
    record_release_test_without_a_bento(registry, *versions)
    return registry


def cli(registry: ModelRegistry, *args: str) -> int:
    return registry_cli(["--home", str(registry.home), "--model", "clf", *args])


def approve_via_gate(registry: ModelRegistry, version: str, by: str = "dana") -> None:
    registry.request_approval(version, reason=f"gate: {version} is better", actor="dagster run r")
    registry.approve(version, by=by, reason="checked the report")


# -- 1. the policy is stored with the registry ------------------------------------------------------------
def test_a_shell_without_the_setting_cannot_promote_past_the_stored_policy(tmp_path, monkeypatch, capsys):
    strict = make_registry(tmp_path, require_approval=True)  # the build ran with MLOPS_REQUIRE_APPROVAL=1
    strict.request_approval("v1", reason="gate: 0.91", actor="dagster run r1")
    monkeypatch.delenv("MLOPS_REQUIRE_APPROVAL", raising=False)
    assert cli(strict, "promote", "v1") == 2
    assert "approval before release is required (the registry's stored policy)" in capsys.readouterr().err
    monkeypatch.setenv("MLOPS_REQUIRE_APPROVAL", "0")
    assert cli(strict, "promote", "v2") == 2
    err = capsys.readouterr().err
    assert "this shell (MLOPS_REQUIRE_APPROVAL) sets require_approval off" in err
    assert "the registry's stored policy is: approval before release required" in err
    assert strict.production() is None


def test_a_run_configured_without_approval_obeys_the_store(tmp_path):
    make_registry(tmp_path, require_approval=True)
    lenient = ModelRegistryResource(home=str(tmp_path / "bentoml"), model_name="clf",
                                    require_approval=False).registry()
    assert lenient.require_approval is True
    assert "sets require_approval off" in lenient.policy_conflict("this run")
    with pytest.raises(ApprovalRequiredError):
        lenient.promote("v1", actor="dagster run with require_approval: false")
    promoted, reason = lenient.release("v1", "accuracy 0.91 ≥ floor", "dagster run r2", allow_incompatible=False)
    assert not promoted and reason.startswith("awaiting approval")
    assert lenient.production() is None and lenient.get("v1").stage == "awaiting-approval"


def test_the_policy_is_seeded_once_and_changed_only_by_a_recorded_command(tmp_path, monkeypatch, capsys):
    registry = make_registry(tmp_path, require_approval=True)
    seeded = registry.events()[0]
    assert seeded["action"] == "policy" and seeded["require_approval"] is True and "seeded from" in seeded["reason"]
    # a later process with another setting seeds nothing
    assert ModelRegistry(registry.home, "clf", require_approval=False).require_approval is True
    monkeypatch.delenv("MLOPS_REQUIRE_APPROVAL", raising=False)
    assert cli(registry, "policy", "--require-approval", "off") == 2  # who and why are required
    assert "say who you are" in capsys.readouterr().err
    assert cli(registry, "policy", "--require-approval", "off", "--by", "lee", "--reason", "pilot ends") == 0
    assert "approval before release not required (set by lee" in capsys.readouterr().out
    assert registry.require_approval is False
    assert cli(registry, "policy") == 0 and "not required" in capsys.readouterr().out
    assert cli(registry, "history") == 0
    history = capsys.readouterr().out
    assert "policy            require_approval on  by " in history and "seeded from" in history
    assert "policy            require_approval off (was on)  by lee: pilot ends" in history


def test_an_existing_store_without_a_policy_is_seeded_on_its_first_write(tmp_path):
    legacy = make_registry(tmp_path, require_approval=None, versions=("v0",))
    pointer = json.loads(legacy.pointer_path.read_text())
    legacy.pointer_path.write_text(json.dumps({k: v for k, v in pointer.items() if k != "policy"} | {"events": []}))
    assert legacy.policy().stored is False
    ModelRegistry(legacy.home, "clf", require_approval=True).request_approval("v0", "gate", "dagster run r")
    assert legacy.policy().stored and legacy.require_approval is True
    assert [e["action"] for e in legacy.events()] == ["policy", "request-approval"]


# -- 2. rejected means never serves -----------------------------------------------------------------------
def test_rejecting_production_withdraws_it_to_the_last_approved_version(tmp_path, capsys):
    registry = make_registry(tmp_path, require_approval=False)
    registry.promote("v0", actor="setup")  # released while approval was not required
    registry.set_policy(True, by="lee", reason="regulated from now on")
    approve_via_gate(registry, "v1")
    approve_via_gate(registry, "v2")
    assert cli(registry, "reject", "v2", "--by", "erin", "--reason", "customers report wrong answers") == 0
    assert "clf:v2 is withdrawn from production; production is now v1" in capsys.readouterr().out
    assert registry.production().version == "v1" and registry.get("v2").stage == "rejected"
    event = registry.events()[-1]
    assert (event["action"], event["from"], event["to"], event["actor"]) == ("reject", "v2", "v1", "erin")
    for attempt in (lambda: registry.promote("v2"), lambda: registry.reinstate("v2", "lee", "try again")):
        with pytest.raises(NotReleasableError, match="rejected by erin"):
            attempt()
    assert registry.release("v2", "accuracy better", "dagster run r9", False)[0] is False


def test_rollback_never_restores_a_rejected_version_in_a_store_written_before_the_rules(tmp_path):
    """The issue's store: v1 was promoted from a shell without the setting although it awaited a reviewer, and was
    rejected later; production then moved on to v2. With approval on, rollback must skip v1."""
    registry = make_registry(tmp_path, require_approval=None)
    registry.pointer_path.write_text(json.dumps({
        "current": "v2", "history": ["v0", "v1"],
        "events": [{"at": "2026-11-30T10:00:00", "action": "promote", "from": None, "to": "v0", "reason": "first",
                    "actor": "setup"},
                   {"at": "2026-11-30T11:00:00", "action": "promote", "from": "v0", "to": "v1",
                    "reason": "manual promotion (mlops-registry)", "actor": "mlops-registry (root)"},
                   {"at": "2026-11-30T12:00:00", "action": "promote", "from": "v1", "to": "v2", "reason": "gate",
                    "actor": "dagster run r"}],
        "reviews": {"v1": {"state": "rejected", "requested_at": "2026-11-30T10:30:00", "requested_by": "r",
                           "request_reason": "gate", "production_at_request": "v0",
                           "reviewed_at": "2026-11-30T11:30:00", "reviewed_by": "erin", "review_reason": "no"}},
    }))
    strict = ModelRegistry(registry.home, "clf", require_approval=True)
    assert strict.rollback(reason="bad release", actor="carol").version == "v0"
    assert {v.version: v.stage for v in strict.list_versions()} == {
        "v0": "production", "v1": "rejected", "v2": "withdrawn", "v3": "candidate"}


def test_rejecting_production_with_nothing_that_may_serve_instead_is_refused(tmp_path):
    registry = make_registry(tmp_path, require_approval=True)
    approve_via_gate(registry, "v0")
    with pytest.raises(RegistryError, match="no earlier production version may serve in its place"):
        registry.reject("v0", by="erin", reason="bad")
    assert registry.production().version == "v0" and registry.get("v0").review["state"] == "approved"


# -- 3. withdrawn means withdrawn -------------------------------------------------------------------------
def test_a_rolled_back_version_is_never_re_promoted_by_a_build_and_reinstate_is_recorded(tmp_path, capsys):
    registry = make_registry(tmp_path, require_approval=False)
    registry.promote("v0", actor="setup")
    registry.promote("v1", actor="dagster run r1")
    assert cli(registry, "rollback", "--reason", "bad release: customers report wrong answers") == 0
    assert "v1 is withdrawn" in capsys.readouterr().out
    assert registry.get("v1").stage == "withdrawn"
    promoted, reason = registry.release("v1", "accuracy 0.91 vs 0.90", "dagster run r2", allow_incompatible=False)
    assert not promoted and "withdrawn from production by mlops-registry" in reason and "reinstate" in reason
    assert cli(registry, "promote", "v1") == 2
    assert "bad release: customers report wrong answers" in capsys.readouterr().err
    assert registry.production().version == "v0"
    assert cli(registry, "reinstate", "v1", "--by", "lee", "--reason", "the bug was in the client") == 0
    assert registry.production().version == "v1"
    event = registry.events()[-1]
    assert (event["action"], event["from"], event["to"], event["actor"]) == ("reinstate", "v0", "v1", "lee")


def test_reinstating_under_approval_needs_a_fresh_approval(tmp_path):
    registry = make_registry(tmp_path, require_approval=True)
    approve_via_gate(registry, "v0")
    approve_via_gate(registry, "v1")
    registry.rollback(reason="bad release", actor="carol")
    assert registry.production().version == "v0"
    reinstated = registry.reinstate("v1", by="lee", reason="false alarm")
    assert reinstated.stage == "candidate" and registry.production().version == "v0"
    assert registry.events()[-1]["action"] == "reinstate"
    with pytest.raises(ApprovalRequiredError, match="no approval was requested"):
        registry.promote("v1")  # the approval given before the withdrawal does not outlive it
    approve_via_gate(registry, "v1", by="erin")
    assert registry.production().version == "v1"


# -- 4. approvals tied to their comparison ----------------------------------------------------------------
def test_an_approval_against_one_production_never_promotes_over_another(tmp_path):
    registry = make_registry(tmp_path, require_approval=True)
    approve_via_gate(registry, "v0")
    approve_via_gate(registry, "v1")  # compared with v0
    approve_via_gate(registry, "v2")  # production v1 → v2
    with pytest.raises(ApprovalRequiredError, match="against production v0, but production is now v2"):
        registry.promote("v1", actor="mlops-registry")
    assert registry.production().version == "v2"


def test_an_approval_request_made_stale_by_a_rollback_can_still_be_resolved(tmp_path):
    registry = make_registry(tmp_path, require_approval=True)
    approve_via_gate(registry, "v0")
    approve_via_gate(registry, "v1")
    registry.request_approval("v2", reason="gate: v2 vs v1", actor="dagster run r3")
    registry.rollback(reason="v1 misbehaves", actor="carol")  # production v1 → v0
    with pytest.raises(RegistryError, match="compared with production v1, but production is now v0"):
        registry.approve("v2", by="dana", reason="ok")
    # re-running the gate (build_job) on the same version files a fresh request against today's production
    promoted, reason = registry.release("v2", "v2 vs v0: better", "dagster run r4", allow_incompatible=False)
    assert not promoted and reason.startswith("awaiting approval")
    assert registry.get("v2").review["production_at_request"] == "v0"
    assert "replaces the awaiting request made against production v1" in registry.events()[-1]["reason"]
    registry.approve("v2", by="dana", reason="fresh comparison checked")
    assert registry.production().version == "v2"


# -- 5. the smaller items ---------------------------------------------------------------------------------
def test_the_review_job_refuses_a_blank_reviewer(tmp_path):
    registry = make_registry(tmp_path, require_approval=True)
    registry.request_approval("v1", reason="gate", actor="dagster run r")
    resources = {"model_registry": ModelRegistryResource(home=str(registry.home), model_name="clf"),
                 "artifact_store": ArtifactStore(root=str(tmp_path / "artifacts"))}
    result = review_model_job.execute_in_process(
        resources=resources, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
        run_config={"ops": {"review_candidate": {"config": {
            "version": "v1", "decision": "approve", "reviewer": " ", "reason": "fine"}}}},
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "say who you are" in failure.event_specific_data.error.message
    assert registry.production() is None and registry.get("v1").stage == "awaiting-approval"


def test_history_shows_every_override_and_how_each_release_was_approved(tmp_path, capsys):
    registry = make_registry(tmp_path, require_approval=False)
    onnx = tmp_path / "shapes.onnx"
    onnx.write_bytes(b"shapes")
    registry.register(onnx, "shapes", {}, {**SIGNATURE, "class_names": ["circles", "squares", "stars"]})
    record_release_test_without_a_bento(registry, "shapes")
    registry.promote("v0", actor="setup")
    registry.promote("shapes", reason="new product", actor="alice", allow_incompatible=True)
    registry.set_policy(True, by="lee", reason="regulated")
    registry.request_approval("v1", reason="gate: back to cats", actor="dagster run r", allow_incompatible=True)
    registry.approve("v1", by="dana", reason="checked")
    assert cli(registry, "history") == 0
    history = capsys.readouterr().out.splitlines()
    promote = next(line for line in history if "promote" in line and "shapes" in line)
    assert "[incompatible override: classes differ" in promote and "[approval: not required" in promote
    request = next(line for line in history if "request-approval" in line)
    assert "[incompatible override: classes differ" in request
    approve = next(line for line in history if line[21:28] == "approve")
    assert "[approval: approved by dana against production shapes]" in approve
    assert "[incompatible override" in approve
