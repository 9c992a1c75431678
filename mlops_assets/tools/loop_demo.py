"""`make loop-demo`: the monitoring loop closing on the real daemon, in one command, in minutes.

Builds the production model on the digits (exported as an image folder), starts the Dagster webserver, the
daemon and the Bento service (each in a process group of its own), sends clean traffic in one one-minute
window and blurred traffic in the next while blurred *labelled* images arrive in the source, and reports
what happens as it happens, with timestamps and UI links: each window profiled by the profiling sensor's
run, the drift sensor's verdicts (the clean window skipped, with its reason), the retraining run the drift
sensor launches under the default policy (the harm trigger: the model's accuracy, estimated without labels,
fell; the demo prints which signal decided, and the sensor's sentence), the gate's decision with both models'
figures on the same test images, the new version's release test (its Bento built and application-tested, as
the registry recorded it), its promotion, and the service answering with the new version: in that order, since
promotion is the last step.
``--challenger``: it goes to the shadow slot and serves only if live traffic says better (``loop_demo_challenger``).
Everything it started is stopped on exit, Ctrl-C and SIGTERM; the instance and artifacts stay under ``--home``.

The stack's settings are the demo's own (one-minute windows, sensors every 10 s): a ``.env`` in the
repository does not apply to it. Training is one trial (``TRAINING_RUN_CONFIG``, written to ``--home`` and named
by MLOPS_RETRAIN_RUN_CONFIG) rather than the default four-trial halving search: the same code and gate, at
about a quarter of the training time, for the build and for the drift sensor's retraining run alike.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from mlops_assets.core.common import settings
from mlops_assets.infra.local_stack import (
    LOCATION,
    REPO,
    REPOSITORY,
    StackHome,
    dagster_daemon,
    dagster_webserver,
    graphql,
    make_home,
    skip_community_prompt,
)
from mlops_assets.infra.processes import free_port
from mlops_assets.tools.loop_demo_queries import DECISION, GATE, RUNS, SERVED, TICKS
from mlops_assets.tools.run_drain import drain_runs

MARKER = ".loop-demo"  # only a directory holding this file is ever wiped by the demo
TRAFFIC = 300  # images per window (the drift judge needs MLOPS_DRIFT_MIN_ROWS = 100)
NEW_LABELLED = 600  # blurred labelled images that arrive with the drift
# Blurred, not inverted: both cost the model most of its accuracy, but it stays sure of itself on inverted digits,
# so the harm trigger's label-free estimate (ATC) does not see that harm (docs/drift-decision.md)
DRIFT = "blur"
WINDOW = timedelta(minutes=1)
SENSOR_INTERVAL_S = 10  # the daemon evaluates the profiling and drift sensors this often
GRACE_S = 5  # a window is profiled this long after it ends

# One trial: the (learning rate, width) the default search chose on the digits, for both the build and the retraining
# (best epochs 17 and 23), and 20 epochs: 20 epochs trained instead of the default search's 90.
TRAINING_RUN_CONFIG = {"ops": {"trained_model": {"config": {"learning_rates": [3e-3], "hidden": [32], "epochs": [20]}}}}

BUILD_SCRIPT = """
import json, sys
import dagster as dg
import yaml
from mlops_assets.definitions import ASSETS, defs
run_config = yaml.safe_load(open(sys.argv[1]))
with dg.DagsterInstance.get() as instance:
    build = defs.resolve_job_def("build_job").execute_in_process(
        run_config=run_config, instance=instance, raise_on_error=False)
    reference = build.success and dg.materialize(
        ASSETS, selection=["reference_profile"], resources=defs.resources, instance=instance).success
print(json.dumps({"success": bool(build.success and reference), "run_id": build.run_id}))
"""

class DemoError(RuntimeError):
    """The loop did not close; the message says at which step and where the logs are."""


def stamp() -> str:
    return f"{datetime.now(UTC):%H:%M:%S}"


def say(message: str) -> None:
    print(f"[{stamp()}] {message}", flush=True)


def port_or_free(preferred: int) -> int:
    """The documented port when it is free (``make dev`` may hold it), else any free one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


