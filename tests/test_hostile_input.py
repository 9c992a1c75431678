"""The service under hostile input, as a real server: no 5xx, one error schema, bounded decoding, no fetching of
a client's URL or path, refusals that name the likely mistake, one log line per client error, and an OpenAPI
document that schemathesis (all checks, over 1,000 cases) finds no disagreement with."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from testkit.fixtures import png_header_only
from tests import serving_fixtures
from tests.serving_fixtures import AUTH

pytestmark = pytest.mark.slow
serving_world = serving_fixtures.serving_world
dev_server = serving_fixtures.dev_server
ROOT = Path(__file__).resolve().parents[1]
BOUNDARY = "XyZ123"


def multipart(*parts: str, boundary: str = BOUNDARY) -> bytes:
    """A multipart body from raw part headers+content, so malformed bodies can be written exactly."""
    body = "".join(f"--{boundary}\r\n{part}\r\n" for part in parts) + f"--{boundary}--\r\n"
    return body.encode()


FILE_PART = 'Content-Disposition: form-data; name="image"; filename="d.png"\r\nContent-Type: image/png\r\n\r\n'
WITH_BOUNDARY = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


def assert_error_body(response: httpx.Response, status: int, message: str, field: str | None = None) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error", "field"} and isinstance(body["error"], str), body
    assert re.search(message, body["error"]), body
    assert body["field"] == field, body


@pytest.mark.parametrize("path", ["/classify", "/classify_image", "/model"])
def test_multipart_without_a_boundary_is_a_client_error(dev_server, path):
    response = httpx.post(f"{dev_server}{path}", content=b"x=1",
                          headers={**AUTH, "content-type": "multipart/form-data"})
    expected = (400, "malformed multipart body: Missing boundary") if path == "/classify_image" else (
        415, "takes application/json")
    assert_error_body(response, *expected)


@pytest.mark.parametrize("path", ["/classify", "/classify_image", "/model"])
def test_a_part_without_a_name_is_a_client_error(dev_server, path):
    body = multipart('Content-Disposition: form-data\r\n\r\nabc')
    response = httpx.post(f"{dev_server}{path}", content=body, headers={**AUTH, **WITH_BOUNDARY})
    expected = (400, 'field "name" must be provided') if path == "/classify_image" else (415, "application/json")
    assert_error_body(response, *expected)


def test_upload_field_mistakes_name_the_field(serving_world, dev_server):
    png = serving_fixtures_png(serving_world)
    with serving_fixtures.client(dev_server) as client:
        two = client.post("/classify_image", files=[("image", ("a.png", png)), ("image2", ("b.png", png))])
        assert_error_body(two, 400, r"exactly one file field named 'image'.*got 'image', 'image2'", "image")
        wrong_name = client.post("/classify_image", files={"picture": ("a.png", png)})
        assert_error_body(wrong_name, 400, r"got 'picture'", "image")
        as_json = client.post("/classify_image", json={"image": "/etc/passwd"})
        assert_error_body(as_json, 415, "takes multipart/form-data")
        assert client.post("/classify_image", files={"image": ("a.png", png)}).status_code == 200


def serving_fixtures_png(world) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(world.pixels_test[0][0]).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_url_in_the_upload_field_is_never_fetched(dev_server):
    """``image=http://127.0.0.1:<port>`` as a text field: BentoML would download it; the door refuses it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    connections = []

    def accept() -> None:
        try:
            connections.append(listener.accept())
        except OSError:
            pass

    watcher = threading.Thread(target=accept)
    watcher.start()
    try:
        for value in (f"http://127.0.0.1:{port}/secret", f"127.0.0.1:{port}", "abc"):
            as_text_field = httpx.post(f"{dev_server}/classify_image", files={"image": (None, value)}, timeout=30,
                                       headers=AUTH)
            assert_error_body(as_text_field, 400, "must be a file upload, not a text field", "image")
            as_form = httpx.post(f"{dev_server}/classify_image", data={"image": value}, timeout=30, headers=AUTH)
            assert_error_body(as_form, 415, "takes multipart/form-data")
        watcher.join(timeout=2)
    finally:
        listener.close()
    assert connections == []


