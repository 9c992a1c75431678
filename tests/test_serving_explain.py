"""``/explain`` and ``/explain_image`` (issue 39) on the real server: the served model's occlusion map of one image,
checked against the deletion test; the same door as ``/classify_image`` (token, limits, validation); the version that
answered, across a hot swap; and a refusal, with the reason, for a version whose explanations did not pass their
check."""

from __future__ import annotations

import base64
import io
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from mlops_assets.core.model import explain
from mlops_assets.core.model.onnx_model import predict_labels
from testkit.fixtures import png_header_only
from tests import serving_fixtures
from tests.serving_fixtures import make_production, png_bytes, register, wait_for_version

pytestmark = pytest.mark.slow
serving_world = serving_fixtures.serving_world
dev_server = serving_fixtures.dev_server


def local_map(world, version: str, image: np.ndarray, target: int | None = None) -> explain.Explanation:
    """The occlusion map of ``version``'s ONNX model computed here, in-process."""
    return explain.occlusion(explain.onnx_predict(str(world.versions[version])), image, target)


@pytest.fixture
def served_v1(serving_world, dev_server):
    make_production(serving_world, "v1", "test: explain v1")
    with serving_fixtures.client(dev_server) as client:
        wait_for_version(client, "v1")
    yield
    make_production(serving_world, "v1", "test: restore v1")


def test_explain_maps_the_served_models_decision_and_the_map_beats_random_deletion(serving_world, dev_server,
                                                                                     served_v1):
    predict = explain.onnx_predict(str(serving_world.versions["v1"]))
    expected = predict_labels(serving_world.versions["v1"], serving_world.x_test[:4])
    with serving_fixtures.client(dev_server) as client:
        for i in range(4):
            image = serving_world.x_test[i]
            answer = client.post("/explain", json={"image": image[0].tolist()})  # H×W, as /classify takes
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert (body["model_version"], body["method"]) == ("v1", "occlusion")
            assert body["label"] == body["explained_label"] == expected[i]
            assert body["class_name"] == body["explained_class"] == serving_world.class_names[expected[i]]
            assert body["probability"] == pytest.approx(max(body["probabilities"]))
            assert body["explained_probability"] == pytest.approx(body["probability"], abs=1e-6)
            attribution = np.asarray(body["attribution"], np.float32)
            assert attribution.shape == (8, 8)  # the input's geometry
            np.testing.assert_allclose(attribution, local_map(serving_world, "v1", image).attribution, atol=1e-5)
            top, random = explain.deletion_drops(predict, image, explain.Explanation(
                body["explained_label"], body["explained_probability"], attribution), np.random.default_rng(i))
            assert top > 2 * random > 0, (i, top, random)
            heatmap = Image.open(io.BytesIO(base64.b64decode(body["heatmap_png"])))
            assert heatmap.format == "PNG" and heatmap.size[0] == heatmap.size[1] >= 8
            assert "deletion test" in body["explanation_check"]

        # a class the caller names: the same prediction, the map of that class
        other = (int(expected[0]) + 3) % 10
        named = client.post("/explain", json={"image": serving_world.x_test[0].tolist(), "target": other}).json()
        assert (named["label"], named["explained_label"]) == (expected[0], other)
        assert named["explained_class"] == serving_world.class_names[other]
        np.testing.assert_allclose(named["attribution"],
                                   local_map(serving_world, "v1", serving_world.x_test[0], other).attribution,
                                   atol=1e-5)

        # the upload: decoded exactly as in training, the same map; the raw body and the multipart form alike
        png = png_bytes(serving_world.pixels_test[0])
        form = client.post("/explain_image", files={"image": ("d.png", png, "image/png")})
        raw = client.post(f"/explain_image?target={other}", content=png, headers={"Content-Type": "image/png"})
        assert form.status_code == raw.status_code == 200, (form.text, raw.text)
        np.testing.assert_allclose(form.json()["attribution"],
                                   local_map(serving_world, "v1", serving_world.x_test[0]).attribution, atol=1e-5)
        assert raw.json()["explained_label"] == other
        np.testing.assert_allclose(raw.json()["attribution"], named["attribution"], atol=1e-6)