def prepare_home(home: Path) -> None:
    if home.exists():
        if not (home / MARKER).exists():
            raise DemoError(f"{home} exists and is not a loop-demo directory; pass another --home")
        shutil.rmtree(home)
    home.mkdir(parents=True)
    (home / MARKER).write_text("created by `make loop-demo`; wiped by its next run\n")


def wait_until_moment(moment: datetime) -> None:
    delay = (moment - datetime.now(UTC)).total_seconds()
    if delay > 0:
        time.sleep(delay)


@dataclass
class Timeline:
    """What the demo saw, with seconds since it started: printed as it happens, summarised at the end."""

    began: float = field(default_factory=time.monotonic)
    events: dict[str, float] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    def mark(self, event: str, message: str) -> None:
        self.events.setdefault(event, round(time.monotonic() - self.began, 1))
        say(message)

    def summary(self) -> dict[str, Any]:
        return {"events_s": self.events, **self.facts}


def window_key(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d-%H:%M")


class LoopWatcher:
    """Polls the webserver (GraphQL) and the service, and says each new thing once."""

    def __init__(self, ui: str, service: str, timeline: Timeline, windows: dict[str, str]) -> None:
        self.ui, self.service, self.timeline, self.windows = ui, service, timeline, windows
        self.seen_ticks: set[str] = set()
        self.run_status: dict[str, str] = {}
        self.retrain_run: dict[str, Any] | None = None
        self.gate: dict[str, Any] | None = None

    def runs(self, **run_filter: Any) -> list[dict[str, Any]]:
        return graphql(self.ui, RUNS, {"filter": run_filter})["runsOrError"]["results"]

    def watch_profiling(self) -> None:
        for name, key in self.windows.items():
            for run in self.runs(pipelineName="profile_inference_log_job",
                                 tags=[{"key": "dagster/partition", "value": key}]):
                self.report_status(run, f"profiling of the {name} window {key[-5:]}", f"profiled_{name}")

    def report_status(self, run: dict[str, Any], what: str, event: str) -> None:
        if self.run_status.get(run["runId"]) == run["status"]:
            return
        self.run_status[run["runId"]] = run["status"]
        link = f"{self.ui}/runs/{run['runId']}"
        if run["status"] == "SUCCESS":
            self.timeline.mark(event, f"{what}: run {run['runId'][:8]} succeeded  {link}")
        elif run["status"] in ("FAILURE", "CANCELED"):
            raise DemoError(f"{what}: run {run['runId'][:8]} ended {run['status']}  {link}")
        elif run["status"] in ("QUEUED", "STARTED"):
            say(f"{what}: run {run['runId'][:8]} {run['status'].lower()}  {link}")

    def watch_drift_sensor(self) -> None:
        selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": "drift_sensor"}
        ticks = graphql(self.ui, TICKS, {"selector": selector})["sensorOrError"]["sensorState"]["ticks"]
        page = f"{self.ui}/locations/{LOCATION}/sensors/drift_sensor"
        for tick in sorted(ticks, key=lambda t: t["timestamp"]):
            if tick["id"] in self.seen_ticks or tick["status"] == "STARTED":  # judged once it has ended
                continue
            self.seen_ticks.add(tick["id"])
            reason = tick["skipReason"] or ""
            if tick["status"] == "FAILURE":
                raise DemoError(f"drift_sensor tick failed: {(tick['error'] or {}).get('message')}  {page}")
            if tick["runIds"]:
                self.timeline.mark("drift_detected", f"drift_sensor launched retrain_job run {tick['runIds'][0][:8]}"
                                   f"  {page}")
            elif tick["status"] == "SKIPPED" and not reason.startswith(("no new profile window", "no production")):
                event = "clean_skipped" if "<" in reason.split(";")[0] else "drift_skipped"
                self.timeline.mark(event, f"drift_sensor skipped: {reason}  {page}")

    def watch_retraining(self) -> None:
        runs = self.runs(pipelineName="retrain_job", tags=[{"key": "mlops/trigger", "value": "drift"}])
        if not runs:
            return
        run = runs[0]
        if self.retrain_run is None:
            tags = {t["key"]: t["value"] for t in run["tags"]}
            self.retrain_run = {"run_id": run["runId"], "tags": tags}
            self.timeline.facts["retrain_run"] = self.retrain_run
            say(f"retrain_job run {run['runId'][:8]} was launched by {tags.get('dagster/sensor_name', '?')} "
                f"(signal that decided: {tags.get('mlops/retrain_signal', '?')}; window "
                f"{tags.get('mlops/drift_window')}, drift share {tags.get('mlops/drift_share')}; "
                f"run config {tags.get('mlops/run_config', 'the defaults')})")
            decision = self.window_decision(self.windows["drifted"])
            self.timeline.facts["retrain_decision"] = decision
            say(f"the drift sensor's decision on the drifted window: {decision}  "
                f"{self.ui}/assets/drift_report?partition={self.windows['drifted']}")
        self.report_status(run, "retrain_job", "retrained")
        if run["status"] == "SUCCESS" and self.gate is None:
            self.gate = self.read_gate(run["runId"])

    def window_decision(self, partition: str) -> str:
        """The sentence the drift sensor recorded for a window (drift_report's materialization of it): which
        signal decided, its figures against the threshold, and the other signal as context."""
        found = graphql(self.ui, DECISION, {"path": ["drift_report"], "partition": partition})["assetOrError"]
        latest = found.get("assetMaterializations") or []
        return latest[0]["description"] if latest else "(not recorded)"

    def latest_metadata(self, asset: str, run_id: str) -> dict[str, Any] | None:
        latest = graphql(self.ui, GATE, {"path": [asset]})["assetOrError"]["assetMaterializations"]
        if not latest or latest[0]["runId"] != run_id:
            return None
        return {m["label"]: next((v for k, v in m.items() if k != "label"), None)
                for m in latest[0]["metadataEntries"]}

    def read_gate(self, run_id: str) -> dict[str, Any]:
        meta = self.latest_metadata("registered_model", run_id)
        if meta is None:
            raise DemoError(f"retrain_job {run_id[:8]} succeeded without registering a model")
        released = self.latest_metadata("production_release", run_id) or {}
        gate = {"passed": meta.get("release_pending"), "promoted": bool(released.get("promoted")),
                "reason": meta.get("gate_reason"), "release": released.get("reason"),
                "tag": meta.get("tag"), "production_version": released.get("production_version")}
        self.timeline.facts["gate"] = gate
        verdict = "passed (released after its Bento's application test)" if gate["passed"] else "kept as a candidate"
        self.timeline.mark("gate", f"gate: {gate['tag']} {verdict}: {gate['reason']}  "
                                   f"{self.ui}/assets/registered_model")
        return gate

    def watch_release(self, registry: Any, first: str) -> None:
        """The release as the registry recorded it (the new version's release test, then its promotion) and the
        first answer of the running service with another version, each said once, in the order they happen."""
        if self.retrain_run is None:
            return
        marked = self.timeline.events
        for event in registry.events():
            if event["action"] == "release-test" and event["version"] != first and "release_test" not in marked:
                verdict = "passed" if event["passed"] else "FAILED"
                self.timeline.mark("release_test", f"release test of {event['version']} {verdict} at "
                                   f"{event['at'][11:19]} UTC: Bento {event['bento_tag']} served its test split")
            elif event["action"] == "promote" and event["to"] != first and "release_test" in marked and \
                    "released" not in marked:
                self.timeline.mark("released", f"{event['to']} promoted at {event['at'][11:19]} UTC, after its "
                                   f"release test  {self.ui}/assets/production_release")
        self.timeline.facts["release_order"] = [
            (e["action"], e.get("version", e["to"]), e["at"]) for e in registry.events()
            if e["action"] in ("release-test", "promote") and e.get("version", e["to"]) != first]
        served = self.served_version()
        if served != first and "swapped" not in marked:
            self.timeline.mark("swapped", f"the running service answers with {served} (was {first})  "
                                          f"{self.service}/model")

    def wait_for_served_model(self, version: str, deadline: float) -> dict[str, Any]:
        """served_model_sensor's observation naming ``version`` (it asks the service every tick)."""
        while True:
            latest = graphql(self.ui, SERVED, {"path": ["served_model"]})["assetOrError"]
            observations = latest.get("assetObservations") or []
            if observations:
                meta = {m["label"]: m.get("text") or m.get("mdStr") for m in observations[0]["metadataEntries"]}
                if meta.get("served_version") == version:
                    return meta
            if time.monotonic() > deadline:
                raise DemoError(f"served_model_sensor recorded no observation of {version}  "
                                f"{self.ui}/assets/served_model")
            time.sleep(1.0)

    def served_version(self) -> str:
        import httpx

        return httpx.get(f"{self.service}/model", timeout=10).json()["version"]


def send(service: str, images, what: str, timeline: Timeline, event: str) -> None:
    import httpx

    from mlops_assets.tools.simulator import send_traffic

    before = httpx.get(f"{service}/model", timeout=10).json()["inference_log"]["written"]
    result = send_traffic(service, images)
    if result["failed_requests"]:
        raise DemoError(f"{what}: {result['failed_requests']} request(s) failed")
    deadline = time.monotonic() + 30  # the service writes its log asynchronously: wait until it has
    while httpx.get(f"{service}/model", timeout=10).json()["inference_log"]["written"] < before + len(images):
        if time.monotonic() > deadline:
            raise DemoError(f"{what}: the inference log did not record the traffic within 30 s")
        time.sleep(0.2)
    timeline.mark(event, f"{what}: {result['images_sent']} images sent, p50 {result['p50_ms']:.1f} ms")


def run_config_file(home: Path) -> Path:
    return home / "training-run-config.yaml"


def build(stack: StackHome, timeline: Timeline) -> str:
    from mlops_assets.core.registry.registry import ModelRegistry

    say("build_job on the digits image folder (train, export, evaluate, register) and the reference profile")
    log = stack.logs / "build.log"
    with open(log, "w") as out:
        done = subprocess.run([sys.executable, "-c", BUILD_SCRIPT, str(run_config_file(stack.home))],
                              cwd=stack.home, env=stack.env(),
                              stdout=subprocess.PIPE, stderr=out, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines or not json.loads(lines[-1])["success"]:
        raise DemoError(f"build_job failed (exit {done.returncode}); see {log}")
    production = ModelRegistry(stack.bentoml_home, settings.DEFAULTS[settings.MODEL_NAME]).production_version()
    timeline.facts["first_production"] = production
    timeline.mark("built", f"production model {production} built and registered (log {log})")
    return production


def run_loop(home: Path, ui_port: int, service_port: int, deadline_s: float, linger: bool,
             summary_json: Path | None, challenger: bool = False) -> dict[str, Any]:
    from mlops_assets.core.data.images import load_digits_dataset
    from mlops_assets.core.registry.registry import ModelRegistry
    from mlops_assets.infra.bento_server import SERVICE_TARGET, serve_bento
    from mlops_assets.tools.loop_demo_challenger import CHALLENGER_SETTINGS, compare_before_serving
    from mlops_assets.tools.simulator import apply_drift, write_labelled_images

    timeline = Timeline()
    prepare_home(home)
    folder = home / "images"
    run_config_file(home).write_text(yaml.safe_dump(TRAINING_RUN_CONFIG))
    service_port = port_or_free(service_port)
    stack = make_home(home, settings={
        settings.ENV_FILE: os.devnull,
        settings.DATASET_KIND: "image_folder", settings.IMAGE_FOLDER: str(folder),
        settings.IMAGE_HEIGHT: "8", settings.IMAGE_WIDTH: "8", settings.IMAGE_CHANNELS: "1",
        settings.PROFILE_CRON: "* * * * *",
        settings.MONITOR_START: window_key(datetime.now(UTC).replace(second=0, microsecond=0)),
        settings.SENSOR_INTERVAL_S: str(SENSOR_INTERVAL_S), settings.PROFILE_GRACE_S: str(GRACE_S),
        settings.POLL_SECONDS: "0.5",
        settings.RETRAIN_RUN_CONFIG: str(run_config_file(home)),
        settings.SERVICE_WORKERS: "1",  # the demo waits on the worker's inference-log counter (per worker)
        settings.SERVICE_URL: f"http://127.0.0.1:{service_port}",  # served_model_sensor asks it what it serves
        **(CHALLENGER_SETTINGS if challenger else {}),
    })
    stack_settings_file(home).write_text(json.dumps(dict(stack.settings), indent=2))
    say(f"the demo's instance, artifacts and logs: {home}")
    digits = load_digits_dataset()
    write_labelled_images(folder, digits.images, digits.labels, digits.class_names, "digit")
    first = build(stack, timeline)
    registry = ModelRegistry(stack.bentoml_home, settings.DEFAULTS[settings.MODEL_NAME])

    with ExitStack() as running:
        service = running.enter_context(serve_bento(SERVICE_TARGET, stack.bentoml_home, stack.logs / "service.log",
                                                    env=stack.env(), port=service_port))
        timeline.mark("service_up", f"the Bento service serves {first} at {service}")
        ui = running.enter_context(dagster_webserver(stack, port=port_or_free(ui_port)))
        skip_community_prompt(ui)
        running.enter_context(dagster_daemon(stack, ui, daemons=("QUEUED_RUN_COORDINATOR", "SENSOR")))
        # unwound first (last in): the runs in flight end before the daemon and the webserver stop, so the demo's
        # own shutdown never leaves a run killed mid-step (a red FAILURE on the instance it leaves behind)
        running.callback(drain_runs, ui, say)
        timeline.mark("ui_up", f"the Dagster UI and daemon are up: {ui}  (sensors: {ui}/automation)")

        now = datetime.now(UTC)
        clean_window = now.replace(second=0, microsecond=0)
        if (clean_window + WINDOW - now).total_seconds() < 15:  # keep the clean traffic inside one window
            clean_window += WINDOW
            wait_until_moment(clean_window + timedelta(seconds=1))
        drift_window = clean_window + WINDOW
        windows = {"clean": window_key(clean_window), "drifted": window_key(drift_window)}
        timeline.facts["windows"] = windows
        test_images, test_labels = digits.images[-TRAFFIC:], digits.labels[-TRAFFIC:]
        send(service, test_images, f"clean traffic in window {clean_window:%H:%M}", timeline, "clean_sent")
        say(f"waiting for the window to end ({drift_window:%H:%M:%S} UTC); the profiling sensor profiles it "
            f"{GRACE_S} s later and the drift sensor judges it (sensors tick every {SENSOR_INTERVAL_S} s)")
        wait_until_moment(drift_window + timedelta(seconds=1))
        blurred, _ = apply_drift(test_images, test_labels, DRIFT)
        send(service, blurred, f"blurred (drifted) traffic in window {drift_window:%H:%M}", timeline, "drift_sent")
        new_images, new_labels = apply_drift(digits.images[:NEW_LABELLED], digits.labels[:NEW_LABELLED], DRIFT)
        write_labelled_images(folder, new_images, new_labels, digits.class_names, "blurred")
        timeline.mark("labels_added", f"{NEW_LABELLED} newly labelled blurred images added to {folder}")

        watcher = LoopWatcher(ui, service, timeline, windows)
        deadline = time.monotonic() + deadline_s
        served = first
        while True:
            watcher.watch_profiling()
            watcher.watch_drift_sensor()
            watcher.watch_retraining()
            watcher.watch_release(registry, first)
            if watcher.gate is not None:
                production = registry.production_version()
                served = watcher.served_version()
                if not watcher.gate["promoted"] or served == production:
                    break
            if time.monotonic() > deadline:
                raise DemoError(f"the loop did not close within {deadline_s:.0f} s; logs in {stack.logs}")
            time.sleep(1.0)
        watcher.watch_release(registry, first)  # the swap may have come between its poll and the last one
        if watcher.gate["promoted"]:
            timeline.mark("served", f"the service now answers with {served} (was {first})  {service}/model")
        observed = watcher.wait_for_served_model(served, deadline)
        timeline.facts["served_model"] = observed
        timeline.mark("observed", f"served_model: Dagster records that the service answers with "
                                  f"{observed['served_version']}, with the release timeline  {ui}/assets/served_model")
        if challenger:  # the retrained version is in the shadow slot: compared on live traffic before it serves
            timeline.facts["challenger"] = compare_before_serving(ui, service, registry, timeline, blurred,
                                                                  test_labels, digits.class_names,
                                                                  time.monotonic() + deadline_s)
        timeline.facts.update(served_after=watcher.served_version(), production_after=registry.production_version(),
                              alerts=alert_kinds(stack), total_s=round(time.monotonic() - timeline.began, 1))
        say(f"the loop closed in {timeline.facts['total_s']:.0f} s")
        if summary_json:
            summary_json.write_text(json.dumps(timeline.summary(), indent=2, default=str))
        if linger:
            say(f"the loop closed; the UI stays at {ui} and the service at {service} until Ctrl-C")
            signal.pause()
    return timeline.summary()


def stack_settings_file(home: Path) -> Path:
    return home / "stack-settings.json"


def reopen(home: Path, ui_port: int) -> None:
    """The demo's UI again, over the instance it left (``make loop-demo-ui``): the same settings, read from the
    home rather than rebuilt by hand; no daemon, so nothing new runs; Ctrl-C stops it."""
    saved = stack_settings_file(home)
    if not saved.is_file():
        raise DemoError(f"{home} holds no loop demo (no {saved.name}); run `make loop-demo` first")
    stack = StackHome(home, tuple(sorted(json.loads(saved.read_text()).items())))
    with dagster_webserver(stack, port=port_or_free(ui_port)) as ui:
        say(f"the loop demo's instance ({home}) in the Dagster UI: {ui}  (served model: {ui}/assets/served_model)"
            f"; Ctrl-C stops it")
        signal.pause()


def alert_kinds(stack: StackHome) -> list[str]:
    path = stack.artifact_root / "alerts" / "alerts.jsonl"
    return [json.loads(line)["kind"] for line in path.read_text().splitlines()] if path.exists() else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", default=str(REPO / ".mlops" / "loop-demo"), help="Where the demo's instance, "
                        "artifacts and logs go (wiped at the start of each demo run).")
    parser.add_argument("--ui-port", type=int, default=3000, help="The Dagster UI's port (a free one if taken).")
    parser.add_argument("--service-port", type=int, default=3001, help="The service's port (a free one if taken).")
    parser.add_argument("--deadline", type=float, default=420, help="Seconds the loop may take after the traffic.")
    parser.add_argument("--linger", action="store_true", help="Keep the UI and service up until Ctrl-C at the end.")
    parser.add_argument("--summary-json", default=None, help="Also write the timeline as JSON to this file.")
    parser.add_argument("--reopen", action="store_true", help="Only open the UI again over the instance a "
                        "finished demo left in --home (make loop-demo-ui).")
    parser.add_argument("--challenger", action="store_true", help="The retrained version goes to the shadow slot; "
                        "it serves only if live labelled traffic says it is better (loop_demo_challenger).")
    args = parser.parse_args(argv)

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupted)
    try:
        if args.reopen:
            reopen(Path(args.home).resolve(), args.ui_port)
            return 0
        run_loop(Path(args.home).resolve(), args.ui_port, args.service_port, args.deadline, args.linger,
                 Path(args.summary_json).resolve() if args.summary_json else None, args.challenger)
    except KeyboardInterrupt:
        say("interrupted: everything the demo started is stopped")
        return 130
    except DemoError as exc:
        say(f"FAILED: {exc}")
        return 1
    say(f"everything the demo started is stopped; its instance and logs stay in {args.home}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
