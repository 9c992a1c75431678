"""Explanation benchmark (issue 39): what ``/explain`` costs, and what it costs ``/classify``.

For each input size (8×8 digits, and 32×32 generated shapes), a registry is built from scratch by the real build
and deploy assets (a short training run; the evaluation report checks the version's explanations, and the service
explains only a version whose check passed), and the service is started as committed (workers = cores):

- ``/explain`` latency at concurrency 1: one request after the other (keep-alive), p50 and p95;
- ``/classify`` throughput at concurrency 64 (wrk, single-image requests, as ``bench_serving``), alone and while
  one client explains one image after the other at the same time; rounds alternate, the medians are compared.

Goals: ``/explain`` p95 ≤ 250 ms at 32×32; ``/classify`` at c=64 keeps ≥ 0.8× its throughput while explanations run.

    python -m benchmarks.bench_explain [--duration 8] [--rounds 2] [--smoke] [--report FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks import bench_serving
from benchmarks.report import median, publish
from mlops_assets.core.common import settings
from mlops_assets.tools.simulator import auth_headers

GOAL_P95_MS = 250.0
GOAL_RATIO = 0.8
CONCURRENCY = 64
SHAPES_32 = 900  # generated 32×32 images (three classes) for the 32×32 build


@dataclass
class SizeRun:
    """One input size's figures."""

    name: str
    shape: tuple[int, int, int]
    version: str
    check: str  # the version's stored explanation check
    latencies_ms: list[float] = field(default_factory=list)  # /explain at c=1, nothing else running
    alone: list[dict[str, float]] = field(default_factory=list)  # /classify c=64 levels without explanations
    loaded: list[dict[str, float]] = field(default_factory=list)  # ... while one client explains
    during_ms: list[float] = field(default_factory=list)  # /explain latencies while /classify is at c=64
    failed: int = 0  # /explain answers that were not 200, anywhere

    @property
    def ratio(self) -> float:
        alone = median([level["rps"] for level in self.alone])
        return median([level["rps"] for level in self.loaded]) / alone if alone else 0.0


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


class ExplainClient:
    """One client posting ``/explain`` bodies one after the other (a keep-alive connection)."""

    def __init__(self, url: str, images: np.ndarray) -> None:
        import httpx

        headers = auth_headers(settings.resolve(settings.API_TOKEN))
        self.client = httpx.Client(base_url=url, timeout=60, headers=headers)
        self.bodies = [{"image": image.tolist()} for image in images]
        self.sent = 0
        self.failed = 0
        self.last_error = ""

    def once(self) -> float:
        """One explanation; its latency in ms (a failure is counted, and its latency still returned)."""
        body = self.bodies[self.sent % len(self.bodies)]
        self.sent += 1
        start = time.perf_counter()
        response = self.client.post("/explain", json=body)
        elapsed = (time.perf_counter() - start) * 1000
        if response.status_code != 200:
            self.failed += 1
            self.last_error = f"{response.status_code}: {response.text[:300]}"
        return elapsed

    def for_seconds(self, seconds: float, max_requests: int) -> list[float]:
        deadline = time.perf_counter() + seconds
        out: list[float] = []
        while time.perf_counter() < deadline and len(out) < max_requests:
            out.append(self.once())
        return out

    def close(self) -> None:
        self.client.close()


def explaining_meanwhile(client: ExplainClient, stop: threading.Event, out: list[float]) -> threading.Thread:
    def loop() -> None:
        while not stop.is_set():
            out.append(client.once())

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def measure_size(name: str, model: bench_serving.Model, root: Path, duration_s: float, rounds: int,
                 latency_s: float, max_latency_requests: int) -> SizeRun:
    from mlops_assets.core.registry.registry import ModelRegistry

    version = ModelRegistry(model.home, settings.resolve(settings.MODEL_NAME)).get(model.version)
    run = SizeRun(name, model.shape, model.version, str(version.metadata.get("explanations", {}).get("reason")))
    bodies = bench_serving.write_bodies(model.images, root / f"bodies_{name}.jsonl")
    with bench_serving.serve_bentoml(model, "default", root / f"server_{name}.log") as (url, pid):
        client = ExplainClient(url, model.images)
        try:
            for _ in range(3):  # warm: first-call caches, the explanation thread
                client.once()
            if client.failed:
                raise RuntimeError(f"/explain refused the {name} model's explanations: {client.last_error}")
            run.latencies_ms = client.for_seconds(latency_s, max_latency_requests)
            for _ in range(rounds):
                run.alone.append(bench_serving.run_level(url, pid, CONCURRENCY, duration_s, bodies))
                stop = threading.Event()
                during: list[float] = []
                thread = explaining_meanwhile(client, stop, during)
                try:
                    run.loaded.append(bench_serving.run_level(url, pid, CONCURRENCY, duration_s, bodies))
                finally:
                    stop.set()
                    thread.join(timeout=120)
                run.during_ms.extend(during)
            run.failed = client.failed
        finally:
            client.close()
    print(f"  {name}: /explain p50 {percentile(run.latencies_ms, 50):.1f} ms, p95 "
          f"{percentile(run.latencies_ms, 95):.1f} ms; /classify c={CONCURRENCY} ratio {run.ratio:.2f}", flush=True)
    return run


