"""Training throughput by device: images/s of one training epoch on the CPU and, when torch sees one, on CUDA.

The data is a memory-mapped pixel store of generated 32×32 grayscale images (``--images``, default 5,000), read
the way the build reads it: uint8 rows, converted to float per batch on the device (on CUDA the split is uploaded
once and gathered there). Each device runs a warm-up epoch first (CUDA context, cuDNN kernels), then the best of
``--repeats`` timed epochs of the default model (width 32) at batch sizes 64 (the default) and 256.

``python -m benchmarks.bench_train_device``; on a machine without CUDA it reports the CPU alone and says so.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.report import write_section

BATCH_SIZES = (64, 256)


def make_rows(directory: Path, n: int, seed: int = 0):
    """A pixel store of ``n`` learnable images (a bright square, a bright disc or stripes on noise) and labels."""
    from mlops_assets.core.data.pixel_store import PixelStoreWriter

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32]
    writer = PixelStoreWriter(directory, (1, 32, 32))
    for start in range(0, n, 5000):
        count = min(5000, n - start)
        labels = rng.integers(0, 3, size=count)
        centre = rng.uniform(10, 22, size=(count, 2, 1, 1))
        disc = (yy - centre[:, 0]) ** 2 + (xx - centre[:, 1]) ** 2 <= 36
        square = (np.abs(yy - centre[:, 0]) <= 6) & (np.abs(xx - centre[:, 1]) <= 6)
        stripes = np.broadcast_to(((xx + yy) // 3) % 2 == 0, disc.shape)
        mask = np.where(labels[:, None, None] == 0, disc, np.where(labels[:, None, None] == 1, square, stripes))
        pixels = np.clip(rng.normal(40, 25, size=mask.shape) + 150 * mask, 0, 255).astype(np.uint8)
        writer.append(pixels[:, None], labels, np.full((count, 2), 32))
    return writer.finish()


def epoch_rate(train, val, device: str, batch_size: int, repeats: int) -> float:
    """Training images per second of one epoch (the epoch's val pass excluded), best of ``repeats``."""
    from mlops_assets.core.model.train import SearchSpace, search_hyperparameters

    def seconds(rows) -> float:
        space = SearchSpace(learning_rates=(3e-3,), hidden=(32,), epochs=(1,), batch_size=batch_size)
        start = time.perf_counter()
        search_hyperparameters(rows, val, 3, space, device)  # reads the epoch's sums: the device has finished
        return time.perf_counter() - start

    seconds(train.select(np.arange(min(len(train), 2048))))  # warm-up
    tiny = train.select(np.arange(batch_size))  # one step: the fixed cost of a search (model, val pass, copies)
    fixed = min(seconds(tiny) for _ in range(repeats))
    best = min(seconds(train) for _ in range(repeats))
    return (len(train) - len(tiny)) / max(1e-9, best - fixed)


def main(argv: list[str] | None = None) -> dict:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md as it is")
    args = parser.parse_args(argv)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    with tempfile.TemporaryDirectory() as scratch:
        store = make_rows(Path(scratch) / "pixels", args.images + 1000)
        train, val = store.select(np.arange(args.images)), store.select(np.arange(args.images, len(store)))
        rates = {(d, b): epoch_rate(train, val, d, b, args.repeats) for d in devices for b in BATCH_SIZES}
    rows = []
    for batch in BATCH_SIZES:
        cpu = rates["cpu", batch]
        cuda = rates.get(("cuda", batch))
        rows.append(f"| {batch} | {cpu:,.0f} | " + (f"{cuda:,.0f} | {cuda / cpu:.1f}× |" if cuda else "— | — |"))
    gpu = torch.cuda.get_device_name(0) if "cuda" in devices else None
    body = "\n".join([
        "## Training throughput by device",
        "",
        f"One training epoch of the default CNN (width 32) on {args.images:,} generated 32×32 grayscale images "
        "read from a memory-mapped uint8 pixel store, converted to float per batch on the device; images/s after "
        f"subtracting a one-step search's fixed cost, best of {args.repeats}, after a warm-up epoch. CPU: "
        f"{torch.get_num_threads()} torch threads" + (f"; GPU: {gpu}." if gpu else
                                                     "; **no CUDA device on this machine: GPU not measured.**"),
        "",
        "| batch size | CPU images/s | CUDA images/s | CUDA / CPU |",
        "|---:|---:|---:|---:|",
        *rows,
    ])
    if not args.no_write:
        write_section("bench_train_device", body)
    print(body)
    return {f"{d}-{b}": r for (d, b), r in rates.items()}


if __name__ == "__main__":
    main()
