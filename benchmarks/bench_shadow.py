"""Shadow serving benchmark (issue 37): what mirroring every request to a shadow model costs the client.

A registry is built by the real build and deploy assets (a short training run); the production version's model is
registered a second time as the challenger (the same network: the shadow does exactly production's work, the worst
case for a shadow no cheaper than production). One server, as committed (workers = cores, following the registry's
slots), answers every level; between levels the registry's shadow slot is set or cleared, and the level starts once
every worker reports the slot's version (its status file). Rounds alternate the two modes in the same run:

- c=1: single-image ``/classify`` one after the other on one keep-alive connection, every request timed by the
  client (``bench_serving.lone_request_timeline``: what a client sees; wrk's c=1 percentiles are corrected for
  coordinated omission, which reads a few stalls as a high p99), p50 and p99 with and without the shadow;
- c=64: throughput with and without the shadow (the ratio), workers = cores;
- the mirrored share at each level: the served predictions of the level (``inference_log``) whose id the shadow
  answered too (``shadow_log``), read from the logs once the mirror and the writer have drained.

Goals: ≤ 2 ms added p99 at c=1 with ≥ 99 % of requests mirrored; c=64 throughput ≥ 0.9× (and its mirrored share
said).

    python -m benchmarks.bench_shadow [--duration 8] [--rounds 3] [--smoke] [--report FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks import bench_serving
from benchmarks.report import median, publish
from mlops_assets.core.common import settings

GOAL_ADDED_P99_MS = 2.0
GOAL_MIRRORED = 0.99
GOAL_RATIO = 0.9
CONCURRENCY = 64
MODES = ("no shadow", "shadow")


@dataclass
class ModeRun:
    """One mode's levels over the rounds: each a wrk result plus ``mirrored`` (the share the shadow answered)."""

    mode: str
    c1: list[dict[str, float]] = field(default_factory=list)
    c64: list[dict[str, float]] = field(default_factory=list)

    def figure(self, level: str, key: str) -> float:
        values = [run[key] for run in getattr(self, level) if run.get(key) is not None]
        return median(values) if values else float("nan")

    def failed(self) -> int:
        return sum(int(run["failed"]) for run in self.c1) + sum(int(run["non_2xx"] + run["socket_errors"])
                                                                  for run in self.c64)


def register_challenger(model: bench_serving.Model) -> str:
    """Production's network registered again as a challenger version, with a release test on record (its Bento
    would be production's: testkit's fixture release test); the version's name."""
    from mlops_assets.core.registry.registry import ModelRegistry
    from testkit.release_tests import record_release_test_without_a_bento

    registry = ModelRegistry(model.home, settings.resolve(settings.MODEL_NAME))
    production = registry.get(model.version)
    challenger = f"{model.version}-challenger"
    registry.register(production.onnx_path, challenger, dict(production.labels), dict(production.metadata))
    record_release_test_without_a_bento(registry, challenger)
    return challenger


def switch_shadow(model: bench_serving.Model, version: str | None, workers: int, timeout_s: float = 60.0) -> None:
    """Set (or clear) the registry's shadow slot, then wait until every worker reports scoring with it."""
    from mlops_assets.core.registry.registry import ModelRegistry
    from mlops_assets.core.serving.serving_status import read_statuses

    registry = ModelRegistry(model.home, settings.resolve(settings.MODEL_NAME))
    if version is None:
        registry.clear_shadow(reason="bench_shadow: the level without a shadow", actor="bench_shadow")
    else:
        registry.set_shadow(version, reason="bench_shadow: the level with a shadow", actor="bench_shadow")
    artifacts = model.home.parent / "artifacts"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        statuses = read_statuses(artifacts).statuses
        if len(statuses) >= workers and all(s.get("shadow_version") == version for s in statuses):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the service's workers did not report shadow {version} within {timeout_s:g} s: "
                       f"{read_statuses(artifacts).statuses}")


def mirrored_share(artifacts: Path, start: datetime, end: datetime, settle_s: float = 3.0,
                   timeout_s: float = 60.0) -> float:
    """The share of the predictions served in [start, end) the shadow answered, once the logs stop growing."""
    from mlops_assets.core.data.features import PREDICTION_ID
    from mlops_assets.core.serving.inference_log import LOG_KIND, SHADOW_KIND, read_window

    last, stable_since, deadline = (-1, -1), time.monotonic(), time.monotonic() + timeout_s
    served, shadowed = set(), set()
    while time.monotonic() < deadline:
        served = set(read_window(artifacts, start, end, LOG_KIND, [PREDICTION_ID]).get(PREDICTION_ID, []))
        shadowed = set(read_window(artifacts, start, end, SHADOW_KIND, [PREDICTION_ID]).get(PREDICTION_ID, []))
        counts = (len(served), len(shadowed))
        if counts != last:
            last, stable_since = counts, time.monotonic()
        elif time.monotonic() - stable_since >= settle_s:
            break
        time.sleep(0.5)
    return len(served & shadowed) / len(served) if served else float("nan")


def level(url: str, pid: int, connections: int, duration_s: float, bodies: Path, artifacts: Path) -> dict:
    """One level and its mirrored share: c=1 timed by this client, c>1 by wrk."""
    start = datetime.now(UTC)
    if connections == 1:
        body = bodies.read_text().splitlines()[0].encode()
        result = bench_serving.lone_request_timeline(url, body, duration_s)
    else:
        result = bench_serving.run_level(url, pid, connections, duration_s, bodies)
    result["mirrored"] = mirrored_share(artifacts, start - timedelta(seconds=1), datetime.now(UTC))
    return result


