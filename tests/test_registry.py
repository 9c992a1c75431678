"""The promotion rule and the registry: register, promote, refuse, roll back, and the CLI."""

import json
import threading

import pytest

from mlops_assets.core.model.signature import signature_differences
from mlops_assets.core.registry.promotion import (
    COMPARED,
    INCOMPATIBLE,
    NO_PRODUCTION,
    ChampionComparison,
    PromotionPolicy,
    decide_promotion,
)
from mlops_assets.core.registry.registry import (
    ApprovalRequiredError,
    IncompatibleModelError,
    ModelRegistry,
    NotReleasableError,
    RegistryError,
)
from mlops_assets.tools.registry_cli import main as registry_cli
from testkit.release_tests import record_release_test_without_a_bento

NONE = ChampionComparison(NO_PRODUCTION)


def compared(candidate: float, production: float, stored: float | None = None, n: int = 200, excluded: int = 0):
    """Both models scored on the same ``n`` rows; ``stored`` is production's figure from its own old split."""
    return ChampionComparison(
        COMPARED, "prod", "splits-new", n=n, n_test=n + excluded, excluded=excluded,
        candidate={"accuracy": candidate}, production={"accuracy": production},
        production_stored={} if stored is None else {"accuracy": stored},
    )


def test_promote_when_nothing_in_production():
    decision = decide_promotion({"accuracy": 0.95}, NONE, PromotionPolicy(floor=0.9))
    assert decision.promote and "no production model" in decision.reason


def test_refuse_below_floor_even_without_production():
    decision = decide_promotion({"accuracy": 0.85}, NONE, PromotionPolicy(floor=0.9))
    assert not decision.promote and "below the floor" in decision.reason


def test_refuse_regression_beyond_margin_on_the_same_rows():
    decision = decide_promotion({"accuracy": 0.95}, compared(0.95, 0.97), PromotionPolicy(max_regression=0.01))
    assert not decision.promote and "below production prod's 0.9700" in decision.reason
    assert "same 200 test images of split splits-new" in decision.reason


def test_accept_small_regression_within_margin():
    assert decide_promotion({"accuracy": 0.965}, compared(0.965, 0.97), PromotionPolicy(max_regression=0.01)).promote


def test_the_stored_figure_of_production_is_context_never_compared():
    """Production scored 0.9888 on its own, older split but 0.867 on today's: the candidate is far better."""
    decision = decide_promotion({"accuracy": 0.95}, compared(0.95, 0.867, stored=0.9888))
    assert decision.promote, decision.reason
    assert "0.8670" in decision.reason and "Δ +0.0830" in decision.reason and "0.9888" in decision.reason
    # and the reverse: production's stored figure is low, but on today's rows it beats the candidate
    decision = decide_promotion({"accuracy": 0.95}, compared(0.95, 0.99, stored=0.80))
    assert not decision.promote and "0.9900" in decision.reason


def test_too_few_rows_production_did_not_train_on_is_no_evidence():
    decision = decide_promotion({"accuracy": 0.99}, compared(0.99, 0.5, n=12, excluded=188))
    assert not decision.promote
    assert "only 12 test image(s)" in decision.reason and "188 excluded" in decision.reason


def test_an_incompatible_production_model_is_replaced_only_when_explicitly_allowed():
    incompatible = ChampionComparison(INCOMPATIBLE, "prod", reason="classes differ (2 instead of 10)")
    refused = decide_promotion({"accuracy": 0.99}, incompatible)
    assert not refused.promote and "classes differ" in refused.reason and "allow_incompatible" in refused.reason
    allowed = decide_promotion({"accuracy": 0.99}, incompatible, PromotionPolicy(allow_incompatible=True))
    assert allowed.promote and allowed.incompatible_override


def test_unknown_metric_is_an_error():
    with pytest.raises(KeyError, match="macro_f1"):
        decide_promotion({"accuracy": 0.9}, NONE, PromotionPolicy(metric="macro_f1"))


