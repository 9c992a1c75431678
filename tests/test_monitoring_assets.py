"""Wiring of the monitor stage: the assets materialise, write their files once, and say what they found."""

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np

from mlops_assets.core.data.features import image_features, with_predictions
from mlops_assets.core.monitoring.drift import profile_frame, profile_rows, read_profile
from mlops_assets.core.monitoring.profile_layout import reference_version
from mlops_assets.core.serving.inference_log_writer import InferenceLogWriter
from mlops_assets.monitor_stage.drift_report import drift_report
from mlops_assets.monitor_stage.profiles import inference_profiles, reference_profile
from mlops_assets.tools.simulator import apply_drift
from resources.model_registry import ModelRegistryResource
from testkit.fixtures import make_resources
from testkit.release_tests import record_release_test_without_a_bento

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 22, 10, tzinfo=UTC)


def monitor_definitions(resources: dict[str, object]) -> dg.Definitions:
    """The real code location's assets, checks and automation, on other resources."""
    from mlops_assets import automation
    from mlops_assets.definitions import ASSET_CHECKS, ASSETS

    return dg.Definitions(assets=ASSETS, asset_checks=ASSET_CHECKS, jobs=automation.JOBS,
                          schedules=automation.SCHEDULES, sensors=automation.SENSORS, resources=resources)


def test_monitor_definitions_load_and_retrain_job_selects_the_build():
    from resources.defaults import default_resources

    defs = monitor_definitions(default_resources())
    dg.Definitions.validate_loadable(defs)
    job = defs.resolve_job_def("retrain_job")
    keys = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    assert {"raw_images", "data_splits", "trained_model", "registered_model", "reference_profile"} <= keys
    assert not keys & {"inference_profiles", "drift_report", "production_performance"}
    assert job.tags["mlops/kind"] == "training"
    sensors = {sensor.name for sensor in defs.sensors}
    assert {"inference_profiling_sensor", "drift_sensor", "run_failure_alert"} <= sensors
    assert {schedule.name for schedule in defs.schedules} == {"weekly_rebuild"}  # sensors do the monitoring
    graph = defs.resolve_asset_graph()
    for name in ("reference_profile", "inference_profiles", "drift_report"):
        node = graph.get(dg.AssetKey(name))
        assert node.group_name == "monitor" and node.kinds >= {"whylogs"} and node.owners and node.code_version


