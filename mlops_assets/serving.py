"""Deploy stage: the Bento of the production model, its application test, and rollback.

- ``bento``: ``bentoml build`` of ``bentos/`` pinned (Bento argument ``model_tag``) to the production
  version that ``registered_model`` left in place.
- ``bento_application_test`` (blocking check on ``bento``): the built Bento as a real server on a free
  local port; the whole test split over HTTP with BentoML's client; its predictions must equal the
  offline ONNX predictions (and its accuracy the evaluation report's, for the same version).
- ``rollback_job``: production pointer back to the previous version; the running services follow it.

The server helpers (:func:`serve_bento`, :func:`run_application_test`) are plain functions, used by the
check and by the tests. Nothing heavy at import: bentoml and onnxruntime load inside the functions.
"""

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
from pydantic import Field

from mlops_assets.jobs import RUN_KIND_TAG
from mlops_assets.metadata import markdown_table
from mlops_assets.ml.onnx_model import predict_labels
from mlops_assets.ml.processes import free_port, log_tail, stop_process_group
from mlops_assets.refs import EvaluationRef, RegisteredModelRef, SplitsRef
from resources import settings
from resources.model_registry import ModelRegistryResource

REPO_ROOT = Path(__file__).resolve().parents[1]
BENTOFILE = REPO_ROOT / "bentos" / "bentofile.yaml"
SERVICE_TARGET = "bentos.service:ClassifierService"


class BentoBuildError(RuntimeError):
    """``bentoml build`` failed; the message carries its output."""


class ServerStartError(RuntimeError):
    """The Bento server did not become ready; the message carries the end of its log."""


@dataclass(frozen=True)
class BentoRef:
    tag: str
    path: str
    model_tag: str
    model_version: str
    size_bytes: int
    splits_path: str
    splits_version: str
    evaluation_onnx_version: str
    evaluation_accuracy: float


# -- pure helpers -----------------------------------------------------------------------------------
def _bentoml_cli() -> list[str]:
    return [sys.executable, "-m", "bentoml"]


def _server_env(bentoml_home: str | Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra or {})
    return env


