"""Which version serves and how it got there, read from the Dagster instance and the registry, for one page.

A person on call asks two things: what does the service answer with, and why that one. The answer is scattered
over the drift sensor's ticks, a retraining run, ``registered_model``'s gate, the Bento's release test, the
registry's history and the service's ``/model``. :func:`release_timeline` gathers them, top to bottom, each line
linking to its run or asset in the Dagster UI (root-relative links: the Markdown is rendered by the UI itself):

window judged → run launched → gate decision with both figures → release test → promoted → served.

A step that has no record (a first build has no drift window; a release test recorded only once the Bento's
application test gates promotion) says so instead of being left out, so the timeline always reads the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg

from mlops_assets.core.common.markdown import markdown_table
from mlops_assets.run_tags import TRIGGER_TAG

if TYPE_CHECKING:
    from mlops_assets.core.registry.registry import ModelRegistry, ModelVersion

RELEASE_TEST = dg.AssetCheckKey(dg.AssetKey("bento"), "bento_application_test")
STEPS = ("window judged", "run launched", "gate decision", "release test", "promoted", "served")


@dataclass(frozen=True)
class Step:
    """One line of the timeline: what happened, when, and where to look."""

    step: str
    at: str
    what: str
    link: str = ""

    def row(self) -> list[str]:
        return [self.step, self.at[:19].replace("T", " "), self.what, f"[open]({self.link})" if self.link else "–"]


def run_link(run_id: str) -> str:
    return f"/runs/{run_id}"


def actor_run_id(actor: str) -> str | None:
    """The run id in a registry actor like ``dagster run 1a2b…``; None for a person or the CLI."""
    head, _, run_id = actor.partition("dagster run ")
    return run_id.split()[0] if run_id and not head.strip() else None


def _run_started(instance: dg.DagsterInstance, run_id: str) -> str:
    from datetime import UTC, datetime

    record = instance.get_run_record_by_id(run_id)
    stamp = record.start_time or record.create_timestamp.timestamp() if record else None
    return datetime.fromtimestamp(stamp, UTC).isoformat() if stamp else ""


def _materialization(instance: dg.DagsterInstance, asset: str, run_id: str) -> dict[str, Any]:
    """The metadata values ``asset`` was materialised with in ``run_id`` (empty when it was not)."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = entry.asset_materialization
        if materialization and materialization.asset_key == dg.AssetKey(asset):
            return {k: v.value for k, v in materialization.metadata.items()}
    return {}


def judged_window_step(instance: dg.DagsterInstance, run_tags: dict[str, str]) -> Step:
    window = run_tags.get("mlops/drift_window")
    if run_tags.get(TRIGGER_TAG) != "drift" or not window:
        return Step("window judged", "", "no drift window: this version's run was not launched by the drift sensor")
    # the tag is the window's label ("2026-12-02T15:53", or "2026-12-02T15" on the hour); the partition key of
    # drift_report is "2026-12-02-15:53"
    day, _, clock = window.removeprefix("window-").partition("T")
    key = f"{day}-{clock if ':' in clock else clock + ':00'}"
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("drift_report"), asset_partitions=[key]), limit=1
    ).records
    at = ""
    if records:
        from datetime import UTC, datetime

        at = datetime.fromtimestamp(records[0].timestamp, UTC).isoformat()
    return Step(
        "window judged",
        at,
        f"window {key}: drift share {run_tags.get('mlops/drift_share', '?')} "
        f"(features: {run_tags.get('mlops/drifted_features') or '?'})",
        f"/assets/drift_report?partition={key}",
    )


