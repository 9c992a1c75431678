"""The import contract that keeps the house readable: arrows point down into the pure core and down its rooms, no
folder holds more than a fifth of the product, settings are read in one module, BentoML's private APIs in two named
modules and Dagster's in one, tests and benchmarks share a kit, not each other."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ["mlops_assets", "resources", "sensors", "bentos"]
CORE = ROOT / "mlops_assets" / "core"
# What each room of the core may import (besides itself): arrows point down this list, never up.
ROOMS = {
    "common": set(),
    "data": {"common"},
    "quality": {"common", "data"},
    "model": {"common", "data"},
    "registry": {"common", "data", "model"},
    "serving": {"common", "data", "model"},
    "monitoring": {"common", "data", "model", "registry", "serving"},
}


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
    for path in python_files("mlops_assets/core"):
        bad = {m for m in imported_modules(path)
               if m.split(".")[0] in ("dagster", "resources", "sensors", "bentos", "testkit", "tests")
               or (m.startswith("mlops_assets.") and not m.startswith("mlops_assets.core"))}
        if bad:
            offending[str(path.relative_to(ROOT))] = sorted(bad)
    assert offending == {}


def test_every_room_of_the_core_imports_only_the_rooms_below_it():
    assert {p.name for p in CORE.iterdir() if (p / "__init__.py").exists()} == set(ROOMS)
    upward = {}
    for room, allowed in ROOMS.items():
        for path in python_files(f"mlops_assets/core/{room}"):
            used = {m.split(".")[2] for m in imported_modules(path)
                    if m.startswith("mlops_assets.core.") and m.count(".") >= 2}
            if bad := used - allowed - {room}:
                upward[str(path.relative_to(ROOT))] = sorted(bad)
    assert upward == {}


def test_every_room_says_what_belongs_there_and_what_it_may_import():
    for room, allowed in ROOMS.items():
        docstring = ast.get_docstring(ast.parse((CORE / room / "__init__.py").read_text())) or ""
        assert len(docstring) > 80, room
        assert all(f"``{other}``" in docstring for other in allowed), (room, allowed)


def test_no_folder_holds_more_than_a_fifth_of_the_product():
    lines = {}
    for path in python_files(*PRODUCT):
        lines[str(path.parent.relative_to(ROOT))] = lines.get(str(path.parent.relative_to(ROOT)), 0) + len(
            path.read_text().splitlines())
    total = sum(lines.values())
    assert {folder: round(n / total, 3) for folder, n in lines.items() if n > total / 5} == {}


def test_the_stages_hold_only_dagster_definitions_and_infrastructure_sits_apart():
    """A stage module defines assets, checks or ops (it imports Dagster); process helpers live in ``infra/``."""
    for stage in ("build_stage", "deploy_stage", "monitor_stage", "govern_stage"):
        for path in python_files(f"mlops_assets/{stage}"):
            if path.name != "__init__.py":
                assert "dagster" in {m.split(".")[0] for m in imported_modules(path)}, path
    infra = {p.stem for p in (ROOT / "mlops_assets" / "infra").glob("[!_]*.py")}
    assert {"processes", "local_stack", "bento_server", "docker_launcher"} <= infra


def test_the_asset_groups_keep_their_names():
    from mlops_assets.definitions import defs

    groups = {spec.group_name for spec in defs.resolve_all_asset_specs()}
    assert groups == {"build", "deploy", "monitor"}


def test_only_the_settings_module_reads_the_environment():
    readers = [str(p.relative_to(ROOT)) for p in python_files(*PRODUCT)
               if "os.environ" in p.read_text() or "os.getenv" in p.read_text() or "getenv(" in p.read_text()]
    assert readers == ["mlops_assets/core/common/settings.py"]


def test_bentoml_private_apis_are_used_in_one_module():
    private = ("bentoml._internal", "_bentoml_impl", "_bentoml_sdk", "output_spec")
    users = [str(p.relative_to(ROOT)) for p in python_files(*PRODUCT) if any(m in p.read_text() for m in private)]
    assert users == ["bentos/bentoml_private.py", "mlops_assets/core/registry/bentoml_store.py"]


INFERENCE_LOG_MODULES = ("mlops_assets.core.serving.inference_log", "mlops_assets.core.serving.inference_journal")


def test_the_model_computes_and_the_request_path_logs():
    """The serving seams: the served model, its runtime and the slot watcher never import the inference log, so
    what is logged (a shadow's answer, an explanation, beside the served one under one prediction id) is decided
    on the request path, in the service module alone."""
    def logs(path: Path) -> bool:
        return any(m.startswith(INFERENCE_LOG_MODULES) for m in imported_modules(path))

    models = ["bentos/served_model.py", "bentos/model_watcher.py", "mlops_assets/core/model/onnx_model.py"]
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


def test_no_package_folder_is_named_as_build_output():
    """Stock Python ``.gitignore`` files ignore ``build/``, ``dist/``, ``out/``: a user who adds one must not lose
    code."""
    ignored = {"build", "dist", "out", "target", "bin", "lib", "env", "venv"}
    assert {p.parent.name for p in python_files(*PRODUCT) if p.name == "__init__.py"} & ignored == set()


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
    assert {"build_stage", "deploy_stage", "monitor_stage", "govern_stage", "tools", "core", "infra"} == stages
    assert sorted(p.stem for p in (ROOT / "mlops_assets" / "build_stage").glob("[!_]*.py")) == [
        "data", "evaluation", "explanations", "packaging", "registration", "training", "validation"]
    too_long = {str(p.relative_to(ROOT)): n for p in python_files(*PRODUCT)
                if (n := len(p.read_text().splitlines())) > 500}
    assert too_long == {}


def test_every_import_of_the_project_resolves():
    """A moved module leaves no dangling import behind, in product, kit, tests or benchmarks (function-level
    imports included, which only run when their function does)."""
    import importlib
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


DRIFT_DECISION = ("mlops_assets.core.monitoring.drift_tick", "mlops_assets.core.monitoring.window_judgement",
                  "mlops_assets.core.monitoring.retrain_decision", "mlops_assets.core.monitoring.retrain_requests")
# The modules that carry out the drift decision: they gather facts and hand the policy on, reading none of it.
DRIFT_ADAPTERS = ("sensors/drift_sensor.py", "mlops_assets/monitor_stage/drift_report.py")
ADAPTER_MAX_LINES = 200


def drift_policy_fields() -> set[str]:
    """Every threshold and rule of the drift policy, under the names the resource and the pure decision give them
    (the retraining run config names a file, not a threshold)."""
    import dataclasses

    from mlops_assets.core.monitoring.drift import DriftThresholds
    from mlops_assets.core.monitoring.drift_tick import DriftDecisionPolicy
    from mlops_assets.core.monitoring.retrain_decision import TriggerPolicy
    from resources.drift_policy import DriftPolicy

    plain = {f.name for cls in (DriftDecisionPolicy, DriftThresholds, TriggerPolicy) for f in dataclasses.fields(cls)}
    return plain | set(DriftPolicy.model_fields) - {"retrain_run_config"}


def adapter_violations(path: Path) -> list[str]:
    """What makes a module more than a thin adapter around the pure drift decision: a comparison (the decision's
    work), a read of one of the policy's thresholds or rules, more than ``ADAPTER_MAX_LINES`` lines, or not handing
    the work to the pure decision at all."""
    source = path.read_text()
    tree = ast.parse(source, str(path))
    fields = drift_policy_fields()
    problems = [f"line {node.lineno}: compares ({ast.unparse(node)})" for node in ast.walk(tree)
                if isinstance(node, ast.Compare)
                and any(isinstance(op, (ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq)) for op in node.ops)]
    problems += [f"line {node.lineno}: reads {node.attr} (the decision compares it)" for node in ast.walk(tree)
                 if isinstance(node, ast.Attribute) and node.attr in fields]
    if (lines := len(source.splitlines())) > ADAPTER_MAX_LINES:
        problems.append(f"{lines} lines > {ADAPTER_MAX_LINES}")
    if not any(m.startswith(DRIFT_DECISION) for m in imported_modules(path)):
        problems.append("does not import the pure drift decision")
    return problems


def test_thresholds_travel_one_way_from_the_policy_through_thin_adapters_to_the_pure_decision():
    """MLOPS_DRIFT_SHARE: settings → resources/defaults → DriftPolicy.decision_policy() (built once, plain values) →
    the sensor or drift_report, which hand it on unread → the pure decision in core/monitoring, which compares."""
    assert {path: problems for path in DRIFT_ADAPTERS if (problems := adapter_violations(ROOT / path))} == {}
    from resources.drift_policy import DriftPolicy

    public = {name for name, value in vars(DriftPolicy).items() if callable(value) and not name.startswith("_")}
    assert public == {"decision_policy", "retraining_run_config"}  # one way out for the thresholds
    for module in DRIFT_DECISION:
        path = ROOT / (module.replace(".", "/") + ".py")
        bad = {m for m in imported_modules(path)
               if m.split(".")[0] in ("dagster", "resources", "sensors") or m.startswith("mlops_assets.monitor_stage")}
        assert bad == set(), (module, bad)


def test_an_adapter_that_decides_is_caught(tmp_path):
    """The check above fails on a violation: a threshold compared or read in the adapter, a long adapter, or one
    that leaves the pure decision out."""
    decision = "from mlops_assets.core.monitoring.drift_tick import plan_tick\n"
    for source in (decision + "def f(verdict, share):\n    return verdict.drift_share >= share\n",
                   decision + "def f(drift_policy):\n    return drift_policy.cooldown_hours\n",
                   decision + "def f(run, key):\n    return run.run_key == key\n",
                   decision + "x = 1\n" * ADAPTER_MAX_LINES,
                   "import dagster as dg\n"):
        (tmp_path / "m.py").write_text(source)
        assert adapter_violations(tmp_path / "m.py"), source
    (tmp_path / "m.py").write_text(decision + "def f(plan, version):\n    return version is not None and plan.policy\n")
    assert adapter_violations(tmp_path / "m.py") == []