def test_monitor_modules_import_nothing_heavy():
    code = (
        "import json, sys; import mlops_assets.monitor_stage.profiles, mlops_assets.monitor_stage.drift_report, "
        "sensors.drift_sensor, sensors.alerts; "
        "print(json.dumps([m for m in ['whylogs', 'torch', 'bentoml', 'onnxruntime', 'pyarrow'] "
        "if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def monitoring_resources(root: Path) -> dict[str, object]:
    return make_resources(root)


def register_production(registry: ModelRegistryResource, version: str, root: Path, class_names, **labels) -> None:
    """A production version in the real registry (the tests that never load it register a stand-in file)."""
    onnx = root / f"{version}.onnx"
    if not onnx.exists():
        onnx.write_bytes(b"stand-in, never loaded")
    registry.registry().register(onnx, version, labels,
                                 {"class_names": class_names, "spec": {"height": 8, "width": 8, "channels": 1}})
    record_release_test_without_a_bento(registry.registry(), version)
    registry.registry().promote(version, reason="test setup", actor="test")


def log_traffic(root: Path, images: np.ndarray, labels, start: datetime) -> None:
    """Traffic as the service logs it, stamped inside the hour starting at ``start``."""
    with InferenceLogWriter(root, flush_interval_s=0.05, clock=lambda: start + timedelta(minutes=7)) as writer:
        for i in range(0, len(images), 50):
            chunk = images[i : i + 50]
            writer.log(image_features(chunk), [str(v) for v in labels[i : i + 50]], np.full(len(chunk), 0.95), "v1")
        assert writer.flush() and writer.dropped == 0


def test_inference_profiles_then_drift_report(tmp_path):
    from mlops_assets.core.data.images import load_digits_dataset

    resources = monitoring_resources(tmp_path)
    store, registry = resources["artifact_store"], resources["model_registry"]
    data = load_digits_dataset()
    register_production(registry, "v1", tmp_path, data.class_names)
    order = np.random.default_rng(0).permutation(len(data.labels))
    train, held_out = order[:1257], order[1257:]
    reference_rows = with_predictions(
        image_features(data.images[train]), [str(v) for v in data.labels[train]], np.full(len(train), 0.95)
    )
    store.profiles().publish(reference_version("v1"), profile_frame(reference_rows), {})
    log_traffic(store.root_path, data.images[held_out], data.labels[held_out], T0)
    drifted, drifted_labels = apply_drift(data.images[held_out], data.labels[held_out], "brightness")
    log_traffic(store.root_path, drifted, drifted_labels, T0 + timedelta(hours=1))

    instance = dg.DagsterInstance.ephemeral()
    for hour in (0, 1):
        key = (T0 + timedelta(hours=hour)).strftime("%Y-%m-%d-%H:%M")
        result = dg.materialize([inference_profiles], partition_key=key, resources=resources,
                                instance=instance)
        meta = result.asset_materializations_for_node("inference_profiles")[0].metadata
        assert meta["n_rows"].value == len(held_out) and meta["profile_written"].value
    window = store.profiles().profile_path("window-20261122T1000")
    assert profile_rows(read_profile(window)) == len(held_out)
    written = window.stat().st_mtime_ns
    again = dg.materialize([inference_profiles], partition_key="2026-11-22-10:00",
                           resources=resources, instance=instance)
    assert again.asset_materializations_for_node("inference_profiles")[0].metadata["already_profiled"].value
    assert window.stat().st_mtime_ns == written  # written once

    def report(partition: str) -> dict:
        result = dg.materialize([drift_report], partition_key=partition, resources=resources, instance=instance)
        return {k: v.value for k, v in result.asset_materializations_for_node("drift_report")[0].metadata.items()}

    clean, drifted = report("2026-11-22-10:00"), report("2026-11-22-11:00")
    assert not clean["is_drift"] and clean["window"] == "2026-11-22T10"
    assert drifted["is_drift"] and drifted["reason"].startswith("drift share 0.")
    assert "on window 2026-11-22T11" in drifted["reason"] and drifted["n_rows"] == len(held_out)
    assert drifted["drift_share"] > clean["drift_share"]
    # the alarm line is its own plotted series beside drift share, and no report is a file:// link a browser refuses
    assert drifted["drift_share_threshold"] == clean["drift_share_threshold"] == 0.30
    assert drifted["drift_share"] >= drifted["drift_share_threshold"] > clean["drift_share"]
    assert not any(str(v).startswith("file://") for v in drifted.values())
    assert drifted["hellinger/mean_c0"] > clean["hellinger/mean_c0"] and 0 <= drifted["p_value/mean_c0"] <= 1
    assert "| mean_c0 |" in drifted["features"] and drifted["reference"] == "reference-v1"
    assert Path(drifted["html_report"]).stat().st_size > 1000


def test_reference_profile_of_a_registered_production_model(tmp_path):
    """A real ONNX model in the real registry: the reference holds its predictions on the train split."""
    import torch

    from mlops_assets.core.data.images import load_digits_dataset
    from mlops_assets.core.model.onnx_model import export_onnx
    from testkit.fixtures import write_split_arrays

    resources = monitoring_resources(tmp_path)
    store = resources["artifact_store"]
    data = load_digits_dataset()

    def build(directory):
        write_split_arrays(directory, {"train": (data.images[:300], data.labels[:300])},
                           {"class_names": data.class_names})

    store.publish("splits", "s1", build)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    export_onnx(model.eval(), np.zeros((1, 1, 8, 8), np.float32), tmp_path / "m1.onnx")
    register_production(resources["model_registry"], "m1", tmp_path, data.class_names, splits_version="s1")
    result = dg.materialize([reference_profile], resources=resources,
                            instance=dg.DagsterInstance.ephemeral())
    meta = result.asset_materializations_for_node("reference_profile")[0].metadata
    assert meta["version"].value == "reference-m1" and meta["n_rows"].value == 300
    view = store.profiles().read("reference-m1")
    assert {"predicted_class", "confidence", "mean_c0"} <= set(view.get_columns())


def test_simulator_sends_real_http_and_adds_labelled_images(tmp_path):
    """The traffic simulator against a stand-in HTTP endpoint (answering like the service: one prediction with an id
    per image), with the service's token; its feedback on a share of the predictions; its labelled-image drop."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from mlops_assets.core.data.image_folder import load_image_folder
    from mlops_assets.core.data.images import load_digits_dataset
    from mlops_assets.tools.simulator import FEEDBACK_PATH, PREDICT_PATH, main, send_traffic
    from testkit.fixtures import write_split_arrays

    received: list[tuple[str, int]] = []
    authorization: set[str | None] = set()
    labelled: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (the http.server API)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            authorization.add(self.headers.get("Authorization"))
            if self.path == FEEDBACK_PATH:
                labelled.extend(body["feedback"])
                answer = {"accepted": len(body["feedback"])}
            else:
                received.append((self.path, len(body["images"])))
                answer = [{"prediction_id": f"id-{len(received)}-{k}", "class_name": "0"}
                          for k in range(len(body["images"]))]
            self.send_response(200)
            self.end_headers()
            self.wfile.write(json.dumps(answer).encode())

        def log_message(self, *args):
            pass

    data = load_digits_dataset()
    splits = write_split_arrays(tmp_path / "splits", {"test": (data.images[:40], data.labels[:40])},
                                {"class_names": data.class_names})
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        stats = send_traffic(url, data.images[:40], batch_size=16)
        assert stats["images_sent"] == 40 and stats["failed_requests"] == 0
        assert stats["prediction_ids"][:2] == ["id-1-0", "id-1-1"] and len(stats["prediction_ids"]) == 40
        assert received == [(PREDICT_PATH, 16), (PREDICT_PATH, 16), (PREDICT_PATH, 8)]
        assert authorization == {None}  # no token configured: none sent
        folder = tmp_path / "images"
        assert main(["--url", url, "--splits", str(splits), "--drift", "invert", "--n", "20",
                     "--add-labelled", str(folder), "--labelled-n", "30", "--token", "s3cret",
                     "--feedback-share", "1"]) == 0
    finally:
        server.shutdown()
    assert authorization == {None, "Bearer s3cret"}
    assert [item["label"] for item in labelled] == [data.class_names[int(y)] for y in data.labels[:20]]
    assert labelled[0]["prediction_id"] == "id-4-0"
    assert sum(n for _, n in received) == 60
    added = load_image_folder(folder, data.spec)
    assert len(added.labels) == 30 and added.images.mean() > 128  # inverted digits are mostly white
