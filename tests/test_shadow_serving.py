"""Shadow serving: production answers every request; the shadow scores the same images off the request path, its
answers logged beside the served ones under the same prediction ids, never in the served traffic the monitor
profiles. A shadow that raises, hangs or is slow changes no client's answer or status."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from bentos.served_model import LoadedModel, load_model
from bentos.shadow_mirror import ShadowMirror
from mlops_assets.core.model.signature import ModelSignature
from mlops_assets.core.serving.inference_log import LOG_KIND, SHADOW_KIND, read_window
from mlops_assets.core.serving.inference_log_writer import InferenceLogWriter
from testkit.release_tests import record_release_test_without_a_bento
from tests import serving_fixtures

serving_world = serving_fixtures.serving_world
dev_server = serving_fixtures.dev_server
DIGITS_SIGNATURE = ModelSignature(tuple(str(d) for d in range(10)), 1, 8, 8)
NOW = datetime.now(UTC)
ALL_TIME = (NOW - timedelta(days=30), NOW + timedelta(days=1))  # every row these tests write (a listing per hour)


def loaded(world, version: str, source: str = "production") -> LoadedModel:
    described = world.registry.get(version)
    return load_model(described.onnx_path, described.tag, version, described.labels, described.metadata, source,
                      DIGITS_SIGNATURE)


@dataclass(frozen=True)
class RaisingShadow(LoadedModel):
    """A valid version whose every answer raises (a broken shadow)."""

    def answer(self, images):
        raise RuntimeError("the shadow is broken")


@dataclass(frozen=True)
class SlowShadow(LoadedModel):
    """A valid version that takes a second per answer."""

    def answer(self, images):
        time.sleep(1.0)
        return super().answer(images)


@dataclass(frozen=True)
class HungShadow(LoadedModel):
    """A valid version that hangs until the test lets it go, saying when it started hanging."""

    entered: threading.Event = None
    release: threading.Event = None

    def answer(self, images):
        self.entered.set()
        self.release.wait()
        return super().answer(images)


def as_shadow(kind, model: LoadedModel, **extra) -> LoadedModel:
    return kind(**{**vars(model), "source": "shadow", **extra})


def served_answers(predictions) -> list[tuple]:
    return [(p.label, p.model_version, tuple(round(v, 5) for v in p.probabilities)) for p in predictions]


@pytest.fixture(scope="module")
def models(serving_world):
    return loaded(serving_world, "v1"), loaded(serving_world, "v2", "shadow")


def test_a_shadow_that_raises_on_every_call_changes_no_answer(models, serving_world, tmp_path):
    from bentos.service import predict, shadow_logger

    production, shadow = models
    images = serving_world.x_test[:8]
    expected = served_answers(predict(production, images, None))
    with InferenceLogWriter(tmp_path) as log:
        mirror = ShadowMirror(shadow_logger(log))
        mirror.active = as_shadow(RaisingShadow, shadow)
        answers = [predict(production, images[i:i + 2], log, shadow=mirror) for i in range(0, 8, 2)]
        assert mirror.drain()
    assert [a for batch in answers for a in served_answers(batch)] == expected
    stats = mirror.stats()
    assert (stats.mirrored, stats.failed, stats.dropped) == (0, 8, 0)
    assert "the shadow is broken" in stats.last_error
    assert len(read_window(tmp_path, *ALL_TIME, LOG_KIND)) == 8 and read_window(tmp_path, *ALL_TIME, SHADOW_KIND).empty


def test_a_hung_shadow_never_holds_a_request_and_a_full_queue_drops_shadow_work_only(models, serving_world,
                                                                                      tmp_path):
    from bentos.service import predict, shadow_logger

    production, shadow = models
    images = serving_world.x_test[:1]
    entered, release = threading.Event(), threading.Event()
    with InferenceLogWriter(tmp_path) as log:
        mirror = ShadowMirror(shadow_logger(log), capacity=2)
        mirror.active = as_shadow(HungShadow, shadow, entered=entered, release=release)
        first = predict(production, images, log, shadow=mirror)
        assert entered.wait(30)  # the shadow's thread is stuck in its first batch
        more = [predict(production, images, log, shadow=mirror) for _ in range(5)]  # answered while it hangs
        assert mirror.stats().dropped == 3 and mirror.stats().queued == 2  # two wait, three are dropped
        release.set()
        assert mirror.drain()
    assert all(served_answers(batch) == served_answers(first) for batch in more)
    assert (mirror.stats().mirrored, mirror.stats().failed) == (3, 0)
    assert len(read_window(tmp_path, *ALL_TIME, LOG_KIND)) == 6
    assert len(read_window(tmp_path, *ALL_TIME, SHADOW_KIND)) == 3


def test_a_slow_shadow_is_scored_off_the_request_path(models, serving_world, tmp_path):
    from bentos.service import predict, shadow_logger

    production, shadow = models
    expected = served_answers(predict(production, serving_world.x_test[:3], None))
    with InferenceLogWriter(tmp_path) as log:
        mirror = ShadowMirror(shadow_logger(log))
        mirror.active = as_shadow(SlowShadow, shadow)  # a second per answer
        answers = [predict(production, serving_world.x_test[i:i + 1], log, shadow=mirror) for i in range(3)]
        assert mirror.drain()
    assert [a for batch in answers for a in served_answers(batch)] == expected
    assert (mirror.stats().mirrored, mirror.stats().failed, mirror.stats().dropped) == (3, 0, 0)


def test_both_answers_are_logged_under_one_id_and_feedback_labels_both(models, serving_world, tmp_path):
    from bentos.service import predict, shadow_logger
    from mlops_assets.core.serving.feedback import FeedbackItem, FeedbackStore, labelled_predictions

    production, shadow = models
    images, truth = serving_world.x_test[:20], serving_world.y_test[:20]
    with InferenceLogWriter(tmp_path) as log:
        mirror = ShadowMirror(shadow_logger(log))
        mirror.active = shadow
        answers = predict(production, images, log, shadow=mirror)
        assert mirror.drain()
    served = read_window(tmp_path, *ALL_TIME, LOG_KIND)
    shadowed = read_window(tmp_path, *ALL_TIME, SHADOW_KIND)
    assert set(served["model_version"]) == {"v1"} and set(shadowed["model_version"]) == {"v2"}
    assert sorted(served["prediction_id"]) == sorted(shadowed["prediction_id"]) == sorted(
        a.prediction_id for a in answers)
    expected = dict(zip([a.prediction_id for a in answers], shadow.answer(images)[0].argmax(1), strict=True))
    assert {row.prediction_id: row.predicted_class for row in shadowed.itertuples()} == {
        k: serving_world.class_names[v] for k, v in expected.items()}
    assert (served.set_index("prediction_id")["timestamp"].sort_index()
            == shadowed.set_index("prediction_id")["timestamp"].sort_index()).all()

    class_names = serving_world.class_names
    FeedbackStore(tmp_path).record(
        [FeedbackItem(a.prediction_id, class_names[int(t)]) for a, t in zip(answers, truth, strict=True)],
        class_names)
    labelled, per_version = labelled_predictions(tmp_path, *ALL_TIME)
    shadow_labelled, shadow_per_version = labelled_predictions(tmp_path, *ALL_TIME, SHADOW_KIND)
    assert per_version == {"v1": 20} and shadow_per_version == {"v2": 20}
    assert len(labelled) == len(shadow_labelled) == 20
    assert (labelled.set_index("prediction_id")["label"].sort_index()
            == shadow_labelled.set_index("prediction_id")["label"].sort_index()).all()


def test_the_inference_profile_of_a_window_holds_served_answers_only(models, serving_world, tmp_path):
    """The monitor profiles what clients were answered: a window with a shadow's answers beside them profiles
    the served rows alone (its row count and its model versions)."""
    import dagster as dg

    from bentos.service import log_answer
    from mlops_assets.core.monitoring.drift import profile_rows, read_profile
    from mlops_assets.core.serving.prediction_ids import new_prediction_ids
    from mlops_assets.monitor_stage.profiles import inference_profiles
    from testkit.fixtures import make_resources

    production, shadow = models
    resources = make_resources(tmp_path)
    store = resources["artifact_store"]
    start = datetime(2026, 11, 22, 10, tzinfo=UTC)
    at = start + timedelta(minutes=5)  # an ended window: the answers as predict and the shadow log them
    images = serving_world.x_test[:30]
    ids = new_prediction_ids(30, at)
    with InferenceLogWriter(store.root_path) as log:
        for model, dataset in ((production, LOG_KIND), (shadow, SHADOW_KIND)):
            answer = model.answer(images)
            names = [model.class_names[i] for i in answer[0].argmax(1)]
            assert log_answer(log, model, images, answer, names, ids, at, None, dataset)
    assert len(read_window(store.root_path, *ALL_TIME, SHADOW_KIND)) == 30  # the shadow's rows are there
    result = dg.materialize([inference_profiles], partition_key="2026-11-22-10:00", resources=resources,
                            instance=dg.DagsterInstance.ephemeral())
    metadata = result.asset_materializations_for_node("inference_profiles")[0].metadata
    assert metadata["n_rows"].value == 30 and metadata["profile_written"].value
    assert profile_rows(read_profile(store.profiles().profile_path("window-20261122T1000"))) == 30
    assert store.profiles().summary("window-20261122T1000")["model_versions"] == {"v1": 30}


def test_the_watcher_of_a_cleared_shadow_slot_stops_serving_from_it(serving_world, tmp_path):
    from bentos.model_watcher import SlotWatcher
    from mlops_assets.core.registry.registry import ModelRegistry

    class Served:  # what a watcher swaps models into
        active: LoadedModel | None = None
        swaps = 0

    registry = ModelRegistry(tmp_path / "bentoml", serving_fixtures.MODEL_NAME)
    for version in ("v1", "v2"):
        registry.register(serving_world.versions[version], version, {},
                          serving_world.registry.get(version).metadata)
    record_release_test_without_a_bento(registry, "v1", "v2")
    registry.promote("v1", reason="test")
    registry.set_shadow("v2", reason="challenger", actor="test")
    shadow = Served()
    watcher = SlotWatcher(shadow, registry, 60.0, DIGITS_SIGNATURE, slot="shadow")
    watcher.check()
    assert shadow.active.version == "v2" and watcher.slot_version == "v2"
    registry.clear_shadow(reason="done", actor="test")
    watcher.check()
    assert shadow.active is None and watcher.slot_version is None and shadow.swaps == 2


def test_the_server_answers_with_production_and_logs_the_shadow_s_answers_under_the_same_ids(serving_world,
                                                                                              dev_server):
    registry = serving_world.registry
    artifacts = serving_world.home.parent / "artifacts"
    with serving_fixtures.client(dev_server) as http:
        serving_fixtures.wait_for_version(http, "v1")
        registry.set_shadow("v2", reason="challenger on live traffic", actor="test")
        try:
            deadline = time.monotonic() + 60
            while http.get("/model").json()["shadow"]["version"] != "v2" and time.monotonic() < deadline:
                time.sleep(0.1)
            info = http.get("/model").json()
            assert info["version"] == "v1" and info["shadow"]["version"] == "v2"
            from mlops_assets.core.serving.serving_status import read_statuses  # what Dagster reads (the sensor)

            while read_statuses(artifacts).served().get("shadow_version") != "v2" and time.monotonic() < deadline:
                time.sleep(0.1)
            assert read_statuses(artifacts).served()["shadow_version"] == "v2"
            before = info["shadow"]["mirrored"]
            answered = []
            for i in range(0, 20, 5):
                response = http.post("/classify", json={"images": serving_world.x_test[i:i + 5].tolist()})
                assert response.status_code == 200
                answered += response.json()
            assert {a["model_version"] for a in answered} == {"v1"}
            ids = {a["prediction_id"] for a in answered}
            shadowed = None
            while time.monotonic() < deadline:
                rows = read_window(artifacts, *ALL_TIME, SHADOW_KIND)
                shadowed = rows[rows["prediction_id"].isin(ids)] if not rows.empty else rows
                if len(shadowed) == len(ids):
                    break
                time.sleep(0.2)
            assert len(shadowed) == 20 and set(shadowed["model_version"]) == {"v2"}
            stats = http.get("/model").json()["shadow"]
            assert stats["mirrored"] - before == 20 and stats["failed"] == 0 and stats["dropped"] == 0
            served = read_window(artifacts, *ALL_TIME, LOG_KIND)
            assert ids <= set(served["prediction_id"]) and set(served["model_version"]) <= {"v1", "v2"}
            assert set(served[served["prediction_id"].isin(ids)]["model_version"]) == {"v1"}
        finally:
            registry.clear_shadow(reason="test over", actor="test")
        while http.get("/model").json()["shadow"]["version"] is not None and time.monotonic() < deadline + 30:
            time.sleep(0.1)
        assert http.get("/model").json()["shadow"]["version"] is None


def test_both_logs_carry_the_model_call_time_of_each_batch_and_older_parts_read_it_as_null(models, serving_world,
                                                                                            tmp_path):
    """Latency per version: every served and shadow row carries ``model_ms``, the wall time of the model call that
    answered its batch (the whole batch's, the same on each of its rows); a part file written before the column
    existed reads as null."""
    import numpy as np
    import pandas as pd

    from bentos.service import predict, shadow_logger
    from mlops_assets.core.data.features import MODEL_MS, PREDICTION_ID
    from mlops_assets.core.serving.inference_log import write_part
    from mlops_assets.core.serving.prediction_ids import new_prediction_ids

    production, shadow = models
    with InferenceLogWriter(tmp_path) as log:
        mirror = ShadowMirror(shadow_logger(log))
        mirror.active = as_shadow(SlowShadow, shadow)  # a second per answer: its rows say so
        batches = [predict(production, serving_world.x_test[i:i + 4], log, shadow=mirror) for i in (0, 4)]
        assert mirror.drain(30)
    for dataset, low, high in ((LOG_KIND, 0.0, 900.0), (SHADOW_KIND, 1000.0, 60_000.0)):
        rows = read_window(tmp_path, *ALL_TIME, dataset).set_index(PREDICTION_ID)
        assert len(rows) == 8 and rows[MODEL_MS].notna().all(), dataset
        assert ((rows[MODEL_MS] > low) & (rows[MODEL_MS] < high)).all(), (dataset, rows[MODEL_MS].tolist())
        for batch in batches:  # one value per batch: the batch's call
            assert rows.loc[[p.prediction_id for p in batch], MODEL_MS].nunique() == 1
    at = NOW - timedelta(days=2)
    write_part(tmp_path, at, pd.DataFrame({PREDICTION_ID: new_prediction_ids(1, at), "timestamp": [pd.Timestamp(at)],
                                           "predicted_class": ["1"], "model_version": ["v0"]}), LOG_KIND)
    old = read_window(tmp_path, at - timedelta(minutes=1), at + timedelta(minutes=1), LOG_KIND,
                      columns=[PREDICTION_ID, MODEL_MS])
    assert len(old) == 1 and np.isnan(old[MODEL_MS].iloc[0])


def test_the_shadow_thread_yields_the_cores_to_production(tmp_path):
    """Its nice value is raised (Linux), so under saturation production's threads run first and the shadow's
    work is what gives (dropped and counted; bench_shadow measures the mirrored share)."""
    import os

    if not os.path.isdir("/proc/self/task"):
        pytest.skip("per-thread nice values are read from /proc (Linux)")
    mirror = ShadowMirror(lambda *args: True)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and mirror._thread.native_id is None:
            time.sleep(0.01)
        time.sleep(0.1)  # the thread sets its priority first thing
        stat = open(f"/proc/self/task/{mirror._thread.native_id}/stat").read()
        nice = int(stat.rsplit(")", 1)[1].split()[16])  # field 19 of stat: nice
        assert nice - os.nice(0) == 10
    finally:
        mirror.close()
