"""The production deployment files are consistent: deploy/dagster.yaml is a valid instance (PostgreSQL
storage, DockerRunLauncher), and the compose file names only Dockerfiles, files, images, volumes and
environment variables that exist in the repository or in deploy/dagster.yaml."""

import os
import re
from pathlib import Path

import pytest
import yaml

from testkit.topology import DEPLOY, REPO, fresh_database, pg_connect, pg_env

COMPOSE = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())
INSTANCE = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
WORKSPACE = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
SERVICES = COMPOSE["services"]
# Images the compose file may pull rather than build, and the variables their entrypoints read.
EXTERNAL_IMAGES = {"postgres": {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}}
# Read by Dagster itself (the code server reports its image; DockerRunLauncher uses it).
DAGSTER_VARIABLES = {"DAGSTER_CURRENT_IMAGE", "DAGSTER_HOME"}


def env_names(node) -> set[str]:
    """Every ``{env: NAME}`` in a parsed YAML document."""
    if isinstance(node, dict):
        if set(node) == {"env"}:
            return {node["env"]}
        return set().union(*(env_names(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(env_names(v) for v in node)) if node else set()
    return set()


def shared_settings() -> set[str]:
    """The variable names of mlops_assets/ml/settings.py: one set for Dagster, the Bento service and deploy."""
    import mlops_assets.ml.settings as settings

    return {value for name, value in vars(settings).items()
            if name.isupper() and isinstance(value, str) and re.fullmatch(r"[A-Z][A-Z0-9_]+", value)}


def built_images() -> dict[str, str]:
    return {svc["image"]: svc["build"]["dockerfile"] for svc in SERVICES.values() if "build" in svc}


# ---------------------------------------------------------------- the instance


def test_instance_config_validates_against_dagsters_schema(monkeypatch):
    from dagster._core.instance.config import dagster_instance_config

    for name, value in pg_env("dagster").items():
        monkeypatch.setenv(name, value)
    config, _ = dagster_instance_config(str(DEPLOY))
    assert config["run_launcher"]["class"] == "DockerRunLauncher"
    assert config["run_monitoring"]["enabled"] is True


def test_no_credential_is_written_in_the_instance_file():
    db = INSTANCE["storage"]["postgres"]["postgres_db"]
    for key in ("hostname", "port", "username", "password", "db_name"):
        assert set(db[key]) == {"env"}, f"postgres_db.{key} must come from an environment variable"
    assert db["scheme"] == "postgresql+psycopg2"  # SQLAlchemy 2.1 maps bare postgresql:// to psycopg 3


def test_production_instance_loads_with_postgres_and_the_docker_launcher(tmp_path, monkeypatch):
    try:
        pg_connect().close()
    except Exception:
        if os.environ.get("CI"):
            pytest.fail("no PostgreSQL server at 127.0.0.1:5432; CI must test the production instance")
        pytest.skip("no PostgreSQL server at 127.0.0.1:5432")
    import dagster as dg
    from dagster_docker import DockerRunLauncher
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    (tmp_path / "dagster.yaml").write_text((DEPLOY / "dagster.yaml").read_text())
    with fresh_database("mlops_cfg") as db:
        for name, value in pg_env(db).items():
            monkeypatch.setenv(name, value)
        with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
            assert isinstance(instance.run_storage, PostgresRunStorage)
            assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
            assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
            assert instance.run_storage.postgres_url == (
                f"postgresql+psycopg2://postgres:unused-trust-auth@127.0.0.1:5432/{db}")
            launcher = instance.run_launcher
            assert isinstance(launcher, DockerRunLauncher)
            assert launcher.networks == ["mlops_network"]
            coordinator = instance.run_coordinator
            assert type(coordinator).__name__ == "QueuedRunCoordinator"
            assert {"key": "mlops/kind", "value": "training", "limit": 1} in coordinator.get_run_queue_config(
            ).tag_concurrency_limits
            assert type(instance.scheduler).__name__ == "DagsterDaemonScheduler"
            assert instance.run_monitoring_enabled
            assert not instance.telemetry_enabled
            assert instance.get_settings("retention")["schedule"]["purge_after_days"] == 30
            # The instance really works against the database.
            assert instance.get_runs_count() == 0


def test_run_containers_receive_every_variable_the_instance_and_the_code_read():
    forwarded = set(INSTANCE["run_launcher"]["config"]["env_vars"])
    assert env_names(INSTANCE) <= forwarded, "a run container could not resolve the instance configuration"
    assert shared_settings() <= forwarded, "a run container would miss a shared setting"
    daemon_env = set(SERVICES["daemon"]["environment"])  # the launcher copies values from the daemon
    assert forwarded <= daemon_env, forwarded - daemon_env


def test_launcher_volumes_and_network_are_the_compose_ones():
    config = INSTANCE["run_launcher"]["config"]
    declared = {spec.get("name", key) for key, spec in COMPOSE["volumes"].items()}
    user_code_mounts = set(SERVICES["user_code"]["volumes"])
    for mount in config["container_kwargs"]["volumes"]:
        volume, path = mount.split(":")[:2]
        assert volume in declared, f"{volume} is not a named volume of docker-compose.yaml"
        mounted_by = [name for name, svc in SERVICES.items() if any(
            m.split(":")[:2] == [volume, path] for m in svc.get("volumes", []))]
        assert mounted_by, f"{mount}: no service mounts it at the same path"
    assert "mlops_data:/opt/mlops" in user_code_mounts
    networks = {spec.get("name", key) for key, spec in COMPOSE["networks"].items()}
    assert set(config["networks"]) <= networks


# ---------------------------------------------------------------- compose and Dockerfiles


def test_compose_builds_from_dockerfiles_in_the_repository():
    for name, svc in SERVICES.items():
        if "build" in svc:
            context = (DEPLOY / svc["build"]["context"]).resolve()
            assert context == REPO, name
            assert (context / svc["build"]["dockerfile"]).is_file(), name


def test_compose_uses_only_images_it_builds_or_declared_external_ones():
    built = built_images()
    for name, svc in SERVICES.items():
        image = svc["image"]
        assert image in built or image.split(":")[0] in EXTERNAL_IMAGES, f"{name}: unknown image {image}"
    user_code_image = next(i for i, f in built.items() if f.endswith("Dockerfile.user_code"))
    assert SERVICES["user_code"]["environment"]["DAGSTER_CURRENT_IMAGE"] == user_code_image


@pytest.mark.parametrize("dockerfile", sorted(p.name for p in DEPLOY.glob("Dockerfile*")))
def test_dockerfiles_copy_only_files_that_exist(dockerfile):
    for line in (DEPLOY / dockerfile).read_text().splitlines():
        if line.startswith("COPY "):
            sources = [s for s in line.split()[1:-1] if not s.startswith("--")]
            for source in sources:
                assert (REPO / source).exists(), f"{dockerfile}: COPY {source} does not exist"


def test_every_variable_compose_sets_is_read_by_something_in_the_repository():
    readers = [*(REPO / d for d in ("mlops_assets", "resources", "sensors", "bentos"))]
    text = "\n".join(p.read_text(errors="replace") for d in readers for p in d.rglob("*.py"))
    deploy_read = env_names(INSTANCE) | env_names(WORKSPACE)
    for name, svc in SERVICES.items():
        external = EXTERNAL_IMAGES.get(svc["image"].split(":")[0], set())
        for variable in svc.get("environment", {}):
            assert (variable in deploy_read or variable in external or variable in DAGSTER_VARIABLES
                    or re.search(rf"['\"]{variable}['\"]", text)), f"{name}: nothing reads {variable}"


def test_processes_get_the_variables_of_the_files_they_read():
    workspace_vars = env_names(WORKSPACE)
    instance_vars = env_names(INSTANCE)
    for name in ("webserver", "daemon"):
        env = set(SERVICES[name]["environment"])
        assert workspace_vars | instance_vars <= env, (name, (workspace_vars | instance_vars) - env)
    for name in ("user_code", "daemon", "bento"):
        values = SERVICES[name]["environment"]
        assert shared_settings() <= set(values), (name, shared_settings() - set(values))
    same = {var: {SERVICES[n]["environment"][var] for n in ("user_code", "daemon", "bento")}
            for var in shared_settings()}
    assert all(len(v) == 1 for v in same.values()), same


def test_ports_line_up():
    user_code_cmd = (DEPLOY / "Dockerfile.user_code").read_text().split("CMD")[-1]
    port = SERVICES["webserver"]["environment"]["MLOPS_CODE_SERVER_PORT"]
    assert f'"-p", "{port}"' in user_code_cmd
    assert SERVICES["webserver"]["environment"]["MLOPS_CODE_SERVER_HOST"] == "user_code"
    assert SERVICES["postgres"]["healthcheck"]["test"]
    for name in ("user_code", "webserver", "daemon"):
        assert SERVICES[name]["depends_on"]["postgres"]["condition"] == "service_healthy", name


def test_readme_explains_the_deployment():
    readme = (DEPLOY / "README.md").read_text()
    for word in ("docker compose", "DAGSTER_PG_PASSWORD", "DockerRunLauncher", "dagster instance migrate"):
        assert word in readme, word
    assert Path(DEPLOY / "env.example").is_file()


def test_access_control_is_on_in_production_and_the_token_lives_in_no_file():
    """The service's token comes from the environment, required (compose refuses to start without it); the Dagster
    UI, which has no login, is published on the host's loopback only, for an authenticating reverse proxy."""
    for name in ("bento", "user_code", "daemon"):
        assert SERVICES[name]["environment"]["MLOPS_API_TOKEN"].startswith("${MLOPS_API_TOKEN:?"), name
    example = dict(line.split("=", 1) for line in (DEPLOY / "env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert example["MLOPS_API_TOKEN"] == ""
    assert all(str(port).startswith("127.0.0.1:") for port in SERVICES["webserver"]["ports"])
    readme = (DEPLOY / "README.md").read_text()
    for word in ("MLOPS_API_TOKEN", "reverse proxy", "oauth2-proxy"):
        assert word in readme, word
