"""Every setting of the project: its environment variable, its default and its type, read here and only here.

Dagster reads them through ConfigurableResources (``resources/defaults.py``: a few fields, the paths, the model
name and the secrets, as ``EnvVar`` when their variable is set, so the UI names the variable; the rest as the
value resolved at load; docs/settings.md lists which); the Bento service, the CLIs, the simulator and ``deploy/``
use the same names. Pure standard library: the core, the service and the command-line tools import it without Dagster.
Locally everything defaults to ``./.mlops`` under the working directory; in production the same variables
point at shared volumes.

One settings file for every process: on import this module loads ``./.env`` (or the file ``MLOPS_ENV_FILE``
names) into the environment, without overriding a variable the environment already sets. So the UI, the
daemon, the runs, the service, the simulator and the CLIs, started from the repository root in any terminal,
see the same settings, and child processes inherit them.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_FILE = "MLOPS_ENV_FILE"  # the settings file every process loads (default ./.env); the environment wins
MLOPS_HOME = "MLOPS_HOME"  # root of everything below, when the specific variables are not set
ARTIFACT_ROOT = "MLOPS_ARTIFACT_ROOT"  # versioned artifacts (splits, models, reports, profiles)
BENTOML_HOME = "BENTOML_HOME"  # BentoML's own variable: model store, bentos, production pointer
MODEL_NAME = "MLOPS_MODEL_NAME"
DATASET_KIND = "MLOPS_DATASET_KIND"  # digits | image_folder
IMAGE_FOLDER = "MLOPS_IMAGE_FOLDER"
IMAGE_HEIGHT = "MLOPS_IMAGE_HEIGHT"  # image_folder images are converted to this geometry
IMAGE_WIDTH = "MLOPS_IMAGE_WIDTH"
IMAGE_CHANNELS = "MLOPS_IMAGE_CHANNELS"  # 1 (grayscale) or 3 (RGB)
DECODE_WORKERS = "MLOPS_DECODE_WORKERS"  # processes decoding an image folder; 0 = automatic (one per core)

# Monitoring
PROFILE_CRON = "MLOPS_PROFILE_CRON"  # inference profile windows, e.g. "0 * * * *" (hourly, the default)
MONITOR_START = "MLOPS_MONITOR_START"  # first window, "YYYY-MM-DD-HH:MM" (UTC)
SENSOR_INTERVAL_S = "MLOPS_SENSOR_INTERVAL_S"  # how often the daemon evaluates the monitoring sensors
PROFILE_GRACE_S = "MLOPS_PROFILE_GRACE_S"  # a window is profiled this long after it ends (late log flushes)
DRIFT_SHARE = "MLOPS_DRIFT_SHARE"
DRIFT_P_VALUE = "MLOPS_DRIFT_P_VALUE"
DRIFT_DISTANCE = "MLOPS_DRIFT_DISTANCE"
DRIFT_MIN_ROWS = "MLOPS_DRIFT_MIN_ROWS"
DRIFT_COOLDOWN_HOURS = "MLOPS_DRIFT_COOLDOWN_HOURS"
# windows unjudged for lack of the production model's reference longer than this: a person is alerted once
DRIFT_BLIND_ALERT_MINUTES = "MLOPS_DRIFT_BLIND_ALERT_MINUTES"
# 1 (default): drift launches retraining only when the labelled source holds data production never saw
RETRAIN_REQUIRES_NEW_DATA = "MLOPS_RETRAIN_REQUIRES_NEW_DATA"
RETRAIN_RUN_CONFIG = "MLOPS_RETRAIN_RUN_CONFIG"  # a YAML run config for the drift sensor's retraining runs
ALERT_FILE = "MLOPS_ALERT_FILE"

# Governance
REQUIRE_APPROVAL = "MLOPS_REQUIRE_APPROVAL"  # 1: a candidate the gate would promote waits for a reviewer
# Accuracy and bias on labelled production traffic (production_performance), per window and model version
PERF_MIN_ACCURACY = "MLOPS_PERF_MIN_ACCURACY"  # below it: a person is alerted
PERF_MAX_RECALL_GAP = "MLOPS_PERF_MAX_RECALL_GAP"  # best class recall minus worst, above it: alerted
PERF_MIN_LABELLED = "MLOPS_PERF_MIN_LABELLED"  # fewer labelled predictions in a window: not judged
PERF_MIN_CLASS_LABELLED = "MLOPS_PERF_MIN_CLASS_LABELLED"  # classes with fewer labels: left out of the gap
ALERT_WEBHOOK_URL = "MLOPS_ALERT_WEBHOOK_URL"

# The Bento service
FOLLOW_PRODUCTION = "MLOPS_FOLLOW_PRODUCTION"  # 1/0: swap to the version the production pointer names
POLL_SECONDS = "MLOPS_POLL_SECONDS"  # how often the pointer file is stat-ed
MAX_BATCH = "MLOPS_MAX_BATCH"  # most images one /classify request may carry
BATCH_MAX_SIZE = "MLOPS_BATCH_MAX_SIZE"  # adaptive batching: most images in one model call
BATCH_MAX_LATENCY_MS = "MLOPS_BATCH_MAX_LATENCY_MS"  # adaptive batching: queueing budget before a 503
BATCH_MAX_WAIT_MS = "MLOPS_BATCH_MAX_WAIT_MS"  # adaptive batching: longest a lone request waits for company
MAX_BODY_BYTES = "MLOPS_MAX_BODY_BYTES"  # larger request bodies are refused with 413
MAX_IMAGE_PIXELS = "MLOPS_MAX_IMAGE_PIXELS"  # larger images (read from the header) are never decoded: 413
SERVICE_THREADS = "MLOPS_SERVICE_THREADS"  # worker threads for the synchronous endpoints
SERVICE_WORKERS = "MLOPS_SERVICE_WORKERS"  # worker processes of the service; 0: one per CPU core
SERVICE_URL = "MLOPS_SERVICE_URL"  # where Dagster asks the running service which version it answers with
ACCESS_LOG = "MLOPS_ACCESS_LOG"  # 1/0: BentoML's access-log line per request (metrics and the inference log stay)
INFERENCE_LOG = "MLOPS_INFERENCE_LOG"  # 1/0: record per-image features and predictions for monitoring
KEEP_IMAGES = "MLOPS_KEEP_IMAGES"  # 1/0: keep each served image (served geometry), to export labelled ones
API_TOKEN = "MLOPS_API_TOKEN"  # a secret: when set, /classify, /classify_image, /feedback require it (bearer)

DEFAULTS_RELATIVE_TO_HOME = {ARTIFACT_ROOT: "artifacts", BENTOML_HOME: "bentoml"}
DEFAULTS = {
    MODEL_NAME: "image_classifier",
    DATASET_KIND: "digits",
    IMAGE_FOLDER: "",
    IMAGE_HEIGHT: "32",
    IMAGE_WIDTH: "32",
    IMAGE_CHANNELS: "1",
    DECODE_WORKERS: "0",
    PROFILE_CRON: "0 * * * *",
    MONITOR_START: "2026-11-01-00:00",
    SENSOR_INTERVAL_S: "60",
    PROFILE_GRACE_S: "30",
    DRIFT_SHARE: "0.30",
    DRIFT_P_VALUE: "0.05",
    DRIFT_DISTANCE: "0.15",
    DRIFT_MIN_ROWS: "100",
    DRIFT_COOLDOWN_HOURS: "6",
    DRIFT_BLIND_ALERT_MINUTES: "30",
    RETRAIN_REQUIRES_NEW_DATA: "1",
    RETRAIN_RUN_CONFIG: "",
    ALERT_FILE: "",
    REQUIRE_APPROVAL: "0",
    PERF_MIN_ACCURACY: "0.90",
    PERF_MAX_RECALL_GAP: "0.20",
    PERF_MIN_LABELLED: "50",
    PERF_MIN_CLASS_LABELLED: "10",
    ALERT_WEBHOOK_URL: "",
    FOLLOW_PRODUCTION: "1",
    POLL_SECONDS: "1.0",
    MAX_BATCH: "1024",
    BATCH_MAX_SIZE: "256",
    BATCH_MAX_LATENCY_MS: "10000",
    BATCH_MAX_WAIT_MS: "2",
    MAX_BODY_BYTES: str(8 * 1024 * 1024),
    MAX_IMAGE_PIXELS: str(4096 * 4096),
    SERVICE_THREADS: "4",
    SERVICE_WORKERS: "0",
    SERVICE_URL: "http://127.0.0.1:3001",
    ACCESS_LOG: "0",
    INFERENCE_LOG: "1",
    KEEP_IMAGES: "1",
    API_TOKEN: "",
}
ALL = (ENV_FILE, MLOPS_HOME, *DEFAULTS_RELATIVE_TO_HOME, *DEFAULTS)


class SettingError(ValueError):
    """A variable set to something its setting cannot be (the message names the variable)."""


def env_file() -> Path:
    return Path(os.environ.get(ENV_FILE) or ".env").expanduser()


def parse_env_file(text: str, where: str = ".env") -> dict[str, str]:
    """``KEY=value`` lines (``export KEY=value`` too); blank lines and ``#`` comments skipped; one pair of
    matching quotes around a value removed. No interpolation: a value is taken as written."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key.replace("_", "").isalnum() or key[0].isdigit():
            raise SettingError(f"{where}:{number}: expected KEY=value, got {raw!r}")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