def build_bento(bentoml_home: str | Path, model_tag: str) -> tuple[str, Path]:
    """``bentoml build`` of the service pinned to ``model_tag``; returns the Bento tag and its path.

    A subprocess, so BENTOML_HOME (read once when bentoml is imported) is the registry's home.
    """
    command = [*_bentoml_cli(), "build", "-f", str(BENTOFILE), "--arg", f"model_tag={model_tag}",
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


def wait_until_ready(url: str, process: subprocess.Popen, deadline_s: float, log: Path) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerStartError(f"server exited with {process.returncode}:\n{log_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise ServerStartError(f"server not ready at {url} after {deadline_s:.0f} s:\n{log_tail(log)}")


@contextmanager
def serve_bento(
    target: str,
    bentoml_home: str | Path,
    log_path: str | Path,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    ready_timeout_s: float = 90.0,
) -> Iterator[str]:
    """``bentoml serve TARGET`` on 127.0.0.1 and a free port, in its own session; yields the base URL.

    ``target`` is a Bento tag or ``bentos.service:ClassifierService``. The process group is always
    stopped on exit.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*_bentoml_cli(), "serve", target, "--host", "127.0.0.1", "--port", str(port)],
            cwd=str(cwd or REPO_ROOT), env=_server_env(bentoml_home, env), stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            wait_until_ready(url, process, ready_timeout_s, log_path)
            yield url
        finally:
            stop_process_group(process)


def run_application_test(url: str, images: np.ndarray, labels: np.ndarray, concurrency: int = 4,
                         batch_size: int = 1) -> dict[str, Any]:
    """Send ``images`` over HTTP with BentoML's client, ``batch_size`` per request, ``concurrency`` at
    a time (so adaptive batching merges them); predictions, accuracy and per-request latencies."""
    import bentoml

    chunks = [slice(i, i + batch_size) for i in range(0, len(images), batch_size)]

    def call(client: Any, part: slice) -> tuple[list[int], float, list[str]]:
        start = time.perf_counter()
        answers = client.classify(images=np.ascontiguousarray(images[part], dtype=np.float32))
        return [a["label"] for a in answers], time.perf_counter() - start, [a["model_version"] for a in answers]

    with bentoml.SyncHTTPClient(url, timeout=60) as client:
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


# -- Dagster ----------------------------------------------------------------------------------------
@dg.asset(
    group_name="deploy",
    kinds={"bentoml"},
    code_version="1",
    owners=["team:ml-platform"],
    description=(
        "`bentoml build` of bentos/service.py pinned to the production model version: the deployable "
        "service (adaptive batching, upload preprocessing, /model, live production following)."
    ),
)
def bento(
    context: dg.AssetExecutionContext,
    registered_model: RegisteredModelRef,
    evaluation_report: EvaluationRef,
    data_splits: SplitsRef,
    model_registry: ModelRegistryResource,
) -> dg.Output[BentoRef]:
    registry = model_registry.registry()
    if not registered_model.production_version:
        raise dg.Failure(
            description=f"no production version of {registry.model_name} to build a Bento from: "
            f"{registered_model.version} was not promoted ({registered_model.reason})",
        )
    model = registry.get(registered_model.production_version)
    tag, path = build_bento(registry.home, model.tag)
    size = directory_size(path)
    model_size = directory_size(Path(model.path))
    context.log.info(f"built {tag} serving {model.tag}")
    return dg.Output(
        BentoRef(
            tag=tag, path=str(path), model_tag=model.tag, model_version=model.version, size_bytes=size,
            splits_path=data_splits.path, splits_version=data_splits.version,
            evaluation_onnx_version=evaluation_report.onnx_version,
            evaluation_accuracy=float(evaluation_report.metrics["accuracy"]),
        ),
        data_version=dg.DataVersion(tag.split(":", 1)[1]),
        metadata={
            "bento_tag": tag,
            "model_tag": model.tag,
            "size_bytes": size,
            "model_size_bytes": model_size,
            "bento_path": dg.MetadataValue.path(str(path)),
            "splits_version": model.labels.get("splits_version", ""),
            "dataset_version": model.labels.get("dataset_version", ""),
            "candidate_promoted": registered_model.promoted,
            "serve": dg.MetadataValue.md(
                f"`BENTOML_HOME={registry.home} bentoml serve {tag} --host 127.0.0.1 --port 3000`"
            ),
        },
    )


class ApplicationTestConfig(dg.Config):
    concurrency: int = Field(default=4, description="Requests in flight at once (exercises batching).")
    ready_timeout_s: float = Field(default=120.0, description="How long the server may take to start.")


@dg.asset_check(
    asset=bento,
    blocking=True,
    description=(
        "The built Bento as a real server: the whole test split over HTTP (BentoML client, one image per "
        "request) must give the offline predictions, hence the offline accuracy; p50/p99 latency."
    ),
)
def bento_application_test(
    context: dg.AssetCheckExecutionContext, config: ApplicationTestConfig, bento: BentoRef,
    model_registry: ModelRegistryResource,
) -> dg.AssetCheckResult:
    from mlops_assets.ml.artifacts import read_split

    registry = model_registry.registry()
    x_test, y_test = read_split(bento.splits_path, "test")
    expected = predict_labels(registry.get(bento.model_version).onnx_path, x_test)
    log = registry.home / "logs" / f"application_test_{bento.tag.replace(':', '_')}.log"
    # Test traffic is not production traffic: keep it out of the inference log the drift monitor reads.
    test_env = {settings.FOLLOW_PRODUCTION: "0", settings.INFERENCE_LOG: "0"}
    with serve_bento(bento.tag, registry.home, log, env=test_env,
                     cwd=Path(bento.path).parent, ready_timeout_s=config.ready_timeout_s) as url:
        result = run_application_test(url, x_test, y_test, concurrency=config.concurrency)
    mismatches = int((result["predictions"] != expected).sum())
    offline_accuracy = float((expected == y_test).mean())
    same_version = bento.evaluation_onnx_version == bento.model_version
    problems = []
    if mismatches:
        problems.append(f"{mismatches} of {len(y_test)} predictions differ from the offline ONNX model")
    if result["model_versions"] != [bento.model_version]:
        problems.append(f"answered by {result['model_versions']}, expected only {bento.model_version}")
    if same_version and abs(result["accuracy"] - bento.evaluation_accuracy) > 1e-12:
        problems.append(
            f"served accuracy {result['accuracy']:.4f} ≠ evaluation report {bento.evaluation_accuracy:.4f}"
        )
    context.log.info(f"application test of {bento.tag}: accuracy {result['accuracy']:.4f}, "
                     f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms")
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={
            "reason": "; ".join(problems) or "served predictions equal the offline predictions",
            "served_accuracy": result["accuracy"],
            "offline_accuracy": offline_accuracy,
            "evaluation_accuracy": bento.evaluation_accuracy if same_version else "other version",
            "mismatched_predictions": mismatches,
            "n_requests": result["n_requests"],
            "p50_latency_ms": result["p50_ms"],
            "p99_latency_ms": result["p99_ms"],
            "served_model": bento.model_tag,
            "server_log": dg.MetadataValue.path(str(log)),
        },
    )


class RollbackConfig(dg.Config):
    reason: str = Field(default="rollback from Dagster", description="Recorded in the pointer's history.")
    allow_incompatible: bool = Field(
        default=False,
        description="Roll back even to a version of other classes or input geometry than production's.",
    )


@dg.op(
    description="Point production back at the previous version; running services swap within seconds.",
    tags={"kind": "bentoml"},
)
def rollback_production(
    context: dg.OpExecutionContext, config: RollbackConfig, model_registry: ModelRegistryResource
) -> None:
    from mlops_assets.ml.registry import RegistryError

    registry = model_registry.registry()
    before = registry.production()
    try:
        after = registry.rollback(config.reason, actor=f"dagster run {context.run_id}",
                                  allow_incompatible=config.allow_incompatible)
    except RegistryError as exc:
        raise dg.Failure(description=str(exc)) from exc
    context.log.info(f"production: {before.version if before else 'none'} → {after.version}")
    context.log_event(
        dg.AssetObservation(
            asset_key="registered_model",
            metadata={
                "action": "rollback",
                "from_version": before.version if before else "none",
                "production_version": after.version,
                "reason": config.reason,
                "history": dg.MetadataValue.md(markdown_table(
                    ["at", "action", "from", "to", "by"],
                    [[e["at"][:19], e["action"], e["from"], e["to"], e.get("actor", "")]
                     for e in registry.events()[-10:]],
                )),
            },
        )
    )


@dg.job(
    description="Roll production back to the previous model version (the services follow the pointer).",
    tags={RUN_KIND_TAG: "release"},
)
def rollback_job() -> None:
    rollback_production()


deploy_job = dg.define_asset_job(
    name="deploy_job",
    selection=dg.AssetSelection.groups("deploy"),
    executor_def=dg.in_process_executor,
    tags={RUN_KIND_TAG: "release"},
    description="Build the Bento of the production model and run its application test (the release gate).",
)
