"""The README's commands work as written: every block marked ``<!-- runnable -->`` in README.md, then in the
pages of docs/ (in name order), is run, line by line, from a fresh directory that looks like a clone (the
repository's files linked in, the installed ``.venv`` too), with none of the project's variables set, as a
newcomer would type them.

A server command (``make serve``, ``make dev``) is started in its own process group and waited for, the lines
after it talk to it, and it is stopped at the end of its block. ``make test`` is not run (this test is part of
it) and ``make loop-demo`` has its own test (tests/test_loop_demo.py).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from contextlib import ExitStack
from pathlib import Path

import pytest

from mlops_assets.infra.local_stack import http_ok
from mlops_assets.infra.processes import process_group, wait_until

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]
MARKER = "<!-- runnable -->"
NOT_RUN_HERE = {"make test": "this test is part of make test", "make loop-demo": "tests/test_loop_demo.py runs it"}
SERVERS = {"make serve": "http://127.0.0.1:3001/readyz", "make dev": "http://127.0.0.1:3000/server_info"}
LOCAL_STATE = {".mlops", ".env", "artifacts", ".pytest_cache", ".ruff_cache", ".git", ".schemathesis"}


def runnable_blocks(text: str) -> list[list[str]]:
    """The commands of each marked ``bash`` block: continuation lines joined, comments dropped."""
    blocks = []
    for match in re.finditer(re.escape(MARKER) + r"\s*\n```bash\n(.*?)```", text, flags=re.S):
        commands, pending = [], ""
        for line in match.group(1).splitlines():
            if pending:
                line = pending + " " + line.strip()
                pending = ""
            if line.rstrip().endswith("\\"):
                pending = line.rstrip()[:-1].rstrip()
                continue
            command = re.sub(r"\s+#.*$", "", line).strip() if not line.lstrip().startswith("#") else ""
            if command:
                commands.append(command)
        blocks.append(commands)
    return blocks


def test_the_readme_marks_the_newcomer_blocks_runnable():
    blocks = runnable_blocks(README.read_text())
    commands = [c for block in blocks for c in block]
    assert len(blocks) >= 4
    for expected in ("make demo", "make serve", ".venv/bin/mlops-registry list", "make loop-demo"):
        assert any(c.startswith(expected) for c in commands), expected
    assert all(commands for commands in blocks)


def fresh_checkout(where: Path) -> Path:
    """A directory holding the repository's tracked top-level entries (linked) and its installed .venv:
    what a clone is after ``make install``, without copying gigabytes."""
    where.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in LOCAL_STATE:
            (where / entry.name).symlink_to(entry)
    return where


def newcomer_env() -> dict[str, str]:
    """The environment of a new terminal: none of the project's settings (not even the tests' own)."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("MLOPS_", "DAGSTER_", "BENTOML_")) and k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def port_free(url: str) -> bool:
    port = int(url.split(":")[2].split("/")[0])
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.slow
def test_every_runnable_readme_block_works_as_written(tmp_path):
    checkout = fresh_checkout(tmp_path / "clone")
    env = newcomer_env()
    ran = []
    blocks = [block for document in DOCUMENTS for block in runnable_blocks(document.read_text())]
    for number, block in enumerate(blocks, start=1):
        with ExitStack() as servers:
            for command in block:
                if any(command.startswith(skip) for skip in NOT_RUN_HERE):
                    continue
                server = next((url for prefix, url in SERVERS.items() if command.startswith(prefix)), None)
                if server:
                    assert port_free(server), f"block {number}: {server} is taken; stop what listens there"
                    log = tmp_path / f"server-{number}.log"
                    process = servers.enter_context(process_group(["bash", "-c", command], env, checkout, log))
                    wait_until(lambda p=process, u=server, lg=log: http_ok(u, p, lg), 180, f"{command} at {server}")
                    ran.append(command)
                    continue
                done = subprocess.run(["bash", "-c", command], cwd=checkout, env=env, capture_output=True, text=True,
                                      timeout=900)
                assert done.returncode == 0, (f"runnable block {number}: `{command}` exited {done.returncode}\n"
                                              f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
                ran.append(command)
    assert any(c.startswith("make demo") for c in ran) and any(c.startswith("curl") for c in ran)
    assert (checkout / "digit.png").is_file()