def test_a_path_in_the_upload_field_is_never_opened(dev_server, tmp_path):
    """A FIFO blocks whoever opens it for reading; had the server opened it, a writer could now connect."""
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    response = httpx.post(f"{dev_server}/classify_image", files={"image": (None, str(fifo))}, timeout=30, headers=AUTH)
    assert_error_body(response, 400, "not a text field", "image")
    with pytest.raises(OSError) as no_reader:
        os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    assert no_reader.value.errno == errno.ENXIO


@pytest.mark.parametrize("width, height", [(10_000, 10_000), (20_000, 20_000)])
def test_an_image_over_the_pixel_limit_is_a_413_and_never_decoded(dev_server, width, height):
    bomb = png_header_only(width, height)  # about 100 bytes that claim gigabytes of pixels
    response = httpx.post(f"{dev_server}/classify_image", files={"image": ("bomb.png", bomb)}, timeout=30, headers=AUTH)
    assert_error_body(response, 413, f"{width}×{height} = {width * height} pixels; at most 16777216.*"
                                     "MLOPS_MAX_IMAGE_PIXELS", "image")


@pytest.mark.parametrize("values, message", [
    (-0.5, r"training scale \[0, 1\].*from -0.5"),
    (1000.5, r"training scale \[0, 1\].*to 1000.5"),
    (255, r"values up to 255: these look like 0–255 pixels; send pixels / 255"),
    (10**30, r"from 0 to 1e\+30"),
    (1.0000001, r"from 0 to 1\.0000001$"),  # not rounded into the range it is refused for
    (10**400, "a number too large to be a pixel value"),
])
def test_out_of_scale_values_are_refused_naming_the_likely_mistake(dev_server, values, message):
    images = np.zeros((1, 8, 8), dtype=object)
    images[0, 0, 0] = values
    body = json.dumps({"images": images.tolist()}, default=int).encode()
    response = httpx.post(f"{dev_server}/classify", content=body, headers={**AUTH, "content-type": "application/json"})
    assert_error_body(response, 400, message, "images")


@pytest.mark.parametrize("order", ["token first", "token last"])
def test_two_authorization_headers_are_refused(serving_world, dev_server, order):
    """Which of two headers decides depends on who reads them (a proxy may read the last): neither does."""
    good, bad = AUTH["Authorization"], "Bearer not-the-token"
    pair = [("Authorization", good), ("Authorization", bad)]
    headers = pair if order == "token first" else pair[::-1]
    image = {"images": serving_world.x_test[:1].tolist()}
    for path, kwargs in (("/classify", {"json": image}), ("/feedback", {"json": {"feedback": []}}),
                         ("/classify_image", {"files": {"image": ("d.png", serving_fixtures_png(serving_world))}})):
        response = httpx.post(f"{dev_server}{path}", headers=headers, timeout=30, **kwargs)
        assert_error_body(response, 400, "one Authorization header, got 2", "Authorization")
    same_twice = httpx.post(f"{dev_server}/classify", json=image, timeout=30,
                            headers=[("Authorization", good), ("Authorization", good)])
    assert_error_body(same_twice, 400, "one Authorization header, got 2", "Authorization")


def test_a_feedback_item_without_a_label_names_the_item_and_field(dev_server):
    from datetime import UTC, datetime

    from mlops_assets.core.serving.prediction_ids import new_prediction_ids

    item = {"prediction_id": new_prediction_ids(1, datetime.now(UTC))[0]}
    response = httpx.post(f"{dev_server}/feedback", json={"feedback": [item]}, headers=AUTH, timeout=30)
    assert_error_body(response, 400, r"^the field 'feedback\.0\.label' is required$", "feedback.0.label")


@pytest.mark.parametrize("content", [b"", b"not an image", b"\x89PNG\r\n\x1a\n"])
def test_an_undecodable_image_is_a_422_naming_the_field(dev_server, content):
    response = httpx.post(f"{dev_server}/classify_image", files={"image": ("d.png", content, "image/png")},
                          headers=AUTH, timeout=30)
    assert_error_body(response, 422, ".", "image")


