"""Run a server so that Ctrl-C or SIGTERM stops all of it within seconds: ``make dev`` and ``make serve``.

``dagster dev`` was seen staying alive for over a minute after SIGTERM (its webserver and daemon children
shut down, the parent did not), and ``bentoml serve`` puts its worker in a process group of its own. So the
command runs in a session of its own; the first SIGINT/SIGTERM this wrapper gets is passed to that whole
group; if the group is still there after ``--grace`` seconds the wrapper says so and SIGKILLs it. When the
command exits by itself, whatever it left behind in its group is killed too.

    python -m mlops_assets.tools.supervise [--grace 10] -- dagster dev -p 3000
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def say(message: str) -> None:
    print(f"[supervise] {message}", file=sys.stderr, flush=True)


def stop_group(process: subprocess.Popen, name: str, signum: int, grace_s: float) -> None:
    """``signum`` to the whole group; SIGKILL (said out loud) for what is left after ``grace_s``."""
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        process.poll()
        if not group_alive(process.pid):
            return
        time.sleep(0.1)
    say(f"{name} still running {grace_s:g} s after {signal.Signals(signum).name}: killing its process group")
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def supervise(command: list[str], grace_s: float) -> int:
    name = os.path.basename(command[0]) + (f" {command[1]}" if len(command) > 1 else "")
    process = subprocess.Popen(command, start_new_session=True)
    received: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        if not received:
            received.append(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while process.poll() is None and not received:
            time.sleep(0.1)
        if received:
            say(f"{signal.Signals(received[0]).name}: stopping {name} (process group {process.pid})")
            stop_group(process, name, received[0], grace_s)
            return 128 + received[0]
        if group_alive(process.pid):  # the command exited but left workers behind
            os.killpg(process.pid, signal.SIGKILL)
        return process.returncode
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grace", type=float, default=10.0, help="Seconds between SIGTERM and SIGKILL.")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="The command, after --.")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (… supervise -- COMMAND ARGS)")
    return supervise(command, args.grace)


if __name__ == "__main__":
    sys.exit(main())
