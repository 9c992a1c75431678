"""Training that scales: batches from uint8 rows, no host read per step, early stopping and successive halving
that keep the search affordable, and trials that do not depend on the order the search visits them in."""

import sys

import numpy as np
import pytest

from mlops_assets.core.data.images import load_digits_dataset, to_training_scale
from mlops_assets.core.data.pixel_store import ImageRows
from mlops_assets.core.model.train import DeviceBatches, SearchSpace, search_hyperparameters

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def digits_rows() -> tuple[ImageRows, ImageRows]:
    digits = load_digits_dataset()
    return (ImageRows.from_arrays(digits.images[:600], digits.labels[:600]),
            ImageRows.from_arrays(digits.images[600:800], digits.labels[600:800]))


def count_host_reads(monkeypatch) -> list[str]:
    """Record every tensor → Python value read that the training module itself makes (each one waits for the
    device to finish its queue: on a GPU, one per step would stall it)."""
    calls: list[str] = []
    for name in ("item", "__float__", "__int__", "__bool__", "tolist", "numpy", "cpu"):
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, _original=original, _name=name, **kwargs):
            if sys._getframe(1).f_code.co_filename.endswith("mlops_assets/core/model/train.py"):
                calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapper)
    return calls


def test_no_host_read_per_training_step(digits_rows, monkeypatch):
    """Steps per epoch differ 8× between the two batch sizes; the host reads must not."""
    train, val = digits_rows
    reads = {}
    for batch_size in (16, 128):
        calls = count_host_reads(monkeypatch)
        space = SearchSpace(learning_rates=(3e-3,), hidden=(8,), epochs=(2,), batch_size=batch_size)
        search_hyperparameters(train, val, 10, space, "cpu")
        reads[batch_size] = len(calls)
        monkeypatch.undo()
    assert reads[16] == reads[128], reads
    assert reads[16] <= 2 * 4 + 20  # a few per epoch (the epoch's sums) and the final copy of the weights


def test_batches_are_the_training_scale_of_the_uint8_rows(digits_rows):
    train, _ = digits_rows
    batches = DeviceBatches(train, "cpu")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0)).numpy()
    seen_x, seen_y = [], []
    for x, y in batches.shuffled(50, torch.Generator().manual_seed(0)):
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 8, 8)
        seen_x.append(x.numpy())
        seen_y.append(y.numpy())
    assert np.array_equal(np.concatenate(seen_x), to_training_scale(train.images())[order])
    assert np.array_equal(np.concatenate(seen_y), train.labels[order])


def test_successive_halving_trains_the_better_half_to_the_next_budget(digits_rows):
    train, val = digits_rows
    space = SearchSpace(learning_rates=(1e-3, 3e-3), hidden=(4, 16), epochs=(2, 5), search="halving")
    result = search_hyperparameters(train, val, 10, space, "cpu")
    trained = sorted(t["trained_epochs"] for t in result.trials)
    assert trained == [2, 2, 5, 5] and len(result.all_history) == 14  # a grid would train 4 × 5 = 20 epochs
    halved = [t for t in result.trials if t["outcome"] == "halved after 2"]
    kept = [t for t in result.trials if t["trained_epochs"] == 5]
    assert len(halved) == 2
    score_at_2 = {(r["lr"], r["hidden"]): (r["val_accuracy"], -r["val_loss"])
                  for r in result.all_history if r["epoch"] <= 2}
    assert min(score_at_2[t["lr"], t["hidden"]] for t in kept) >= max(score_at_2[t["lr"], t["hidden"]] for t in halved)
    assert (result.best["lr"], result.best["hidden"]) in {(t["lr"], t["hidden"]) for t in kept}


def test_a_trial_stops_when_val_stops_improving(digits_rows):
    """Labels of val shuffled: the better the model fits train, the worse val gets, so it stops early."""
    train, val = digits_rows
    rng = np.random.default_rng(1)
    noisy_val = ImageRows.from_arrays(val.images(), rng.permutation(val.labels))
    space = SearchSpace(learning_rates=(1e-2,), hidden=(16,), epochs=(40,), patience=3, search="grid")
    (trial,) = search_hyperparameters(train, noisy_val, 10, space, "cpu").trials
    assert trial["outcome"] == f"early stop at {trial['trained_epochs']}" and trial["trained_epochs"] < 40
    assert trial["trained_epochs"] == trial["epochs"] + 3  # three epochs after its best one


def test_a_trial_learns_the_same_alone_or_among_others(digits_rows):
    """Each trial keeps its own random streams, so halving's interleaving does not change what a trial learns."""
    train, val = digits_rows
    alone = search_hyperparameters(train, val, 10, SearchSpace(learning_rates=(3e-3,), hidden=(16,), epochs=(3,)),
                                   "cpu")
    among = search_hyperparameters(
        train, val, 10, SearchSpace(learning_rates=(1e-3, 3e-3), hidden=(8, 16), epochs=(1, 3), search="halving"),
        "cpu",
    )
    mine = [r for r in among.all_history if (r["lr"], r["hidden"]) == (3e-3, 16)]
    assert [r["val_loss"] for r in mine] == [r["val_loss"] for r in alone.history[: len(mine)]]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_training_keeps_the_split_on_the_device(digits_rows):
    train, val = digits_rows
    assert DeviceBatches(train, "cuda").resident is not None
    result = search_hyperparameters(train, val, 10, SearchSpace(learning_rates=(3e-3,), hidden=(8,), epochs=(2,)))
    assert result.device == "cuda" and result.best["val_accuracy"] > 0.5
    assert all(v.device.type == "cpu" for v in result.state_dict.values())
