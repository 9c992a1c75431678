"""Every setting of the project: its environment variable, its type, its default and what it does, in one table.

:data:`TABLE` is the one source of every default: this module resolves values from it; the resources take their
fields' defaults from it, and ``resources/defaults.py`` wires each field to its variable (an ``EnvVar`` when the
variable is set and Dagster can carry it: str and int fields); docs/settings.md is generated from it. The Bento
service, the CLIs, the simulator and ``deploy/`` use the same names. Pure standard library: the core, the service
and the command-line tools import it without Dagster. Locally everything defaults to ``./.mlops`` under the working
directory; in production the same variables point at shared volumes.

One settings file for every process: on import this module loads ``./.env`` (or the file ``MLOPS_ENV_FILE``
names) into the environment, without overriding a variable the environment already sets. So the UI, the
daemon, the runs, the service, the simulator and the CLIs, started from the repository root in any terminal,
see the same settings, and child processes inherit them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Setting:
    """One row of the table: the variable, its type, its default as the environment would write it (a path
    under ``$MLOPS_HOME`` when ``under_home``), and one line saying what it does (docs/settings.md shows it)."""

    name: str
    kind: type  # str, int, float or bool (a 1/0 flag)
    default: str
    doc: str
    under_home: bool = False


# The one source of every setting: the settings module, the resources (resources/defaults.py and their fields'
# defaults) and docs/settings.md read this table. Adding a setting is one line: NAME = define(...).
TABLE: dict[str, Setting] = {}


def define(name: str, kind: type, default: str, doc: str, under_home: bool = False) -> str:
    """Add a row to :data:`TABLE`; the variable's name, for the module's constant."""
    if name in TABLE:
        raise ValueError(f"setting {name} defined twice")
    TABLE[name] = Setting(name, kind, default, doc, under_home)
    return name


ENV_FILE = define("MLOPS_ENV_FILE", str, ".env", "the settings file every process loads; the environment wins")
MLOPS_HOME = define("MLOPS_HOME", str, ".mlops", "root of the two below when they are not set")
ARTIFACT_ROOT = define("MLOPS_ARTIFACT_ROOT", str, "artifacts",
                       "versioned artifacts (splits, models, reports, profiles)", under_home=True)
BENTOML_HOME = define("BENTOML_HOME", str, "bentoml", "BentoML's own variable: model store, bentos, production "
                      "pointer", under_home=True)
MODEL_NAME = define("MLOPS_MODEL_NAME", str, "image_classifier", "registry name of the model")
DATASET_KIND = define("MLOPS_DATASET_KIND", str, "digits", "the labelled source: `digits` or `image_folder`")
IMAGE_FOLDER = define("MLOPS_IMAGE_FOLDER", str, "", "the folder of `image_folder` (one sub-folder per class)")
IMAGE_HEIGHT = define("MLOPS_IMAGE_HEIGHT", int, "32", "height image-folder images are converted to")
IMAGE_WIDTH = define("MLOPS_IMAGE_WIDTH", int, "32", "width image-folder images are converted to")
IMAGE_CHANNELS = define("MLOPS_IMAGE_CHANNELS", int, "1", "channels of image-folder images: 1 (grayscale) or 3 (RGB)")
DECODE_WORKERS = define("MLOPS_DECODE_WORKERS", int, "0", "processes decoding an image folder (0: one per core, at "
                        "most one per 10,000 files; 1: no pool)")

# Monitoring
PROFILE_CRON = define("MLOPS_PROFILE_CRON", str, "0 * * * *", "inference profile windows (hourly by default)")
MONITOR_START = define("MLOPS_MONITOR_START", str, "2026-11-01-00:00", "first window, `YYYY-MM-DD-HH:MM` (UTC)")
SENSOR_INTERVAL_S = define("MLOPS_SENSOR_INTERVAL_S", int, "60", "how often the daemon evaluates the monitoring "
                           "sensors (profiling, drift, feedback, performance alerts)")
PROFILE_GRACE_S = define("MLOPS_PROFILE_GRACE_S", float, "30", "a window is profiled this long after it ends (late "
                         "log flushes)")
DRIFT_SHARE = define("MLOPS_DRIFT_SHARE", float, "0.30", "share of scored features that must drift for an alarm")
DRIFT_P_VALUE = define("MLOPS_DRIFT_P_VALUE", float, "0.05", "a feature's test p-value below this is significant")
DRIFT_DISTANCE = define("MLOPS_DRIFT_DISTANCE", float, "0.15", "... and its Hellinger distance at least this is "
                        "material")
DRIFT_MIN_ROWS = define("MLOPS_DRIFT_MIN_ROWS", int, "100", "fewer rows in a window: too little data to judge")
DRIFT_COOLDOWN_HOURS = define("MLOPS_DRIFT_COOLDOWN_HOURS", float, "6", "no drift retraining within this many hours "
                              "of the last one (0: no cooldown)")
DRIFT_BLIND_ALERT_MINUTES = define("MLOPS_DRIFT_BLIND_ALERT_MINUTES", float, "30", "windows unjudged for lack of "
                                   "the production model's reference longer than this: a person is alerted once")
RETRAIN_TRIGGER = define("MLOPS_RETRAIN_TRIGGER", str, "harm", "which signal launches a drift retraining: harm "
                         "(the label-free accuracy estimate at least MLOPS_HARM_POINTS below the version's "
                         "validation accuracy) or pixel (the drift share at its threshold)")
HARM_POINTS = define("MLOPS_HARM_POINTS", float, "5", "the harm trigger's margin, in accuracy percentage points")
RETRAIN_REQUIRES_NEW_DATA = define("MLOPS_RETRAIN_REQUIRES_NEW_DATA", bool, "1", "drift retrains only when the "
                                   "labelled source changed since production was trained (0: on every drift)")
RETRAIN_RUN_CONFIG = define("MLOPS_RETRAIN_RUN_CONFIG", str, "", "a YAML file of run config for the drift sensor's "
                            "`retrain_job` runs, e.g. `ops: {trained_model: {config: {hidden: [32]}}}`")
ALERT_FILE = define("MLOPS_ALERT_FILE", str, "", "the JSON-lines file alerts are appended to (empty: "
                    "`$MLOPS_ARTIFACT_ROOT/alerts/alerts.jsonl`)")

# Governance
REQUIRE_APPROVAL = define("MLOPS_REQUIRE_APPROVAL", bool, "0", "seeds the registry's stored approval policy when it "
                          "has none (1: a candidate that clears the gate waits for a reviewer); afterwards only "
                          "`mlops-registry policy` changes it (recorded)")
RELEASE_POLICY = define("MLOPS_RELEASE_POLICY", str, "production", "where a version that clears the gate and "
                        "its release test goes: production (straight in) or shadow (first scores the live requests "
                        "beside production, answering no client; `mlops-registry promote` releases it)")
AB_FRACTION = define("MLOPS_AB_FRACTION", float, "0", "A/B: the share of clients (by their `X-Client-Key` "
                     "header) the shadow answers, when the registry lets it answer clients (released; approved if "
                     "the policy requires it); 0: off, the shadow answers no one")
PROMOTE_FROM_EVIDENCE = define("MLOPS_PROMOTE_FROM_EVIDENCE", str, "off", "on a live comparison verdict "
                               "'better' for the shadow vs production: `promote` it (approval still applies), "
                               "`alert` a person with the figures, or `off`")
PERF_MIN_ACCURACY = define("MLOPS_PERF_MIN_ACCURACY", float, "0.90", "accuracy on labelled production traffic "
                           "below this: alert")
PERF_MAX_RECALL_GAP = define("MLOPS_PERF_MAX_RECALL_GAP", float, "0.20", "best class recall minus worst above "
                             "this: alert (the bias signal)")
PERF_MIN_LABELLED = define("MLOPS_PERF_MIN_LABELLED", int, "50", "fewer labelled predictions of a version in a "
                           "window: not judged")
PERF_MIN_CLASS_LABELLED = define("MLOPS_PERF_MIN_CLASS_LABELLED", int, "10", "classes with fewer labels stay out "
                                 "of the recall gap")
COMPARISON_ALPHA = define("MLOPS_COMPARISON_ALPHA", float, "0.05", "live comparison of production and the shadow: "
                          "McNemar's exact test judges the challenger better or worse at this level (the chance of "
                          "either verdict when the two are equally accurate is at most this)")
ALERT_WEBHOOK_URL = define("MLOPS_ALERT_WEBHOOK_URL", str, "", "a secret: each alert is also POSTed here as JSON "
                           "(Slack-compatible)")

# The Bento service
FOLLOW_PRODUCTION = define("MLOPS_FOLLOW_PRODUCTION", bool, "1", "the service swaps to the version the production "
                           "pointer names")
POLL_SECONDS = define("MLOPS_POLL_SECONDS", float, "1.0", "how often the service stats the production pointer")
MAX_BATCH = define("MLOPS_MAX_BATCH", int, "1024", "most images one /classify request may carry")
BATCH_MAX_SIZE = define("MLOPS_BATCH_MAX_SIZE", int, "256", "adaptive batching: most images in one model call")
BATCH_MAX_LATENCY_MS = define("MLOPS_BATCH_MAX_LATENCY_MS", int, "10000", "adaptive batching: queueing budget "
                              "before a 503")
BATCH_MAX_WAIT_MS = define("MLOPS_BATCH_MAX_WAIT_MS", int, "2", "adaptive batching: longest a lone request waits "
                           "for company (BENCHMARKS.md says why)")
MAX_BODY_BYTES = define("MLOPS_MAX_BODY_BYTES", int, str(8 * 1024 * 1024), "larger request bodies are refused "
                        "with 413 (8 MiB)")
MAX_IMAGE_PIXELS = define("MLOPS_MAX_IMAGE_PIXELS", int, str(4096 * 4096), "larger images (read from the header) "
                          "are never decoded: 413 (4096²); the folder loader skips them too")
SERVICE_THREADS = define("MLOPS_SERVICE_THREADS", int, "4", "worker threads for the synchronous endpoints")
SERVICE_WORKERS = define("MLOPS_SERVICE_WORKERS", int, "0", "worker processes of the service (0: one per core); "
                         "each follows the pointer and logs by itself")
ACCESS_LOG = define("MLOPS_ACCESS_LOG", bool, "0", "BentoML's access-log line per request (metrics and the "
                    "inference log stay)")
INFERENCE_LOG = define("MLOPS_INFERENCE_LOG", bool, "1", "record per-image features and predictions for monitoring")
KEEP_IMAGES = define("MLOPS_KEEP_IMAGES", bool, "1", "keep each served image (served geometry), so labelled ones "
                     "can be exported")
SERVICE_URL = define("MLOPS_SERVICE_URL", str, "http://127.0.0.1:3001", "where Dagster asks the running service "
                     "which version it answers with (served_model_sensor); empty: read the status its workers "
                     "write to the artifact volume instead (the Docker stack, whose service network Dagster "
                     "cannot reach)")
OOD_FPR = define("MLOPS_OOD_FPR", float, "0.05", "share of a version's validation split its out-of-distribution "
                 "threshold flags (the calibrated false-positive rate)")
OOD_REFUSE = define("MLOPS_OOD_REFUSE", bool, "0", "answer 422 (saying why) instead of a prediction for an input "
                    "flagged out of distribution")
API_TOKEN = define("MLOPS_API_TOKEN", str, "", "a secret: when set, /classify, /classify_image, /explain, "
                   "/explain_image and /feedback require it as a bearer token (required in `deploy/`)")

# Derived views of the table, for the readers that predate it.
DEFAULTS_RELATIVE_TO_HOME = {s.name: s.default for s in TABLE.values() if s.under_home}
DEFAULTS = {s.name: s.default for s in TABLE.values() if not s.under_home and s.name not in (ENV_FILE, MLOPS_HOME)}
ALL = tuple(TABLE)


class SettingError(ValueError):
    """A variable set to something its setting cannot be (the message names the variable)."""


def env_file() -> Path:
    return Path(os.environ.get(ENV_FILE) or TABLE[ENV_FILE].default).expanduser()


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
    return Path(os.environ.get(MLOPS_HOME) or TABLE[MLOPS_HOME].default).expanduser().resolve()


def setting(name: str) -> Setting:
    """The table's row for ``name`` (an error listing the known ones otherwise)."""
    try:
        return TABLE[name]
    except KeyError:
        raise SettingError(f"unknown setting {name!r}; known: {', '.join(ALL)}") from None


