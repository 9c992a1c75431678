"""The Bento as a process: build it, serve it on a free local port, and test it as an application over HTTP.

Plain functions, used by the ``bento`` asset's application test and by the tests and benchmarks. Nothing heavy at
import: bentoml loads inside the functions (``bentoml build`` and ``bentoml serve`` run as subprocesses, so
BENTOML_HOME, read once when bentoml is imported, is the registry's home).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_assets.core.common import settings
from mlops_assets.infra.processes import free_port, log_tail, process_group

if TYPE_CHECKING:
    import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
BENTOFILE = REPO_ROOT / "bentos" / "bentofile.yaml"
SERVICE_TARGET = "bentos.service:ClassifierService"


class BentoBuildError(RuntimeError):
    """``bentoml build`` failed; the message carries its output."""


class ServerStartError(RuntimeError):
    """The Bento server did not become ready; the message carries the end of its log."""


def _bentoml_cli() -> list[str]:
    return [sys.executable, "-m", "bentoml"]


def _server_env(bentoml_home: str | Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = settings.process_environment(BENTOML_HOME=str(bentoml_home), BENTOML_DO_NOT_TRACK="true")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra or {})
    return env


def build_bento(bentoml_home: str | Path, model_tag: str, artifact_root: str | Path) -> tuple[str, Path]:
    """``bentoml build`` of the service pinned to ``model_tag``; returns the Bento tag and its path.

    The absolute ``artifact_root`` is stored in the Bento too, so a Bento served from the store logs its
    traffic where the drift monitor reads it (unless MLOPS_ARTIFACT_ROOT says otherwise when it is served).

    A subprocess, so BENTOML_HOME (read once when bentoml is imported) is the registry's home.
    """
    command = [*_bentoml_cli(), "build", "-f", str(BENTOFILE), "--arg", f"model_tag={model_tag}",
               "--arg", f"artifact_root={Path(artifact_root).expanduser().resolve()}",
               "-o", "tag", str(REPO_ROOT)]
    result = subprocess.run(command, cwd=REPO_ROOT, env=_server_env(bentoml_home), capture_output=True,
                            text=True, timeout=300)
    tags = [line.split("__tag__:", 1)[1].strip() for line in result.stdout.splitlines() if "__tag__:" in line]
    if result.returncode != 0 or not tags:
        raise BentoBuildError(
            f"bentoml build for {model_tag} failed (exit {result.returncode}):\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
        )
    name, version = tags[-1].split(":", 1)
    return tags[-1], Path(bentoml_home) / "bentos" / name / version


def directory_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def wait_until_ready(url: str, process: subprocess.Popen, deadline_s: float, log: Path,
                     path: str = "/readyz") -> None:
    """Until ``path`` answers 200: ``/readyz`` (a model is served), or ``/livez`` for a server expected to start
    with no model yet."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerStartError(f"server exited with {process.returncode}:\n{log_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}{path}", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise ServerStartError(f"server not ready at {url} after {deadline_s:.0f} s:\n{log_tail(log)}")


@contextmanager
def serve_bento_process(
    target: str,
    bentoml_home: str | Path,
    log_path: str | Path,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    ready_timeout_s: float = 90.0,
    port: int | None = None,
    ready_path: str = "/readyz",
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``bentoml serve TARGET`` on 127.0.0.1 and ``port`` (a free one by default), in its own session; yields
    the base URL and the process (its pid is the session id of every worker: the benchmark counts their CPU).

    ``target`` is a Bento tag or ``bentos.service:ClassifierService``. The process group is always
    stopped on exit. ``ready_path``: what must answer 200 first (``/livez`` for a server with no model yet).
    """
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    command = [*_bentoml_cli(), "serve", target, "--host", "127.0.0.1", "--port", str(port)]
    with process_group(command, _server_env(bentoml_home, env), cwd or REPO_ROOT, log_path) as process:
        wait_until_ready(url, process, ready_timeout_s, Path(log_path), ready_path)
        yield url, process


@contextmanager
def serve_bento(target: str, bentoml_home: str | Path, log_path: str | Path, env: dict[str, str] | None = None,
                cwd: str | Path | None = None, ready_timeout_s: float = 90.0, port: int | None = None) -> Iterator[str]:
    """:func:`serve_bento_process`, yielding only the base URL."""
    with serve_bento_process(target, bentoml_home, log_path, env, cwd, ready_timeout_s, port) as (url, _):
        yield url


def run_application_test(url: str, images: np.ndarray, labels: np.ndarray, concurrency: int = 4,
                         batch_size: int = 1, token: str = "") -> dict[str, Any]:
    """Send ``images`` over HTTP with BentoML's client, ``batch_size`` per request, ``concurrency`` at
    a time (so adaptive batching merges them); predictions, accuracy and per-request latencies. ``token``:
    the service's MLOPS_API_TOKEN when it has one (sent as a bearer token)."""
    import bentoml
    import numpy as np

    chunks = [slice(i, i + batch_size) for i in range(0, len(images), batch_size)]

    def call(client: Any, part: slice) -> tuple[list[int], float, list[str]]:
        start = time.perf_counter()
        answers = client.classify(images=np.ascontiguousarray(images[part], dtype=np.float32))
        return [a["label"] for a in answers], time.perf_counter() - start, [a["model_version"] for a in answers]

    with bentoml.SyncHTTPClient(url, timeout=60, token=token or None) as client:
        info = client.model_info()
        call(client, chunks[0])  # warm-up, not timed
        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(lambda part: call(client, part), chunks))
    predictions = np.asarray([label for labels_, _, _ in results for label in labels_], dtype=np.int64)
    latencies_ms = np.asarray([seconds * 1000 for _, seconds, _ in results])
    return {
        "predictions": predictions,
        "accuracy": float((predictions == labels).mean()),
        "n_requests": len(chunks),
        "p50_ms": float(np.percentile(latencies_ms, 50)),
        "p99_ms": float(np.percentile(latencies_ms, 99)),
        "model_versions": sorted({v for _, _, versions in results for v in versions}),
        "model_info": info,
    }