def test_an_explained_prediction_has_an_id_its_feedback_joins(serving_world, dev_server, served_v1):
    """The answer's prediction is logged as /classify_image's is (its row, its id); the explanation is not."""
    with serving_fixtures.client(dev_server) as client:
        answer = client.post("/explain", json={"image": serving_world.x_test[20].tolist()}).json()
        truth = serving_world.class_names[int(serving_world.y_test[20])]
        stored = client.post("/feedback", json={"feedback": [{"prediction_id": answer["prediction_id"],
                                                              "label": truth}]})
        assert stored.status_code == 200 and stored.json() == {"accepted": 1}, stored.text


def test_the_explain_endpoints_require_the_token(serving_world, dev_server):
    image = {"image": serving_world.x_test[0].tolist()}
    upload = {"image": ("d.png", png_bytes(serving_world.pixels_test[0]))}
    for headers in ({}, {"Authorization": "Bearer wrong-token"}):
        with httpx.Client(base_url=dev_server, timeout=30, headers=headers) as anonymous:
            for response in (anonymous.post("/explain", json=image), anonymous.post("/explain_image", files=upload)):
                assert response.status_code == 401, (headers, response.text)
                assert response.json()["field"] == "Authorization" and "MLOPS_API_TOKEN" in response.json()["error"]
    document = httpx.get(f"{dev_server}/docs.json", timeout=30).json()
    for path in ("/explain", "/explain_image"):
        operation = document["paths"][path]["post"]
        assert operation["security"] == [{"bearerAuth": []}] and {"401", "409"} <= set(operation["responses"])


UPLOAD_MISTAKES = [
    ("not an image", {"files": {"image": ("x.png", b"GIF89a not really", "image/png")}}),
    ("a text file", {"files": {"image": ("x.txt", b"hello", "text/plain")}}),
    ("an empty file", {"files": {"image": ("x.png", b"", "image/png")}}),
    ("over the body limit", {"files": {"image": ("x.png", b"\0" * (3 * 1024 * 1024))}}),
    ("a pixel bomb", {"files": {"image": ("bomb.png", png_header_only(10_000, 10_000))}}),
    ("two fields", {"files": [("image", ("a.png", b"x")), ("image2", ("b.png", b"x"))]}),
    ("another field name", {"files": {"picture": ("a.png", b"x")}}),
    ("a text field", {"files": {"image": (None, "http://127.0.0.1:9/secret")}}),
    ("JSON", {"json": {"image": "/etc/passwd"}}),
    ("a form", {"data": {"image": "abc"}}),
    ("no boundary", {"content": b"x=1", "headers": {"content-type": "multipart/form-data"}}),
    ("an undecodable raw body", {"content": b"not an image", "headers": {"content-type": "image/webp"}}),
    ("a bare image/ type", {"content": b"x", "headers": {"content-type": "image/"}}),
]


def test_bad_uploads_get_the_same_refusal_as_classify_image(serving_world, dev_server, served_v1):
    with serving_fixtures.client(dev_server) as client:
        for name, request in UPLOAD_MISTAKES:
            classified, explained = (client.post(path, **request) for path in ("/classify_image", "/explain_image"))
            assert 400 <= classified.status_code < 500, (name, classified.text)
            assert explained.status_code == classified.status_code, (name, explained.text, classified.text)
            assert explained.json()["field"] == classified.json()["field"], (name, explained.json())
        png = png_bytes(serving_world.pixels_test[0])
        for target in ("10", "-1", "abc", "1.5", "", "true"):
            refused = client.post(f"/explain_image?target={target}", files={"image": ("d.png", png)})
            assert refused.status_code == 400, (target, refused.text)
            assert refused.json()["field"] == "target" and "0 to 9" in refused.json()["error"], refused.json()
        twice = client.post("/explain_image?target=1&target=2", files={"image": ("d.png", png)})
        assert twice.status_code == 400 and twice.json()["field"] == "target"
        assert client.post("/explain_image?target=4", files={"image": ("d.png", png)}).status_code == 200


