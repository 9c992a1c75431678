"""Run the real ``build_job`` on an image folder in a fresh interpreter and measure each step's time and peak RSS.

The memory test and the scale benchmark share it. :func:`probe_build` starts ``python -m testkit.build_probe``
with ``MLOPS_*`` variables pointing at a temporary home and the folder, so the code location's own resources
are used, exactly as ``make demo`` uses them. Inside, a thread samples the resident set size of the process and
its worker children (the decode pool) every few milliseconds, with its CPU time; each step's peak is the largest
sample between its start and end (Dagster's step stats), its CPU time the difference across them (less sensitive
than wall time to other processes on a shared machine; the load average before and after is reported too). The
process's own ``ru_maxrss`` (the kernel's exact peak) is reported as well, and the peak used for the bound is the
larger of the two.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

SUMMARY_PREFIX = "BUILD_PROBE "
SAMPLE_SECONDS = 0.005


def tree_rss(process) -> int:
    """Resident bytes of ``process`` and its multiprocessing children (see :func:`tree_memory`)."""
    return tree_memory(process)[0]


def tree_memory(process) -> tuple[int, int]:
    """(RSS, PSS) bytes of ``process`` and its multiprocessing children, the decode workers (file-backed pages, e.g.
    memory maps, included). Other children are left out: a short-lived ``git`` between fork and exec shares
    the parent's pages and would count them twice.

    PSS is what the memory bound is judged on: RSS also counts the pages of shared libraries (torch, onnxruntime)
    that the kernel maps in around a fault because another process has them in the page cache. The same imports
    of torch, numpy and onnxruntime read 249 MB of RSS in one virtual environment and 310 MB in a fresh one while
    CI's processes used it, with the same anonymous memory (159 MB): 0.13 GB more RSS on every build step, which
    failed this bound in CI twice. PSS divides a shared page among the processes that map it, so the build's own
    memory (its arrays, memory maps only it uses) counts in full and other processes' libraries do not."""
    import psutil

    rss, pss = _own_memory(process)
    for child in process.children(recursive=True):
        try:
            if any("multiprocessing" in part for part in child.cmdline()):
                child_rss, child_pss = _own_memory(child)
                rss, pss = rss + child_rss, pss + child_pss
        except psutil.Error:  # a child that ended between the listing and the read
            continue
    return rss, pss