def gate_step(instance: dg.DagsterInstance, version: ModelVersion, run_id: str | None) -> Step:
    gate = version.metadata.get("gate") or {}
    registered = _materialization(instance, "registered_model", run_id) if run_id else {}
    figures = (
        f"{gate['metric']} {gate['candidate']:.4f} (this version) vs {gate['production']:.4f} "
        f"(production {gate['compared_with']}) on the same {gate['rows']} test images"
        if gate
        else "no same-images comparison (nothing in production to compare with)"
    )
    verdict = "promoted" if registered.get("promoted") else "kept as a candidate" if registered else "decided"
    reason = registered.get("gate_reason", "")
    return Step(
        "gate decision",
        _run_started(instance, run_id) if run_id else version.created,
        f"{verdict}: {figures}" + (f". {reason}" if reason else ""),
        "/assets/registered_model",
    )


def release_test_step(instance: dg.DagsterInstance, version: ModelVersion) -> Step:
    """The latest evaluation of the Bento's application test that served this version, when there is one."""
    for record in instance.event_log_storage.get_asset_check_execution_history(RELEASE_TEST, limit=50):
        evaluation = (
            record.event.dagster_event.event_specific_data if record.event and record.event.dagster_event else None
        )
        metadata = {k: v.value for k, v in getattr(evaluation, "metadata", {}).items()}
        if metadata.get("served_model") != version.tag:
            continue
        from datetime import UTC, datetime

        outcome = "passed" if evaluation.passed else "FAILED"
        accuracy = metadata.get("served_accuracy")
        figures = f": served accuracy {accuracy:.4f}" if isinstance(accuracy, float) else ""
        return Step(
            "release test",
            datetime.fromtimestamp(record.event.timestamp, UTC).isoformat(),
            f"bento_application_test {outcome}{figures} ({metadata.get('reason', '')})",
            run_link(record.run_id),
        )
    return Step("release test", "", f"no application test of a Bento serving {version.tag} is recorded")


def promoted_step(registry: ModelRegistry, version: str) -> Step:
    """The registry's last event that made ``version`` production: the decision the service follows."""
    events = [
        e
        for e in registry.events()
        if e.get("to") == version
        and e.get("from") != version
        and e["action"] in ("promote", "approve", "rollback", "reinstate", "release")
    ]
    if not events:
        return Step("promoted", "", f"the registry records no event that made {version} production")
    event = events[-1]
    run_id = actor_run_id(event.get("actor", ""))
    return Step(
        "promoted",
        event["at"],
        f"{event['action']} {event.get('from') or 'nothing'} → {version} by "
        f"{event.get('actor', 'unknown')}: {event['reason']}",
        run_link(run_id) if run_id else "",
    )


def release_timeline(
    instance: dg.DagsterInstance, registry: ModelRegistry, served: dict[str, Any], service_url: str
) -> tuple[list[Step], dict[str, Any]]:
    """The steps for the version ``served`` (the service's ``/model``), and the serving view's headline facts."""
    version = registry.get(served["version"])
    run_id = version.metadata.get("dagster_run_id")
    record = instance.get_run_record_by_id(run_id) if run_id else None
    tags = dict(record.dagster_run.tags) if record else {}
    launched = (
        f"{record.dagster_run.job_name} run {run_id[:8]}, launched by "
        f"{tags.get('dagster/sensor_name') or tags.get('dagster/schedule_name') or 'hand'}"
        if record
        else "no run of this instance registered it (the CLI, or another instance)"
    )
    promoted = promoted_step(registry, version.version)
    steps = [
        judged_window_step(instance, tags),
        Step(
            "run launched",
            _run_started(instance, run_id) if record else version.created,
            launched,
            run_link(run_id) if record else "",
        ),
        gate_step(instance, version, run_id if record else None),
        release_test_step(instance, version),
        promoted,
        Step(
            "served",
            served.get("loaded_at", ""),
            f"the service reports {version.version} ({served.get('tag', '')})",
            f"{service_url}/model" if service_url.startswith("http") else service_url,
        ),
    ]
    facts = {
        "served_version": version.version,
        "served_since": served.get("loaded_at", ""),
        "decision": promoted.what,
        "run_id": run_id or "none",
    }
    return steps, facts


def timeline_markdown(steps: list[Step]) -> str:
    return markdown_table(["step", "at (UTC)", "what", "link"], [step.row() for step in steps])
