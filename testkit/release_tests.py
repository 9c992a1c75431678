"""Test-kit helper: record a passed release test for registry versions that tests put in production.

The registry refuses to put a version in production without a passed release test (its Bento built and its
application test passed against it; see ``mlops_assets.core.registry.release_rules``). Tests of the registry's other
rules (approval, rollback, signatures) and of the service's hot swap use small fixture models for which no Bento is
built: they record the release test explicitly through this helper, whose name and record say so, instead of
the registry growing a way around its own rule.
"""

from __future__ import annotations

from mlops_assets.core.registry.registry import ModelRegistry

FIXTURE_BENTO_TAG = "none:test-fixture-no-bento-built"


def record_release_test_without_a_bento(registry: ModelRegistry, *versions: str) -> None:
    """Record, for each version, a passed release test that no Bento ran: a test fixture's say-so, named so."""
    for version in versions:
        registry.record_release_test(
            version,
            bento_tag=FIXTURE_BENTO_TAG,
            passed=True,
            reason="test fixture: recorded without building a Bento",
            by="testkit",
        )
