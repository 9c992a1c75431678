"""The production deployment files are consistent: deploy/dagster.yaml is a valid instance (PostgreSQL
storage, DockerRunLauncher), and the compose file names only Dockerfiles, files, images, volumes and
environment variables that exist in the repository or in deploy/dagster.yaml."""

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from testkit.topology import DEPLOY, REPO, fresh_database, pg_connect, pg_env

COMPOSE = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())
INSTANCE = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
WORKSPACE = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
SERVICES = COMPOSE["services"]
# Images the compose file may pull rather than build, and the variables their entrypoints read.
EXTERNAL_IMAGES = {"postgres": {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_PASSWORD_FILE", "POSTGRES_DB"}}
# Read by Dagster itself (the code server reports its image; DockerRunLauncher uses it).
DAGSTER_VARIABLES = {"DAGSTER_CURRENT_IMAGE", "DAGSTER_HOME"}
ENTRYPOINT = (DEPLOY / "entrypoint.sh").read_text()
# The variables the images' entrypoint exports from NAME_FILE: secrets, never a value in the compose file.
SECRET_VARIABLES = set(re.search(r"^for name in ([A-Z_ ]+); do$", ENTRYPOINT, re.M).group(1).split())
# What the entrypoint itself reads: NAME_FILE for each secret, and where the daemon shares them with runs.
ENTRYPOINT_VARIABLES = {f"{name}_FILE" for name in SECRET_VARIABLES} | {"MLOPS_SHARE_SECRETS_TO"}


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
    """The variable names of mlops_assets/core/common/settings.py: one set for Dagster, the Bento service and deploy."""
    import mlops_assets.core.common.settings as settings

    return {
        value
        for name, value in vars(settings).items()
        if name.isupper() and isinstance(value, str) and re.fullmatch(r"[A-Z][A-Z0-9_]+", value)
    }


def provided(environment) -> set[str]:
    """The variables a process of the image has: those set, and each secret NAME whose NAME_FILE is set (the
    entrypoint exports it). ``environment``: a compose service's mapping, or the launcher's env_vars list."""
    names = {entry.split("=", 1)[0] for entry in environment}
    return names | {name for name in SECRET_VARIABLES if f"{name}_FILE" in names}


def built_images() -> dict[str, str]:
    return {svc["image"]: svc["build"]["dockerfile"] for svc in SERVICES.values() if "build" in svc}


# ---------------------------------------------------------------- the instance


def test_instance_config_validates_against_dagsters_schema(monkeypatch):
    from testkit.dagster_private import dagster_instance_config

    for name, value in pg_env("dagster").items():
        monkeypatch.setenv(name, value)
    config, _ = dagster_instance_config(str(DEPLOY))
    assert config["run_launcher"]["class"] == "TaggedDockerRunLauncher"
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
                f"postgresql+psycopg2://postgres:unused-trust-auth@127.0.0.1:5432/{db}"
            )
            launcher = instance.run_launcher
            assert isinstance(launcher, DockerRunLauncher)
            assert launcher.networks == ["mlops_network"]
            coordinator = instance.run_coordinator
            assert type(coordinator).__name__ == "QueuedRunCoordinator"
            assert {
                "key": "mlops/kind",
                "value": "training",
                "limit": 1,
            } in coordinator.get_run_queue_config().tag_concurrency_limits
            assert type(instance.scheduler).__name__ == "DagsterDaemonScheduler"
            assert instance.run_monitoring_enabled
            assert not instance.telemetry_enabled
            assert instance.get_settings("retention")["schedule"]["purge_after_days"] == 30
            # The instance really works against the database.
            assert instance.get_runs_count() == 0


def test_run_containers_receive_every_variable_the_instance_and_the_code_read():
    env_vars = INSTANCE["run_launcher"]["config"]["env_vars"]
    forwarded = provided(env_vars)
    assert env_names(INSTANCE) <= forwarded, "a run container could not resolve the instance configuration"
    assert shared_settings() <= forwarded, "a run container would miss a shared setting"
    copied = {entry for entry in env_vars if "=" not in entry}  # the launcher copies these values from the daemon
    daemon_env = set(SERVICES["daemon"]["environment"])
    assert copied <= daemon_env, copied - daemon_env


def test_no_secret_travels_as_a_value_in_the_environment_of_any_container():
    """A value in a container's environment shows in `docker inspect`: secrets go as NAME_FILE, a path."""
    env_vars = INSTANCE["run_launcher"]["config"]["env_vars"]
    secret_names = SECRET_VARIABLES | {"POSTGRES_PASSWORD"}
    assert SECRET_VARIABLES == {"DAGSTER_PG_PASSWORD", "MLOPS_API_TOKEN"}
    assert not secret_names & {entry.split("=", 1)[0] for entry in env_vars}, env_vars
    shared = {
        path.split(":")[1]
        for path in INSTANCE["run_launcher"]["config"]["container_kwargs"]["volumes"]
        if path.startswith("mlops_run_secrets:")
    }
    for entry in env_vars:
        name, _, value = entry.partition("=")
        if name.endswith("_FILE") and name[: -len("_FILE")] in SECRET_VARIABLES:
            assert value.startswith(tuple(f"{folder}/" for folder in shared)), entry
    for name, svc in SERVICES.items():
        environment = svc.get("environment", {})
        assert not secret_names & set(environment), (name, secret_names & set(environment))
        for variable, value in environment.items():
            if variable.endswith("_FILE") and variable[: -len("_FILE")] in secret_names:
                secret = value.removeprefix("/run/secrets/")
                assert secret in svc["secrets"] and secret in COMPOSE["secrets"], (name, variable)
    assert SERVICES["daemon"]["environment"]["MLOPS_SHARE_SECRETS_TO"] in shared
    assert all(spec["file"].startswith("./secrets/") for spec in COMPOSE["secrets"].values())
    assert "!deploy/secrets" not in (REPO / ".dockerignore").read_text()
    assert "deploy/secrets/" in (REPO / ".gitignore").read_text().splitlines()


def test_the_public_service_shares_no_network_with_the_internals():
    networks = {name: set(svc["networks"]) for name, svc in SERVICES.items()}
    internal = INSTANCE["run_launcher"]["config"]["networks"]
    assert internal == ["mlops_network"] and COMPOSE["networks"]["mlops_network"]["internal"] is True
    assert networks["bento"] == {"mlops_public"}
    for name in ("postgres", "user_code", "webserver", "daemon"):
        assert "mlops_network" in networks[name] and not networks[name] & networks["bento"], name
    assert networks["postgres"] == networks["daemon"] == {"mlops_network"}  # no way out, none in
    assert set(SERVICES["bento"]["volumes"]) == {"mlops_data:/opt/mlops"}  # no Dagster storage, no socket


def test_every_container_drops_its_capabilities_and_runs_without_root():
    launcher = INSTANCE["run_launcher"]["config"]["container_kwargs"]
    for name, kwargs in [*SERVICES.items(), ("run containers", launcher)]:
        assert kwargs["cap_drop"] == ["ALL"], name
        assert kwargs["security_opt"] == ["no-new-privileges:true"], name
    assert SERVICES["postgres"]["user"] == "postgres"
    assert "USER postgres" in (DEPLOY / "postgres" / "Dockerfile").read_text()
    for dockerfile in ("Dockerfile.user_code", "Dockerfile.dagster"):
        text = (DEPLOY / dockerfile).read_text()
        assert "\nUSER 10001:10001\n" in text and 'ENTRYPOINT ["/usr/local/bin/mlops-entrypoint"]' in text, dockerfile
    assert not any("user" in svc for name, svc in SERVICES.items() if name != "postgres")  # the images' USER
    # The daemon reaches the Docker socket through its group, not as root.
    assert SERVICES["daemon"]["group_add"] == [
        "${DOCKER_SOCKET_GID:?set DOCKER_SOCKET_GID to the group of /var/run/docker.sock (stat -c %g)}"
    ]


def test_the_entrypoint_exports_a_secret_from_its_file_and_refuses_an_unreadable_one(tmp_path):
    import subprocess

    secret = tmp_path / "token"
    secret.write_text("s3cr3t\n")
    share = tmp_path / "share"
    share.mkdir()
    secrets_dir = tmp_path / "run_secrets"  # stands in for /run/secrets: the script names it, so run it on a copy
    secrets_dir.mkdir()
    (secrets_dir / "mlops_api_token").write_text("s3cr3t")
    script = tmp_path / "entrypoint.sh"
    script.write_text(ENTRYPOINT.replace("/run/secrets/", f"{secrets_dir}/"))
    env = {"PATH": os.environ["PATH"], "MLOPS_API_TOKEN_FILE": str(secret), "MLOPS_SHARE_SECRETS_TO": str(share)}
    done = subprocess.run(
        ["sh", str(script), "sh", "-c", 'printf %s "$MLOPS_API_TOKEN"'],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0 and done.stdout == "s3cr3t", done
    assert (share / "mlops_api_token").read_text() == "s3cr3t"
    assert (share / "mlops_api_token").stat().st_mode & 0o077 == 0  # the daemon's user alone
    env["MLOPS_API_TOKEN_FILE"] = str(tmp_path / "missing")
    done = subprocess.run(["sh", str(script), "true"], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "MLOPS_API_TOKEN_FILE" in done.stderr and "not a readable file" in done.stderr


def test_launcher_volumes_and_network_are_the_compose_ones():
    config = INSTANCE["run_launcher"]["config"]
    declared = {spec.get("name", key) for key, spec in COMPOSE["volumes"].items()}
    user_code_mounts = set(SERVICES["user_code"]["volumes"])
    for mount in config["container_kwargs"]["volumes"]:
        volume, path = mount.split(":")[:2]
        assert volume in declared, f"{volume} is not a named volume of docker-compose.yaml"
        mounted_by = [
            name
            for name, svc in SERVICES.items()
            if any(m.split(":")[:2] == [volume, path] for m in svc.get("volumes", []))
        ]
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


# Every Dockerfile with its build context (compose's `build.context`, relative to deploy/).
DOCKERFILES = {"Dockerfile.user_code": REPO, "Dockerfile.dagster": REPO, "postgres/Dockerfile": DEPLOY / "postgres"}
# Made on the host before a build (git-ignored), by the script that owns it.
GENERATED = {"deploy/wheelhouse": DEPLOY / "scripts" / "prepare_wheelhouse.sh"}


def copy_sources(dockerfile: str) -> list[str]:
    """The build-context paths a Dockerfile copies (not ``COPY --from`` another stage)."""
    sources = []
    for line in (DEPLOY / dockerfile).read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            sources += [s for s in line.split()[1:-1] if not s.startswith("--")]
    return sources


def test_every_dockerfile_is_known_with_its_context():
    on_disk = {str(p.relative_to(DEPLOY)) for p in DEPLOY.rglob("Dockerfile*") if p.name != "Dockerfile.dockerignore"}
    assert on_disk == set(DOCKERFILES)
    compose_files = [COMPOSE, yaml.safe_load((DEPLOY / "docker-compose.local-base.yaml").read_text())]
    for document in compose_files:
        for name, svc in document["services"].items():
            if "build" in svc:
                dockerfile = svc["build"].get("dockerfile", "Dockerfile")
                context = (DEPLOY / svc["build"]["context"]).resolve()
                key = str((context / dockerfile).relative_to(DEPLOY))
                assert DOCKERFILES.get(key) == context, (name, key, context)


@pytest.mark.parametrize("dockerfile", sorted(DOCKERFILES))
def test_dockerfiles_copy_only_files_that_exist_or_that_a_script_makes(dockerfile):
    for source in copy_sources(dockerfile):
        path = DOCKERFILES[dockerfile] / source
        if source in GENERATED:
            assert source in GENERATED[source].read_text(), f"{GENERATED[source]} does not write {source}"
            continue
        assert path.exists(), f"{dockerfile}: COPY {source} does not exist"


def dockerignore_admits(path: str) -> bool:
    """The root .dockerignore is an allow-list: ``*`` then ``!path`` for what goes in."""
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "the .dockerignore is expected to start from an empty context"
    allowed = [p[1:] for p in patterns if p.startswith("!")]
    return any(path == a or path.startswith(a.rstrip("/") + "/") for a in allowed)


@pytest.mark.parametrize("dockerfile", ["Dockerfile.user_code", "Dockerfile.dagster"])
def test_the_build_context_admits_every_copied_path(dockerfile):
    for source in copy_sources(dockerfile):
        assert dockerignore_admits(source), f"{dockerfile}: COPY {source} is excluded by .dockerignore"
    for secret_or_bulk in (".venv", ".git", ".mlops", "deploy/.env", "tests"):
        assert not dockerignore_admits(secret_or_bulk), secret_or_bulk


@pytest.mark.parametrize("dockerfile", ["Dockerfile.user_code", "Dockerfile.dagster"])
def test_python_images_take_their_base_as_a_build_argument_and_install_only_from_the_wheelhouse(dockerfile):
    text = (DEPLOY / dockerfile).read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim" in text
    froms = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert froms and all(line.split()[1] == "${BASE_IMAGE}" for line in froms), froms
    installs = [line for line in text.replace("\\\n", " ").splitlines() if "pip install" in line]
    assert installs and all("--no-index" in line for line in installs), installs
    for name, svc in SERVICES.items():
        if svc.get("build", {}).get("dockerfile") == f"deploy/{dockerfile}":
            assert svc["build"]["args"]["BASE_IMAGE"] == "${MLOPS_BASE_IMAGE:-python:3.11-slim}", name


def test_code_layers_come_after_the_dependency_layers():
    lines = (DEPLOY / "Dockerfile.user_code").read_text().splitlines()
    final_stage = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    code = [
        i
        for i, line in enumerate(lines)
        if line.startswith("COPY ")
        and any(f" {pkg}" in line for pkg in ("mlops_assets", "resources", "sensors", "bentos"))
    ]
    venv = next(i for i, line in enumerate(lines) if line.startswith("COPY --from=dependencies"))
    wheelhouse = next(i for i, line in enumerate(lines) if "deploy/wheelhouse" in line)
    assert wheelhouse < final_stage < venv < min(code), "a code change would rebuild the dependencies"


def test_the_local_postgres_image_stands_in_for_postgres_16():
    override = yaml.safe_load((DEPLOY / "docker-compose.local-base.yaml").read_text())["services"]
    assert set(override) == {"postgres"}
    assert override["postgres"]["image"] == "mlops-postgres"
    assert override["postgres"]["build"]["args"]["BASE_IMAGE"] == "${MLOPS_BASE_IMAGE:-mlops-base:bookworm}"
    entrypoint = (DEPLOY / "postgres" / "entrypoint.sh").read_text()
    for variable in EXTERNAL_IMAGES["postgres"] | {"PGDATA"}:
        assert variable in entrypoint, variable
    data = SERVICES["postgres"]["volumes"][0].split(":")[1]
    assert f"PGDATA={data}" in (DEPLOY / "postgres" / "Dockerfile").read_text()


@pytest.mark.parametrize("files", [["docker-compose.yaml"], ["docker-compose.yaml", "docker-compose.local-base.yaml"]])
def test_compose_1_29_accepts_the_files(files, tmp_path):
    import shutil
    import subprocess

    if shutil.which("docker-compose") is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is not installed; .ci/run installs it (deploy/scripts/start_engine.sh)")
        pytest.skip("docker-compose is not installed")
    env_file = tmp_path / ".env"  # as stack.sh writes it: the example, with the socket's group (the daemon's)
    env_file.write_text((DEPLOY / "env.example").read_text() + "DOCKER_SOCKET_GID=999\n")
    args = [arg for name in files for arg in ("-f", str(DEPLOY / name))]
    done = subprocess.run(
        ["docker-compose", *args, "--env-file", str(env_file), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "DAGSTER_"))},
    )
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    assert resolved["services"]["daemon"]["group_add"] == ["999"]
    expected_postgres = "mlops-postgres" if len(files) == 2 else "postgres:16"
    assert resolved["services"]["postgres"]["image"] == expected_postgres
    assert resolved["services"]["user_code"]["build"]["args"]["BASE_IMAGE"] == "python:3.11-slim"


def test_every_variable_compose_sets_is_read_by_something_in_the_repository():
    readers = [*(REPO / d for d in ("mlops_assets", "resources", "sensors", "bentos"))]
    text = "\n".join(p.read_text(errors="replace") for d in readers for p in d.rglob("*.py"))
    deploy_read = env_names(INSTANCE) | env_names(WORKSPACE) | ENTRYPOINT_VARIABLES
    for name, svc in SERVICES.items():
        external = EXTERNAL_IMAGES.get(svc["image"].split(":")[0], set())
        for variable in svc.get("environment", {}):
            assert (
                variable in deploy_read
                or variable in external
                or variable in DAGSTER_VARIABLES
                or re.search(rf"['\"]{variable}['\"]", text)
            ), f"{name}: nothing reads {variable}"


def test_processes_get_the_variables_of_the_files_they_read():
    workspace_vars = env_names(WORKSPACE)
    instance_vars = env_names(INSTANCE)
    for name in ("webserver", "daemon"):
        env = provided(SERVICES[name]["environment"])
        assert workspace_vars | instance_vars <= env, (name, (workspace_vars | instance_vars) - env)
    for name in ("user_code", "daemon", "bento"):
        values = provided(SERVICES[name]["environment"])
        assert shared_settings() <= values, (name, shared_settings() - values)
    same = {
        var: {SERVICES[n]["environment"][var] for n in ("user_code", "daemon", "bento")}
        for var in shared_settings() - SECRET_VARIABLES
    }
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
    for word in (
        "docker compose",
        "docker-compose",
        "make deploy-up",
        "make deploy-down",
        "KEEP_DATA=1",
        "prepare_wheelhouse.sh",
        "build_base_image.sh",
        "MLOPS_BASE_IMAGE",
        "DAGSTER_PG_PASSWORD",
        "DockerRunLauncher",
        "dagster instance migrate",
    ):
        assert word in readme, word
    assert Path(DEPLOY / "env.example").is_file()


# ---------------------------------------------------------------- GPU runs, selected by tag


def launcher_from_deploy_config():
    from mlops_assets.infra.docker_launcher import TaggedDockerRunLauncher
    from testkit.dagster_private import process_config, resolve_to_config_type

    launcher_config = INSTANCE["run_launcher"]
    assert (launcher_config["module"], launcher_config["class"]) == (
        "mlops_assets.infra.docker_launcher",
        "TaggedDockerRunLauncher",
    )
    processed = process_config(resolve_to_config_type(TaggedDockerRunLauncher.config_type()), launcher_config["config"])
    assert processed.success, processed.errors
    return TaggedDockerRunLauncher.from_config_value(None, processed.value)


def container_create_arguments(container_kwargs: dict) -> dict:
    """What docker-py really sends for these ``containers.create`` keyword arguments (API of Docker 20.10)."""
    from docker.models.containers import _create_container_args

    return _create_container_args({"image": "mlops-user-code", "version": "1.41", **container_kwargs})


def test_a_run_tagged_for_gpu_gets_the_hosts_gpus_and_other_runs_do_not():
    from dagster import DagsterRun

    from mlops_assets.infra.docker_launcher import GPU_TAG

    launcher = launcher_from_deploy_config()
    gpu_run = DagsterRun(job_name="build_job", run_id="gpu", tags={GPU_TAG: "1", "mlops/kind": "training"})
    cpu_run = DagsterRun(job_name="build_job", run_id="cpu", tags={"mlops/kind": "training"})

    gpu_kwargs = launcher.get_container_context(gpu_run).container_kwargs
    cpu_kwargs = launcher.get_container_context(cpu_run).container_kwargs
    assert "device_requests" not in cpu_kwargs
    assert cpu_kwargs["volumes"] == gpu_kwargs["volumes"]  # the tag adds, it takes nothing away
    (request,) = container_create_arguments(gpu_kwargs)["host_config"]["DeviceRequests"]
    assert request["Driver"] == "nvidia" and request["Count"] == -1 and request["Capabilities"] == [["gpu"]]
    assert "DeviceRequests" not in container_create_arguments(cpu_kwargs)["host_config"]
    assert launcher.get_container_context(gpu_run).networks == ["mlops_network"]


def test_the_gpu_tag_is_documented_where_people_launch_training():
    from mlops_assets.infra.docker_launcher import GPU_TAG

    readme = (DEPLOY / "README.md").read_text()
    assert f"{GPU_TAG}=1" in readme and "device_requests" in readme and "NVIDIA Container Toolkit" in readme


def test_access_control_is_on_in_production_and_the_token_lives_in_no_committed_file():
    """The service's token is a Compose secret (a file stack.sh writes, git-ignored), required: the entrypoint
    stops a container whose file is missing; the Dagster UI, which has no login, is published on the host's
    loopback only, for an authenticating reverse proxy."""
    for name in ("bento", "user_code", "daemon"):
        assert SERVICES[name]["environment"]["MLOPS_API_TOKEN_FILE"] == "/run/secrets/mlops_api_token", name
        assert "mlops_api_token" in SERVICES[name]["secrets"], name
    example = dict(
        line.split("=", 1)
        for line in (DEPLOY / "env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert not {"MLOPS_API_TOKEN", "DAGSTER_PG_PASSWORD"} & set(example)
    assert all(str(port).startswith("127.0.0.1:") for port in SERVICES["webserver"]["ports"])
    readme = (DEPLOY / "README.md").read_text()
    for word in ("MLOPS_API_TOKEN", "reverse proxy", "oauth2-proxy"):
        assert word in readme, word


# ---------------------------------------------------------------- faults (deploy/README.md, "Faults")

LONG_RUNNING = ("user_code", "webserver", "daemon", "bento")


def test_a_run_that_failed_for_any_reason_but_a_step_is_retried_once_and_a_stuck_start_times_out():
    monitoring, retries = INSTANCE["run_monitoring"], INSTANCE["run_retries"]
    assert monitoring["enabled"] and monitoring["start_timeout_seconds"] <= 180, monitoring
    assert monitoring["poll_interval_seconds"] < monitoring["start_timeout_seconds"] / 4, monitoring
    assert retries == {"enabled": True, "max_retries": 1, "retry_on_asset_or_op_failure": False}


def test_every_long_running_service_is_health_checked_and_restarted_when_unhealthy():
    for name in LONG_RUNNING:
        service = SERVICES[name]
        assert service.get("init") is True, f"{name}: the health check can kill its main process only under init"
        assert service["restart"] == "unless-stopped", name
        check = service["healthcheck"]
        command, kill_after, grace = check["test"][1], int(check["test"][2]), int(check["test"][3])
        assert check["test"][0] == "CMD" and command == "mlops-healthcheck", (name, check)
        assert kill_after == check["retries"], f"{name}: killed when Docker marks it unhealthy, not before or after"
        assert check["start_period"] == f"{grace}s", f"{name}: Docker's start period is the script's grace"
    for dockerfile in ("Dockerfile.user_code", "Dockerfile.dagster"):
        assert "COPY deploy/healthcheck.sh /usr/local/bin/mlops-healthcheck" in (DEPLOY / dockerfile).read_text()


def test_the_webserver_reuses_no_database_connection_a_postgres_restart_would_have_closed():
    command = SERVICES["webserver"]["command"]
    assert command[command.index("--db-pool-recycle") + 1] == "0", command


def test_postgres_stops_with_a_fast_shutdown_within_its_grace_period():
    assert re.search(r"^STOPSIGNAL SIGINT$", (DEPLOY / "postgres" / "Dockerfile").read_text(), re.M)
    postgres = SERVICES["postgres"]
    assert postgres["stop_signal"] == "SIGINT"
    assert int(postgres["stop_grace_period"].rstrip("s")) > 10, "more than Docker's default 10 s"


def test_deploy_up_refuses_a_taken_port_before_building_anything(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "DAGSTER_"))}
        env.update(MLOPS_STACK_PROJECT="mlops-port-check", DAGSTER_WEBSERVER_PORT=str(port),
                   MLOPS_BENTO_PORT=str(port + 1 if port < 65535 else port - 1))
        done = subprocess.run([str(DEPLOY / "scripts" / "stack.sh"), "up"], env=env, capture_output=True,
                              text=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"port {port} (DAGSTER_WEBSERVER_PORT, the Dagster UI) is taken" in done.stderr, done.stderr
    assert "set DAGSTER_WEBSERVER_PORT to a free port" in done.stderr
    assert "wheelhouse" not in done.stdout and "base image" not in done.stdout, done.stdout  # nothing built
