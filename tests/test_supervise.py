"""``make dev`` / ``make serve`` stop within seconds: the supervisor passes the signal to the server's whole
process group and escalates, saying so, when the server ignores it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlops_assets.infra.local_stack import make_home
from mlops_assets.infra.processes import free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# A server that ignores SIGTERM, with a worker (its child) that does too; it writes the worker's pid.
STUBBORN = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
worker = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
open(sys.argv[1], "w").write(str(worker.pid))
time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child of an exited parent is reaped by init soon; it no longer runs
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


def supervise(command: list[str], tmp_path: Path, grace: float, env: dict | None = None) -> subprocess.Popen:
    env = env or {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "mlops_assets.tools.supervise", "--grace", str(grace), "--", *command],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )


def stop_and_time(wrapper: subprocess.Popen, signum: int) -> tuple[float, str]:
    began = time.monotonic()
    wrapper.send_signal(signum)
    _, err = wrapper.communicate(timeout=60)
    return time.monotonic() - began, err


def test_a_server_that_ignores_sigterm_is_killed_with_its_workers_and_the_wrapper_says_so(tmp_path):
    pid_file = tmp_path / "worker.pid"
    wrapper = supervise([sys.executable, "-c", STUBBORN, str(pid_file)], tmp_path, grace=1.0)
    worker = wait_until(lambda: pid_file.exists() and pid_file.read_text() and int(pid_file.read_text()), 30,
                        "the stubborn server's worker")
    seconds, err = stop_and_time(wrapper, signal.SIGTERM)
    assert "still running 1 s after SIGTERM: killing its process group" in err
    assert seconds < 10
    wait_until(lambda: not alive(worker), 5, "the worker to be gone")


def test_a_server_that_exits_leaves_no_worker_behind(tmp_path):
    script = ("import subprocess, sys; w = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']);"
              f" open({str(tmp_path / 'w.pid')!r}, 'w').write(str(w.pid)); sys.exit(3)")
    wrapper = supervise([sys.executable, "-c", script], tmp_path, grace=1.0)
    assert wrapper.wait(timeout=30) == 3
    worker = int((tmp_path / "w.pid").read_text())
    wait_until(lambda: not alive(worker), 5, "the orphaned worker to be gone")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_dagster_dev_stops_within_seconds(tmp_path, signum):
    stack = make_home(tmp_path / "home")
    port = free_port()
    command = [str(BIN / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port), "-w", str(ROOT / "workspace.yaml")]
    wrapper = supervise(command, tmp_path, grace=10.0, env=stack.env())

    def serving() -> bool:
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as response:
            return response.status == 200

    wait_until(serving, 120, "dagster dev to serve")
    session = _child_session(wrapper.pid)
    server = [int(p) for p in os.listdir("/proc") if p.isdigit() and _sid(int(p)) == session]
    assert len(server) >= 3  # dagster dev, its webserver and its daemon (and their children)
    seconds, err = stop_and_time(wrapper, signum)
    assert seconds < 15, err[-2000:]
    assert [pid for pid in server if alive(pid)] == [], err[-2000:]


def _stat_fields(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return []


def _sid(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[3]) if fields else None


def _child_session(wrapper_pid: int) -> int | None:
    """The session the supervised command runs in: that of the wrapper's child."""
    for p in os.listdir("/proc"):
        if p.isdigit():
            fields = _stat_fields(int(p))
            if fields and int(fields[1]) == wrapper_pid:
                return _sid(int(p))
    return None