# -- the floor, relative to what always answering the commonest class scores -------------------------------------
def test_a_first_model_on_a_small_folder_is_judged_against_its_baseline_not_a_fixed_090():
    """Three balanced classes, 8 of 9 test images right: far above the 1/3 a constant answer gets."""
    decision = decide_promotion({"accuracy": 8 / 9}, NONE, test_class_counts=[3, 3, 3])
    assert decision.promote, decision.reason
    assert "majority-class baseline 0.3333" in decision.reason and "floor 0.6667" in decision.reason


def test_a_model_near_its_baseline_is_refused_with_the_baseline_named():
    decision = decide_promotion({"accuracy": 0.6}, NONE, test_class_counts=[5, 4])
    assert not decision.promote
    assert "below the floor 0.7778" in decision.reason and "majority-class baseline 0.5556" in decision.reason


def test_an_imbalanced_test_split_raises_the_floor_above_what_a_constant_answer_scores():
    """90 % of one class: 0.92 accuracy is barely better than always answering it (0.90)."""
    decision = decide_promotion({"accuracy": 0.92}, NONE, test_class_counts=[90, 10])
    assert not decision.promote and "below the floor 0.9500" in decision.reason


def test_an_absolute_floor_set_higher_still_applies():
    decision = decide_promotion({"accuracy": 8 / 9}, NONE, PromotionPolicy(floor=0.9), test_class_counts=[3, 3, 3])
    assert not decision.promote and "below the floor 0.9000 (the absolute floor" in decision.reason


def test_the_baseline_of_macro_metrics_is_the_constant_answer_s_score():
    from mlops_assets.core.registry.promotion import majority_baseline

    assert majority_baseline("accuracy", [6, 2, 2]) == pytest.approx(0.6)
    assert majority_baseline("macro_recall", [6, 2, 2]) == pytest.approx(1 / 3)
    assert majority_baseline("macro_precision", [6, 2, 2]) == pytest.approx(0.6 / 3)
    assert majority_baseline("macro_f1", [6, 2, 2]) == pytest.approx((2 * 0.6 / 1.6) / 3)
    assert majority_baseline("macro_f1", [6, 0, 4]) == pytest.approx((2 * 0.6 / 1.6) / 2)  # classes present
    assert majority_baseline("recall_gap", [6, 2, 2]) is None


def test_without_a_baseline_only_the_absolute_floor_applies_and_the_reason_says_so():
    decision = decide_promotion({"accuracy": 0.5}, NONE)
    assert decision.promote and "no test class counts" in decision.reason


def test_signature_differences_name_what_differs():
    digits = {"class_names": [str(i) for i in range(10)], "spec": {"height": 8, "width": 8, "channels": 1}}
    shapes = {"class_names": ["circles", "squares"], "spec": {"height": 8, "width": 8, "channels": 1}}
    rgb = {**digits, "spec": {"height": 8, "width": 8, "channels": 3}}
    assert signature_differences(digits, dict(digits)) == []
    assert "classes differ (2 instead of 10" in signature_differences(digits, shapes)[0]
    assert signature_differences(digits, rgb) == ["input 3×8×8 instead of 1×8×8 (channels×height×width)"]
    reordered = {**digits, "class_names": list(reversed(digits["class_names"]))}
    assert "class order" in signature_differences(digits, reordered)[0]
    assert "signature unknown" in signature_differences(digits, {})[0]


SIGNATURE = {"class_names": ["cat", "dog"], "spec": {"height": 8, "width": 8, "channels": 1}}


@pytest.fixture
def registry(tmp_path):
    registry = ModelRegistry(tmp_path / "bentoml", "clf")
    for i, accuracy in enumerate([0.91, 0.93, 0.95]):
        onnx = tmp_path / f"m{i}.onnx"
        onnx.write_bytes(f"model {i}".encode())
        registry.register(onnx, f"v{i}", {"splits_version": "s"}, {"metrics": {"accuracy": accuracy}, **SIGNATURE})
    record_release_test_without_a_bento(registry, "v0", "v1", "v2")
    return registry


