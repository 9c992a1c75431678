"""The shadow slot: a challenger beside production, owned by the registry's state machine
(candidate → shadow → production), set and cleared through the registry and the CLI, with the signature check, the
stored approval policy, the release test and the audit history applying on the way in."""

import pytest

from mlops_assets.core.registry.registry import (
    ApprovalRequiredError,
    IncompatibleModelError,
    ModelRegistry,
    NotReleasableError,
    RegistryError,
)
from mlops_assets.tools.registry_cli import main as registry_cli
from testkit.release_tests import record_release_test_without_a_bento

SIGNATURE = {"class_names": ["cat", "dog"], "spec": {"height": 8, "width": 8, "channels": 1}}


@pytest.fixture
def registry(tmp_path):
    """v0 in production; v1, v2 tested candidates; `shapes` (other classes) tested; `fresh` never tested."""
    registry = ModelRegistry(tmp_path / "bentoml", "clf")
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"model")
    for version in ("v0", "v1", "v2", "fresh"):
        registry.register(onnx, version, {}, {"metrics": {"accuracy": 0.9}, **SIGNATURE})
    registry.register(onnx, "shapes", {}, {**SIGNATURE, "class_names": ["circles", "squares", "stars"]})
    record_release_test_without_a_bento(registry, "v0", "v1", "v2", "shapes")
    registry.promote("v0", reason="first", actor="setup")
    return registry


def stages(registry):
    return {v.version: v.stage for v in registry.list_versions()}


def test_a_candidate_goes_to_shadow_then_to_production_which_clears_the_shadow(registry):
    assert registry.shadow_version() is None
    registry.set_shadow("v1", reason="see it on live traffic", actor="alice")
    assert registry.slot_version("shadow") == "v1" and registry.shadow_version() == "v1"
    assert registry.production_version() == "v0"  # a shadow answers no client: production is unchanged
    assert stages(registry)["v1"] == "shadow"
    event = registry.events()[-1]
    assert (event["action"], event["version"], event["from"], event["to"], event["actor"], event["reason"]) == (
        "shadow", "v1", "v0", "v0", "alice", "see it on live traffic")
    registry.set_shadow("v2", reason="a better challenger", actor="bob")  # replaces the shadow, recorded
    assert registry.shadow_version() == "v2" and stages(registry)["v1"] == "candidate"
    assert registry.events()[-1]["was"] == "v1"
    registry.promote("v2", reason="won in shadow", actor="carol")
    assert registry.production_version() == "v2" and registry.shadow_version() is None
    assert registry.events()[-1]["shadow_cleared"].startswith("v2 left the shadow slot: it is production now")
    assert stages(registry)["v2"] == "production"


def test_the_shadow_is_cleared_on_purpose_with_who_and_why(registry):
    registry.set_shadow("v1", reason="try it", actor="alice")
    assert registry.clear_shadow(reason="enough evidence", actor="bob") == "v1"
    assert registry.shadow_version() is None and stages(registry)["v1"] == "candidate"
    event = registry.events()[-1]
    assert (event["action"], event["version"], event["actor"], event["reason"]) == (
        "clear-shadow", "v1", "bob", "enough evidence")
    assert registry.clear_shadow(reason="again", actor="bob") is None  # nothing to clear: nothing recorded
    assert registry.events()[-1] == event
    with pytest.raises(RegistryError, match="say why"):
        registry.set_shadow("v1", reason=" ", actor="alice")


def test_the_shadow_is_checked_against_production_like_a_promotion(registry):
    with pytest.raises(IncompatibleModelError, match=r"refusing to shadow clf:shapes: .*classes differ"):
        registry.set_shadow("shapes", reason="try", actor="alice")
    with pytest.raises(NotReleasableError, match="no release test"):
        registry.set_shadow("fresh", reason="try", actor="alice")
    with pytest.raises(RegistryError, match="already the production model"):
        registry.set_shadow("v0", reason="try", actor="alice")
    registry.reject("v2", by="dana", reason="biased")
    with pytest.raises(NotReleasableError, match="rejected by dana"):
        registry.set_shadow("v2", reason="try", actor="alice")
    assert registry.shadow_version() is None
    registry.set_shadow("shapes", reason="new product, on purpose", actor="alice", allow_incompatible=True)
    assert "classes differ" in registry.events()[-1]["incompatible_override"][0]


@pytest.fixture
def no_production(tmp_path):
    """A registry holding one tested version, v0, and no production yet."""
    registry = ModelRegistry(tmp_path / "bentoml", "clf")
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"model")
    registry.register(onnx, "v0", {}, SIGNATURE)
    record_release_test_without_a_bento(registry, "v0")
    return registry


def test_with_no_production_there_is_nothing_to_shadow(no_production):
    with pytest.raises(RegistryError, match="no production model"):
        no_production.set_shadow("v0", reason="try", actor="alice")


