"""Journal benchmark (issue 34): what handing every logged prediction to the kernel before its answer costs.

The service as committed (the inference log journals each batch with one ``writev`` before the answer) against
the same service at the last commit before the journal (rows buffered in memory and written every 2 s, so a
killed service lost the unwritten ones), both served from this run's registry, in alternating order, a few
rounds each. Load: ``wrk`` closed loop at c=64, single-image requests (as in ``bench_serving``); the figure is
the median throughput of each, and their ratio. Goal: durable ≥ 0.9 × buffered. The machine's load average is
recorded beside each level (other work on a shared machine moves these figures).

    python -m benchmarks.bench_journal [--duration 8] [--rounds 3] [--baseline GIT_REV]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.bench_serving import (
    SETTINGS,
    build_registry,
    require_wrk,
    run_wrk,
    write_bodies,
)
from benchmarks.report import median, write_section

ROOT = Path(__file__).resolve().parents[1]
JOURNAL_MODULE = "mlops_assets/core/serving/inference_journal.py"
CONNECTIONS = 64
GOAL_RATIO = 0.9


def baseline_revision() -> str:
    """The commit before the journal was added (the buffered writer)."""
    added = subprocess.run(["git", "log", "--diff-filter=A", "--format=%H", "--", JOURNAL_MODULE], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    if not added:
        raise SystemExit(f"{JOURNAL_MODULE} is not in this checkout's history; pass --baseline REV")
    return subprocess.run(["git", "rev-parse", "--short", f"{added[-1]}^"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()


def export_tree(revision: str, target: Path) -> Path:
    """The repository at ``revision`` as plain files (``git archive``), to serve the baseline service from."""
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", revision], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def measure(model, tree: Path, name: str, root: Path, bodies: Path, duration_s: float) -> dict[str, float]:
    """One server from ``tree`` (its own artifact root), a warm-up, then c=64 for ``duration_s``."""
    from mlops_assets.infra.bento_server import SERVICE_TARGET, serve_bento_process

    artifacts = root / f"artifacts-{name}"
    env = {"MLOPS_FOLLOW_PRODUCTION": "0", "BENTOML_HOME": str(model.home), "MLOPS_HOME": str(root),
           "MLOPS_ARTIFACT_ROOT": str(artifacts), "PYTHONPATH": str(tree), **SETTINGS["default"][0]}
    with serve_bento_process(SERVICE_TARGET, model.home, root / f"{name}.log", env=env, cwd=tree,
                             ready_timeout_s=120.0) as (url, _):
        run_wrk(url, 1, 1, bodies)  # warm-up
        load_before = os.getloadavg()[0]
        result = run_wrk(url, CONNECTIONS, duration_s, bodies)
        result["load_before"], result["load_after"] = load_before, os.getloadavg()[0]
    return result


def hot_path_us(writer_module_path: Path, images, root: Path, calls: int = 3000) -> dict[int, float]:
    """CPU µs (this thread's) per ``log_images`` call of the writer in ``writer_module_path``, for batches of 1
    and 16 images; the background thread converts nothing meanwhile (its interval is an hour)."""
    import importlib.util
    import time
    from datetime import UTC, datetime

    from mlops_assets.core.serving.prediction_ids import new_prediction_ids

    spec = importlib.util.spec_from_file_location(f"writer_{root.name}", writer_module_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    figures = {}
    for batch in (1, 16):
        chunk = images[:batch]
        writer = module.InferenceLogWriter(root / f"b{batch}", flush_interval_s=3600, flush_rows=10**9,
                                           max_queue_rows=10**9)
        labels, confidences = ["1"] * batch, [0.9] * batch
        began = time.thread_time()
        for _ in range(calls):
            now = datetime.now(UTC)
            writer.log_images(chunk, labels, confidences, "v1", None, new_prediction_ids(batch, now), now)
        figures[batch] = (time.thread_time() - began) / calls * 1e6
        writer.close(120)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of c=64 load per server")
    parser.add_argument("--rounds", type=int, default=3, help="servers of each kind, alternating")
    parser.add_argument("--baseline", default=None, help="git revision of the buffered writer (default: the "
                                                         "commit before the journal)")
    args = parser.parse_args(argv)
    require_wrk()
    revision = args.baseline or baseline_revision()
    with tempfile.TemporaryDirectory(prefix="bench-journal-") as tmp:
        root = Path(tmp)
        model = build_registry(root)
        bodies = write_bodies(model.images, root / "bodies.jsonl")
        trees = {"buffered": export_tree(revision, root / "baseline"), "durable": ROOT}
        writer_file = Path("mlops_assets/core/serving/inference_log_writer.py")
        hot = {name: hot_path_us(tree / writer_file, model.images, root / f"hot-{name}")
               for name, tree in trees.items()}
        print(f"log_images CPU per call: {hot}", flush=True)
        runs: dict[str, list[dict[str, float]]] = {"buffered": [], "durable": []}
        for round_ in range(args.rounds):
            order = ("buffered", "durable") if round_ % 2 == 0 else ("durable", "buffered")
            for name in order:
                result = measure(model, trees[name], f"{name}-{round_}", root, bodies, args.duration)
                runs[name].append(result)
                print(f"round {round_} {name}: {result['rps']:.0f} req/s, p99 {result['p99_ms']:.1f} ms, "
                      f"non-2xx {result['non_2xx']:.0f}, load {result['load_before']:.2f}", flush=True)
    write_section("bench_journal", render(runs, hot, revision, args.duration))
    ratio = median([r["rps"] for r in runs["durable"]]) / median([r["rps"] for r in runs["buffered"]])
    print(f"durable / buffered throughput at c={CONNECTIONS}: {ratio:.2f} (goal ≥ {GOAL_RATIO})")
    return 0


def render(runs: dict[str, list[dict[str, float]]], hot: dict[str, dict[int, float]], revision: str,
           duration_s: float) -> str:
    rows = ["| writer | round | req/s | p50 ms | p99 ms | non-2xx | load avg (1 min) before → after |",
            "|---|---|---|---|---|---|---|"]
    for name, results in runs.items():
        for i, r in enumerate(results):
            rows.append(f"| {name} | {i} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                        f"{r['non_2xx']:.0f} | {r['load_before']:.2f} → {r['load_after']:.2f} |")
    durable = median([r["rps"] for r in runs["durable"]])
    buffered = median([r["rps"] for r in runs["buffered"]])
    ratio = durable / buffered
    verdict = "meets" if ratio >= GOAL_RATIO else "misses"
    return "\n".join([
        "## Inference journal: durable vs buffered logging (issue 34)",
        "",
        f"`python -m benchmarks.bench_journal`: the service as committed (each logged batch handed to the kernel "
        f"with one `writev` before its answer) against the service at `{revision}` (rows buffered in memory, "
        f"written every 2 s), same registry, default settings, alternating servers; `wrk -t1 -c{CONNECTIONS} "
        f"-d{duration_s:g}s`, one image per request.",
        "",
        *rows,
        "",
        f"Median throughput: durable {durable:.0f} req/s, buffered {buffered:.0f} req/s: **{ratio:.2f}×** "
        f"({verdict} the goal of ≥ {GOAL_RATIO}×). The load average beside each level is the machine's: on a shared "
        "machine the spread between rounds of one writer can exceed the difference between the writers.",
        "",
        "What the request's thread pays per logged batch (`log_images`, CPU time of the calling thread, "
        "in-process, same run): "
        + "; ".join(f"{name}: {figures[1]:.0f} µs for 1 image, {figures[16]:.0f} µs for 16"
                    for name, figures in hot.items()) + ".",
        "",
        "The journal is not fsync'ed: a killed process loses no answered prediction; a power loss or a kernel "
        "crash can still take what the kernel had not written to the disk.",
    ])


if __name__ == "__main__":
    sys.exit(main())
