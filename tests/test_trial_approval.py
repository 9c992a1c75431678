"""A trial approval: with approval required, a reviewer lets the challenger in the shadow slot answer its A/B share of
clients (a recorded decision, tied to today's production), without ever counting as the approval promotion needs."""

from __future__ import annotations

import pytest

from mlops_assets.core.registry import release_rules as rules
from mlops_assets.core.registry.registry import ApprovalRequiredError, RegistryError
from mlops_assets.tools.registry_cli import main
from tests.test_shadow import registry  # noqa: F401 - the fixture: v0 in production, v1 and v2 tested candidates

STRICT = {"current": "v0", "slots": {"shadow": "v1"}, "policy": {"require_approval": True},
          "release_tests": {"v1": {"passed": True}},
          "reviews": {"v1": {"state": "awaiting", "production_at_request": "v0", "requested_at": "2026-01-01T00:00"}}}
TRIAL = {"version": "v1", "production": "v0", "by": "dana", "at": "2026-01-01T01:00", "reason": "try it on 10 %"}


def test_the_pure_rule_lets_a_trial_approved_shadow_answer_only_against_today_s_production():
    assert "approval before release is required" in rules.why_not_answerable(STRICT, "v1")  # without it: not
    assert rules.why_not_answerable({**STRICT, "trial_approval": TRIAL}, "v1") is None
    moved = {**STRICT, "trial_approval": TRIAL, "current": "v9"}
    why = rules.why_not_answerable(moved, "v1")
    assert "trial approval" in why and "v9" in why and "void" in why
    other = {**STRICT, "trial_approval": {**TRIAL, "version": "v2"}}
    assert "approval before release is required" in rules.why_not_answerable(other, "v1")
    # it never counts as the approval promotion needs
    assert "approval" in rules.why_not_promotable({**STRICT, "trial_approval": TRIAL}, "v1")
    approved = {**STRICT, "reviews": {"v1": {**STRICT["reviews"]["v1"], "state": "approved", "reviewed_by": "dana"}}}
    assert rules.why_not_promotable(approved, "v1") is None


def strict_shadow(registry):  # noqa: F811
    registry.set_policy(True, by="setup", reason="a reviewer decides from now on")
    registry.request_approval("v1", reason="gate: better", actor="gate")
    registry.set_shadow("v1", reason="challenger", actor="alice")
    return registry


def test_with_approval_required_a_trial_approval_lets_the_shadow_answer_and_is_recorded(registry):  # noqa: F811
    strict_shadow(registry)
    assert "approval before release is required" in registry.why_not_answerable("v1")
    registry.approve_trial("v1", by="dana", reason="10 % of clients for a week", via="dagster run abc")
    assert registry.why_not_answerable("v1") is None
    event = registry.events()[-1]
    assert (event["action"], event["version"], event["from"], event["to"], event["actor"], event["reason"],
            event["compared_with"]) == ("approve-trial", "v1", "v0", "v0", "dana (dagster run abc)",
                                        "10 % of clients for a week", "v0")
    trial = registry.trial_approval()
    assert (trial["version"], trial["by"], trial["production"], trial["reason"]) == (
        "v1", "dana", "v0", "10 % of clients for a week") and trial["at"]
    assert registry.production_version() == "v0"  # it promoted nothing ...
    with pytest.raises(ApprovalRequiredError, match="approval before release is required"):
        registry.promote("v1", reason="try", actor="bob")  # ... and promotion still needs the full approval
    assert "approval" in registry.why_not_promotable("v1")
    registry.approve("v1", by="dana", reason="better on live traffic")
    assert registry.production_version() == "v1" and registry.trial_approval() is None  # the slot emptied


def test_a_production_change_voids_the_trial_approval(registry):  # noqa: F811
    strict_shadow(registry)
    registry.approve_trial("v1", by="dana", reason="try it")
    registry.request_approval("v2", reason="gate: better", actor="gate")
    registry.approve("v2", by="erin", reason="hotfix")  # production moves; v1 is compatible and keeps shadowing
    assert registry.shadow_version() == "v1"
    why = registry.why_not_answerable("v1")
    assert "trial approval" in why and "void" in why


def test_only_the_shadow_can_be_trial_approved_and_leaving_the_slot_ends_it(registry):  # noqa: F811
    strict_shadow(registry)
    with pytest.raises(RegistryError, match="only the version in the shadow slot"):
        registry.approve_trial("v2", by="dana", reason="try it")
    with pytest.raises(RegistryError, match="--by"):
        registry.approve_trial("v1", by="", reason="try it")
    registry.approve_trial("v1", by="dana", reason="try it")
    registry.clear_shadow("done", actor="alice")
    registry.set_shadow("v1", reason="again", actor="alice")
    assert "approval before release is required" in registry.why_not_answerable("v1")  # a new tenure: a new trial


def test_the_cli_records_a_trial_approval_and_refuses_a_version_not_in_shadow(registry, capsys):  # noqa: F811
    strict_shadow(registry)
    home = str(registry.home)
    assert main(["--home", home, "--model", "clf", "approve-trial", "v2", "--by", "dana", "--reason", "x"]) == 2
    assert "only the version in the shadow slot" in capsys.readouterr().err
    assert main(["--home", home, "--model", "clf", "approve-trial", "v1", "--by", "dana", "--reason", "try"]) == 0
    out = capsys.readouterr().out
    assert "v1" in out and "v0" in out and "answer" in out
    assert main(["--home", home, "--model", "clf", "history"]) == 0
    assert "approve-trial" in capsys.readouterr().out


def test_review_model_job_records_a_trial_approval_only_for_the_shadow(registry, tmp_path):  # noqa: F811
    import dagster as dg

    from mlops_assets.automation import review_model_job
    from resources.artifact_store import ArtifactStore
    from resources.model_registry import ModelRegistryResource

    strict_shadow(registry)

    def review(version: str):
        return review_model_job.execute_in_process(
            resources={"model_registry": ModelRegistryResource(home=str(registry.home), model_name="clf"),
                       "artifact_store": ArtifactStore(root=str(tmp_path / "artifacts"))},
            instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
            run_config={"ops": {"review_candidate": {"config": {
                "version": version, "decision": "approve-trial", "reviewer": "dana", "reason": "A/B for a week"}}}})

    refused = review("v2")
    assert not refused.success and registry.trial_approval() is None
    result = review("v1")
    assert result.success and registry.why_not_answerable("v1") is None and registry.production_version() == "v0"
    assert registry.events()[-1]["action"] == "approve-trial"
    assert registry.events()[-1]["actor"].startswith("dana (dagster run ")
    observation = next(e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION")
    metadata = {k: v.value for k, v in observation.event_specific_data.asset_observation.metadata.items()}
    assert metadata["action"] == "approve-trial" and metadata["shadow_version"] == "v1"