def default_for(name: str) -> str:
    """The default as the environment would write it (a path under the home resolved)."""
    row = setting(name)
    if row.under_home:
        return str(mlops_home() / row.default)
    if name == MLOPS_HOME:
        return str(Path(row.default).resolve())
    return row.default


def convert(name: str, text: str):
    """``text`` as the setting's type (int, float, bool for a 1/0 flag, str); an error naming the variable."""
    kind = setting(name).kind
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingError(f"environment variable {name} must be 1 or 0, got {lowered!r}")
    try:
        return kind(text)
    except ValueError:
        words = {int: "an integer", float: "a number"}.get(kind, kind.__name__)
        raise SettingError(f"environment variable {name} must be {words}, got {text!r}") from None


def default_value(name: str):
    """The default as a value of the setting's type: what a resource field's default must equal."""
    return convert(name, default_for(name))


def value(name: str):
    """The value in force, of the setting's type: the environment's when set, otherwise the default."""
    return convert(name, resolve(name))


def resolve(name: str) -> str:
    """The value: the environment's when set, otherwise the default."""
    return os.environ.get(name) or default_for(name)


def _typed(name: str, kind: type):
    if setting(name).kind is not kind:
        raise SettingError(f"{name} is a {setting(name).kind.__name__} setting, not a {kind.__name__} one")
    return value(name)


def resolve_int(name: str) -> int:
    return _typed(name, int)


def resolve_float(name: str) -> float:
    return _typed(name, float)


def resolve_flag(name: str) -> bool:
    """A 1/0 (true/false, yes/no, on/off) variable; anything else is an error naming the variable."""
    return _typed(name, bool)


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
