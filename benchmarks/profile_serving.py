"""Where a request's CPU goes in the service, and what a lone request waits on: py-spy under wrk load.

Two measurements on one freshly started server with one worker (the worker's process is sampled):

1. **Breakdown.** ``py-spy record`` samples the worker at 250 Hz while ``wrk`` loads ``POST /classify`` at a
   concurrency; every sample's stack is put in one category by its innermost frame that matches one
   (model, validation, JSON, batching dispatcher, inference log, tracing, metrics, access log, HTTP server and
   event loop, the rest of BentoML, the rest), so the shares add up to 100 % of the worker's busy samples.
2. **The c=1 tail.** A closed-loop client at c=1 records each request's latency and start time; the slow
   requests (over 10× the median) are listed with the gaps between them, so a periodic cause shows as a
   regular gap.

    python -m benchmarks.profile_serving [--duration 10] [--target floor|service] [--concurrency 1,64]

Not part of ``make bench`` (it needs ptrace, and it is a diagnosis, not a figure to track): its findings are
written by hand into BENCHMARKS.md's serving section.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks import bench_serving as bench

# Innermost-first: a sample belongs to the first category whose pattern is in the deepest matching frame.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("model (onnxruntime)", ("onnxruntime",)),
    ("inference log", ("inference_log.py", "features.py", "pyarrow", "pandas")),
    ("validation (pydantic, bentos/validation)", ("pydantic", "bentos/validation.py", "request_guard.py")),
    ("JSON encode/decode", ("json/", "orjson", "jsonable", "serializ")),
    ("batching dispatcher", ("marshal/dispatcher.py",)),
    ("tracing (OpenTelemetry)", ("opentelemetry",)),
    ("metrics (Prometheus)", ("prometheus", "metrics")),
    ("access log / logging", ("logging/", "access.py", "/log.py")),
    ("HTTP server and event loop (uvicorn, starlette, asyncio)", ("uvicorn", "h11", "httptools", "starlette",
                                                                  "asyncio", "uvloop", "anyio")),
    ("BentoML, other", ("bentoml", "_bentoml_impl", "_bentoml_sdk")),
]


def categorise(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):  # innermost first
        for name, patterns in CATEGORIES:
            if any(p in frame for p in patterns):
                return name
    return "other"


def breakdown(raw: Path) -> tuple[dict[str, float], dict[str, list[tuple[str, float]]]]:
    """py-spy's raw (collapsed) output → share of samples per category, and each category's top frames (the
    deepest frame of the category in each stack) with their shares."""
    counts: collections.Counter[str] = collections.Counter()
    frames: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            category = categorise(stack)
            counts[category] += int(count)
            frames[category][category_frame(stack, category)] += int(count)
    total = sum(counts.values()) or 1
    shares = {name: counts[name] / total for name, _ in [*CATEGORIES, ("other", ())] if counts[name]}
    tops = {name: [(frame, n / total) for frame, n in frames[name].most_common(4)] for name in shares}
    return shares, tops


def category_frame(stack: str, category: str) -> str:
    patterns = dict(CATEGORIES).get(category, ())
    for frame in reversed(stack.split(";")):
        if not patterns or any(p in frame for p in patterns):
            return frame.split(" (")[0] + " (" + frame.rsplit("/", 1)[-1] if "(" in frame else frame
    return stack.split(";")[-1]


def worker_pid(server_pid: int) -> int:
    """The BentoML worker under ``bentoml serve`` (``_bentoml_impl.worker.service``)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if "_bentoml_impl.worker.service" in cmdline and int(pid) != server_pid:
                return int(pid)
        time.sleep(0.2)
    raise RuntimeError("no BentoML worker process found")


def profile_level(url: str, worker: int, connections: int, duration_s: float, bodies: Path, out: Path) -> Path:
    raw = out / f"pyspy_c{connections}.txt"
    spy = subprocess.Popen([shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"), "record",
                            "--pid", str(worker), "--rate", "250", "--format", "raw", "--duration",
                            str(int(duration_s)), "--nonblocking", "--output", str(raw)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    bench.run_wrk(url, connections, duration_s - 1, bodies)
    _, err = spy.communicate(timeout=duration_s + 30)
    if not raw.exists():
        raise RuntimeError(f"py-spy wrote nothing (ptrace allowed?): {err[-2000:]}")
    return raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--target", choices=("floor", "service"), default="service")
    parser.add_argument("--setting", default="workers1", help="a bench_serving setting (1 worker by default)")
    parser.add_argument("--concurrency", default="1,64")
    parser.add_argument("--extra-env", default="", help="KEY=VALUE,... added to the server's environment")
    args = parser.parse_args(argv)
    extra = dict(kv.split("=", 1) for kv in args.extra_env.split(",") if kv)
    bench.SETTINGS["profile"] = ({**bench.SETTINGS[args.setting][0], **extra}, "profiled")
    with tempfile.TemporaryDirectory(prefix="profile_serving_") as tmp:
        root = Path(tmp)
        model = bench.build_registry(root)
        bodies = bench.write_bodies(model.images, root / "bodies.jsonl")
        target = bench.FLOOR_TARGET if args.target == "floor" else None
        with bench.serve_bentoml(model, "profile", root / "server.log", target) as (url, server):
            worker = worker_pid(server)
            bench.run_wrk(url, 1, 1, bodies)
            for c in (int(v) for v in args.concurrency.split(",")):
                shares, tops = breakdown(profile_level(url, worker, c, args.duration, bodies, root))
                print(f"\n{args.target} c={c}: share of the worker's busy samples")
                for name, share in sorted(shares.items(), key=lambda kv: -kv[1]):
                    print(f"  {share * 100:5.1f} %  {name}")
                    for frame, frame_share in tops[name]:
                        print(f"           {frame_share * 100:5.1f} %  {frame}")
            timeline = bench.lone_request_timeline(url, bodies.read_text().splitlines()[0].encode(), args.duration)
            print(f"\n{args.target} c=1 timeline: {timeline}")
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "profile_serving"
    sys.exit(main())