@pytest.fixture
def incompatible(registry, tmp_path):
    """Two more versions: one trained on other classes, one on RGB images."""
    onnx = tmp_path / "other.onnx"
    onnx.write_bytes(b"other")
    registry.register(onnx, "shapes", {}, {**SIGNATURE, "class_names": ["circles", "squares", "stars"]})
    registry.register(onnx, "rgb", {}, {**SIGNATURE, "spec": {"height": 8, "width": 8, "channels": 3}})
    record_release_test_without_a_bento(registry, "shapes", "rgb")
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
    transitions = [e["action"] for e in registry.events() if e["action"] != "release-test"]
    assert transitions == ["policy", "promote", "promote", "rollback"]
    assert registry.get("v2").stage == "withdrawn"


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


def test_promote_refuses_an_incompatible_version_unless_explicitly_allowed(incompatible):
    registry = incompatible
    registry.promote("v0", actor="test")
    with pytest.raises(IncompatibleModelError, match=r"classes differ \(3 instead of 2"):
        registry.promote("shapes", actor="test")
    with pytest.raises(IncompatibleModelError, match="input 3×8×8 instead of 1×8×8"):
        registry.promote("rgb", actor="test")
    assert registry.production().version == "v0"
    registry.promote("shapes", reason="new product: shapes", actor="alice", allow_incompatible=True)
    assert registry.production().version == "shapes"
    event = registry.events()[-1]
    assert event["actor"] == "alice" and "classes differ" in event["incompatible_override"][0]
    with pytest.raises(IncompatibleModelError):  # going back is just as incompatible
        registry.rollback(actor="test")


def test_every_transition_is_recorded_with_who_when_and_why(registry):
    registry.promote("v0", reason="first", actor="dagster run abc")
    registry.promote("v1", reason="better", actor="bob")
    registry.rollback(reason="bad release", actor="carol")
    events = [e for e in registry.events() if e["action"] not in ("policy", "release-test")]
    assert [(e["action"], e["from"], e["to"], e["actor"], e["reason"]) for e in events] == [
        ("promote", None, "v0", "dagster run abc", "first"),
        ("promote", "v0", "v1", "bob", "better"),
        ("rollback", "v1", "v0", "carol", "bad release"),
    ]
    assert all(e["at"] for e in events)
    stages = {v.version: v.stage for v in registry.list_versions()}
    assert stages == {"v0": "production", "v1": "withdrawn", "v2": "candidate"}


def test_cli_refuses_an_incompatible_promotion_with_the_reason(incompatible, capsys):
    home = ["--home", str(incompatible.home), "--model", "clf"]
    assert registry_cli([*home, "promote", "v1"]) == 0
    assert registry_cli([*home, "promote", "shapes"]) == 2
    assert "not compatible with production v1: classes differ" in capsys.readouterr().err
    assert incompatible.production().version == "v1"
    assert registry_cli([*home, "promote", "shapes", "--allow-incompatible"]) == 0
    assert incompatible.production().version == "shapes"


def test_cli_says_where_it_looked_and_creates_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BENTOML_HOME", raising=False)
    monkeypatch.delenv("MLOPS_HOME", raising=False)
    for command in (["list"], ["production"], ["history"], ["rollback"]):
        assert registry_cli(command) == 2
        error = capsys.readouterr().err
        assert f"no model registry at {tmp_path}/.mlops/bentoml/models" in error and "--home" in error
    assert list(tmp_path.iterdir()) == []  # a read creates no directory


# -- approval before release ---------------------------------------------------------------------------
@pytest.fixture
def reviewed(registry):
    """Approval required; v0 in production; v1 cleared the gate and awaits a reviewer."""
    strict = ModelRegistry(registry.home, "clf", require_approval=True)
    registry.promote("v0", reason="before approval was required", actor="setup")
    strict.set_policy(True, by="setup", reason="approval before release from now on")
    strict.request_approval("v1", reason="gate: accuracy 0.93 vs 0.91", actor="dagster run r1")
    return strict