def test_rejecting_the_shadow_clears_it_and_an_incompatible_production_change_does_too(registry):
    registry.set_shadow("v1", reason="try", actor="alice")
    registry.reject("v1", by="dana", reason="worse on live traffic")
    assert registry.shadow_version() is None and stages(registry)["v1"] == "rejected"
    registry.set_shadow("v2", reason="try", actor="alice")
    registry.promote("shapes", reason="new product", actor="erin", allow_incompatible=True)
    assert registry.shadow_version() is None  # v2 no longer matches what production answers
    assert "not compatible with production shapes" in registry.events()[-1]["shadow_cleared"]


def test_with_approval_required_a_shadow_is_under_review_and_reaches_production_only_by_approval(registry):
    strict = ModelRegistry(registry.home, "clf", require_approval=True)
    strict.set_policy(True, by="setup", reason="approval from now on")
    with pytest.raises(ApprovalRequiredError, match="request approval for it first"):
        strict.set_shadow("v1", reason="try", actor="alice")
    strict.request_approval("v1", reason="gate: better", actor="dagster run r1")
    strict.set_shadow("v1", reason="live evidence for the reviewer", actor="alice")
    assert strict.shadow_version() == "v1" and stages(strict)["v1"] == "shadow"
    with pytest.raises(ApprovalRequiredError):  # the shadow is no way around the reviewer
        strict.promote("v1", actor="impatient")
    strict.approve("v1", by="dana", reason="agrees with production on live traffic, better on labels")
    assert strict.production_version() == "v1" and strict.shadow_version() is None


def test_cli_shadow_set_and_clear(registry, capsys):
    home = ["--home", str(registry.home), "--model", "clf"]
    assert registry_cli([*home, "shadow", "v1", "--reason", "challenger"]) == 0
    assert "shadow is now clf:v1 (production stays clf:v0)" in capsys.readouterr().out
    assert registry.shadow_version() == "v1"
    assert registry_cli([*home, "list"]) == 0
    assert "v1  shadow" in capsys.readouterr().out
    assert registry_cli([*home, "shadow"]) == 0
    assert capsys.readouterr().out.strip() == "clf:v1"
    assert registry_cli([*home, "shadow", "shapes", "--reason", "try"]) == 2
    assert "classes differ" in capsys.readouterr().err
    assert registry_cli([*home, "shadow", "v2"]) == 2  # setting it needs a reason
    assert "--reason" in capsys.readouterr().err
    assert registry_cli([*home, "shadow", "--clear", "--reason", "done"]) == 0
    assert "cleared the shadow slot (was clf:v1)" in capsys.readouterr().out
    assert registry.shadow_version() is None
    assert registry_cli([*home, "history"]) == 0
    history = capsys.readouterr().out
    assert "shadow            v1 (production v0)" in history and "clear-shadow" in history


# -- the release policy: where the gate's yes sends a tested version ----------------------------------------
def test_the_shadow_release_policy_sends_the_gate_s_yes_to_shadow_and_production_stays(registry):
    promoted, reason = registry.release("v1", "accuracy 0.95 vs 0.93", "dagster run r1", False, to_shadow=True)
    assert not promoted and reason.startswith("in shadow beside production v0 (release policy: shadow first)")
    assert registry.production_version() == "v0" and registry.shadow_version() == "v1"
    assert registry.events()[-1]["reason"] == "gate, release policy shadow: accuracy 0.95 vs 0.93"
    promoted, _ = registry.release("v2", "better still", "dagster run r2", False)  # the default: production
    assert promoted and registry.production_version() == "v2" and registry.shadow_version() == "v1"


def test_under_approval_the_shadow_release_policy_asks_the_reviewer_and_shadows_meanwhile(registry):
    strict = ModelRegistry(registry.home, "clf", require_approval=True)
    strict.set_policy(True, by="setup", reason="approval from now on")
    promoted, reason = strict.release("v1", "better", "dagster run r1", False, to_shadow=True)
    assert not promoted and "awaiting approval" in reason
    assert strict.shadow_version() == "v1" and strict.get("v1").review["state"] == "awaiting"
    promoted, reason = strict.release("fresh", "better", "dagster run r2", False, to_shadow=True)
    assert not promoted and "no release test" in reason and strict.shadow_version() == "v1"


def test_with_no_production_the_shadow_release_policy_promotes_the_first_version(no_production):
    assert no_production.release("v0", "first", "dagster run r0", False, to_shadow=True)[0]
    assert no_production.production_version() == "v0" and no_production.shadow_version() is None


