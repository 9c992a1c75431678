"""`make loop-demo` closes the loop on the real daemon, and Ctrl-C leaves nothing running.

The demo builds, starts the webserver, the daemon and the service, sends clean then drifted (blurred) traffic
with new labelled images; the daemon's profiling sensor profiles both windows, its drift sensor skips the clean
one (with the reason) and launches retrain_job for the drifted one under the default policy (the harm
trigger); the gate promotes the retrained model and the service serves it. Run with ``--linger``, then
interrupted as a terminal would (SIGINT to its process group), so the same run also shows that no process of
the stack survives.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlops_assets.infra.processes import free_port

ROOT = Path(__file__).resolve().parents[1]


def processes_of(home: Path) -> list[int]:
    """Processes whose environment names ``home`` as DAGSTER_HOME: every process of the demo's stack."""
    needle = f"DAGSTER_HOME={home}".encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if needle in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                state = Path(f"/proc/{pid}/status").read_text()
                if "zombie" not in state:
                    found.append(int(pid))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def read_until(process: subprocess.Popen, marker: str, timeout_s: float) -> str:
    """The demo's output until ``marker``, read straight from the pipe (unbuffered: a line must not wait in a
    reader's buffer while select() says there is nothing new)."""
    output, deadline = b"", time.monotonic() + timeout_s
    while marker.encode() not in output:
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no {marker!r} (exit {process.poll()}):\n{output.decode()[-6000:]}")
        ready, _, _ = select.select([process.stdout], [], [], 1.0)
        if ready:
            output += os.read(process.stdout.fileno(), 65536)
    return output.decode()


@pytest.mark.slow
def test_the_loop_demo_closes_the_loop_on_the_real_daemon_and_stops_everything(tmp_path):
    home = tmp_path / "loop-demo"
    summary_path = tmp_path / "summary.json"
    command = [sys.executable, "-m", "mlops_assets.tools.loop_demo", "--home", str(home), "--linger",
               "--ui-port", str(free_port()), "--service-port", str(free_port()), "--summary-json", str(summary_path)]
    demo = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0,
                            start_new_session=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        output = read_until(demo, "until Ctrl-C", timeout_s=900)
        assert len(processes_of(home)) >= 3  # webserver, daemon, service (and their workers)
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C in its terminal
        rest, _ = demo.communicate(timeout=120)  # the runs in flight end first (drain_runs)
    finally:
        if demo.poll() is None:  # a failed test: the demo cannot clean up after SIGKILL, so the test does
            os.killpg(demo.pid, signal.SIGKILL)
            for pid in processes_of(home):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(os.getpgid(pid), signal.SIGKILL)
    output += rest.decode()
    assert demo.returncode == 130, output[-4000:]
    assert "interrupted: everything the demo started is stopped" in output
    assert processes_of(home) == []

    summary = json.loads(summary_path.read_text())
    (ROOT / "artifacts").mkdir(exist_ok=True)  # kept for a look after the run (git-ignored): timings per phase
    (ROOT / "artifacts" / "loop-demo-summary.json").write_text(json.dumps(summary, indent=2))
    events = summary["events_s"]
    # the clean window is judged and skipped with its reason, before the drifted one launches retraining
    # (the run's end, the gate's record and the swap can be seen in one poll: same second)
    assert events["clean_skipped"] < events["drift_detected"] < events["retrained"] <= events["gate"] \
        <= events["served"], events
    # promotion is the last step: the new version's release test (its Bento built and application-tested), then its
    # promotion, then the first answer of the running service with it (the registry's own clock says the same)
    assert events["drift_detected"] < events["release_test"] <= events["released"] <= events["swapped"], events
    order = summary["release_order"]
    assert [action for action, _, _ in order] == ["release-test", "promote"], order
    assert order[0][1] == order[1][1] and order[0][2] < order[1][2], order
    assert output.index("release test of") < output.index("the running service answers with"), output[-4000:]
    assert "drift share" in output and "< 0.30" in output
    tags = summary["retrain_run"]["tags"]
    assert tags["dagster/sensor_name"] == "drift_sensor" and tags["mlops/trigger"] == "drift"
    # the default trigger (harm) decided, and the demo says so, with the sensor's sentence on the drifted window
    assert tags["mlops/retrain_signal"] == "harm" and "signal that decided: harm" in output
    decision = summary["retrain_decision"]
    assert decision.startswith("estimated accuracy") and "(ATC) vs" in decision, decision
    assert "→ retrain (harm trigger)" in decision and "pixel drift share" in decision, decision
    assert f"the drift sensor's decision on the drifted window: {decision}" in output
    assert "→ no retrain (harm trigger)" in output  # the clean window's skip, under the same signal
    assert tags["mlops/run_config"].endswith("training-run-config.yaml")  # the demo's one-trial search
    gate = summary["gate"]
    assert gate["promoted"], gate
    assert "vs production" in gate["reason"] and "on the same" in gate["reason"]  # both figures, one split
    assert summary["served_after"] == summary["production_after"] != summary["first_production"]
    # the operator's view: Dagster records what the service reports, with the release timeline top to bottom
    served = summary["served_model"]
    assert served["served_version"] == summary["served_after"]
    timeline = served["release_timeline"]
    steps = ("window judged", "run launched", "gate decision", "release test", "promoted", "served")
    positions = [timeline.index(f"| {step} |") for step in steps]
    assert positions == sorted(positions), timeline
    assert f"/runs/{summary['retrain_run']['run_id']}" in timeline and "/assets/drift_report?partition=" in timeline
    # the demo's own shutdown ended every run it left: none is a FAILURE, none is still running
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        statuses = {run.run_id[:8]: run.status.value for run in instance.get_runs()}
    assert statuses and set(statuses.values()) <= {"SUCCESS", "CANCELED"}, statuses
    assert_the_ui_reopens_over_the_instance(home, summary["served_after"])


