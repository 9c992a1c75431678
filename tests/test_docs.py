"""The documentation a newcomer reads stays short, true and connected: the README is a ten-minute read that leads
to docs/; the tables that describe the code are the code's (testkit/docs_tables.py); every relative link lands;
BENCHMARKS.md keeps what ``make bench`` writes apart from what was written by hand."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks.report import HAND_WRITTEN
from testkit import docs_tables

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = ["operating", "governance", "ui-tour", "settings", "layout", "deployment"]
LINKED = [README, ROOT / "BENCHMARKS.md", ROOT / "deploy" / "README.md", *sorted(DOCS.glob("*.md"))]


def test_the_readme_is_a_ten_minute_read_that_leads_to_every_page():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    for page in PAGES:
        assert (DOCS / f"{page}.md").is_file(), page
        assert f"](docs/{page}.md)" in text, f"the README does not link docs/{page}.md"


@pytest.mark.parametrize("name", sorted(docs_tables.GENERATORS))
def test_the_generated_tables_are_the_codes(name):
    page = docs_tables.PAGES[name].relative_to(ROOT)
    assert docs_tables.current(name) == docs_tables.GENERATORS[name](), (
        f"{page}: the {name} table differs from the code; run `python -m testkit.docs_tables`")


def test_the_layout_names_every_top_level_folder():
    layout = (DOCS / "layout.md").read_text()
    folders = [p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))
               and p.name not in ("artifacts",) and not p.name.endswith(".egg-info")]
    assert [f for f in folders if f"`{f}/`" not in layout] == []


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, each space a hyphen."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", markdown, flags=re.S), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", LINKED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_lands(page):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
            broken.append(target)
    assert broken == []


def test_benchmarks_keep_measured_and_hand_written_apart():
    text = (ROOT / "BENCHMARKS.md").read_text()
    assert text.count(HAND_WRITTEN) == 1
    measured, hand_written = text.split(HAND_WRITTEN)
    names = re.findall(r"<!-- (\w+):start -->", measured)
    benchmarks = {path.stem for path in (ROOT / "benchmarks").glob("bench_*.py")}
    # each generated section is written by a benchmark: named after it (bench_scale, or bench_scale_ledgers)
    assert names and all(any(name == stem or name.startswith(f"{stem}_") for stem in benchmarks)
                         for name in names), names
    assert re.findall(r"<!-- (\w+):start -->", hand_written) == []
    outside = re.sub(r"<!-- (\w+):start -->.*?<!-- \1:end -->", "", measured, flags=re.S)
    assert re.findall(r"^## .*", outside, flags=re.M) == [], "a section above the hand-written part is not generated"
    assert "make bench" in text.split("<!--", 1)[0]


def test_every_setting_is_documented():
    from mlops_assets.core.common import settings

    documented = (DOCS / "settings.md").read_text() + (DOCS / "governance.md").read_text()
    assert [name for name in settings.ALL if f"`{name}`" not in documented] == []
