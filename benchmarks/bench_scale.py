"""The scale curve (issue 17): the whole build_job at 1×, 4× and 16× of a generated image folder.

Each size is built in a fresh interpreter and a fresh artifact home (``testkit.build_probe``), with training cut to
one epoch of one trial so the data path shows. Reported per size and per step: wall time and peak RSS (the process
and its decode workers). The per-image cost subtracts the fixed cost measured by a tiny run in the same session:
``(wall(n) − wall(tiny)) / (n − n_tiny)``; goal: flat within 1.3× from 1× to 16×. Peak RSS is compared with the
bound 3 × the dataset's uint8 bytes + 1 GB. Decoding speed with 1 and 2 processes is measured on the 4× folder.

``python -m benchmarks.bench_scale`` (1× = 12,500 images: 12.5k, 50k, 200k), ``--unit N`` for another 1×,
``--smoke`` for a tiny size that checks the report is well formed (the CI test; BENCHMARKS.md is not written),
``--json PATH`` to keep the raw figures. The label and split ledgers (issue 25) are also measured alone, at the
largest size, on synthetic hashes; ``--ledgers N`` measures only them, at N images, into a section of their own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.report import write_section

UNIT = 12_500
FACTORS = (1, 4, 16)
TINY = 300
SMOKE_UNIT, SMOKE_FACTORS, SMOKE_TINY = 150, (1, 2), 60
ONE_EPOCH = {"ops": {"trained_model": {"config": {
    "learning_rates": [3e-3], "hidden": [16], "epochs": [1], "search": "grid", "patience": 0}}}}
STEPS = ("raw_images", "label_ledger", "data_splits", "data_quality", "trained_model", "onnx_model",
         "onnx_model_onnx_matches_torch", "evaluation_report", "registered_model")
PIXELS_PER_IMAGE = 32 * 32
REPEATS = 2  # runs per size but the largest; the quickest is reported


def memory_bound(n_images: int) -> float:
    return 3 * n_images * PIXELS_PER_IMAGE + 1e9


def prefix_folder(source: Path, target: Path, n_images: int) -> Path:
    """The first ``n_images`` of a generated folder (a third per class), hard-linked: no pixel is copied."""
    from testkit.fixtures import SCALE_CLASSES

    per_class = [n_images // 3 + (1 if k < n_images % 3 else 0) for k in range(3)]
    for name, count in zip(SCALE_CLASSES, per_class, strict=True):
        (target / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            file = f"{name}_{i:07d}.png"
            os.link(source / name / file, target / name / file)
    return target


def cpu_seconds() -> float:
    """CPU time of this process and its ended children (a decode pool, once shut down)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure_decode(folder: Path) -> dict[str, dict[str, float]]:
    """Listing plus decoding of the folder with 1 and 2 processes, best of 2 runs each (images/s), with the CPU
    seconds the quicker run took (the workers' included) and the load average of the machine."""
    from mlops_assets.core.data.image_folder import decode_folder, list_image_folder
    from mlops_assets.core.data.images import PreprocessSpec

    spec = PreprocessSpec(32, 32, 1)
    out = {}
    for workers in (1, 2):
        best, cpu = float("inf"), 0.0
        for _ in range(2):
            start, cpu_start = time.perf_counter(), cpu_seconds()
            n = sum(len(chunk.labels) for chunk in decode_folder(list_image_folder(folder), spec, workers=workers))
            if time.perf_counter() - start < best:
                best, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
        out[str(workers)] = {"images": n, "seconds": best, "images_per_s": n / best, "cpu_seconds": cpu,
                             "load_average": os.getloadavg()[0]}
    return out


