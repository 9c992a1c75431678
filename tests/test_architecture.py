"""The import contract that keeps the house readable: arrows point down into the pure core, settings are read in
one module, BentoML's and Dagster's private APIs are each used in one module, tests and benchmarks share a kit, not
each other."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ["mlops_assets", "resources", "sensors", "bentos"]
CORE = ROOT / "mlops_assets" / "ml"


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports count too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_core_imports_neither_dagster_nor_the_outer_packages():
    offending = {}
    for path in python_files("mlops_assets/ml"):
        bad = {m for m in imported_modules(path)
               if m.split(".")[0] in ("dagster", "resources", "sensors", "bentos", "testkit", "tests")
               or (m.startswith("mlops_assets.") and not m.startswith("mlops_assets.ml"))}
        if bad:
            offending[str(path.relative_to(ROOT))] = sorted(bad)
    assert offending == {}


def test_only_the_settings_module_reads_the_environment():
    readers = [str(p.relative_to(ROOT)) for p in python_files(*PRODUCT)
               if "os.environ" in p.read_text() or "os.getenv" in p.read_text() or "getenv(" in p.read_text()]
    assert readers == ["mlops_assets/ml/settings.py"]


def test_bentoml_private_apis_are_used_in_one_module():
    private = ("bentoml._internal", "_bentoml_impl", "_bentoml_sdk", "output_spec")
    users = [str(p.relative_to(ROOT)) for p in python_files(*PRODUCT) if any(m in p.read_text() for m in private)]
    assert users == ["mlops_assets/ml/bentoml_private.py"]


def test_benchmarks_and_the_product_do_not_import_the_tests():
    offending = {str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p) if m.split(".")[0] == "tests")
                 for p in python_files(*PRODUCT, "benchmarks", "testkit")}
    assert {k: v for k, v in offending.items() if v} == {}


def test_the_product_does_not_import_the_test_kit():
    offending = {str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p) if m.split(".")[0] == "testkit")
                 for p in python_files(*PRODUCT)}
    assert {k: v for k, v in offending.items() if v} == {}


def dagster_private_uses(path: Path) -> list[str]:
    """Every ``dagster._…`` module a file imports (at any depth) and every call of a private method of Dagster's
    GraphQL client (``DagsterGraphQLClient._execute``)."""
    uses = sorted(m for m in imported_modules(path) if m.startswith("dagster._") or m.startswith("dagster_graphql._"))
    calls = any(isinstance(node, ast.Attribute) and node.attr == "_execute"
                for node in ast.walk(ast.parse(path.read_text(), str(path))))
    graphql_client = any(m.split(".")[0] == "dagster_graphql" for m in imported_modules(path))
    return uses + (["DagsterGraphQLClient._execute"] if calls and graphql_client else [])


def test_dagster_private_names_are_used_in_one_module():
    users = {str(p.relative_to(ROOT)): uses for p in python_files(*PRODUCT, "testkit", "tests", "benchmarks")
             if (uses := dagster_private_uses(p))}
    assert list(users) == ["testkit/dagster_private.py"], users


def test_a_dagster_private_import_anywhere_else_is_caught(tmp_path):
    """The check above fails on a violation: a module-level or a function-level private import, or the client's
    private transport."""
    for source in ("from dagster._core.storage.dagster_run import DagsterRun\n",
                   "def f():\n    import dagster._serdes\n",
                   "from dagster_graphql import DagsterGraphQLClient\nDagsterGraphQLClient('h')._execute('q', {})\n"):
        (tmp_path / "m.py").write_text(source)
        assert dagster_private_uses(tmp_path / "m.py"), source
    (tmp_path / "m.py").write_text("import dagster as dg\nfrom dagster import DagsterRun\n")
    assert dagster_private_uses(tmp_path / "m.py") == []


def test_the_folders_read_as_the_lifecycle():
    stages = {p.parent.name for p in (ROOT / "mlops_assets").glob("*/__init__.py")}
    assert {"build", "deploy", "monitor", "tools", "ml", "infra"} == stages
    assert sorted(p.stem for p in (ROOT / "mlops_assets" / "build").glob("[!_]*.py")) == [
        "data", "evaluation", "packaging", "registration", "training", "validation"]
    too_long = {str(p.relative_to(ROOT)): n for p in python_files(*PRODUCT)
                if (n := len(p.read_text().splitlines())) > 500}
    assert too_long == {}


def test_every_import_of_the_project_resolves():
    """A moved module leaves no dangling import behind, in product, kit, tests or benchmarks (function-level
    imports included, which only run when their function does)."""
    import importlib.util

    dangling = []
    for path in python_files(*PRODUCT, "testkit", "tests", "benchmarks"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
                continue
            top = node.module.split(".")[0]
            if top not in ("mlops_assets", "resources", "sensors", "testkit", "benchmarks") or node.module == "tests":
                continue
            if importlib.util.find_spec(node.module) is None:
                dangling.append(f"{path.relative_to(ROOT)}: {node.module}")
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name) and importlib.util.find_spec(f"{node.module}.{alias.name}") is None:
                    dangling.append(f"{path.relative_to(ROOT)}: {node.module}.{alias.name}")
    assert dangling == []
