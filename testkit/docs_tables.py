"""The tables of docs/ that describe the code, generated from the code so they cannot go stale.

Each lies in its page between ``<!-- generated:<name>:start -->`` and ``<!-- generated:<name>:end -->``:

- ``layout`` (docs/layout.md): every module of every folder, with the first paragraph of its docstring;
- ``automation`` (docs/ui-tour.md): every job, schedule and sensor of the loaded definitions, with its
  description and whether it runs by default;
- ``envvar`` (docs/settings.md): the resource fields that ``resources/defaults.py`` hands to Dagster as an
  ``EnvVar`` when their variable is set (from its ``WIRING``);
- ``settings`` (docs/settings.md) and ``governance_settings`` (docs/governance.md): the settings table of
  ``mlops_assets/core/common/settings.py`` (variable, type, default, what), all of it or the rows a page explains.

``python -m testkit.docs_tables`` rewrites them; tests/test_docs.py fails while a page differs from what this
module generates, and names the command.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CORE_ROOMS = [f"mlops_assets/core/{room}" for room in (
    "common", "data", "quality", "model", "registry", "serving", "monitoring")]
FOLDERS = [
    "mlops_assets", "mlops_assets/build_stage", "mlops_assets/deploy_stage", "mlops_assets/monitor_stage",
    "mlops_assets/govern_stage", "mlops_assets/tools", "mlops_assets/core", *CORE_ROOMS, "mlops_assets/infra",
    "resources", "sensors", "bentos", "testkit", "benchmarks",
]
PAGES = {"layout": DOCS / "layout.md", "automation": DOCS / "ui-tour.md", "envvar": DOCS / "settings.md",
         "settings": DOCS / "settings.md", "governance_settings": DOCS / "governance.md"}


def summary(path: Path) -> str:
    """The first paragraph of a module's docstring, on one line."""
    docstring = ast.get_docstring(ast.parse(path.read_text(), str(path))) or ""
    return " ".join(docstring.split("\n\n")[0].split()).replace("|", "\\|")


def layout_table() -> str:
    blocks = []
    for folder in FOLDERS:
        package = ROOT / folder / "__init__.py"
        intro = summary(package) if package.exists() else ""
        rows = [f"| `{path.name}` | {summary(path)} |" for path in sorted((ROOT / folder).glob("*.py"))
                if path.name != "__init__.py"]
        blocks.append("\n".join([f"### `{folder}/`", "", *([intro, ""] if intro else []),
                                 "| module | what it is |", "|---|---|", *rows]))
    return "\n\n".join(blocks)


def automation_table() -> str:
    from mlops_assets.definitions import defs

    repository = defs.get_repository_def()
    rows = []
    for sensor in sorted(repository.sensor_defs, key=lambda s: s.name):
        rows.append(("sensor", sensor.name, sensor.default_status.value.lower(), sensor.description))
    for schedule in sorted(repository.schedule_defs, key=lambda s: s.name):
        rows.append(("schedule", schedule.name, f"{schedule.default_status.value.lower()} "
                     f"(`{schedule.cron_schedule}`)", schedule.description))
    for job in sorted(repository.get_all_jobs(), key=lambda j: j.name):
        if not job.name.startswith("__"):
            rows.append(("job", job.name, "–", job.description))
    lines = ["| kind | name | by default | what it does |", "|---|---|---|---|"]
    lines += [f"| {kind} | `{name}` | {status} | {' '.join((text or '').split())} |"
              for kind, name, status, text in rows]
    return "\n".join(lines)


def envvar_fields() -> tuple[list[tuple[str, str, str]], int]:
    """(resource, field, variable) for each wired field that Dagster is handed as an ``EnvVar`` when its variable
    is set (``resources/defaults.py``: its str and int fields), and the number of wired fields."""
    from resources.defaults import WIRING, carries_envvar

    wired = [(key, resource, field, name)
             for key, (resource, fields) in WIRING.items() for field, name in fields.items()]
    return [(key, field, name) for key, resource, field, name in wired if carries_envvar(resource, field)], len(wired)


def envvar_table() -> str:
    rows, fields = envvar_fields()
    lines = ["| resource | field | variable |", "|---|---|---|"]
    lines += [f"| `{resource}` | `{field}` | `{variable}` |" for resource, field, variable in rows]
    return "\n".join(lines) + f"\n\n{len(rows)} of the {fields} fields the resources are given from a setting."


KINDS = {str: "text", int: "integer", float: "number", bool: "1/0"}


def shown_default(name: str) -> str:
    """A setting's default as the docs show it: ``—`` when empty, a path under ``$MLOPS_HOME`` as such."""
    from mlops_assets.core.common import settings

    row = settings.TABLE[name]
    if row.under_home:
        return f"`$MLOPS_HOME/{row.default}`"
    if name in (settings.ENV_FILE, settings.MLOPS_HOME):
        return f"`./{row.default}`"
    return f"`{row.default}`" if row.default else "—"


def settings_rows(names) -> str:
    from mlops_assets.core.common import settings

    lines = ["| variable | type | default | what |", "|---|---|---|---|"]
    lines += [f"| `{name}` | {KINDS[settings.TABLE[name].kind]} | {shown_default(name)} | "
              f"{settings.TABLE[name].doc} |" for name in names]
    return "\n".join(lines)


# docs/governance.md repeats the rows of the settings its page explains.
GOVERNANCE_SETTINGS = (
    "MLOPS_API_TOKEN", "MLOPS_KEEP_IMAGES", "MLOPS_REQUIRE_APPROVAL", "MLOPS_DRIFT_BLIND_ALERT_MINUTES",
    "MLOPS_PERF_MIN_ACCURACY", "MLOPS_PERF_MAX_RECALL_GAP", "MLOPS_PERF_MIN_LABELLED", "MLOPS_PERF_MIN_CLASS_LABELLED",
)


def settings_table() -> str:
    from mlops_assets.core.common import settings

    return settings_rows(settings.ALL)


def governance_settings_table() -> str:
    return settings_rows(GOVERNANCE_SETTINGS)


GENERATORS = {"layout": layout_table, "automation": automation_table, "envvar": envvar_table,
              "settings": settings_table, "governance_settings": governance_settings_table}


def section_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- generated:{name}:start -->\n)(.*?)(<!-- generated:{name}:end -->)", re.S)


def current(name: str) -> str | None:
    """The table as the page has it now (None when the page has no such section)."""
    match = section_pattern(name).search(PAGES[name].read_text())
    return match.group(2).removesuffix("\n") if match else None


def rewrite() -> list[str]:
    changed = []
    for name, generate in GENERATORS.items():
        page = PAGES[name]
        text = page.read_text()
        table = generate()
        if current(name) is None:
            raise SystemExit(f"{page} has no <!-- generated:{name}:start --> … end section")
        new = section_pattern(name).sub(lambda m, t=table: m.group(1) + t + "\n" + m.group(3), text)
        if new != text:
            page.write_text(new)
            changed.append(str(page.relative_to(ROOT)))
    return changed


if __name__ == "__main__":
    print("\n".join(rewrite()) or "docs/ tables are up to date")
