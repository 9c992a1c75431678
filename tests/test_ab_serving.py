"""A/B on a real server (``bentoml serve``, MLOPS_AB_FRACTION=0.3): the keyed clients in the challenger's share are
answered by the shadow, every other client by production, one client always by one version; the answered rows are
logged under the version that answered, the other version's under the same ids in the shadow log. A shadow the
registry does not let answer clients (its release test failed; approval required and missing) answers no one and
still shadows; ``/model`` says why."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from bentos.ab_routing import CLIENT_KEY_HEADER, answered_by_challenger
from mlops_assets.core.serving.inference_log import LOG_KIND, SHADOW_KIND, read_window
from testkit.release_tests import record_release_test_without_a_bento
from tests import serving_fixtures

serving_world = serving_fixtures.serving_world
FRACTION = 0.3
NOW = datetime.now(UTC)
ALL_TIME = (NOW - timedelta(days=30), NOW + timedelta(days=1))
KEYS = [f"client-{i:04d}" for i in range(150)]


@pytest.fixture(scope="module")
def ab_server(serving_world, tmp_path_factory):
    """The dev server of ``serving_fixtures`` with A/B on, v1 in production and v2 in the shadow slot."""
    from mlops_assets.infra.bento_server import SERVICE_TARGET, serve_bento

    env = {"MLOPS_MODEL_NAME": serving_fixtures.MODEL_NAME, "MLOPS_POLL_SECONDS": "0.2",
           "MLOPS_FOLLOW_PRODUCTION": "1", "MLOPS_SERVICE_WORKERS": "1", "MLOPS_MAX_BATCH": "64",
           "MLOPS_ARTIFACT_ROOT": str(serving_world.home.parent / "artifacts"),
           "MLOPS_API_TOKEN": serving_fixtures.API_TOKEN, "MLOPS_AB_FRACTION": str(FRACTION)}
    serving_fixtures.make_production(serving_world, "v1", "A/B server start")
    serving_world.registry.set_shadow("v2", reason="A/B challenger", actor="test")
    log = serving_world.home.parent / "ab_server.log"
    try:
        with serve_bento(SERVICE_TARGET, serving_world.home, log, env=env) as url:
            yield url
    finally:
        serving_world.registry.clear_shadow(reason="A/B tests over", actor="test")


def wait_for_ab(http, challenger: str | None, timeout_s: float = 30.0) -> dict:
    """Poll /model until the A/B arm's answering challenger is ``challenger`` (None: nobody)."""
    deadline = time.monotonic() + timeout_s
    info = {}
    while time.monotonic() < deadline:
        info = http.get("/model").json()
        if info["ab"] is not None and info["shadow"]["version"] == "v2" and \
                info["ab"]["challenger_version"] == challenger:
            return info
        time.sleep(0.1)
    raise AssertionError(f"A/B challenger is not {challenger}: {info.get('ab')} (shadow {info.get('shadow')})")


def classify(http, key: str | None, images) -> list[dict]:
    headers = {CLIENT_KEY_HEADER: key} if key else {}
    response = http.post("/classify", json={"images": images.tolist()}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_challenger_answers_its_share_of_clients_each_client_one_version(serving_world, ab_server):
    x = serving_world.x_test
    with serving_fixtures.client(ab_server) as http:
        info = wait_for_ab(http, "v2")
        assert info["version"] == "v1" and info["ab"]["fraction"] == FRACTION
        seen: dict[str, set[str]] = {}
        answers = []
        for round_ in range(2):
            for i, key in enumerate(KEYS):
                batch = classify(http, key, x[(i + round_) % 190:(i + round_) % 190 + 2])
                seen.setdefault(key, set()).update(a["model_version"] for a in batch)
                answers += [(key, a) for a in batch]
        assert all(len(versions) == 1 for versions in seen.values())  # sticky: one client, one version
        expected = {key: "v2" if answered_by_challenger(key, FRACTION) else "v1" for key in KEYS}
        assert {key: versions.pop() for key, versions in seen.items()} == expected
        share = sum(v == "v2" for v in expected.values()) / len(KEYS)
        assert abs(share - FRACTION) <= 0.1  # 150 clients: the ±3 % over 2,000 is test_ab_routing's
        assert {a["model_version"] for a in classify(http, None, x[:4])} == {"v1"}  # no key: production
        upload = http.post("/classify_image", content=serving_fixtures.png_bytes(serving_world.pixels_test[0]),
                           headers={"Content-Type": "image/png", CLIENT_KEY_HEADER: next(
                               k for k in KEYS if expected[k] == "v2")})
        assert upload.status_code == 200 and upload.json()["model_version"] == "v2"
        assert http.post("/classify_challenger", json={"images": x[:1].tolist()}).status_code == 404
        ab = http.get("/model").json()["ab"]
        assert ab["answered"] >= 2 * 2 * sum(v == "v2" for v in expected.values()) + 1

        # the answered row under the answering version; the other version's answer in the shadow log, same id
        ids = {a["prediction_id"]: a["model_version"] for _, a in answers}
        artifacts = serving_world.home.parent / "artifacts"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            served, shadowed = (read_window(artifacts, *ALL_TIME, kind) for kind in (LOG_KIND, SHADOW_KIND))
            shadowed = shadowed[shadowed["prediction_id"].isin(ids)] if not shadowed.empty else shadowed
            if len(shadowed) == len(ids):
                break
            time.sleep(0.2)
        served = served[served["prediction_id"].isin(ids)]
        assert dict(zip(served["prediction_id"], served["model_version"], strict=True)) == ids
        other = {"v1": "v2", "v2": "v1"}
        assert dict(zip(shadowed["prediction_id"], shadowed["model_version"], strict=True)) == {
            pid: other[v] for pid, v in ids.items()}


def test_a_shadow_the_registry_does_not_let_answer_clients_answers_no_one_and_still_shadows(serving_world,
                                                                                             ab_server):
    registry, x = serving_world.registry, serving_world.x_test
    challenger_keys = [k for k in KEYS if answered_by_challenger(k, FRACTION)][:10]
    with serving_fixtures.client(ab_server) as http:
        wait_for_ab(http, "v2")
        registry.record_release_test("v2", "image_classifier:bento-x", passed=False,
                                     reason="the Bento answers differently from the offline model", by="test")
        try:
            info = wait_for_ab(http, None)
            assert "release test failed" in info["ab"]["not_answering"]
            mirrored = info["shadow"]["mirrored"]
            answered = [a for key in challenger_keys for a in classify(http, key, x[:2])]
            assert {a["model_version"] for a in answered} == {"v1"}
            deadline = time.monotonic() + 30
            while http.get("/model").json()["shadow"]["mirrored"] < mirrored + 20 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert http.get("/model").json()["shadow"]["mirrored"] == mirrored + 20  # it still shadows
        finally:
            record_release_test_without_a_bento(registry, "v2")
        wait_for_ab(http, "v2")

        registry.set_policy(True, by="test", reason="a reviewer decides from now on")
        try:
            info = wait_for_ab(http, None)
            assert "approval before release is required" in info["ab"]["not_answering"]
            answered = [a for key in challenger_keys for a in classify(http, key, x[:2])]
            assert {a["model_version"] for a in answered} == {"v1"}
        finally:
            registry.set_policy(False, by="test", reason="back to the fixture's policy")
        wait_for_ab(http, "v2")
