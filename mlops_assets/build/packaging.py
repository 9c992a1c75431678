"""Build stage 4: the ONNX export, and the check that it computes what the torch model computes."""


import hashlib
import tempfile
from pathlib import Path

import dagster as dg
import numpy as np
from pydantic import Field

from mlops_assets.ml.artifacts import read_split
from mlops_assets.ml.onnx_model import INPUT_NAME, ONNX_FILE, OUTPUT_NAME
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
) -> dg.Output[OnnxModelRef]:
    from mlops_assets.ml.onnx_model import export_onnx
    from mlops_assets.ml.train import load_checkpoint

    model = load_checkpoint(trained_model.checkpoint)
    example, _ = read_split(data_splits.path, "val")
    with tempfile.TemporaryDirectory() as scratch:
        exported = Path(scratch) / ONNX_FILE
        export_onnx(model, example[:2], exported)
        payload = exported.read_bytes()
    version = hashlib.sha256(payload).hexdigest()[:16]
    directory = artifact_store.publish("onnx", version, lambda d: (d / ONNX_FILE).write_bytes(payload))
    context.log.info(f"exported {trained_model.version} to ONNX {version} ({len(payload)} bytes)")
    return dg.Output(
        OnnxModelRef(
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
    description="onnx.checker accepts the graph and onnxruntime matches torch on the whole test split.",
)
def onnx_matches_torch(
    config: ParityConfig, onnx_model: OnnxModelRef, trained_model: TrainedModelRef, data_splits: SplitsRef
) -> dg.AssetCheckResult:
    from mlops_assets.ml.onnx_model import check_graph, onnx_logits, open_session, torch_logits
    from mlops_assets.ml.train import load_checkpoint

    try:
        check_graph(onnx_model.path)
    except Exception as exc:  # onnx raises several types; any of them means "not valid ONNX"
        return dg.AssetCheckResult(passed=False, metadata={"reason": f"onnx.checker rejected the graph: {exc}"})
    x_test, _ = read_split(data_splits.path, "test")
    expected = torch_logits(load_checkpoint(trained_model.checkpoint), x_test)
    actual = onnx_logits(open_session(onnx_model.path), x_test)
    max_diff = float(np.max(np.abs(expected - actual))) if len(x_test) else 0.0
    same_labels = float(np.mean(expected.argmax(1) == actual.argmax(1))) if len(x_test) else 1.0
    passed = max_diff <= config.tolerance
    return dg.AssetCheckResult(
        passed=passed,
        metadata={
            "max_abs_diff": max_diff,
            "tolerance": config.tolerance,
            "n_images": len(x_test),
            "same_prediction_share": same_labels,
            "reason": (
                f"max |onnx − torch| = {max_diff:.2e} ≤ {config.tolerance:.0e} on {len(x_test)} test images"
                if passed
                else f"max |onnx − torch| = {max_diff:.2e} exceeds {config.tolerance:.0e}"
            ),
        },
    )