def test_bad_json_gets_the_same_refusal_as_classify(serving_world, dev_server, served_v1):
    """The image is validated as /classify validates one (shape, numbers, scale), and the target is a class."""
    one = serving_world.x_test[0]
    cases = [
        ("wrong shape", {"image": [[0.5] * 3] * 3}, {"images": [[[0.5] * 3] * 3]}),
        ("strings", {"image": [["a"] * 8] * 8}, {"images": [[["a"] * 8] * 8]}),
        ("out of scale", {"image": (one * 255).round().tolist()}, {"images": [(one * 255).round().tolist()]}),
        ("missing field", {}, {}),
    ]
    with serving_fixtures.client(dev_server) as client:
        for name, explain_body, classify_body in cases:
            explained = client.post("/explain", json=explain_body)
            classified = client.post("/classify", json=classify_body)
            assert explained.status_code == classified.status_code == 400, (name, explained.text)
            assert (explained.json()["field"], classified.json()["field"]) == ("image", "images"), name
        assert "0–255 pixels" in client.post("/explain", json=cases[2][1]).json()["error"]
        assert client.post("/explain", json={"image": [one.tolist()]}).status_code == 400  # a batch is not one image
        for target in (10, -1, 1.5, "3", True):
            refused = client.post("/explain", json={"image": one.tolist(), "target": target})
            assert refused.status_code == 400, (target, refused.text)
            assert refused.json()["field"] == "target", refused.json()
        oversized = client.post("/explain", content=b" " * (3 * 1024 * 1024),
                                headers={"content-type": "application/json"})
        assert oversized.status_code == 413


def test_after_a_hot_swap_explain_names_and_explains_the_new_version(serving_world, dev_server, served_v1):
    """Each answer is one version's from start to end: its map is that version's map, during the swap too."""
    image = serving_world.x_test[7]
    maps = {v: local_map(serving_world, v, image).attribution for v in ("v1", "v2")}
    answers: list[dict] = []
    failures: list[str] = []
    stop = threading.Event()

    def keep_explaining() -> None:
        with serving_fixtures.client(dev_server) as client:
            while not stop.is_set():
                response = client.post("/explain", json={"image": image.tolist()})
                (answers.append(response.json()) if response.status_code == 200
                 else failures.append(response.text))

    worker = threading.Thread(target=keep_explaining)
    worker.start()
    try:
        time.sleep(0.5)  # explanations before the swap (a load duration, not a wait for readiness)
        make_production(serving_world, "v2", "test: hot swap under /explain")
        with serving_fixtures.client(dev_server) as client:
            wait_for_version(client, "v2")
            after = client.post("/explain", json={"image": image.tolist()}).json()
        time.sleep(0.5)
    finally:
        stop.set()
        worker.join(timeout=30)
    assert failures == []
    assert after["model_version"] == "v2"
    np.testing.assert_allclose(after["attribution"], maps["v2"], atol=1e-5)
    assert {"v1", "v2"} <= {a["model_version"] for a in answers}
    for answer in answers:
        np.testing.assert_allclose(answer["attribution"], maps[answer["model_version"]], atol=1e-5)


def test_a_version_whose_explanations_did_not_pass_is_refused_with_the_reason(serving_world, dev_server, served_v1):
    registry = serving_world.registry
    reason = "deletion test: top 10% lowers p by 0.120 vs 0.100 random (1.20×, needs ≥ 2×)"
    if "unfaithful" not in {v.version for v in registry.list_versions()}:
        register(serving_world, "unfaithful", serving_world.versions["v2"],
                 {"passed": False, "method": "occlusion", "reason": reason})
        register(serving_world, "unchecked", serving_world.versions["v2"])
    png = png_bytes(serving_world.pixels_test[0])
    with serving_fixtures.client(dev_server) as client:
        for version, says in (("unfaithful", f"explanations for version unfaithful did not pass their "
                                             f"fidelity/sanity check: {reason}"),
                              ("unchecked", "explanations for version unchecked were never checked")):
            make_production(serving_world, version, "test: a version without passed explanations")
            wait_for_version(client, version)
            for response in (client.post("/explain", json={"image": serving_world.x_test[0].tolist()}),
                             client.post("/explain_image", files={"image": ("d.png", png)})):
                assert response.status_code == 409, response.text
                assert response.json()["error"].startswith(says), response.json()
            classified = client.post("/classify", json={"images": serving_world.x_test[:1].tolist()})
            assert classified.status_code == 200 and classified.json()[0]["model_version"] == version
