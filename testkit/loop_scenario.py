"""The monitoring loop end to end, on the real definitions, real server and real traffic.

Run as a script (``python -m testkit.loop_scenario ROOT``) with ``MLOPS_PROFILE_CRON="* * * * *"``
set before anything imports the definitions, so profile windows are one minute long and the loop
closes in minutes rather than hours. Steps:

1. digits exported as an image folder; build_job on it; reference_profile of the production model;
2. the Bento service started for real; clean test-split traffic in one window;
3. blurred (drifted) traffic in the next window: a harmful drift the model's own confidence shows, so the
   default policy (the harm trigger: accuracy estimated without labels, ATC, at least 5 points below
   validation) sees it (inverted digits would not: the model stays sure of itself on them;
   docs/drift-decision.md);
4. both windows profiled; the drift sensor skips the clean window, and skips the drifted one too
   (alerting a person) because the labelled source has nothing new; blurred labelled images then
   arrive, and the next tick asks for exactly one retraining run, and nothing more when evaluated again;
5. retrain_job run with the sensor's tags; the retrained model is better on the drifted data, so the
   gate promotes it, and the running service follows the pointer;
6. the true labels of both windows' predictions, sent to the service's ``/feedback`` as they were served, give
   ``production_performance`` per window: the first model's accuracy fell on the blurred traffic, and
   ``performance_alert_sensor`` alerts a person about that window once.

The service runs with access control on (a token in its environment); every request sends the token.

The seconds of each phase from drift onset to the new model served are in the summary (``phases_s``).

Prints one JSON summary line (prefixed ``LOOP_SUMMARY``) that the test asserts on.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

FAST_TRAINING = {"learning_rates": [3e-3], "hidden": [16], "epochs": [15]}
DRIFT = "blur"  # the loop demo's drift (mlops_assets/tools/loop_demo.py)


def log(message: str) -> None:
    print(f"[loop {datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def wait_until(moment: datetime) -> None:
    delay = (moment - datetime.now(UTC)).total_seconds()
    if delay > 0:
        time.sleep(delay)


def wait_for_log(client: httpx.Client, written: int, deadline_s: float = 30.0) -> dict:
    """Poll /model until the inference log has written ``written`` rows (it flushes asynchronously)."""
    deadline = time.monotonic() + deadline_s
    while True:
        stats = client.get("/model").json()["inference_log"]
        if stats["written"] >= written or time.monotonic() > deadline:
            return stats
        time.sleep(0.2)


def main(root: Path) -> dict:
    import dagster as dg

    from mlops_assets.automation import build_job, drift_sensor, reference_profile_job, retrain_job
    from mlops_assets.core.data.images import load_digits_dataset
    from mlops_assets.core.monitoring.performance import read_verdicts
    from mlops_assets.core.monitoring.profile_layout import window_version
    from mlops_assets.core.registry.registry import ModelRegistry
    from mlops_assets.definitions import ASSET_CHECKS, ASSETS
    from mlops_assets.infra.bento_server import SERVICE_TARGET, serve_bento
    from mlops_assets.tools.simulator import apply_drift, send_feedback, send_traffic, write_labelled_images
    from resources.dataset_source import DatasetSource
    from sensors.performance_sensors import performance_alert_sensor
    from testkit.fixtures import make_resources

    folder = root / "images"
    digits = load_digits_dataset()
    write_labelled_images(folder, digits.images, digits.labels, digits.class_names, "digit")
    source = DatasetSource(kind="image_folder", path=str(folder), height=8, width=8, channels=1)
    resources = make_resources(root, source)
    loop_defs = dg.Definitions(
        assets=ASSETS, asset_checks=ASSET_CHECKS, jobs=[build_job, retrain_job, reference_profile_job],
        sensors=[drift_sensor],
        resources=resources,
    )
    fast = {"ops": {"trained_model": {"config": FAST_TRAINING}}}
    registry = ModelRegistry(root / "bentoml", "image_classifier")
    summary: dict = {}

    with dg.instance_for_test() as instance:
        log("build_job on the exported digits folder")
        build = loop_defs.resolve_job_def("build_job").execute_in_process(instance=instance, run_config=fast)
        assert build.success, "build_job failed"
        first = registry.production().version
        summary["first_production"] = first
        reference = dg.materialize(ASSETS, selection=["reference_profile"], resources=resources, instance=instance)
        assert reference.success, "reference_profile failed"

        test_images = digits.images[-300:]
        test_labels = digits.labels[-300:]
        # one worker: the scenario waits on its inference-log counter (/model's counters are per worker)
        token = secrets.token_urlsafe(16)
        server_env = {"MLOPS_ARTIFACT_ROOT": str(root / "artifacts"), "MLOPS_POLL_SECONDS": "0.5",
                      "MLOPS_SERVICE_WORKERS": "1", "MLOPS_API_TOKEN": token}
        with serve_bento(SERVICE_TARGET, root / "bentoml", root / "server.log", env=server_env) as url, \
                httpx.Client(base_url=url, timeout=30) as client:
            now = datetime.now(UTC)
            if now.second > 35:  # keep all of the clean traffic inside one one-minute window
                wait_until(now.replace(second=0, microsecond=0) + timedelta(minutes=1))
            clean_window = datetime.now(UTC).replace(second=0, microsecond=0)
            log(f"clean traffic in window {clean_window:%H:%M}")
            clean = send_traffic(url, test_images, token=token)
            assert clean["failed_requests"] == 0, clean
            wait_for_log(client, clean["images_sent"])

            drift_window = clean_window + timedelta(minutes=1)
            wait_until(drift_window + timedelta(seconds=1))
            log(f"blurred traffic in window {drift_window:%H:%M}")
            phases: dict[str, float] = {}
            onset = time.monotonic()
            blurred, _ = apply_drift(test_images, test_labels, DRIFT)
            drifted = send_traffic(url, blurred, token=token)
            assert drifted["failed_requests"] == 0, drifted
            stats = wait_for_log(client, clean["images_sent"] + drifted["images_sent"])
            summary["log"] = stats
            truth = [digits.class_names[int(y)] for y in test_labels]
            summary["feedback"] = [send_feedback(url, traffic["prediction_ids"], truth, token)
                                   for traffic in (clean, drifted)]

            wait_until(drift_window + timedelta(minutes=1, seconds=1))
            phases["window_close"] = time.monotonic() - onset
            ticks = []
            cursor = None

            def tick(name: str) -> dg.SensorResult:
                nonlocal cursor
                with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
                    result = drift_sensor(context)
                cursor = result.cursor or cursor
                ticks.append({"window": name, "skip": result.skip_reason.skip_message if result.skip_reason else None,
                              "run_keys": [r.run_key for r in result.run_requests or []]})
                return result

            for window in (clean_window, drift_window):
                key = window.strftime("%Y-%m-%d-%H:%M")
                log(f"profile window {key}")
                started = time.monotonic()
                profiled = dg.materialize(ASSETS, selection=["inference_profiles"], partition_key=key,
                                          resources=resources, instance=instance)
                assert profiled.success, f"inference_profiles {key} failed"
                assert (root / "artifacts" / "profiles" / window_version(window)).is_dir()
                phases["profile"] = time.monotonic() - started
                started = time.monotonic()
                tick(key)
                phases["sensor_tick"] = time.monotonic() - started
            # drift, but nothing new to learn from: the sensor skips and alerts a person
            log("drift seen; now blurred labelled images arrive in the source")
            new_images, new_labels = apply_drift(digits.images[:600], digits.labels[:600], DRIFT)
            write_labelled_images(folder, new_images, new_labels, digits.class_names, "blurred")
            result = tick("labelled data arrived")
            tick("re-evaluation")
            summary["ticks"] = ticks
            summary["alerts"] = [json.loads(line)["kind"] for line in
                                 (root / "artifacts" / "alerts" / "alerts.jsonl").read_text().splitlines()]
            request = next(iter(result.run_requests or []), None)
            assert request is not None, f"no retraining requested: {ticks}"

            log(f"retrain_job for {request.run_key}")
            started = time.monotonic()
            retrain = loop_defs.resolve_job_def("retrain_job").execute_in_process(
                instance=instance, run_config=fast, tags=request.tags, raise_on_error=False)
            phases["retrain_and_gate"] = time.monotonic() - started
            registered = next(
                e.materialization.metadata for e in retrain.get_asset_materialization_events()
                if e.asset_key.to_user_string() == "registered_model"
            )
            released = next((e.materialization.metadata for e in retrain.get_asset_materialization_events()
                             if e.asset_key.to_user_string() == "production_release"), {})
            summary["retrain_success"] = retrain.success
            summary["promoted"] = bool(released and released["promoted"].value)
            summary["gate_reason"] = registered["gate_reason"].value
            summary["production_after"] = registry.production().version
            summary["run_tags"] = dict(request.tags)
            started = time.monotonic()
            deadline = time.monotonic() + 30
            served = client.get("/model").json()["version"]
            while served != summary["production_after"] and time.monotonic() < deadline:
                time.sleep(0.2)
                served = client.get("/model").json()["version"]
            phases["swap"] = time.monotonic() - started
            phases["onset_to_served"] = time.monotonic() - onset
            summary["served_after"] = served
            summary["phases_s"] = {k: round(v, 2) for k, v in phases.items()}

        log("production_performance of both windows, from the labels sent to /feedback")
        summary["performance"] = {}
        for window in (clean_window, drift_window):
            key = window.strftime("%Y-%m-%d-%H:%M")
            measured = dg.materialize(ASSETS, selection=["production_performance"], partition_key=key,
                                      resources=resources, instance=instance)
            assert measured.success, f"production_performance {key} failed"
            meta = measured.asset_materializations_for_node("production_performance")[0].metadata
            verdict = read_verdicts(Path(meta["report_path"].value))[0]
            summary["performance"][key] = {"accuracy": meta["accuracy"].value, "labelled": meta["labelled"].value,
                                           "model_version": verdict["model_version"],
                                           "breaches": sorted(verdict["breaches"])}
        alert_cursor = None
        for _ in range(2):  # the second tick finds nothing new: one alert per episode
            with dg.build_sensor_context(instance=instance, resources=resources, cursor=alert_cursor) as context:
                alert_cursor = performance_alert_sensor(context).cursor or alert_cursor
        summary["performance_alerts"] = [
            (alert["breach"], alert["window"], alert["model_version"]) for alert in map(json.loads, (
                root / "artifacts" / "alerts" / "alerts.jsonl").read_text().splitlines())
            if alert["kind"] == "production_performance"]
        summary["drift_window"] = drift_window.strftime("%Y-%m-%d-%H:%M")
    return summary


if __name__ == "__main__":
    result = main(Path(sys.argv[1]))
    print("LOOP_SUMMARY " + json.dumps(result, default=str), flush=True)