def render(runs: list[SizeRun], duration_s: float, rounds: int, load_before: tuple[float, float, float],
           elapsed_s: float) -> str:
    lines = [
        "## Explanations (`/explain`)",
        "",
        "`python -m benchmarks.bench_explain`: the service as committed (workers = cores, explanations in one "
        "thread per worker at nice 10), a model built by the real build for each input size. Latency: `/explain` "
        "one request after the other (c=1), nothing else running. Throughput: `/classify` single images at "
        f"c={CONCURRENCY} (wrk, {duration_s:g} s levels, {rounds} alternating rounds, medians), alone and while one "
        "client explains one image after the other.",
        "",
        f"| input | /explain p50 ms | p95 ms | n | /classify c={CONCURRENCY} alone req/s | with explanations req/s "
        "| ratio | explanations during the load: n, p50 / p95 ms | non-2xx (/explain, /classify) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        alone = median([level["rps"] for level in run.alone])
        loaded = median([level["rps"] for level in run.loaded])
        classify_failed = sum(int(level["non_2xx"] + level["socket_errors"]) for level in run.alone + run.loaded)
        lines.append(
            f"| {'×'.join(map(str, run.shape))} (`{run.version}`) | {percentile(run.latencies_ms, 50):.1f} | "
            f"{percentile(run.latencies_ms, 95):.1f} | {len(run.latencies_ms)} | {alone:.0f} | {loaded:.0f} | "
            f"{run.ratio:.2f} | {len(run.during_ms)}, {percentile(run.during_ms, 50):.0f} / "
            f"{percentile(run.during_ms, 95):.0f} | {run.failed} / {classify_failed} |")
    lines.append("")
    for run in runs:
        lines.append(f"- {run.name}: the version's explanation check: {run.check}.")
    verdicts = []
    big = [run for run in runs if run.shape[1:] == (32, 32)]
    for run in big:
        p95 = percentile(run.latencies_ms, 95)
        verdicts.append(f"p95 at 32×32 {p95:.0f} ms ({'meets' if p95 <= GOAL_P95_MS else 'misses'} the goal "
                        f"≤ {GOAL_P95_MS:g} ms)")
    for run in runs:
        verdicts.append(f"/classify keeps {run.ratio:.2f}× its c={CONCURRENCY} throughput at {run.name} "
                        f"({'meets' if run.ratio >= GOAL_RATIO else 'misses'} the goal ≥ {GOAL_RATIO:g}×)")
    lines += ["", "**Against the goals.** " + "; ".join(verdicts) + ".",
              "", f"Load average before the run: {', '.join(f'{v:.2f}' for v in load_before)} (1, 5, 15 min); "
                  f"the run took {elapsed_s:.0f} s."]
    return "\n".join(lines)


def registry_32(root: Path, n_images: int) -> bench_serving.Model:
    from resources.dataset_source import DatasetSource
    from testkit.fixtures import draw_scale_folder

    folder = draw_scale_folder(root / "images", n_images, size=32, workers=os.cpu_count() or 1)
    source = DatasetSource(kind="image_folder", path=str(folder), height=32, width=32, channels=1)
    return bench_serving.build_registry(root / "home", source)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="/explain latency and its cost to /classify.")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per /classify level (default 8)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds alone / with explanations")
    parser.add_argument("--latency-seconds", type=float, default=15.0, help="seconds of c=1 /explain per size")
    parser.add_argument("--smoke", action="store_true",
                        help="CI mode: 8×8 only, 1 s levels, one round, a few explanations")
    parser.add_argument("--report", default=None, help="write the section to this file instead of BENCHMARKS.md")
    parser.add_argument("--no-write", action="store_true", help="print the section, leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    if args.smoke:
        args.duration, args.rounds, args.latency_seconds = 1.0, 1, 1.0
    bench_serving.require_wrk()
    load_before = os.getloadavg()
    started = time.perf_counter()
    runs: list[SizeRun] = []
    with tempfile.TemporaryDirectory(prefix="bench_explain_") as tmp:
        root = Path(tmp)
        print("building a registry of 8×8 digits ...", flush=True)
        digits = bench_serving.build_registry(root / "digits")
        runs.append(measure_size("8×8", digits, root, args.duration, args.rounds, args.latency_seconds, 300))
        if not args.smoke:
            print(f"building a registry of {SHAPES_32} generated 32×32 images ...", flush=True)
            shapes = registry_32(root / "shapes", SHAPES_32)
            runs.append(measure_size("32×32", shapes, root, args.duration, args.rounds, args.latency_seconds, 300))
    body = render(runs, args.duration, args.rounds, load_before, time.perf_counter() - started)
    publish("bench_explain", body, args.report, args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