def test_a_candidate_awaiting_approval_reaches_production_only_when_approved(reviewed):
    assert {v.version: v.stage for v in reviewed.list_versions()}["v1"] == "awaiting-approval"
    assert [v.version for v in reviewed.awaiting_approval()] == ["v1"]
    with pytest.raises(ApprovalRequiredError, match=r"awaiting approval since .*mlops-registry approve v1"):
        reviewed.promote("v1", actor="impatient")
    assert reviewed.production().version == "v0"

    reviewed.approve("v1", by="dana (QA)", reason="checked the confusion matrix and the slices")
    assert reviewed.production().version == "v1"
    assert reviewed.awaiting_approval() == []
    review = reviewed.get("v1").review
    assert review["state"] == "approved" and review["reviewed_by"] == "dana (QA)"
    assert review["requested_by"] == "dagster run r1" and review["reviewed_at"] >= review["requested_at"]
    events = [(e["action"], e["actor"], e["reason"]) for e in reviewed.events()]
    assert events[-2:] == [
        ("request-approval", "dagster run r1", "gate: accuracy 0.93 vs 0.91"),
        ("approve", "dana (QA)", "checked the confusion matrix and the slices"),
    ]
    assert reviewed.events()[-1]["from"] == "v0" and reviewed.events()[-1]["to"] == "v1"


def test_a_rejected_candidate_never_reaches_production(reviewed):
    reviewed.reject("v1", by="dana", reason="recall of class dog too low")
    assert {v.version: v.stage for v in reviewed.list_versions()}["v1"] == "rejected"
    assert reviewed.production().version == "v0"
    with pytest.raises(NotReleasableError, match=r"rejected by dana \(recall of class dog too low\)"):
        reviewed.promote("v1")
    with pytest.raises(RegistryError, match="only a version awaiting approval"):
        reviewed.approve("v1", by="eve", reason="overrule")
    assert reviewed.events()[-1]["action"] == "reject" and reviewed.events()[-1]["actor"] == "dana"


def test_reviews_need_a_name_and_a_reason(reviewed):
    for by, reason in (("", "fine"), ("  ", "fine"), ("dana", " ")):
        with pytest.raises(RegistryError, match=r"say who you are \(--by\) and why \(--reason\)"):
            reviewed.approve("v1", by=by, reason=reason)
        with pytest.raises(RegistryError, match=r"say who you are \(--by\) and why \(--reason\)"):
            reviewed.reject("v1", by=by, reason=reason)
    assert reviewed.get("v1").stage == "awaiting-approval"


def test_an_approval_is_refused_when_production_moved_since_the_gate_compared(reviewed):
    reviewed.request_approval("v2", reason="gate: 0.95 vs 0.91", actor="dagster run r2")
    reviewed.approve("v2", by="erin", reason="fine")  # production v0 → v2 after the gate compared v1 with v0
    with pytest.raises(RegistryError, match="compared with production v0, but production is now v2"):
        reviewed.approve("v1", by="dana", reason="ok")
    assert reviewed.production().version == "v2"


def test_cli_approve_reject_and_the_history(reviewed, capsys, monkeypatch):
    monkeypatch.setenv("MLOPS_REQUIRE_APPROVAL", "1")
    home = ["--home", str(reviewed.home), "--model", "clf"]
    assert registry_cli([*home, "awaiting"]) == 0
    assert "v1  requested" in capsys.readouterr().out
    assert registry_cli([*home, "promote", "v1"]) == 2
    assert "approval before release is required" in capsys.readouterr().err
    assert registry_cli([*home, "approve", "v1", "--by", "dana", "--reason", "looks right"]) == 0
    assert "approved by dana: production is now clf:v1" in capsys.readouterr().out
    assert registry_cli([*home, "promote", "v2"]) == 2  # never asked for approval
    assert "no approval was requested" in capsys.readouterr().err
    assert registry_cli([*home, "reject", "v2", "--by", "dana", "--reason", "no"]) == 0
    assert "clf:v2 stays out of production" in capsys.readouterr().out
    assert registry_cli([*home, "rollback", "--reason", "bad release"]) == 0  # the way back needs no reviewer
    capsys.readouterr()
    assert registry_cli([*home, "history"]) == 0
    history = capsys.readouterr().out
    assert "request-approval  v1 (production v0)  by dagster run r1" in history
    assert "approve           v0 → v1  by dana: looks right" in history
