"""Child processes that must not outlive their caller: free ports, deadline polling, group stop.

Servers here (``bentoml serve``, ``dagster-webserver``, ``dagster code-server``) fork workers, so
each is started in its own session (``start_new_session=True``) and stopped by process group.
Standard library only: the application test, the integration tests and the benchmarks share it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class WaitAborted(RuntimeError):
    """Raised by a polled predicate when waiting longer cannot help (the process died, say)."""


class ProcessExitedError(WaitAborted):
    """A process exited while we waited on it; the message carries the end of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(log: str | Path, chars: int = 4000) -> str:
    try:
        return Path(log).read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return "(no log)"


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    """Poll until ``predicate()`` is truthy and return its value; raise ``TimeoutError`` naming
    ``what`` at the deadline. Other exceptions count as "not yet", except :class:`WaitAborted`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except WaitAborted:
            raise
        except Exception as exc:  # typically: the process does not listen yet
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}"
                       + (f" (last error: {last_error!r})" if last_error else ""))


def stop_process_group(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the process's whole group, SIGKILL if it lingers, then SIGKILL any orphaned workers."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=grace_s)
        except ProcessLookupError:
            pass
    try:  # workers left behind by a leader that already exited
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@contextmanager
def process_group(command: list[str], env: dict[str, str] | None, cwd: str | Path,
                  log: str | Path) -> Iterator[subprocess.Popen]:
    """Start ``command`` in its own session, output to ``log``; always stop its whole group on exit."""
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            yield process
        finally:
            stop_process_group(process)
