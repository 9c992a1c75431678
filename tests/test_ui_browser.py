"""The Dagster UI and the Bento service's docs page as a person sees them, in a real browser.

A temporary instance (the repository's dagster.yaml, storage under ``tmp``) where ``build_job`` has
run once; ``dagster-webserver`` and ``dagster-daemon`` over it (the QueuedRunCoordinator of
dagster.yaml needs the daemon to start what the UI launches); Debian's ``chromium`` driven by
Playwright. Every wait is on what the page shows, with a deadline. Screenshots of each step go to
``artifacts/ui/`` (git-ignored) for a reviewer; ``artifacts/ui/asset-graph.png`` is docs/ui-tour.md's
picture (``cp artifacts/ui/asset-graph.png docs/ui/`` to refresh it).

Needs ``apt-get install chromium`` and ``pip install playwright`` (no browser download). Without them
the tests skip, except under CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mlops_assets.infra.local_stack import (
    StackHome,
    dagster_daemon,
    dagster_webserver,
    graphql,
    make_home,
    skip_community_prompt,
)
from tests.ui_pages import full_page_screenshot, small_png
from tests.ui_processes import REPO, SCREENSHOTS, chromium_path, run_build, run_monitoring

pytestmark = pytest.mark.slow

GROUPS = ("build", "deploy", "monitor")
ASSET = "evaluation_report"
RUN_DEADLINE_MS = 180_000  # queue → daemon → run process → one step, on a busy 2-core machine
PLOTTED = """
query ($path: [String!]!) { assetOrError(assetKey: {path: $path}) {
  ... on Asset { assetMaterializations { metadataEntries { label ... on FloatMetadataEntry { floatValue } } } } } }
"""
MATERIALIZATIONS = """
query ($path: [String!]!) { assetOrError(assetKey: {path: $path}) {
  ... on Asset { assetMaterializations { runId } } } }
"""


# -- fixtures -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chromium() -> str:
    reason = None
    if importlib.util.find_spec("playwright") is None:
        reason = "the Python package playwright is not installed (pip install playwright)"
    elif (executable := chromium_path()) is None:
        reason = "no system chromium (apt-get install chromium), or set CHROMIUM to its path"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the browser tests")
        pytest.skip(reason)
    return executable


@pytest.fixture(scope="module")
def ui_world(chromium, tmp_path_factory: pytest.TempPathFactory) -> tuple[StackHome, str]:
    """An instance where build_job has run once (fast config) and two windows of traffic were profiled and
    judged (clean, then inverted); returns it and the build's run id."""
    world = make_home(tmp_path_factory.mktemp("ui") / "dagster_home")
    build = run_build(world)
    run_monitoring(world)
    return world, build["run_id"]


@pytest.fixture(scope="module")
def dagster_ui(ui_world) -> str:
    world, _ = ui_world
    with dagster_webserver(world) as url, dagster_daemon(world, url):
        skip_community_prompt(url)
        yield url


@pytest.fixture
def page(chromium):
    from tests.ui_pages import chromium_page

    with chromium_page(chromium) as page:
        yield page


def expected_assets() -> dict[str, list[str]]:
    """The build, deploy and monitor assets, by group, as the code location defines them now."""
    from mlops_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    by_group: dict[str, list[str]] = {}
    for key in graph.get_all_asset_keys():
        group = graph.get(key).group_name
        if group in GROUPS:
            by_group.setdefault(group, []).append(key.to_user_string())
    return {group: sorted(names) for group, names in sorted(by_group.items())}