# Variables this process took from a settings file: name → (the file, the value), so a value can say where it came
# from (a stale .env silently applying the walkthrough's 8×8 to a user's photos was the trap).
FROM_FILE: dict[str, tuple[str, str]] = {}


def load_env_file() -> dict[str, str]:
    """Put the settings file's variables into this process's environment where it does not set them;
    returns what was taken from the file. A missing file is no error (the defaults apply)."""
    path = env_file()
    try:
        text = path.read_text()
    except (FileNotFoundError, IsADirectoryError):
        return {}
    taken = {key: value for key, value in parse_env_file(text, str(path)).items() if key not in os.environ}
    os.environ.update(taken)
    where = str(path.resolve())
    FROM_FILE.update({key: (where, value) for key, value in taken.items()})
    return taken


def origin(name: str) -> str:
    """Where a setting's value comes from: ``the settings file PATH``, ``the environment`` or ``default``.

    A child process inherits the variables its parent took from the file (Dagster's CLI loads ``.env`` too), so a
    value the environment holds that the settings file also sets is named with the file as well."""
    if not is_set(name):
        return "default"
    recorded = FROM_FILE.get(name)
    if recorded and os.environ.get(name) == recorded[1]:
        return f"the settings file {recorded[0]}"
    path = env_file()
    try:
        in_file = parse_env_file(path.read_text(), str(path)).get(name)
    except (FileNotFoundError, IsADirectoryError, SettingError):
        in_file = None
    if in_file is not None and in_file == os.environ.get(name):
        return f"the environment (as the settings file {path.resolve()} sets it)"
    return "the environment"


