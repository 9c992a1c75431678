"""`make loop-demo LOOP_DEMO_ARGS=--challenger`: the retrained version is compared on live traffic before it serves.

With ``--challenger`` the loop demo runs under the release policy ``shadow`` (``MLOPS_RELEASE_POLICY``): the version
the drift sensor's retraining run builds clears the gate and its release test, and goes to the shadow slot beside
production instead of replacing it. Then, on the running stack, the demo waits until the service scores with the
challenger, sends two windows of drifted (blurred) traffic that production answers and the shadow scores on the
same requests, and labels every answer through ``POST /feedback``. The daemon's ``feedback_sensor`` launches
``live_comparison_job`` for each window once it has ended; the demo prints each comparison's figures (requests
compared, agreement, each version's accuracy on the same labelled requests, the discordant pairs, McNemar's exact
p-value) and verdict, and only then decides: when every window says "better" it promotes the challenger through the
registry (its rules apply) and waits for the service to answer with it; otherwise the challenger stays in shadow
and production keeps serving, and the demo says so. (Each window is its own test: acting on every window's verdict,
not the first "better", keeps the chance of a false promotion at most alpha.)

The comparison's requests are blurred digits of the demo's test traffic: the production model never trained on a
blurred digit, the challenger trained on blurred images of other digits (the first ``NEW_LABELLED`` ones).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from mlops_assets.core.common import settings
from mlops_assets.tools.loop_demo_queries import COMPARISON

CHALLENGER_SETTINGS = {settings.RELEASE_POLICY: "shadow"}  # the gate's yes goes to the shadow slot
BETTER = "better"  # live_comparison's verdict that promotes (mlops_assets.core.monitoring.live_comparison.BETTER)
WINDOWS = 2  # windows of compared traffic: the comparison's plot draws them over windows
FIGURES = ("verdict", "compared", "share_mirrored", "agreement", "labelled_pairs", "production_accuracy",
           "challenger_accuracy", "production_only_right", "challenger_only_right", "p_value", "alpha",
           "production_version", "challenger_version")


def model_info(service: str) -> dict[str, Any]:
    import httpx

    return httpx.get(f"{service}/model", timeout=10).json()


def wait_for(what: str, ready, deadline: float, where: str) -> Any:
    """Poll ``ready()`` each second until it returns something true; past ``deadline`` the demo fails, saying
    what it waited for and where to look."""
    from mlops_assets.tools.loop_demo import DemoError

    while not (found := ready()):
        if time.monotonic() > deadline:
            raise DemoError(f"waited in vain for {what}  {where}")
        time.sleep(1.0)
    return found


def figures_sentence(meta: dict[str, Any]) -> str:
    """The comparison's figures as a person reads them (every one from live_comparison's metadata)."""
    def pct(key: str) -> str:
        return f"{100 * meta[key]:.1f} %" if meta.get(key) is not None else "n/a"

    p = f"{meta['p_value']:.3g}" if meta.get("p_value") is not None else "n/a"
    return (f"{meta.get('compared')} requests compared ({pct('share_mirrored')} of those answered mirrored), "
            f"agreement {pct('agreement')}; on {meta.get('labelled_pairs')} labelled pairs: challenger "
            f"{meta.get('challenger_version')} {pct('challenger_accuracy')} vs production "
            f"{meta.get('production_version')} {pct('production_accuracy')}, only production right "
            f"{meta.get('production_only_right')}, only the challenger right {meta.get('challenger_only_right')}, "
            f"McNemar exact p = {p} (alpha {meta.get('alpha')})")


def comparison_of(ui: str, partition: str) -> dict[str, Any] | None:
    """live_comparison's latest materialization of ``partition`` as {label: value}, None before there is one."""
    from mlops_assets.infra.local_stack import graphql

    found = graphql(ui, COMPARISON, {"path": ["live_comparison"], "partition": partition})["assetOrError"]
    latest = found.get("assetMaterializations") or []
    if not latest:
        return None
    return {m["label"]: next((v for k, v in m.items() if k != "label"), None) for m in latest[0]["metadataEntries"]}


