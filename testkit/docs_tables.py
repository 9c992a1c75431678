"""The tables of docs/ that describe the code, generated from the code so they cannot go stale.

Each lies in its page between ``<!-- generated:<name>:start -->`` and ``<!-- generated:<name>:end -->``:

- ``layout`` (docs/layout.md): every module of every folder, with the first paragraph of its docstring;
- ``automation`` (docs/ui-tour.md): every job, schedule and sensor of the loaded definitions, with its
  description and whether it runs by default;
- ``envvar`` (docs/settings.md): the resource fields that ``resources/defaults.py`` hands to Dagster as an
  ``EnvVar`` when their variable is set (read from its source: the ``setting(...)`` arguments).

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
PAGES = {"layout": DOCS / "layout.md", "automation": DOCS / "ui-tour.md", "envvar": DOCS / "settings.md"}


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
    """(resource, field, variable) for each field wired through ``setting(...)``, and the number of fields."""
    from mlops_assets.core.common import settings

    source = ROOT / "resources" / "defaults.py"
    function = next(node for node in ast.walk(ast.parse(source.read_text()))
                    if isinstance(node, ast.FunctionDef) and node.name == "default_resources")
    returned = next(node.value for node in ast.walk(function) if isinstance(node, ast.Return))
    through_envvar, fields = [], 0
    for key, call in zip(returned.keys, returned.values, strict=True):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
            continue  # Dagster's own io_manager
        for keyword in call.keywords:
            fields += 1
            value = keyword.value
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "setting":
                variable = getattr(settings, value.args[0].attr)
                through_envvar.append((key.value, keyword.arg, variable))
    return through_envvar, fields


def envvar_table() -> str:
    rows, fields = envvar_fields()
    lines = ["| resource | field | variable |", "|---|---|---|"]
    lines += [f"| `{resource}` | `{field}` | `{variable}` |" for resource, field, variable in rows]
    return "\n".join(lines) + f"\n\n{len(rows)} of the {fields} fields the resources are given."


GENERATORS = {"layout": layout_table, "automation": automation_table, "envvar": envvar_table}


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