def _own_memory(process) -> tuple[int, int]:
    """(RSS, PSS) of one process from /proc/<pid>/smaps_rollup (Linux); elsewhere PSS is taken as RSS."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{process.pid}/smaps_rollup").read_text()
                      .splitlines()[1:] if ":" in line)
        return int(fields["Rss"].split()[0]) * 1024, int(fields["Pss"].split()[0]) * 1024
    except FileNotFoundError as exc:
        if Path("/proc/self/smaps_rollup").exists():  # Linux: the process ended meanwhile
            import psutil

            raise psutil.NoSuchProcess(process.pid) from exc
        rss = process.memory_info().rss
        return rss, rss


def cpu_seconds(process) -> float:
    """CPU time of the process and its ended children (the decode workers, once their pool is shut down)."""
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


class RssSampler(threading.Thread):
    """Samples (wall time, RSS and PSS of the process tree, CPU seconds) until stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        import psutil

        self.process = psutil.Process()
        self.samples: list[tuple[float, int]] = []  # RSS
        self.pss_samples: list[tuple[float, int]] = []
        self.cpu: list[tuple[float, float]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            now = time.time()
            rss, pss = tree_memory(self.process)
            self.samples.append((now, rss))
            self.pss_samples.append((now, pss))
            self.cpu.append((now, cpu_seconds(self.process)))
            self.stopping.wait(SAMPLE_SECONDS)

    def cpu_between(self, start: float, end: float) -> float:
        """CPU seconds spent between two moments (the samples nearest to each)."""
        def at(moment: float) -> float:
            before = [c for t, c in self.cpu if t <= moment]
            return before[-1] if before else 0.0

        return max(0.0, at(end) - at(start))

    def stop(self) -> list[tuple[float, int]]:
        self.stopping.set()
        self.join()
        return self.samples

    def peak(self, start: float, end: float, pss: bool = False) -> int:
        """The largest sample in [start, end]; for a step shorter than a sample, the one just before its end."""
        samples = self.pss_samples if pss else self.samples
        inside = [value for t, value in samples if start <= t <= end]
        before = [value for t, value in samples if t <= end]
        return max(inside, default=before[-1] if before else 0)


def main(run_config: dict) -> dict:
    sampler = RssSampler()
    sampler.start()
    started = time.time()
    import dagster as dg

    from mlops_assets.definitions import defs

    job = defs.resolve_job_def("build_job")
    imported_rss = tree_rss(sampler.process)
    load_before = os.getloadavg()[0]
    with dg.DagsterInstance.ephemeral() as instance:
        run_start = time.time()
        result = job.execute_in_process(instance=instance, run_config=run_config, raise_on_error=False)
        run_end = time.time()
        stats = instance.get_run_step_stats(result.run_id)
    sampler.stop()
    run_cpu = sampler.cpu_between(run_start, run_end)
    steps = {
        s.step_key: {
            "seconds": (s.end_time or run_end) - (s.start_time or run_start),
            "peak_rss": sampler.peak(s.start_time or run_start, s.end_time or run_end),
            "peak_pss": sampler.peak(s.start_time or run_start, s.end_time or run_end, pss=True),
            "cpu_seconds": sampler.cpu_between(s.start_time or run_start, s.end_time or run_end),
            "status": str(s.status.value if s.status else "unknown"),
        }
        for s in stats
    }
    self_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sampled = max((rss for _, rss in sampler.samples), default=0)
    materialized = {
        e.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()
                                       if isinstance(v.value, int | float | str)}
        for e in result.get_asset_materialization_events()
    }
    failures = [str(e.event_specific_data.error.message) for e in result.all_events
                if e.event_type_value == "STEP_FAILURE"]
    return {
        "success": result.success,
        "failures": failures,
        "wall_seconds": run_end - run_start,
        "cpu_seconds": run_cpu,
        "load_average": [load_before, os.getloadavg()[0]],
        "startup_seconds": run_start - started,
        "rss_after_imports": imported_rss,
        "steps": steps,
        "peak_rss_sampled": sampled,
        "ru_maxrss_self": self_max,
        "peak_rss": max(sampled, self_max),
        "peak_pss": max((pss for _, pss in sampler.pss_samples), default=0),  # what the memory bound judges
        "n_samples": len(sampler.samples),
        "raw_images": materialized.get("raw_images", {}),
        "evaluation_report": {k: v for k, v in materialized.get("evaluation_report", {}).items()
                              if k in ("accuracy", "n_test")},
    }


def probe_build(
    folder: Path, home: Path, run_config: dict | None = None, extra_env: dict[str, str] | None = None,
    timeout_s: float = 3600,
) -> dict:
    """Build ``folder`` (32×32 grayscale) in a fresh interpreter under ``home``; its measurements as a dict."""
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "MLOPS_HOME": str(home),
        "MLOPS_ARTIFACT_ROOT": str(home / "artifacts"),
        "BENTOML_HOME": str(home / "bentoml"),
        "DAGSTER_HOME": str(home),
        "MLOPS_DATASET_KIND": "image_folder",
        "MLOPS_IMAGE_FOLDER": str(folder),
        "MLOPS_IMAGE_HEIGHT": "32",
        "MLOPS_IMAGE_WIDTH": "32",
        "MLOPS_IMAGE_CHANNELS": "1",
        "PYTHONPATH": str(root),
        **(extra_env or {}),
    }
    home.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "testkit.build_probe", json.dumps(run_config or {})],
        cwd=root, env=env, capture_output=True, text=True, timeout=timeout_s,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(SUMMARY_PREFIX)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"build probe failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return json.loads(lines[-1][len(SUMMARY_PREFIX):])


if __name__ == "__main__":
    print(SUMMARY_PREFIX + json.dumps(main(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})), flush=True)
