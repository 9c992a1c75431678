"""Build stage 3: a small CNN in PyTorch, chosen by a search on the validation split."""


import json
from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import Field

from mlops_assets.core.common.markdown import markdown_table
from mlops_assets.core.data.artifacts import open_split
from mlops_assets.metadata import png_markdown, short_hash, source_hash
from mlops_assets.refs import SplitsRef, TrainedModelRef
from resources.artifact_store import ArtifactStore

CHECKPOINT = "model.pt"
CURVES = "training_curves.png"
TRAINING_RECORD = "training.json"  # how the model was trained, and from which inputs (for reuse)
# The real version of the training code: what this module and the training loop compute.
TRAINING_CODE_VERSION = source_hash(__file__, Path(__file__).parents[1] / "core" / "model" / "train.py")


class TrainingConfig(dg.Config):
    learning_rates: list[float] = Field(default=[1e-3, 3e-3], description="Adam learning rates to try.")
    hidden: list[int] = Field(default=[16, 32], description="Widths (first conv channels) to try.")
    epochs: list[int] = Field(
        default=[15, 30],
        description=(
            "Epoch budgets. halving: every trial trains to the first, the better half goes on to the next, and "
            "so on; grid: every trial trains to the largest. A trial is scored by its best epoch on val."
        ),
    )
    search: Literal["halving", "grid"] = Field(
        default="halving",
        description="halving (successive halving over the epoch budgets: affordable on big data) or grid.",
    )
    patience: int = Field(
        default=10, description="A trial stops after this many epochs without a better val score (0 = never)."
    )
    batch_size: int = Field(default=64)
    weight_decay: float = Field(default=1e-4)
    seed: int = Field(default=0, description="Seeds torch, numpy and shuffling: same inputs, same model.")
    device: str = Field(default="auto", description="auto (CUDA when available), cpu or cuda.")


def state_dict_hash(state_dict, config: dict) -> str:
    """Version a model by what it computes: its configuration and its weights' bytes."""
    import hashlib

    digest = hashlib.sha256(repr(sorted(config.items())).encode())
    for name in sorted(state_dict):
        digest.update(name.encode())
        digest.update(state_dict[name].numpy().tobytes())
    return digest.hexdigest()[:16]


def training_inputs_key(splits_version: str, config: TrainingConfig) -> str:
    """Everything a trained model depends on: the split, the training config and the training code."""
    return short_hash(splits_version, sorted(config.model_dump().items()), TRAINING_CODE_VERSION)


