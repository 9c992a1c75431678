"""Bounded decoding (issue: the service under hostile input): what maximal uploads cost the server's memory.

The service decodes at most MLOPS_MAX_IMAGE_PIXELS pixels per upload (read from the header; larger images are a
413 without decoding). This measures the server's resident memory (all its processes) idle, at the peak of
8 concurrent maximal uploads (4096×4096 RGBA PNGs, and 4096×4096 JPEGs, within the body limit), and 30 s after
the burst. Goal: after the burst ≤ the idle baseline + 200 MB. Also: a header-only PNG claiming 20000×20000
pixels, refused before decoding.

    python -m benchmarks.bench_uploads
"""

from __future__ import annotations

import io
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.report import write_section

SIDE = 4096
CONCURRENCY = 8
ROUNDS = 3
SETTLE_S = 30.0


def maximal_images() -> dict[str, bytes]:
    """4096×4096 images that stay under the 8 MiB body limit: smooth content plus a little noise."""
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:SIDE, 0:SIDE]
    base = ((x + y) * 255 // (2 * SIDE)).astype(np.uint8)
    rgba = np.stack([base, base[::-1], base.T, np.full_like(base, 200)], axis=-1)
    rgba[::64, ::64] = rng.integers(0, 255, size=rgba[::64, ::64].shape, dtype=np.uint8)
    png, jpeg = io.BytesIO(), io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(png, format="PNG")
    Image.fromarray(rgba[..., :3], "RGB").save(jpeg, format="JPEG", quality=85)
    return {"png": png.getvalue(), "jpeg": jpeg.getvalue()}


def server_rss(pid: int) -> int:
    import psutil

    root = psutil.Process(pid)
    processes = [root, *root.children(recursive=True)]
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def service_headers() -> dict[str, str]:
    """The service's bearer token when one is configured (MLOPS_API_TOKEN): the server started here inherits it."""
    from mlops_assets.core.common import settings
    from mlops_assets.tools.simulator import auth_headers

    return auth_headers(settings.resolve(settings.API_TOKEN))


def burst(url: str, body: bytes, name: str, pid: int) -> tuple[int, list[int]]:
    """CONCURRENCY uploads at once, ROUNDS times; the peak RSS sampled every 20 ms, and the statuses."""
    import httpx

    peak, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], server_rss(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    statuses: list[int] = []
    try:
        with httpx.Client(base_url=url, timeout=120, headers=service_headers()) as client, \
                ThreadPoolExecutor(CONCURRENCY) as pool:
            for _ in range(ROUNDS):
                statuses += list(pool.map(
                    lambda _: client.post("/classify_image", files={"image": (name, body)}).status_code,
                    range(CONCURRENCY)))
    finally:
        stop.set()
        sampler.join()
    return peak[0], statuses


def main() -> None:
    import httpx

    from benchmarks.bench_serving import build_registry
    from mlops_assets.infra.bento_server import SERVICE_TARGET, serve_bento
    from testkit.fixtures import png_header_only

    images = maximal_images()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = build_registry(root)
        env = {"MLOPS_FOLLOW_PRODUCTION": "0", "MLOPS_ARTIFACT_ROOT": str(root / "artifacts")}
        with serve_bento(SERVICE_TARGET, model.home, root / "server.log", env=env, ready_timeout_s=120) as url:
            import psutil

            port = int(url.rsplit(":", 1)[1])
            pid = next(c.pid for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port
                       and c.status == psutil.CONN_LISTEN)
            server = psutil.Process(pid)
            while server.parent() is not None and "bentoml" in " ".join(server.parent().cmdline()):
                server = server.parent()
            time.sleep(2.0)
            idle = server_rss(server.pid)
            for name, body in images.items():
                peak, statuses = burst(url, body, f"max.{name}", server.pid)
                time.sleep(SETTLE_S)
                after = server_rss(server.pid)
                rows.append((name, len(body), peak, after, statuses))
            bomb = httpx.post(f"{url}/classify_image", files={"image": ("bomb.png", png_header_only(20_000, 20_000))},
                              timeout=30, headers=service_headers())
            after_bomb = server_rss(server.pid)
    mb = 1024 * 1024
    table = [
        f"| {name} {SIDE}×{SIDE} ({size / mb:.2f} MB) | {idle / mb:.0f} MB | {peak / mb:.0f} MB | "
        f"{after / mb:.0f} MB | {(after - idle) / mb:+.0f} MB (goal ≤ +200) | {sorted(set(statuses))} |"
        for name, size, peak, after, statuses in rows
    ]
    body = "\n".join([
        "## Uploads: bounded decoding",
        "",
        f"The server's resident memory (all its processes), {CONCURRENCY} concurrent maximal uploads × {ROUNDS} "
        f"rounds per format (MLOPS_MAX_IMAGE_PIXELS = 4096², 4 worker threads), then {SETTLE_S:.0f} s idle:",
        "",
        "| upload | idle | peak | 30 s after | after − idle | statuses |",
        "|---|---:|---:|---:|---:|---|",
        *table,
        "",
        f"A 20000×20000 PNG header (no pixel data): HTTP {bomb.status_code}, "
        f"memory {(after_bomb - rows[-1][3]) / mb:+.0f} MB (refused from the header, never decoded).",
    ])
    write_section("bench_uploads", body)
    print(body)


if __name__ == "__main__":
    main()