def measure(model: bench_serving.Model, root: Path, duration_s: float, rounds: int) -> dict[str, ModeRun]:
    challenger = register_challenger(model)
    workers = settings.service_workers()
    bodies = bench_serving.write_bodies(model.images, root / "bodies.jsonl")
    artifacts = model.home.parent / "artifacts"
    runs = {mode: ModeRun(mode) for mode in MODES}
    env = {"MLOPS_FOLLOW_PRODUCTION": "1", "BENTOML_HOME": str(model.home), "MLOPS_HOME": str(model.home.parent),
           "MLOPS_ARTIFACT_ROOT": str(artifacts)}
    from mlops_assets.infra.bento_server import SERVICE_TARGET, serve_bento_process

    with serve_bento_process(SERVICE_TARGET, model.home, root / "server.log", env=env, ready_timeout_s=120.0) as (
            url, process):
        for index in range(rounds):
            order = MODES if index % 2 == 0 else MODES[::-1]  # alternate which mode goes first
            for mode in order:
                switch_shadow(model, challenger if mode == "shadow" else None, workers)
                bench_serving.run_wrk(url, 1, min(1.0, duration_s), bodies)  # warm the mode
                runs[mode].c1.append(level(url, process.pid, 1, duration_s, bodies, artifacts))
                runs[mode].c64.append(level(url, process.pid, CONCURRENCY, duration_s, bodies, artifacts))
                print(f"  round {index + 1} {mode}: c=1 p99 {runs[mode].c1[-1]['p99_ms']:.2f} ms, c={CONCURRENCY} "
                      f"{runs[mode].c64[-1]['rps']:.0f} req/s, mirrored {runs[mode].c1[-1]['mirrored']:.3f} / "
                      f"{runs[mode].c64[-1]['mirrored']:.3f}", flush=True)
    return runs


def render(runs: dict[str, ModeRun], workers: int, duration_s: float, rounds: int,
           load_before: tuple[float, float, float], elapsed_s: float) -> str:
    off, on = runs["no shadow"], runs["shadow"]
    lines = [
        "## Shadow serving (`bench_shadow`)",
        "",
        f"`python -m benchmarks.bench_shadow`: one server as committed ({workers} workers = cores, following the "
        "registry's slots), single-image `/classify` (c=1: one keep-alive client timing every request; c=64: wrk), "
        "the shadow slot set (production's network registered "
        "again: the shadow does production's work) or cleared between levels, "
        f"{rounds} alternating round(s) of {duration_s:g} s levels, medians. Mirrored: the level's served predictions "
        "the shadow answered too, read from `inference_log` and `shadow_log`.",
        "",
        f"| mode | c=1 p50 ms | c=1 p99 ms | c=1 mirrored | c={CONCURRENCY} req/s | c={CONCURRENCY} p99 ms "
        f"| c={CONCURRENCY} mirrored | non-2xx |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in (off, on):
        mirrored = ("—", "—") if run is off else (f"{run.figure('c1', 'mirrored'):.3f}",
                                                  f"{run.figure('c64', 'mirrored'):.3f}")
        lines.append(f"| {run.mode} | {run.figure('c1', 'p50_ms'):.2f} | {run.figure('c1', 'p99_ms'):.2f} | "
                     f"{mirrored[0]} | {run.figure('c64', 'rps'):.0f} | {run.figure('c64', 'p99_ms'):.1f} | "
                     f"{mirrored[1]} | {run.failed()} |")
    added = on.figure("c1", "p99_ms") - off.figure("c1", "p99_ms")
    share1, share64 = on.figure("c1", "mirrored"), on.figure("c64", "mirrored")
    ratio = on.figure("c64", "rps") / off.figure("c64", "rps") if off.figure("c64", "rps") else float("nan")
    verdicts = [
        f"the shadow adds {added:+.2f} ms to the c=1 p99 ({'meets' if added <= GOAL_ADDED_P99_MS else 'misses'} "
        f"the goal ≤ {GOAL_ADDED_P99_MS:g} ms)",
        f"{100 * share1:.1f} % of c=1 requests mirrored ({'meets' if share1 >= GOAL_MIRRORED else 'misses'} the "
        f"goal ≥ {100 * GOAL_MIRRORED:g} %)",
        f"c={CONCURRENCY} throughput {ratio:.2f}× ({'meets' if ratio >= GOAL_RATIO else 'misses'} the goal ≥ "
        f"{GOAL_RATIO:g}×), {100 * share64:.1f} % of its requests mirrored (the rest dropped by the shadow's bounded "
        "queue, never the client's request)",
    ]
    lines += ["", "**Against the goals.** " + "; ".join(verdicts) + ".",
              "", f"Load average before the run: {', '.join(f'{v:.2f}' for v in load_before)} (1, 5, 15 min); "
                  f"the run took {elapsed_s:.0f} s."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="What mirroring every request to a shadow costs the client.")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per wrk level (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of both modes (default 3)")
    parser.add_argument("--smoke", action="store_true", help="CI mode: 1 s levels, one round")
    parser.add_argument("--report", default=None, help="write the section to this file instead of BENCHMARKS.md")
    parser.add_argument("--no-write", action="store_true", help="print the section, leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    if args.smoke:
        args.duration, args.rounds = 1.0, 1
    bench_serving.require_wrk()
    load_before = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_shadow_") as tmp:
        root = Path(tmp)
        print("building a registry of 8×8 digits ...", flush=True)
        model = bench_serving.build_registry(root / "digits")
        runs = measure(model, root, args.duration, args.rounds)
    body = render(runs, settings.service_workers(), args.duration, args.rounds, load_before,
                  time.perf_counter() - started)
    publish("bench_shadow", body, args.report, args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