def test_the_release_policy_setting_is_production_or_shadow(tmp_path):
    from mlops_assets.core.registry.release_rules import release_to_shadow
    from resources.defaults import WIRING
    from resources.model_registry import ModelRegistryResource

    assert release_to_shadow("production") is False and release_to_shadow("shadow") is True
    with pytest.raises(ValueError, match="'canary' is not one of production, shadow"):
        release_to_shadow("canary")
    assert WIRING["model_registry"][1]["release_policy"] == "MLOPS_RELEASE_POLICY"
    assert ModelRegistryResource(home=str(tmp_path)).release_to_shadow() is False  # default: today's behaviour
    assert ModelRegistryResource(home=str(tmp_path), release_policy="shadow").release_to_shadow() is True


def test_a_release_to_shadow_is_an_outcome_of_the_gate_not_a_failure():
    from mlops_assets.deploy_stage.release import promoted_to_production
    from mlops_assets.refs import RegisteredModelRef

    for awaiting, outcome in ((False, "in shadow"), (True, "in shadow, awaiting approval")):
        result = promoted_to_production(RegisteredModelRef(
            tag="clf:v2", version="v2", promoted=False, production_version="v1", awaiting_approval=awaiting,
            in_shadow=True, reason="in shadow beside production v1 (release policy: shadow first): better"))
        assert result.passed and result.metadata["outcome"].value == outcome


def test_shadow_model_job_sets_and_clears_the_shadow_and_fails_with_the_registry_s_refusal(registry):
    import dagster as dg

    from mlops_assets.automation import shadow_model_job
    from resources.model_registry import ModelRegistryResource

    resources = {"model_registry": ModelRegistryResource(home=str(registry.home), model_name="clf")}

    def run(**config):
        return shadow_model_job.execute_in_process(
            resources=resources, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
            run_config={"ops": {"set_shadow_slot": {"config": config}}})

    assert run(version="v1", reason="challenger").success and registry.shadow_version() == "v1"
    assert registry.events()[-1]["actor"].startswith("dagster run ")
    refused = run(version="shapes", reason="try")
    assert not refused.success and registry.shadow_version() == "v1"
    failure = next(e for e in refused.all_events if e.event_type_value == "STEP_FAILURE")
    assert "classes differ" in failure.event_specific_data.error.message
    assert run(clear=True, reason="done").success and registry.shadow_version() is None


# -- rejecting a challenger: one recorded command that empties the slot --------------------------------------
def test_cli_reject_of_the_challenger_empties_the_shadow_slot_and_the_history_says_so(registry, capsys):
    home = ["--home", str(registry.home), "--model", "clf"]
    registry.set_shadow("v1", reason="challenger", actor="alice")
    assert registry_cli([*home, "reject", "v1", "--by", "dana", "--reason", "worse on live traffic"]) == 0
    out = capsys.readouterr().out
    assert "rejected by dana: clf:v1 stays out of production" in out and "v1 left the shadow slot: rejected" in out
    assert registry.shadow_version() is None and stages(registry)["v1"] == "rejected"
    event = registry.events()[-1]
    assert (event["action"], event["version"], event["actor"], event["reason"]) == (
        "reject", "v1", "dana", "worse on live traffic")
    assert event["shadow_cleared"] == "v1 left the shadow slot: rejected"
    assert registry_cli([*home, "history"]) == 0
    assert "[shadow cleared: v1 left the shadow slot: rejected]" in capsys.readouterr().out.splitlines()[-1]
    with pytest.raises(SystemExit):  # who and why are required
        registry_cli([*home, "reject", "v2", "--reason", "no name"])
    with pytest.raises(NotReleasableError, match="rejected by dana"):
        registry.set_shadow("v1", reason="again", actor="alice")  # a rejected challenger does not come back


def test_review_model_job_rejecting_the_challenger_empties_the_shadow_slot(registry, tmp_path):
    import dagster as dg

    from mlops_assets.automation import review_model_job
    from resources.artifact_store import ArtifactStore
    from resources.model_registry import ModelRegistryResource

    registry.set_shadow("v2", reason="challenger", actor="alice")
    result = review_model_job.execute_in_process(
        resources={"model_registry": ModelRegistryResource(home=str(registry.home), model_name="clf"),
                   "artifact_store": ArtifactStore(root=str(tmp_path / "artifacts"))},
        instance=dg.DagsterInstance.ephemeral(),
        run_config={"ops": {"review_candidate": {"config": {
            "version": "v2", "decision": "reject", "reviewer": "dana", "reason": "worse on live traffic"}}}})
    assert result.success and registry.shadow_version() is None and registry.production_version() == "v0"
    assert registry.events()[-1]["actor"].startswith("dana (dagster run ")
    observation = next(e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION")
    metadata = {k: v.value for k, v in observation.event_specific_data.asset_observation.metadata.items()}
    assert metadata["shadow_version"] == "none" and metadata["shadow_cleared"] == "v2 left the shadow slot: rejected"
