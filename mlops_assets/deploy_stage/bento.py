"""Deploy stage: the Bento of the version to release, and its application test (the release test).

- ``bento``: ``bentoml build`` of ``bentos/`` pinned (Bento argument ``model_tag``) to the version the gate passed
  (release pending, or awaiting a reviewer), else to the production version; nothing to build: not materialised,
  and the release steps after it are skipped.
- ``bento_application_test`` (blocking check on ``bento``): the built Bento as a real server on a free
  local port; the whole test split over HTTP with BentoML's client; its predictions must equal the
  offline ONNX predictions (and its accuracy the evaluation report's, for the same version), within the latency
  budget if one is set. The outcome is recorded in the registry for that version (who, when, which Bento): the
  registry gives traffic only to a version whose latest release test passed, and ``production_release``
  (``deploy_stage/release.py``) runs only after this check passed.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from pydantic import Field

from mlops_assets.core.common import settings
from mlops_assets.core.model.onnx_model import predict_rows
from mlops_assets.infra.bento_server import build_bento, directory_size, run_application_test, serve_bento
from mlops_assets.refs import EvaluationRef, RegisteredModelRef, SplitsRef
from resources.artifact_store import ArtifactStore
from resources.model_registry import ModelRegistryResource
from resources.service_auth import ServiceAuth


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


@dg.asset(
    kinds={"bentoml"},
    code_version="1",
    output_required=False,
    description=(
        "`bentoml build` of bentos/service.py pinned to the version to release (the one the gate passed, else "
        "production): the deployable service (adaptive batching, upload preprocessing, /model, live production "
        "following). Built and tested before that version receives any traffic."
    ),
)
def bento(
    context: dg.AssetExecutionContext,
    registered_model: RegisteredModelRef,
    evaluation_report: EvaluationRef,
    data_splits: SplitsRef,
    model_registry: ModelRegistryResource,
    artifact_store: ArtifactStore,
) -> Iterator[dg.MaterializeResult[BentoRef]]:
    registry = model_registry.registry()
    candidate = registered_model.release_pending or registered_model.awaiting_approval
    target = registered_model.version if candidate else registry.production_version()
    if target is None:
        context.log.warning(f"no Bento to build: {registered_model.version} is not to be released "
                            f"({registered_model.reason}) and {registry.model_name} has no production version")
        return
    model = registry.get(target)
    tag, path = build_bento(registry.home, model.tag, artifact_store.root_path)
    size = directory_size(path)
    model_size = directory_size(Path(model.path))
    context.log.info(f"built {tag} serving {model.tag} ({'the candidate' if candidate else 'production'})")
    yield dg.MaterializeResult(
        value=BentoRef(
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
            "inference_log": dg.MetadataValue.path(str(artifact_store.root_path / "inference_log")),
            "built_for": "the gate-passed candidate" if candidate else "the production version",
            "serve": dg.MetadataValue.md(
                f"`BENTOML_HOME={registry.home} bentoml serve {tag} --host 127.0.0.1 --port 3000`"
            ),
        },
    )


class ApplicationTestConfig(dg.Config):
    concurrency: int = Field(default=4, description="Requests in flight at once (exercises batching).")
    ready_timeout_s: float = Field(default=120.0, description="How long the server may take to start.")
    max_p99_latency_ms: float | None = Field(
        default=None, description="Latency budget: the test fails if the p99 of its requests exceeds it (None: none).",
    )


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
    model_registry: ModelRegistryResource, service_auth: ServiceAuth,
) -> dg.AssetCheckResult:
    from mlops_assets.core.data.artifacts import open_split, read_split

    registry = model_registry.registry()
    x_test, y_test = read_split(bento.splits_path, "test")
    # scored a bounded batch at a time, as the evaluation scores it (one 512-image pass held its activations)
    expected = predict_rows(registry.get(bento.model_version).onnx_path, open_split(bento.splits_path, "test"))
    log = registry.home / "logs" / f"application_test_{bento.tag.replace(':', '_')}.log"
    # Test traffic is not production traffic: keep it out of the inference log the drift monitor reads.
    # The server protects its endpoints as production does (MLOPS_API_TOKEN), and the test sends the token.
    test_env = {settings.FOLLOW_PRODUCTION: "0", settings.INFERENCE_LOG: "0",
                settings.API_TOKEN: service_auth.api_token}
    with serve_bento(bento.tag, registry.home, log, env=test_env,
                     cwd=Path(bento.path).parent, ready_timeout_s=config.ready_timeout_s) as url:
        result = run_application_test(url, x_test, y_test, concurrency=config.concurrency,
                                      token=service_auth.api_token)
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
    if config.max_p99_latency_ms is not None and result["p99_ms"] > config.max_p99_latency_ms:
        problems.append(f"p99 latency {result['p99_ms']:.1f} ms over the budget of {config.max_p99_latency_ms} ms")
    reason = "; ".join(problems) or "served predictions equal the offline predictions"
    registry.record_release_test(bento.model_version, bento.tag, not problems, reason,
                                 by=f"dagster run {context.run.run_id}")
    context.log.info(f"application test of {bento.tag}: accuracy {result['accuracy']:.4f}, "
                     f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms")
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={
            "reason": reason,
            "recorded_for": bento.model_version,
            "served_accuracy": result["accuracy"],
            "offline_accuracy": offline_accuracy,
            "evaluation_accuracy": bento.evaluation_accuracy if same_version else "other version",
            "mismatched_predictions": mismatches,
            "n_requests": result["n_requests"],
            "p50_latency_ms": result["p50_ms"],
            "p99_latency_ms": result["p99_ms"],
            "served_model": bento.model_tag,
            "token_required": bool(service_auth.api_token),
            "server_log": dg.MetadataValue.path(str(log)),
        },
    )
