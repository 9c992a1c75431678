"""Build stage 4: the ONNX export, and the check that it computes what the torch model computes."""


import hashlib
import tempfile
from pathlib import Path

import dagster as dg
from pydantic import Field

from mlops_assets.core.data.artifacts import open_split
from mlops_assets.core.data.images import to_training_scale
from mlops_assets.core.model.onnx_model import INPUT_NAME, ONNX_FILE, OUTPUT_NAME
from mlops_assets.refs import OnnxModelRef, SplitsRef, TrainedModelRef
from resources.artifact_store import ArtifactStore

PARITY_TOLERANCE = 1e-4


@dg.asset(
    kinds={"onnx"},
    code_version="1",
    description=(
        "The trained model exported to ONNX with a dynamic batch axis, versioned by the file's hash: "
        "what the registry stores and the Bento serves."
    ),
)
def onnx_model(
    context: dg.AssetExecutionContext, trained_model: TrainedModelRef, data_splits: SplitsRef,
    artifact_store: ArtifactStore,
) -> dg.MaterializeResult[OnnxModelRef]:
    from mlops_assets.core.model.onnx_model import export_onnx
    from mlops_assets.core.model.train import load_checkpoint

    model = load_checkpoint(trained_model.checkpoint)
    example = to_training_scale(open_split(data_splits.path, "val").images(0, 2))
    with tempfile.TemporaryDirectory() as scratch:
        exported = Path(scratch) / ONNX_FILE
        export_onnx(model, example, exported)
        payload = exported.read_bytes()
    version = hashlib.sha256(payload).hexdigest()[:16]
    directory = artifact_store.publish("onnx", version, lambda d: (d / ONNX_FILE).write_bytes(payload))
    context.log.info(f"exported {trained_model.version} to ONNX {version} ({len(payload)} bytes)")
    return dg.MaterializeResult(
        value=OnnxModelRef(
            version=version,
            path=str(directory / ONNX_FILE),
            trained_model_version=trained_model.version,
            splits_version=trained_model.splits_version,
            hyperparameters=trained_model.hyperparameters,
        ),
        data_version=dg.DataVersion(version),
        metadata={
            "version": version,
            "trained_model_version": trained_model.version,
            "artifact_path": dg.MetadataValue.path(str(directory / ONNX_FILE)),
            "size_bytes": len(payload),
            "input": f"{INPUT_NAME}: float32 [batch, {', '.join(map(str, example.shape[1:]))}]",
            "output": f"{OUTPUT_NAME}: float32 [batch, {len(data_splits.class_names)}]",
        },
    )


class ParityConfig(dg.Config):
    tolerance: float = Field(default=PARITY_TOLERANCE, description="Largest allowed |onnx − torch| logit.")


@dg.asset_check(
    asset=onnx_model,
    blocking=True,
    additional_ins={"trained_model": dg.AssetIn("trained_model"), "data_splits": dg.AssetIn("data_splits")},
    description=(
        "onnx.checker accepts the graph and onnxruntime matches torch on the whole test split (compared a batch "
        "at a time)."
    ),
)
def onnx_matches_torch(
    config: ParityConfig, onnx_model: OnnxModelRef, trained_model: TrainedModelRef, data_splits: SplitsRef
) -> dg.AssetCheckResult:
    from mlops_assets.core.model.onnx_model import check_graph, open_session, parity
    from mlops_assets.core.model.train import load_checkpoint

    try:
        check_graph(onnx_model.path)
    except Exception as exc:  # onnx raises several types; any of them means "not valid ONNX"
        return dg.AssetCheckResult(passed=False, metadata={"reason": f"onnx.checker rejected the graph: {exc}"})
    test = open_split(data_splits.path, "test")
    result = parity(load_checkpoint(trained_model.checkpoint), open_session(onnx_model.path), test)
    max_diff = result.max_abs_diff
    passed = max_diff <= config.tolerance
    return dg.AssetCheckResult(
        passed=passed,
        metadata={
            "max_abs_diff": max_diff,
            "tolerance": config.tolerance,
            "n_images": result.n_images,
            "same_prediction_share": result.same_prediction_share,
            "reason": (
                f"max |onnx − torch| = {max_diff:.2e} ≤ {config.tolerance:.0e} on {result.n_images} test images"
                if passed
                else f"max |onnx − torch| = {max_diff:.2e} exceeds {config.tolerance:.0e}"
            ),
        },
    )
