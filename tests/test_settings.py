"""One settings file for every process: ``./.env`` (or ``MLOPS_ENV_FILE``), the environment winning."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_assets.core.common import settings
from mlops_assets.core.common.settings import SettingError, parse_env_file

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_the_settings_file_syntax():
    text = "# walkthrough\n\nMLOPS_DRIFT_SHARE=0.4\nexport MLOPS_PROFILE_CRON='*/5 * * * *'\nA_B=\"x y\"\nEMPTY=\n"
    assert parse_env_file(text) == {"MLOPS_DRIFT_SHARE": "0.4", "MLOPS_PROFILE_CRON": "*/5 * * * *",
                                    "A_B": "x y", "EMPTY": ""}


@pytest.mark.parametrize("line", ["MLOPS_DRIFT_SHARE", "1ABC=2", "MY-VAR=1", "=value"])
def test_a_malformed_line_is_named_with_its_file_and_line(line):
    with pytest.raises(SettingError, match=r"walk.env:2: expected KEY=value"):
        parse_env_file(f"OK=1\n{line}\n", "walk.env")


def test_the_file_fills_what_the_environment_does_not_set(tmp_path, monkeypatch):
    (tmp_path / "my.env").write_text("MLOPS_DRIFT_SHARE=0.42\nMLOPS_DRIFT_MIN_ROWS=7\n")
    monkeypatch.setenv("MLOPS_ENV_FILE", str(tmp_path / "my.env"))
    monkeypatch.delenv("MLOPS_DRIFT_SHARE", raising=False)
    monkeypatch.setenv("MLOPS_DRIFT_MIN_ROWS", "5")  # the environment wins over the file
    assert settings.load_env_file() == {"MLOPS_DRIFT_SHARE": "0.42"}
    assert settings.resolve_float(settings.DRIFT_SHARE) == 0.42
    assert settings.resolve_int(settings.DRIFT_MIN_ROWS) == 5
    monkeypatch.setenv("MLOPS_ENV_FILE", str(tmp_path / "absent.env"))
    assert settings.load_env_file() == {}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "BENTOML_HOME", "DAGSTER_HOME"))}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def test_a_new_terminal_in_the_directory_sees_the_settings_file(tmp_path):
    """Any process started where ``.env`` lies (a new terminal, the service, a CLI) reads the same settings,
    and its children inherit them."""
    (tmp_path / ".env").write_text(f"MLOPS_HOME={tmp_path / 'home'}\nMLOPS_PROFILE_CRON=*/5 * * * *\n")
    probe = ("import subprocess, sys; from mlops_assets.core.common import settings; "
             "print(settings.resolve(settings.PROFILE_CRON)); print(settings.resolve(settings.BENTOML_HOME)); "
             "print(subprocess.run([sys.executable, '-c', 'import os; print(os.environ[\"MLOPS_HOME\"])'], "
             "capture_output=True, text=True).stdout.strip())")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=clean_env(), capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert out == ["*/5 * * * *", str(tmp_path / "home" / "bentoml"), str(tmp_path / "home")]
    # the registry CLI says where it looked: the store the settings file names
    cli = subprocess.run([str(BIN / "mlops-registry"), "list"], cwd=tmp_path, env=clean_env(),
                         capture_output=True, text=True)
    assert cli.returncode == 2 and str(tmp_path / "home" / "bentoml") in cli.stderr + cli.stdout