def drawn_name(name: str) -> re.Pattern:
    """An asset's name as the zoomed-out graph draws it: whole, or a long one cut in the middle
    ("produ…_performance")."""
    k = min(5, len(name) // 2)
    return re.compile(rf"^{re.escape(name[:k])}(.*….*|{re.escape(name[k:-k])}){re.escape(name[-k:])}$")


def materialization_run_ids(base_url: str, asset: str) -> list[str]:
    data = graphql(base_url, MATERIALIZATIONS, {"path": [asset]})["assetOrError"]
    return [m["runId"] for m in data["assetMaterializations"]]


def is_graphql(operation: str):
    """A Playwright response predicate: the UI's GraphQL call named ``operation``."""
    return lambda response: "/graphql" in response.url and f'"{operation}"' in (response.request.post_data or "")


def metadata_row(page, key: str):
    """The row of the asset page's metadata table whose key cell reads ``key``."""
    return page.locator("tr").filter(has=page.get_by_text(key, exact=True)).first


def expand_all_groups(page) -> None:
    """With several groups the global lineage starts collapsed to one box per group; a person opens
    the graph's settings menu (the gear by the zoom buttons) and picks "Expand all groups" (⌥E)."""
    from playwright.sync_api import expect

    gear = page.get_by_role("button").filter(has=page.get_by_role("img", name="settings"))
    gear.filter(has_not_text="Settings").last.click()  # not the navigation's "Settings"
    expand = page.get_by_role("menuitem", name=re.compile("Expand all groups"))
    collapse = page.get_by_role("menuitem", name=re.compile("Collapse all groups"))
    expect(expand.or_(collapse)).to_be_visible()
    if expand.is_visible():
        expand.click()
    page.keyboard.press("Escape")


# -- the Dagster UI -------------------------------------------------------------------------------------
def test_asset_graph_draws_every_asset(dagster_ui, page):
    from playwright.sync_api import expect

    expected = expected_assets()
    assert "build" in expected, f"no build group in the definitions: {expected}"
    # The graph draws the nodes first and colours them (materialised or not) when its live-data query
    # answers; wait for that answer too, so the screenshot shows the state.
    with page.expect_response(is_graphql("AssetGraphLiveQuery")) as live_data:
        page.goto(f"{dagster_ui}/asset-groups")
    assert live_data.value.ok
    if len(expected) > 1:
        expand_all_groups(page)

    graph = page.locator("svg foreignObject")  # the lineage graph draws its nodes as HTML in SVG
    for group, names in expected.items():
        expect(graph.get_by_text(group, exact=True).first, f"group box {group}").to_be_visible()
        for name in names:
            expect(graph.get_by_text(drawn_name(name)).first, f"asset node {name} ({group})").to_be_visible()
    screenshot = full_page_screenshot(page, SCREENSHOTS / "1-asset-graph.png")
    small_png(screenshot, SCREENSHOTS / "asset-graph.png")  # docs/ui-tour.md's docs/ui/asset-graph.png


def test_evaluation_report_page_shows_metrics_and_confusion_matrix(dagster_ui, page):
    from playwright.sync_api import expect

    page.goto(f"{dagster_ui}/assets/{ASSET}")
    # each figure once: the headline figures are their own (plotted) rows; the "metrics" cell holds only the
    # same-rows comparison with production (here, the first build: that there is no production model yet)
    recorded = float(metadata_row(page, "accuracy").get_by_role("cell").last.inner_text())
    assert recorded > 0.5
    metrics = metadata_row(page, "metrics")
    expect(metrics).to_contain_text("no production model yet")
    expect(metrics.get_by_role("cell", name="accuracy", exact=True)).to_have_count(0)
    expect(page.get_by_text("production_comparison", exact=True)).to_have_count(0)  # no raw JSON repeats them
    full_page_screenshot(page, SCREENSHOTS / "2-evaluation-report.png")

    # The confusion matrix is a Markdown image (a data URI), too long to inline in the table.
    metadata_row(page, "confusion_matrix").get_by_text("[Show Markdown]").click()
    image = page.get_by_role("dialog").get_by_role("img", name="confusion matrix")
    expect(image).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    width, height = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert width >= 100 and height >= 100, (width, height)
    full_page_screenshot(page, SCREENSHOTS / "3-confusion-matrix.png")


def test_materialize_button_runs_and_adds_a_materialization(dagster_ui, ui_world, page):
    from playwright.sync_api import expect

    _, build_run_id = ui_world
    before = materialization_run_ids(dagster_ui, ASSET)
    assert build_run_id in before

    page.goto(f"{dagster_ui}/assets/{ASSET}")
    page.get_by_role("button").filter(has_text=re.compile(r"^Materialize$")).click()
    toast = page.get_by_role("listitem").filter(has_text=re.compile(r"Launched run [0-9a-f]{8}"))
    expect(toast).to_be_visible()
    run_path = toast.get_by_role("link", name="View").get_attribute("href")
    run_id = run_path.rsplit("/", 1)[-1]
    full_page_screenshot(page, SCREENSHOTS / "4-materialize-launched.png")

    page.goto(f"{dagster_ui}{run_path}")
    outcome = page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$"))
    expect(outcome.first).to_be_visible(timeout=RUN_DEADLINE_MS)
    full_page_screenshot(page, SCREENSHOTS / "5-run.png")
    assert outcome.first.inner_text() == "Success", f"run {run_id} ended {outcome.first.inner_text()}"
    expect(page.get_by_text("RUN_SUCCESS", exact=True)).to_be_visible()

    page.goto(f"{dagster_ui}/assets/{ASSET}?view=events")
    events = page.locator("[data-index]").filter(has=page.get_by_role("img", name="run_success"))
    expect(events).to_have_count(len(before) + 1)
    expect(page.get_by_text(re.compile(rf"Materialized in run\s+{run_id[:8]}")).first).to_be_visible()
    full_page_screenshot(page, SCREENSHOTS / "6-materializations.png")
    assert materialization_run_ids(dagster_ui, ASSET)[0] == run_id


SENSOR_TICKS = """
query ($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
  ... on Sensor { sensorState { ticks(limit: 20) { status skipReason } } } } }
"""


def test_drift_is_visible_per_window_with_its_history_and_reasons(dagster_ui, page):
    """drift_report shows the latest verdict, the per-feature table and the HTML report, and plots drift per
    window; the drift sensor's page gives the reason of every tick that launched nothing."""
    from playwright.sync_api import expect

    data = graphql(dagster_ui, PLOTTED, {"path": ["drift_report"]})["assetOrError"]["assetMaterializations"]
    shares = [next(float(m["floatValue"]) for m in e["metadataEntries"] if m["label"] == "drift_share") for e in data]
    assert len(shares) >= 2 and max(shares) > min(shares), shares
    thresholds = [next(float(m["floatValue"]) for m in e["metadataEntries"] if m["label"] == "drift_share_threshold")
                  for e in data]
    assert len(set(thresholds)) == 1 and 0 < thresholds[0] <= 1 and min(shares) < thresholds[0], (shares, thresholds)

    page.goto(f"{dagster_ui}/assets/drift_report")
    expect(metadata_row(page, "drift_share")).to_be_visible()
    expect(metadata_row(page, "reason").get_by_text(re.compile(r"drift share \d\.\d\d"))).to_be_visible()
    expect(metadata_row(page, "features").get_by_role("columnheader", name="Hellinger")).to_be_visible()
    expect(metadata_row(page, "html_report")).to_be_visible()
    full_page_screenshot(page, SCREENSHOTS / "8-drift-report.png")

    page.get_by_role("button", name=re.compile("Plots")).click()  # the metadata section's Table | Plots
    expect(page.get_by_text("drift_share", exact=True).first).to_be_visible()
    expect(page.get_by_text("drift_share_threshold", exact=True).first).to_be_visible()  # its own series
    expect(page.locator("canvas").first).to_be_visible()
    full_page_screenshot(page, SCREENSHOTS / "9-drift-plots.png")

    page.goto(f"{dagster_ui}/assets/inference_profiles")
    expect(metadata_row(page, "n_rows")).to_be_visible()
    full_page_screenshot(page, SCREENSHOTS / "10-inference-profiles.png")

    selector = {"repositoryLocationName": "mlops", "repositoryName": "__repository__", "sensorName": "drift_sensor"}
    deadline = time.monotonic() + 150  # the daemon ticks each sensor every 60 s
    reasons: list[str] = []
    while time.monotonic() < deadline and not reasons:
        ticks = graphql(dagster_ui, SENSOR_TICKS, {"selector": selector})["sensorOrError"]["sensorState"]["ticks"]
        reasons = [t["skipReason"] for t in ticks if t["status"] == "SKIPPED" and t["skipReason"]]
        time.sleep(2)
    assert reasons, "the drift sensor never skipped with a reason"
    page.goto(f"{dagster_ui}/locations/mlops/sensors/drift_sensor")
    # the newest tick's Result button (its Status cell carries the same words, but does not open the dialog)
    result = page.get_by_role("table").last.get_by_role("button", name="0 runs requested").first
    expect(result).to_be_visible()
    full_page_screenshot(page, SCREENSHOTS / "11-drift-sensor.png")
    result.click()
    # the newest skipped tick in the list may be one tick newer than the query above saw: any skip reason the
    # sensor gave (a reason's head, before the times it names) is the one the dialog must show
    heads = sorted({re.split(r"\d{4}-\d\d-\d\d", reason)[0].strip()[:40] for reason in reasons} - {""})
    assert heads, reasons
    expect(page.get_by_role("dialog").get_by_text(re.compile("|".join(map(re.escape, heads)))).first).to_be_visible()
    full_page_screenshot(page, SCREENSHOTS / "12-drift-sensor-tick.png")


# -- the operator's view, on the loop demo's instance ---------------------------------------------------
@pytest.fixture(scope="module")
def loop_demo_ui(chromium, tmp_path_factory: pytest.TempPathFactory):
    """`make loop-demo` run to its end (it stops everything it started), then `make loop-demo-ui`: its UI reopened
    over the instance it left. Yields the UI's URL and the demo's summary."""
    with reopened_demo(tmp_path_factory, "loop") as found:
        yield found


@pytest.fixture(scope="module")
def challenger_demo_ui(chromium, tmp_path_factory: pytest.TempPathFactory):
    """`make loop-demo LOOP_DEMO_ARGS=--challenger` run to its end (two windows of live comparison), then its UI
    reopened over the instance it left. Yields the UI's URL and the demo's summary."""
    with reopened_demo(tmp_path_factory, "challenger", "--challenger") as found:
        yield found


@contextlib.contextmanager
def reopened_demo(tmp_path_factory: pytest.TempPathFactory, name: str, *flags: str):
    from mlops_assets.infra.processes import free_port
    from tests.test_loop_demo import read_until

    home = tmp_path_factory.mktemp(name) / "loop-demo"
    summary = home.parent / "summary.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    demo = [sys.executable, "-m", "mlops_assets.tools.loop_demo", "--home", str(home), "--ui-port", str(free_port()),
            "--service-port", str(free_port()), "--summary-json", str(summary), *flags]
    done = subprocess.run(demo, cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    reopen = [sys.executable, "-m", "mlops_assets.tools.loop_demo", "--reopen", "--home", str(home),
              "--ui-port", str(free_port())]
    ui = subprocess.Popen(reopen, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0,
                          start_new_session=True)
    try:
        url = read_until(ui, "Ctrl-C stops it", timeout_s=300).split("in the Dagster UI: ")[1].split()[0]
        skip_community_prompt(url)
        yield url, json.loads(summary.read_text())
    finally:
        os.killpg(ui.pid, signal.SIGINT)
        try:
            ui.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)