def find_trained_model(artifact_store: ArtifactStore, inputs_key: str) -> tuple[Path, dict] | None:
    """A model already trained from exactly these inputs, found by the record beside its checkpoint."""
    for version in artifact_store.versions("models"):
        directory = artifact_store.path("models", version)
        try:
            record = json.loads((directory / TRAINING_RECORD).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            continue
        if record.get("inputs_key") == inputs_key and (directory / CHECKPOINT).is_file():
            return directory, record
    return None


def train_new_model(
    context: dg.AssetExecutionContext, config: TrainingConfig, data_splits: SplitsRef,
    artifact_store: ArtifactStore, inputs_key: str,
) -> tuple[Path, dict]:
    from mlops_assets.core.model.plots import training_curves_png
    from mlops_assets.core.model.train import SearchSpace, save_checkpoint, search_hyperparameters

    space = SearchSpace(
        learning_rates=tuple(config.learning_rates),
        hidden=tuple(config.hidden),
        epochs=tuple(config.epochs),
        batch_size=config.batch_size,
        weight_decay=config.weight_decay,
        seed=config.seed,
        search=config.search,
        patience=config.patience,
    )

    from mlops_assets.core.common.progress import progress

    # the most epochs the search can run (halving and early stopping end it sooner)
    planned = len(space.learning_rates) * len(space.hidden) * max(space.epochs)
    bar = progress(planned, "training", "epoch")

    def log_epoch(row: dict) -> None:
        context.log.debug(
            "trial {trial} lr={lr} hidden={hidden} epoch {epoch}: train loss {train_loss:.4f} "
            "acc {train_accuracy:.4f} | val loss {val_loss:.4f} acc {val_accuracy:.4f}".format(**row)
        )
        bar.update(1)
        bar.set_postfix(trial=row["trial"], val_acc=f"{row['val_accuracy']:.3f}", refresh=False)

    with bar:
        result = search_hyperparameters(
            open_split(data_splits.path, "train"), open_split(data_splits.path, "val"),
            len(data_splits.class_names), space, config.device, log_epoch,
        )
    version = state_dict_hash(result.state_dict, {**result.config.as_dict(), "splits": data_splits.version})
    best = result.best
    title = f"lr={best['lr']} hidden={best['hidden']} (selected at epoch {best['epochs']})"
    record = {
        "version": version,
        "inputs_key": inputs_key,
        "code_version": TRAINING_CODE_VERSION,
        "splits_version": data_splits.version,
        "training_config": config.model_dump(),
        "config": result.config.as_dict(),
        "best": best,
        "trials": result.trials,
        "history": result.history[: best["epochs"]],
        "hyperparameters": {**best, "batch_size": space.batch_size, "weight_decay": space.weight_decay,
                            "seed": space.seed, "search": space.search, "patience": space.patience},
        "device": result.device,
    }

    def build(directory: Path) -> None:
        save_checkpoint(directory / CHECKPOINT, result)
        training_curves_png(result.history, directory / CURVES, title)
        (directory / TRAINING_RECORD).write_text(json.dumps(record, indent=2, default=str))

    directory = artifact_store.publish("models", version, build)
    context.log.info(f"trained on {result.device}; best {best}")
    return directory, record


@dg.asset(
    kinds={"pytorch"},
    code_version=TRAINING_CODE_VERSION,
    description=(
        "A small CNN trained on the train split, in batches read from the uint8 pixel store; learning rate, "
        "width and epochs are chosen on val (successive halving and early stopping keep the search affordable "
        "on big data). Seeded, so the same splits and config give the same weights; uses CUDA when available. "
        "When a model was already trained from the same split, config and training code, it is reused."
    ),
)
def trained_model(
    context: dg.AssetExecutionContext, config: TrainingConfig, data_splits: SplitsRef,
    artifact_store: ArtifactStore,
) -> dg.MaterializeResult[TrainedModelRef]:
    inputs_key = training_inputs_key(data_splits.version, config)
    existing = find_trained_model(artifact_store, inputs_key)
    if existing is not None:
        directory, record = existing
        context.log.info(f"reused {record['version']}: already trained from these inputs ({inputs_key})")
    else:
        directory, record = train_new_model(context, config, data_splits, artifact_store, inputs_key)
    best = record["best"]
    version = record["version"]
    search_rows = [
        [t["lr"], t["hidden"], t["epochs"], t.get("trained_epochs", t["epochs"]), t.get("outcome", ""),
         t["val_accuracy"], t["val_loss"], "✔" if (t["lr"], t["hidden"]) == (best["lr"], best["hidden"]) else ""]
        for t in record["trials"]
    ]
    epoch_rows = [
        [r["epoch"], r["train_loss"], r["train_accuracy"], r["val_loss"], r["val_accuracy"]]
        for r in record["history"]
    ]
    return dg.MaterializeResult(
        value=TrainedModelRef(
            version=version,
            checkpoint=str(directory / CHECKPOINT),
            splits_version=data_splits.version,
            config=record["config"],
            hyperparameters=record["hyperparameters"],
            val_accuracy=float(best["val_accuracy"]),
            device=record["device"],
        ),
        data_version=dg.DataVersion(version),
        metadata={
            "version": version,
            "reused": f"reused {version}" if existing else "trained",
            "inputs_key": inputs_key,
            "splits_version": data_splits.version,
            "device": record["device"],
            "artifact_path": dg.MetadataValue.path(str(directory / CHECKPOINT)),
            "val_accuracy": float(best["val_accuracy"]),
            "hyperparameters": dg.MetadataValue.json(record["hyperparameters"]),
            "search": dg.MetadataValue.md(
                markdown_table(["lr", "hidden", "best epoch", "epochs trained", "stopped by", "val acc", "val loss",
                                "chosen"], search_rows)
            ),
            "epochs": dg.MetadataValue.md(
                markdown_table(["epoch", "train loss", "train acc", "val loss", "val acc"], epoch_rows)
            ),
            "training_curves": png_markdown(directory / CURVES, "training curves"),
        },
    )