def describe_origins(names) -> str:
    """``NAME=value, ... from <origin>; ...``, grouped by origin, e.g. for the geometry a build uses."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(origin(name), []).append(f"{name}={resolve(name)}")
    return "; ".join(
        f"{', '.join(values)} {'by default' if where == 'default' else 'from ' + where}"
        for where, values in groups.items()
    )


def is_set(name: str) -> bool:
    return bool(os.environ.get(name))


def mlops_home() -> Path:
    return Path(os.environ.get(MLOPS_HOME) or ".mlops").expanduser().resolve()


def default_for(name: str) -> str:
    if name in DEFAULTS_RELATIVE_TO_HOME:
        return str(mlops_home() / DEFAULTS_RELATIVE_TO_HOME[name])
    try:
        return DEFAULTS[name]
    except KeyError:
        raise SettingError(f"unknown setting {name!r}; known: {', '.join(ALL)}") from None


def resolve(name: str) -> str:
    """The value: the environment's when set, otherwise the default."""
    return os.environ.get(name) or default_for(name)


def _resolve_as(name: str, convert, kind: str):
    value = resolve(name)
    try:
        return convert(value)
    except ValueError:
        raise SettingError(f"environment variable {name} must be {kind}, got {value!r}") from None


def resolve_int(name: str) -> int:
    return _resolve_as(name, int, "an integer")


def resolve_float(name: str) -> float:
    return _resolve_as(name, float, "a number")


def resolve_flag(name: str) -> bool:
    """A 1/0 (true/false, yes/no, on/off) variable; anything else is an error naming the variable."""
    value = resolve(name).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingError(f"environment variable {name} must be 1 or 0, got {value!r}")


def service_workers() -> int:
    """MLOPS_SERVICE_WORKERS, where 0 (the default) means one worker process per CPU core."""
    workers = resolve_int(SERVICE_WORKERS)
    if workers < 0:
        raise SettingError(f"environment variable {SERVICE_WORKERS} must be 0 (one per core) or more, got {workers}")
    return workers or os.cpu_count() or 1


def bento_service_options() -> dict:
    """The ``@bentoml.service`` options of every server this project runs (the service, and the framework floor
    it is measured against): worker processes, threads, the request timeout and the access log."""
    return {
        "workers": service_workers(),
        "threads": resolve_int(SERVICE_THREADS),
        "traffic": {"timeout": 60},
        "logging": {"access": {"enabled": resolve_flag(ACCESS_LOG)}},
    }


def process_environment(**overrides: str) -> dict[str, str]:
    """This process's environment with ``overrides``, for a child process (a server, a tool)."""
    return {**os.environ, **overrides}


load_env_file()