def markdown_of(page, key: str):
    """A Markdown metadata value as the asset page shows it: inline, or (long) in the "[Show Markdown]" dialog."""
    row = metadata_row(page, key)
    more = row.get_by_text("[Show Markdown]")
    if more.count():
        more.click()
        return page.get_by_role("dialog")
    return row


RUN_STATUSES = "{ runsOrError { ... on Runs { results { runId jobName status } } } }"


def test_the_operator_view_on_the_loop_demo_s_instance(loop_demo_ui, page):
    """What serves (the version /model reported), the release timeline top to bottom, drift share with its
    threshold, and no red run left by the demo's own shutdown."""
    from playwright.sync_api import expect

    url, summary = loop_demo_ui
    served = summary["served_after"]  # what the service's /model reported when the loop closed
    page.goto(f"{url}/assets/served_model")
    expect(metadata_row(page, "served_version")).to_contain_text(served)
    timeline = markdown_of(page, "release_timeline")
    expect(timeline.get_by_text("release test", exact=True)).to_be_visible()
    text = timeline.inner_text()
    # each row's first cell names its step ("served" also appears inside the release test's own text)
    first_cells = [line.split("\t")[0].strip() for line in text.splitlines()]
    steps = ("window judged", "run launched", "gate decision", "release test", "promoted", "served")
    assert set(steps) <= set(first_cells), text
    positions = [first_cells.index(step) for step in steps]
    assert positions == sorted(positions), text
    assert "drift share" in text and f"reports {served}" in text, text
    full_page_screenshot(page, SCREENSHOTS / "13-served-model-timeline.png")

    page.goto(f"{url}/assets/drift_report")
    page.get_by_role("button", name=re.compile("Plots")).click()
    expect(page.get_by_text("drift_share_threshold", exact=True).first).to_be_visible()
    expect(page.locator("canvas").first).to_be_visible()
    full_page_screenshot(page, SCREENSHOTS / "14-drift-share-and-threshold.png")

    runs = graphql(url, RUN_STATUSES)["runsOrError"]["results"]
    assert runs and {r["status"] for r in runs} <= {"SUCCESS", "CANCELED"}, runs
    page.goto(f"{url}/runs")
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    expect(page.get_by_text("Failure", exact=True)).to_have_count(0)
    full_page_screenshot(page, SCREENSHOTS / "15-runs-after-the-demo.png")


