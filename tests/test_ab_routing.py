"""A/B routing: which clients the challenger answers (a stable, sticky share by client key) and which challenger
may answer at all (the registry's rule: released, and approved when the stored policy requires it)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bentos.ab_routing import AbRouting, ChallengerGate, answered_by_challenger, bucket_of
from bentos.served_model import LoadedModel
from mlops_assets.core.registry import release_rules as rules
from mlops_assets.core.registry.registry import ModelRegistry
from tests.test_shadow import registry  # noqa: F401 - the fixture: v0 in production, v1 and v2 tested candidates

KEYS = [f"client-{i:05d}" for i in range(2000)]


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5])
def test_the_challenger_s_share_of_2000_clients_is_the_fraction_within_3_points(fraction):
    share = sum(answered_by_challenger(key, fraction) for key in KEYS) / len(KEYS)
    assert abs(share - fraction) <= 0.03, share


def test_a_client_keeps_its_version_and_a_larger_fraction_only_adds_clients():
    first = [answered_by_challenger(key, 0.2) for key in KEYS]
    assert [answered_by_challenger(key, 0.2) for key in KEYS] == first  # sticky
    wider = [answered_by_challenger(key, 0.4) for key in KEYS]
    assert all(w for f, w in zip(first, wider, strict=True) if f)  # no client of 0.2 falls back to production
    assert not any(answered_by_challenger(key, 0.0) for key in KEYS)
    assert not answered_by_challenger(None, 1.0) and not answered_by_challenger("", 1.0)  # no key: production
    assert all(answered_by_challenger(key, 1.0) for key in KEYS[:100])


def test_a_client_s_bucket_is_the_same_in_another_process():
    """Workers are processes: a key must land in the same bucket whatever the interpreter's hash seed."""
    code = ("from bentos.ab_routing import bucket_of; "
            "print(' '.join(repr(bucket_of(k)) for k in ['alice', 'bob', 'client-00042']))")
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": os.getcwd()}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [repr(bucket_of(k)) for k in ["alice", "bob", "client-00042"]]


def test_only_a_released_shadow_answers_clients_and_with_approval_required_only_an_approved_one(registry):  # noqa: F811
    assert "not in the shadow slot" in registry.why_not_answerable("v1")
    registry.set_shadow("v1", reason="challenger", actor="alice")
    assert registry.why_not_answerable("v1") is None
    registry.record_release_test("v1", "clf:bento1", passed=False, reason="the Bento answers differently", by="ci")
    assert registry.shadow_version() == "v1"  # it still shadows ...
    assert "only shadows: its release test failed" in registry.why_not_answerable("v1")  # ... and answers no one
    registry.record_release_test("v1", "clf:bento2", passed=True, reason="fixed", by="ci")
    assert registry.why_not_answerable("v1") is None
    registry.set_policy(True, by="setup", reason="a reviewer decides from now on")
    why = registry.why_not_answerable("v1")
    assert "approval before release is required" in why and "not approved" in why
    registry.request_approval("v1", reason="gate: better", actor="gate")
    assert "awaiting approval" in registry.why_not_answerable("v1")
    registry.reject("v1", by="dana", reason="worse")
    assert "not in the shadow slot" in registry.why_not_answerable("v1")  # rejection empties the slot


def test_the_rule_is_a_pure_function_of_the_pointer():
    pointer = {"current": "v0", "slots": {"shadow": "v1"}, "policy": {"require_approval": False},
               "release_tests": {"v1": {"passed": True}}}
    assert rules.why_not_answerable(pointer, "v1") is None
    assert "no release test" in rules.why_not_answerable({**pointer, "release_tests": {}}, "v1")
    withdrawn = {**pointer, "withdrawn": {"v1": {"by": "ops", "at": "2026-01-01T00:00", "reason": "bad"}}}
    assert "withdrawn" in rules.why_not_answerable(withdrawn, "v1")
    strict = {**pointer, "policy": {"require_approval": True},
              "reviews": {"v1": {"state": "approved", "production_at_request": "v0", "reviewed_by": "dana"}}}
    assert rules.why_not_answerable(strict, "v1") is None  # approved against today's production
    stale = {**strict, "current": "v9"}
    assert "stale" in rules.why_not_answerable(stale, "v1")


def unloaded(version: str) -> LoadedModel:
    """A LoadedModel's identity without a session: the gate compares versions only."""
    return LoadedModel(version, f"clf:{version}", None, ["cat", "dog"], {}, {}, "shadow")


def test_the_gate_answers_with_the_loaded_shadow_only_while_the_registry_lets_that_version(registry):  # noqa: F811
    gate = ChallengerGate(0.5)
    registry.set_shadow("v1", reason="challenger", actor="alice")
    assert gate.answering(unloaded("v1")) is None  # not judged yet: production answers
    gate.judge(registry, "v1")
    assert gate.answering(unloaded("v1")).version == "v1"
    assert gate.answering(unloaded("v2")) is None  # a shadow loaded but not the version judged
    assert gate.answering(None) is None
    production, shadow = unloaded("v0"), unloaded("v1")
    inside = next(k for k in KEYS if answered_by_challenger(k, 0.5))
    outside = next(k for k in KEYS if not answered_by_challenger(k, 0.5))
    assert gate.choose(production, shadow, inside, images=3) == (shadow, production)  # production scored beside
    assert gate.choose(production, shadow, outside) == (production, None)  # None: the shadow is scored beside
    assert gate.choose(production, shadow, None, share=True) == (shadow, production) and gate.answered == 4
    registry.record_release_test("v1", "clf:b", passed=False, reason="broken export", by="ci")
    gate.judge(registry, "v1")
    assert gate.answering(unloaded("v1")) is None
    assert gate.choose(production, shadow, inside) == (production, None)
    described = gate.describe(unloaded("v1"))
    assert described["challenger_version"] is None and "release test failed" in described["not_answering"]
    gate.judge(registry, None)
    assert gate.answering(unloaded("v1")) is None
    assert ChallengerGate(0.0).describe(unloaded("v1"))["not_answering"].startswith("A/B is off")


class Broken(ModelRegistry):
    def why_not_answerable(self, version):
        raise OSError("volume gone")


def test_a_registry_that_cannot_answer_lets_no_challenger_answer(tmp_path):
    gate = ChallengerGate(1.0)
    gate.answerable = "v1"
    gate.judge(Broken(tmp_path, "clf"), "v1")
    assert gate.answering(unloaded("v1")) is None and "volume gone" in gate.refusal


def test_the_middleware_routes_the_challenger_s_share_of_classify_and_hides_its_endpoint():
    import asyncio

    async def app(scope, receive, send):
        app.path = scope["path"]

    routing = AbRouting(app, fraction=0.5)
    inside = next(k for k in KEYS if answered_by_challenger(k, 0.5))
    outside = next(k for k in KEYS if not answered_by_challenger(k, 0.5))
    for key, expected in ((inside, "/classify_challenger"), (outside, "/classify"), (None, "/classify")):
        app.path = None
        headers = [(b"x-client-key", key.encode())] if key else []
        asyncio.run(routing({"type": "http", "path": "/classify", "headers": headers}, None, None))
        assert app.path == expected
    app.path = None
    asyncio.run(routing({"type": "http", "path": "/classify_image", "headers": [(b"x-client-key", inside.encode())]},
                        None, None))
    assert app.path == "/classify_image"  # the unbatched endpoints read the key themselves
    sent = []

    async def send(event):
        sent.append(event)

    app.path = None
    asyncio.run(routing({"type": "http", "path": "/classify_challenger", "headers": []}, None, send))
    assert app.path is None and sent[0]["status"] == 404