def compare_before_serving(ui: str, service: str, registry: Any, timeline: Any, images, labels,
                           class_names: list[str], deadline: float) -> dict[str, Any]:
    """The challenger phase (see the module docstring). Returns what it saw, for the demo's summary."""
    import numpy as np

    from mlops_assets.tools.loop_demo import WINDOW, DemoError, say, wait_until_moment, window_key
    from mlops_assets.tools.simulator import send_feedback, send_traffic

    production, challenger = registry.production_version(), registry.shadow_version()
    if challenger is None:
        raise DemoError(f"the retrained version did not enter the shadow slot (production {production}): see the "
                        f"gate's reason above  {ui}/assets/registered_model")
    timeline.mark("challenger_shadow", f"{challenger} is in the shadow slot beside production {production} (release "
                                       f"policy shadow): it scores the requests production answers, answers no one")
    wait_for(f"the service to score with the shadow {challenger}",
             lambda: (model_info(service).get("shadow") or {}).get("version") == challenger, deadline,
             f"{service}/model")
    now = datetime.now(UTC)
    first = now.replace(second=0, microsecond=0)
    if (first + WINDOW - now).total_seconds() < 20:  # keep each window's compared traffic inside it
        first += WINDOW
    windows = []
    for i, (part_images, part_labels) in enumerate(zip(np.array_split(images, WINDOWS),
                                                       np.array_split(labels, WINDOWS), strict=True)):
        window = first + i * WINDOW
        wait_until_moment(window + timedelta(seconds=1))
        expected = model_info(service)["inference_log"]["written"] + len(part_images)
        sent = send_traffic(service, part_images)
        if sent["failed_requests"]:
            raise DemoError(f"challenger window {window:%H:%M}: {sent['failed_requests']} request(s) failed")
        wait_for("the inference log to record the compared traffic",
                 lambda n=expected: model_info(service)["inference_log"]["written"] >= n, deadline,
                 f"{service}/model")
        labelled = send_feedback(service, sent["prediction_ids"], [class_names[int(c)] for c in part_labels])
        if labelled["refused"] or labelled["accepted"] != len(part_images):
            raise DemoError(f"feedback on the challenger window {window:%H:%M}: {labelled}")
        timeline.mark(f"challenger_traffic_{i}", f"blurred traffic in window {window:%H:%M}: {sent['images_sent']} "
                      f"images answered by {production} and scored by {challenger}, {labelled['accepted']} labelled "
                      "through /feedback")
        windows.append(window_key(window))
    say(f"waiting for the windows to end ({first + WINDOWS * WINDOW:%H:%M:%S} UTC): feedback_sensor then launches "
        "live_comparison_job for each")
    seen: dict[str, Any] = {"windows": [], "promoted": False}
    for partition in windows:
        page = f"{ui}/assets/live_comparison?partition={partition}"
        meta = wait_for(f"live_comparison of window {partition} with its labels",
                        lambda p=partition: (m := comparison_of(ui, p)) and m.get("labelled_pairs") and m, deadline,
                        page)
        timeline.mark(f"compared_{len(seen['windows'])}", f"live_comparison {partition[-5:]}: "
                      f"{figures_sentence(meta)}; verdict: {meta['verdict']}  {page}")
        seen["windows"].append({key: meta.get(key) for key in FIGURES} | {"window": partition})
    verdicts = [w["verdict"] for w in seen["windows"]]
    if set(verdicts) != {BETTER}:
        timeline.mark("challenger_kept", f"not promoting {challenger}: the live comparison's verdicts are "
                      f"{verdicts}, not all 'better'; it stays in shadow and {production} serves")
        return seen
    figures = "; ".join(f"{w['window'][-5:]}: {figures_sentence(w)}" for w in seen["windows"])
    registry.promote(challenger, reason=f"live evidence (loop demo), 'better' in every window: {figures}",
                     actor="loop demo (--challenger)")
    seen["promoted"] = True
    timeline.mark("challenger_promoted", f"promoting {challenger}: the verdict is 'better' in each window, on the "
                                         f"same live requests  {ui}/assets/production_release")
    wait_for(f"the service to answer with {challenger}", lambda: model_info(service)["version"] == challenger,
             deadline, f"{service}/model")
    timeline.mark("challenger_served", f"the running service answers with {challenger} (was {production})  "
                                       f"{service}/model")
    return seen