COMPARED = """
query ($path: [String!]!) { assetOrError(assetKey: {path: $path}) { ... on Asset { assetMaterializations {
  partition metadataEntries { label ... on FloatMetadataEntry { floatValue } ... on TextMetadataEntry { text } } } } } }
"""


def test_live_comparison_plots_production_and_the_challenger_over_two_windows(challenger_demo_ui, page):
    """The loop demo's challenger, compared with production on live labelled traffic in two windows: the
    live_comparison page shows the verdict, the versions' table and the plot over the windows (an image drawn from
    every window's figures), and its Plots draw each figure per window."""
    from playwright.sync_api import expect

    url, summary = challenger_demo_ui
    found = graphql(url, COMPARED, {"path": ["live_comparison"]})["assetOrError"]["assetMaterializations"]
    figures = {m["partition"]: {e["label"]: e.get("floatValue", e.get("text")) for e in m["metadataEntries"]}
               for m in found if any(e["label"] == "challenger_accuracy" for e in m["metadataEntries"])}
    windows = [w["window"] for w in summary["challenger"]["windows"]]
    assert set(windows) <= set(figures) and len(windows) == 2, (windows, sorted(figures))
    assert all(figures[w]["challenger_accuracy"] > figures[w]["production_accuracy"] for w in windows), figures

    page.goto(f"{url}/assets/live_comparison")
    expect(metadata_row(page, "verdict")).to_contain_text("better")
    expect(markdown_of(page, "versions").get_by_text("McNemar exact p", exact=False).first).to_be_visible()
    page.keyboard.press("Escape")
    image = markdown_of(page, "over_windows").get_by_role("img", name="agreement and accuracies over windows")
    expect(image).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    full_page_screenshot(page, SCREENSHOTS / "16-live-comparison-over-windows.png")
    page.keyboard.press("Escape")

    page.get_by_role("button", name=re.compile("Plots")).click()
    for series in ("challenger_accuracy", "production_accuracy", "agreement"):
        expect(page.get_by_text(series, exact=True).first).to_be_visible()
    expect(page.locator("canvas").first).to_be_visible()
    full_page_screenshot(page, SCREENSHOTS / "17-live-comparison-plots.png")


