"""Playwright helpers for the browser tests: Debian's chromium, offline, and full-page screenshots.

The Dagster UI lays its pages out in a fixed-height frame with inner scrolling panes, so Playwright's
``full_page=True`` alone captures one screen. :func:`full_page_screenshot` grows the viewport to the
tallest scrolling pane first, so the screenshot holds the whole page a person would scroll through.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.ui_processes import CHROMIUM_ARGS

VIEWPORT = {"width": 1600, "height": 1000}
MAX_SCREENSHOT_HEIGHT = 6000
LOOPBACK = re.compile(r"^(http|ws)s?://127\.0\.0\.1[:/]")

CONTENT_HEIGHT_JS = """() => {
  let height = document.documentElement.scrollHeight;
  for (const el of document.querySelectorAll('*')) {
    const style = getComputedStyle(el);
    if (['auto', 'scroll'].includes(style.overflowY) && el.scrollHeight > el.clientHeight + 1) {
      height = Math.max(height, el.getBoundingClientRect().top + el.scrollHeight);
    }
  }
  return Math.ceil(height);
}"""
TWO_FRAMES_JS = "() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))"


@contextmanager
def chromium_page(executable: str, timeout_ms: float = 60_000) -> Iterator[object]:
    """A fresh page in headless system chromium; requests that leave the loopback are refused at once,
    so nothing waits on the network the test machine does not have (fonts, tag managers, telemetry).

    ``timeout_ms`` is the deadline of every action and of every ``expect`` (Playwright's own default
    for ``expect`` is 5 s, too short for a first page load on a busy 2-core machine)."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=timeout_ms)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport=VIEWPORT)
            context.route(lambda url: not (url.startswith("data:") or LOOPBACK.match(url)),
                          lambda route: route.abort())
            context.set_default_timeout(timeout_ms)
            yield context.new_page()
        finally:
            browser.close()


def full_page_screenshot(page, path: Path) -> Path:
    """The whole page, scrolling panes unrolled, animations settled; the viewport is restored after."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height = min(max(page.evaluate(CONTENT_HEIGHT_JS), VIEWPORT["height"]), MAX_SCREENSHOT_HEIGHT)
    page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
    page.evaluate(TWO_FRAMES_JS)  # let the app lay out at the new size before capturing
    try:
        page.screenshot(path=str(path), full_page=True, animations="disabled")
    finally:
        page.set_viewport_size(VIEWPORT)
    return path


def small_png(source: Path, target: Path, colors: int = 64) -> Path:
    """A palette copy of a screenshot (UI screenshots have few colours): a third of the size, the
    same to the eye; ``docs/ui/asset-graph.png`` in docs/ui-tour.md is one of these."""
    from PIL import Image

    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as image:
        image.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
    return target