def measure_ledgers(n_images: int, workdir: Path) -> dict[str, dict[str, float]]:
    """The two ledgers' own cost at ``n_images`` (issue 25), on synthetic content hashes in three classes, in this
    process: the label ledger's review of a dataset version against a ledger that knows every image, its advance
    and its round trip through disk; the split ledger's round trip (read, merge with the new assignment, digest,
    write). Wall and CPU seconds, and the peak of Python and numpy allocations (tracemalloc) above the inputs."""
    import hashlib
    import tracemalloc

    import numpy as np

    from mlops_assets.core.data.artifacts import SplitLedger, read_split_ledger, write_split_ledger
    from mlops_assets.core.data.splits import SPLIT_NAMES
    from mlops_assets.core.quality.label_integrity import LabelLedger, advance, read_ledger, review_labels, write_ledger

    hashes = np.asarray([hashlib.sha1(str(i).encode()).hexdigest() for i in range(n_images)], dtype="S40")
    labels = np.arange(n_images, dtype=np.int64) % 3
    class_names = ["circles", "squares", "stripes"]
    sources = [f"{class_names[k]}/{i:07d}.png" for i, k in enumerate(labels)]
    splits = {h.decode(): SPLIT_NAMES[i % 7 // 3 if i % 7 < 6 else 0] for i, h in enumerate(hashes)}
    first = review_labels(hashes, labels, class_names, sources, LabelLedger.empty())
    known = advance(LabelLedger.empty(), hashes, labels, class_names, "v1", first)
    label_dir, split_dir = workdir / "label-ledger", workdir / "split-ledger"
    label_dir.mkdir(parents=True, exist_ok=True)
    split_dir.mkdir(parents=True, exist_ok=True)
    write_ledger(label_dir, known, {})
    write_split_ledger(split_dir, SplitLedger.from_mapping(splits, SPLIT_NAMES))

    def label_round() -> None:
        ledger = read_ledger(label_dir)
        review = review_labels(hashes, labels, class_names, sources, ledger)
        write_ledger(label_dir, advance(ledger, hashes, labels, class_names, "v2", review), {})

    def split_round() -> None:
        previous = read_split_ledger(split_dir)
        ledger = SplitLedger.from_mapping({**previous, **splits}, SPLIT_NAMES)
        ledger.digest()
        write_split_ledger(split_dir, ledger)

    out = {}
    for name, step in (("label", label_round), ("split", split_round)):
        tracemalloc.start()
        start, cpu_start = time.perf_counter(), cpu_seconds()
        step()
        seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        directory = label_dir if name == "label" else split_dir
        out[name] = {"seconds": seconds, "cpu_seconds": cpu, "peak_bytes": peak,
                     "file_bytes": sum(f.stat().st_size for f in directory.iterdir())}
    return out


def ledgers_markdown(n_images: int, ledgers: dict[str, dict[str, float]]) -> str:
    rows = [f"| {what} | {ledgers[key]['seconds']:.2f} s | {ledgers[key]['cpu_seconds']:.2f} s | "
            f"{ledgers[key]['peak_bytes'] / 1e6:.0f} MB | {ledgers[key]['file_bytes'] / 1e6:.1f} MB |"
            for key, what in (("label", "label ledger: read, review, advance, write"),
                              ("split", "split ledger: read, merge, digest, write"))]
    return "\n".join([
        f"The ledgers (issue 25) at {n_images:,} images, measured alone on synthetic content hashes "
        f"(`python -m benchmarks.bench_scale --ledgers {n_images}`): every image already known, so each "
        "lookup hits. Peak: Python and numpy allocations during the round (tracemalloc), on top of the inputs.",
        "",
        "| ledger round | wall | CPU | peak allocations | on disk |",
        "|---|---:|---:|---:|---:|",
        *rows,
    ])


def run(unit: int, factors: tuple[int, ...], tiny: int, workdir: Path, repeats: int = REPEATS) -> dict:
    from testkit.build_probe import probe_build
    from testkit.fixtures import draw_scale_folder

    sizes = [tiny, *(unit * f for f in factors)]
    largest = workdir / "images-largest"
    started = time.perf_counter()
    draw_scale_folder(largest, max(sizes), workers=os.cpu_count() or 1)
    generated_s = time.perf_counter() - started
    runs = []
    for n in sizes:
        folder = prefix_folder(largest, workdir / f"images-{n}", n) if n != max(sizes) else largest
        best = None
        for _ in range(1 if n == max(sizes) else repeats):  # this machine is shared: the quickest of two
            home = workdir / f"home-{n}"
            result = probe_build(folder, home, ONE_EPOCH)
            shutil.rmtree(home, ignore_errors=True)
            if not result["success"]:
                raise RuntimeError(f"build of {n} images failed: {result['failures']}")
            if best is None or result["wall_seconds"] < best["wall_seconds"]:
                best = result
        runs.append({"n_images": n, "pixel_bytes": n * PIXELS_PER_IMAGE, "bound": memory_bound(n),
                     "wall_seconds": best["wall_seconds"], "cpu_seconds": best["cpu_seconds"],
                     "load_average": max(best["load_average"]), "peak_rss": best["peak_rss"],
                     "steps": {s: best["steps"][s] for s in STEPS if s in best["steps"]},
                     "test_accuracy": best["evaluation_report"].get("accuracy")})
    fixed = runs[0]
    for entry in runs[1:]:
        extra = entry["n_images"] - fixed["n_images"]
        entry["per_image_us"] = 1e6 * (entry["wall_seconds"] - fixed["wall_seconds"]) / extra
        entry["per_image_cpu_us"] = 1e6 * (entry["cpu_seconds"] - fixed["cpu_seconds"]) / extra
        entry["per_image_us_steps"] = {
            s: 1e6 * (entry["steps"][s]["seconds"] - fixed["steps"][s]["seconds"]) / extra for s in entry["steps"]
        }
        entry["per_image_cpu_us_steps"] = {
            s: 1e6 * (entry["steps"][s]["cpu_seconds"] - fixed["steps"][s]["cpu_seconds"]) / extra
            for s in entry["steps"]
        }
    for key in ("per_image_us", "per_image_cpu_us"):
        base = runs[1][key]
        for entry in runs[1:]:
            entry[key.replace("_us", "_ratio")] = entry[key] / base if base > 0 else float("nan")
    decode_size = sizes[2] if len(sizes) > 2 else sizes[-1]  # 4×: where a second process can pay for its start
    decode_folder = workdir / f"images-{decode_size}" if decode_size != max(sizes) else largest
    return {"unit": unit, "factors": list(factors), "tiny": tiny, "repeats": repeats, "generated_seconds": generated_s,
            "decode": measure_decode(decode_folder), "runs": runs,
            "ledgers": measure_ledgers(max(sizes), workdir / "ledgers")}


def markdown(results: dict) -> str:
    runs = results["runs"]
    fixed, scaled = runs[0], runs[1:]
    gb = 1e9
    size_rows = [
        f"| {r['n_images']:,} ({r['n_images'] // results['unit']}×) | {r['pixel_bytes'] / 1e6:.1f} MB | "
        f"{r['wall_seconds']:.1f} s | {r['per_image_us']:.0f} µs | {r['per_image_ratio']:.2f} | "
        f"{r['cpu_seconds']:.1f} s | {r['per_image_cpu_us']:.0f} µs | {r['per_image_cpu_ratio']:.2f} | "
        f"{r['load_average']:.1f} | {r['peak_rss'] / gb:.2f} GB | {r['bound'] / gb:.2f} GB | "
        f"{r['peak_rss'] / r['bound']:.2f} |"
        for r in scaled
    ]
    header = "| step | " + " | ".join(f"{r['n_images']:,}" for r in runs) + " |"
    rule = "|---|" + "---:|" * len(runs)
    time_rows = [f"| {s} | " + " | ".join(f"{r['steps'][s]['seconds']:.1f} / {r['steps'][s]['cpu_seconds']:.1f}"
                                          for r in runs) + " |" for s in STEPS]
    rss_rows = [f"| {s} | " + " | ".join(f"{r['steps'][s]['peak_rss'] / gb:.2f}" for r in runs) + " |"
                for s in STEPS]
    per_image_rows = [
        f"| {s} | " + " | ".join(f"{r['per_image_us_steps'][s]:.1f} / {r['per_image_cpu_us_steps'][s]:.1f}"
                                 for r in scaled) + " |"
        for s in STEPS
    ]
    decode = results["decode"]
    speedup = decode["2"]["images_per_s"] / decode["1"]["images_per_s"]
    return "\n".join([
        "## Scale: the whole build at 1×, 4× and 16×",
        "",
        f"build_job on generated folders of 32×32 grayscale PNGs in three classes (1× = {results['unit']:,} "
        "images), each in a fresh interpreter and artifact home, training cut to one epoch of one trial "
        "(run config) so the data path shows. Per-image cost = (wall − wall of the tiny run) / (images − "
        f"{fixed['n_images']}); the tiny run ({fixed['n_images']} images) took {fixed['wall_seconds']:.1f} s. Each "
        f"size but the largest is built {results['repeats']} time(s) and the quickest build is shown (the machine "
        "is shared). "
        "Peak RSS: the process and its decode workers, sampled every 5 ms (and the kernel's ru_maxrss); "
        "bound: 3 × uint8 pixels + 1 GB. The machine is shared with other sessions (load average: the larger of "
        "the values before and after the build, 2 cores): wall time depends on them, CPU time much less.",
        "",
        "| images | uint8 pixels | wall | per image | ratio to 1× (goal ≤ 1.3) | CPU | CPU per image | CPU ratio "
        "to 1× | load average | peak RSS | bound | peak / bound |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *size_rows,
        "",
        "Seconds per step, wall / CPU (the process and its decode workers):",
        "",
        header, rule, *time_rows,
        "",
        "Peak RSS per step (GB):",
        "",
        header, rule, *rss_rows,
        "",
        "Per-image cost per step after the tiny run's fixed cost, wall / CPU (µs):",
        "",
        "| step | " + " | ".join(f"{r['n_images']:,}" for r in scaled) + " |",
        "|---|" + "---:|" * len(scaled),
        *per_image_rows,
        "",
        f"Decoding the {decode['1']['images']:,}-image folder (listing + decode, best of 2, the pool's start "
        f"included): 1 process {decode['1']['images_per_s']:,.0f} images/s, 2 processes "
        f"{decode['2']['images_per_s']:,.0f} images/s: **{speedup:.2f}×** (load average "
        f"{decode['1']['load_average']:.1f} and {decode['2']['load_average']:.1f}). CPU seconds: 1 process "
        f"{decode['1']['cpu_seconds']:.2f} s, 2 processes {decode['2']['cpu_seconds']:.2f} s in all. With the "
        "default `decode_workers: 0`, "
        "a folder gets one process per core but at most one per 10,000 files, since starting a worker costs "
        "about what decoding a few thousand images does.",
        "",
        ledgers_markdown(runs[-1]["n_images"], results["ledgers"]),
    ])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, BENCHMARKS.md untouched")
    parser.add_argument("--unit", type=int, help=f"images at 1× (default {UNIT:,})")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument("--workdir", type=Path, help="where folders and homes go (default: a temporary directory)")
    parser.add_argument("--ledgers", type=int, metavar="N",
                        help="only the ledgers' cost at N images (their own section of BENCHMARKS.md)")
    args = parser.parse_args(argv)
    if args.ledgers:
        with tempfile.TemporaryDirectory(dir=args.workdir) as scratch:
            ledgers = measure_ledgers(args.ledgers, Path(scratch))
        report = "## Scale: the ledgers alone\n\n" + ledgers_markdown(args.ledgers, ledgers)
        write_section("bench_scale_ledgers", report)
        print(report)
        return {"n_images": args.ledgers, "ledgers": ledgers, "markdown": report}
    unit, factors, tiny = (SMOKE_UNIT, SMOKE_FACTORS, SMOKE_TINY) if args.smoke else (args.unit or UNIT, FACTORS, TINY)
    with tempfile.TemporaryDirectory(dir=args.workdir) as scratch:
        results = run(unit, factors, tiny, Path(scratch), repeats=1 if args.smoke else REPEATS)
    results["markdown"] = markdown(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if not args.smoke:
        write_section("bench_scale", results["markdown"])
    print(results["markdown"])
    return results


if __name__ == "__main__":
    main()