# -- the Bento service's docs page ----------------------------------------------------------------------
def service_class(path: Path) -> str | None:
    """The class decorated with ``@bentoml.service`` in ``path``, found without importing it."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ClassDef) and any("bentoml.service" in ast.unparse(d) for d in node.decorator_list):
            return node.name
    return None


def test_bento_docs_page_lists_the_endpoints(ui_world, page):
    from playwright.sync_api import expect

    from mlops_assets.infra.bento_server import serve_bento

    world, _ = ui_world
    service_file = REPO / "bentos" / "service.py"
    # The service is part of the product: one that is missing or does not import is a failure, never a skip.
    name = service_class(service_file) if service_file.is_file() else None
    assert name is not None, "bentos/service.py has no @bentoml.service class"
    imported = subprocess.run([sys.executable, "-c", "import bentos.service"], cwd=REPO, env=world.env(),
                              capture_output=True, text=True, timeout=300)
    assert imported.returncode == 0, f"bentos/service.py does not import:\n{imported.stderr[-2000:]}"

    with serve_bento(f"bentos.service:{name}", world.bentoml_home, world.logs / "bento.log",
                     env=world.env(), ready_timeout_s=180) as url:
        with urllib.request.urlopen(f"{url}/docs.json", timeout=30) as response:
            spec = json.loads(response.read())
        paths = sorted(spec["paths"])
        assert any("post" in spec["paths"][p] for p in paths), f"no POST endpoint in the OpenAPI spec: {paths}"
        # BentoML 1.4 serves its Swagger UI docs page at "/" (the spec at /docs.json); /docs is a 404.
        page.goto(f"{url}/")
        expect(page.get_by_role("heading", name=re.compile(spec["info"]["title"]))).to_be_visible()
        for path in paths:  # every operation of the document (GET and POST /model included) is listed
            for method in spec["paths"][path]:
                operation = page.locator(f'.opblock-{method} .opblock-summary-path[data-path="{path}"]')
                expect(operation, f"{method.upper()} {path}").to_be_visible()
        full_page_screenshot(page, SCREENSHOTS / "7-bento-docs.png")
