"""The import contract that keeps the house readable: arrows point down into the pure core, settings are read in
one module, BentoML's private APIs are used in one module, tests and benchmarks share a kit, not each other."""

import ast
import importlib.util
from pathlib import Path

import pytest

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


INFERENCE_LOG_MODULES = ("mlops_assets.ml.inference_log", "mlops_assets.ml.inference_journal")


def test_the_model_computes_and_the_request_path_logs():
    """The serving seams: the served model, its runtime and the slot watcher never import the inference log, so
    what is logged (a shadow's answer, an explanation, beside the served one under one prediction id) is decided
    on the request path, in the service module alone."""
    def logs(path: Path) -> bool:
        return any(m.startswith(INFERENCE_LOG_MODULES) for m in imported_modules(path))

    models = ["bentos/served_model.py", "bentos/model_watcher.py", "mlops_assets/ml/onnx_model.py"]
    assert [m for m in models if logs(ROOT / m)] == []
    assert [str(p.relative_to(ROOT)) for p in python_files("bentos") if logs(p)] == ["bentos/service.py"]


def test_benchmarks_and_the_product_do_not_import_the_tests():
    offending = {str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p) if m.split(".")[0] == "tests")
                 for p in python_files(*PRODUCT, "benchmarks", "testkit")}
    assert {k: v for k, v in offending.items() if v} == {}


def test_the_product_does_not_import_the_test_kit():
    offending = {str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p) if m.split(".")[0] == "testkit")
                 for p in python_files(*PRODUCT)}
    assert {k: v for k, v in offending.items() if v} == {}


@pytest.mark.parametrize("old", [
    "mlops_assets.data", "mlops_assets.validation", "mlops_assets.training", "mlops_assets.packaging",
    "mlops_assets.evaluation", "mlops_assets.registration", "mlops_assets.serving", "mlops_assets.monitoring",
    "mlops_assets.jobs", "mlops_assets.resources_config", "mlops_assets.demo", "mlops_assets.simulator",
    "mlops_assets.registry_cli", "mlops_assets.ml.processes", "resources.settings", "tests.topology_processes",
    "tests.loop_scenario", "mlops_assets.deploy.docker_launcher",
])
def test_old_module_paths_are_gone_without_shims(old):
    assert importlib.util.find_spec(old) is None


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
    import importlib

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