def test_the_image_itself_as_the_body_is_the_same_upload(serving_world, dev_server):
    """What the OpenAPI document declares (``image/*``, the file as the body) and the multipart form answer alike;
    an empty or undecodable body is the same 422 naming the image."""
    png = serving_fixtures_png(serving_world)
    form = httpx.post(f"{dev_server}/classify_image", files={"image": ("d.png", png)}, headers=AUTH, timeout=30)
    raw = httpx.post(f"{dev_server}/classify_image", content=png, headers={**AUTH, "content-type": "image/png"},
                     timeout=30)
    assert form.status_code == raw.status_code == 200, (form.text, raw.text)
    assert raw.json()["label"] == form.json()["label"] and raw.json()["probabilities"] == form.json()["probabilities"]
    for content in (b"", b"not an image"):
        refused = httpx.post(f"{dev_server}/classify_image", content=content,
                             headers={**AUTH, "content-type": "image/webp"}, timeout=30)
        assert_error_body(refused, 422, ".", "image")
    assert_error_body(httpx.post(f"{dev_server}/classify_image", content=png, timeout=30,
                                 headers={**AUTH, "content-type": "image/"}), 415, r"or a raw image body")
    document = httpx.get(f"{dev_server}/docs.json", timeout=30).json()
    assert list(document["paths"]["/classify_image"]["post"]["requestBody"]["content"]) == ["image/*"]


def test_booleans_anywhere_are_refused(dev_server):
    images = np.full((1, 8, 8), 0.5).tolist()
    images[0][3][4] = True
    response = httpx.post(f"{dev_server}/classify", json={"images": images}, headers=AUTH)
    assert_error_body(response, 400, "only numbers in \\[0, 1\\]; got true/false", "images")


def test_client_errors_log_one_warning_line_and_no_traceback(serving_world, dev_server):
    log = serving_fixtures.dev_server_log(serving_world)
    before = log.read_text().count("\n")
    httpx.post(f"{dev_server}/classify", json={"images": [[0.5]]}, headers=AUTH)
    httpx.post(f"{dev_server}/classify", json={"images": [[[2.0] * 8] * 8]}, headers=AUTH)
    new = log.read_text().splitlines()[before:]
    warnings = [line for line in new if "[WARNING]" in line and "client error on /classify" in line]
    assert len(warnings) == 2, new
    assert not any("Traceback" in line or "[ERROR]" in line for line in new), new


@pytest.mark.parametrize("hooks", ["testkit.schemathesis_hooks", None], ids=["with the image hooks", "plain"])
def test_schemathesis_with_all_checks_finds_nothing(dev_server, tmp_path, hooks):
    """Response conformance, negative data, status codes, methods...: every check, 1,000+ generated cases; with the
    project's hooks (random real images for the upload) and plain (what the document alone makes it generate)."""
    env = {key: value for key, value in os.environ.items() if key != "SCHEMATHESIS_HOOKS"}
    env = {**env, "PYTHONPATH": str(ROOT), **({"SCHEMATHESIS_HOOKS": hooks} if hooks else {})}
    command = [str(Path(sys.executable).parent / "st"), "run", f"{dev_server}/docs.json", "--url", dev_server,
               "--checks", "all", "--max-examples", "100", "--seed", "20261127", "--no-color",
               "--header", f"Authorization: Bearer {serving_fixtures.API_TOKEN}"]
    transcript = tmp_path / "schemathesis.txt"  # streamed: a run cut by the timeout still shows how far it got
    with transcript.open("w") as sink:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=sink, stderr=subprocess.STDOUT, text=True)
        try:
            returncode = process.wait(timeout=900)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(f"schemathesis ran past 900 s; its output so far:\n{transcript.read_text()[-6000:]}")
    output = transcript.read_text()
    generated = re.search(r"(\d+) generated", output)
    assert returncode == 0, output[-6000:]
    assert generated and int(generated.group(1)) >= 1000, output[-3000:]
    assert "No issues found" in output, output[-3000:]
    assert httpx.get(f"{dev_server}/readyz", timeout=10).status_code == 200