def assert_the_ui_reopens_over_the_instance(home: Path, served_version: str) -> None:
    """`make loop-demo-ui`: the demo's UI again over the instance it left, from the settings it saved."""
    from mlops_assets.infra.local_stack import graphql

    command = [sys.executable, "-m", "mlops_assets.tools.loop_demo", "--reopen", "--home", str(home),
               "--ui-port", str(free_port())]
    ui = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0,
                          start_new_session=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        output = read_until(ui, "Ctrl-C stops it", timeout_s=300)
        url = output.split("in the Dagster UI: ")[1].split()[0]
        observed = graphql(url, """{ assetOrError(assetKey: {path: ["served_model"]}) { ... on Asset {
            assetObservations(limit: 1) { metadataEntries { label ... on TextMetadataEntry { text } } } } } }""")
        entries = observed["assetOrError"]["assetObservations"][0]["metadataEntries"]
        assert {"label": "served_version", "text": served_version} in entries
        os.killpg(ui.pid, signal.SIGINT)
        ui.communicate(timeout=60)
    finally:
        if ui.poll() is None:
            os.killpg(ui.pid, signal.SIGKILL)
    assert processes_of(home) == []


@pytest.mark.slow
def test_the_loop_demo_with_a_challenger_compares_it_on_live_traffic_before_it_serves(tmp_path):
    """``--challenger``: the retrained version goes to the shadow slot (release policy shadow), one window of
    blurred traffic is answered by production, scored by the shadow and labelled; feedback_sensor materialises
    live_comparison for it, and the demo prints the figures and the verdict before the challenger serves, promoting
    it only on 'better' (production never saw a blurred digit: the retrained version is expected to win)."""
    from mlops_assets.core.common import settings
    from mlops_assets.core.registry.registry import ModelRegistry

    home = tmp_path / "loop-demo"
    summary_path = tmp_path / "summary.json"
    command = [sys.executable, "-m", "mlops_assets.tools.loop_demo", "--home", str(home), "--challenger",
               "--ui-port", str(free_port()), "--service-port", str(free_port()), "--summary-json", str(summary_path)]
    demo = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        output, _ = demo.communicate(timeout=1200)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            for pid in processes_of(home):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(os.getpgid(pid), signal.SIGKILL)
    output = output.decode()
    assert demo.returncode == 0, output[-6000:]
    assert processes_of(home) == []
    summary = json.loads(summary_path.read_text())
    first, seen, events = summary["first_production"], summary["challenger"], summary["events_s"]
    assert not summary["gate"]["promoted"]  # the gate's yes went to the shadow slot
    assert len({w["window"] for w in seen["windows"]}) == 2, seen  # two windows compared
    challenger = seen["windows"][0]["challenger_version"]
    assert challenger not in (None, first)
    for window in seen["windows"]:
        assert (window["production_version"], window["challenger_version"]) == (first, challenger), window
        assert window["compared"] == window["labelled_pairs"] == 150 and window["share_mirrored"] == 1.0, window
        assert window["challenger_accuracy"] > window["production_accuracy"], window
        assert window["verdict"] == "better" and window["p_value"] <= window["alpha"], window
    assert seen["promoted"]
    # the figures and the verdicts are printed before the challenger serves, and it serves only after promotion
    compared = [line for line in output.splitlines() if "live_comparison " in line and "verdict:" in line]
    assert len(compared) == 2 and all("labelled pairs" in line and "McNemar exact p" in line and "better" in line
                                      for line in compared), compared
    assert events["challenger_traffic_0"] < events["challenger_traffic_1"] < events["compared_0"] \
        <= events["compared_1"] <= events["challenger_promoted"] <= events["challenger_served"], events
    assert output.index(compared[-1]) < output.index(f"promoting {challenger}") \
        < output.index(f"the running service answers with {challenger}")
    assert summary["production_after"] == summary["served_after"] == challenger
    registry = ModelRegistry(home / "mlops" / "bentoml", settings.DEFAULTS[settings.MODEL_NAME])
    moves = [e for e in registry.events() if challenger in (e.get("version"), e["to"])
             and e["action"] in ("shadow", "promote")]
    assert [(e["action"], e.get("version", e["to"])) for e in moves] == [("shadow", challenger),
                                                                        ("promote", challenger)], moves
    assert moves[-1]["reason"].startswith("live evidence (loop demo)") and "better" in moves[-1]["reason"]
