"""Requests per second and latency of ``vidlit serve`` on the demo model: whole-video and region queries.

The server is the real one (:func:`vidlit.serve.app.create_app` on uvicorn, 127.0.0.1), the model
the ``vidlit serve --demo`` video-text model (trained once into ``--demo-dir``, about a minute on a
CPU), the video ``two_shapes.mp4`` (24 frames, 64 x 64 px). Each query kind is sent ``--requests``
times by ``--concurrency`` client threads over HTTP; the first request of each kind (which also
computes the clip's backbone tokens, cached for later region queries) is a warm-up and not timed.

- ``video``: ``POST /api/videos/{id}/query``, rank 3 prompts for the whole clip;
- ``region``: ``POST /api/videos/{id}/region``, grow a region from one clicked point (alternating
  between the two shapes) and rank 3 prompts for it;
- ``box``: the same with a box instead of a point (no region growing).

    python benchmarks/bench_serve.py                            # CPU, 64 requests, 4 at a time
    python benchmarks/bench_serve.py --device cuda --concurrency 16 --requests 256

Printed: one JSON line per query kind with requests/s and p50 / p95 latency in milliseconds, plus
the machine's load average (other processes skew the figures).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import torch
import uvicorn

from vidlit.inference import load
from vidlit.serve.app import create_app
from vidlit.serve.demo import DEMO_CAPTIONS, ensure_demo

TEXTS = list(DEMO_CAPTIONS.values())


def _start(app) -> tuple[uvicorn.Server, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench(client: httpx.Client, kind: str, video_id: str, requests: int, concurrency: int) -> dict:
    def body(i: int) -> tuple[str, dict]:
        if kind == "video":
            return f"/api/videos/{video_id}/query", {"texts": TEXTS}
        if kind == "box":
            return f"/api/videos/{video_id}/region", {"box": [0.5, 0.5, 1.0, 1.0], "texts": TEXTS}
        point = (0.25, 0.25) if i % 2 == 0 else (0.75, 0.75)
        return f"/api/videos/{video_id}/region", {"points": [point], "texts": TEXTS}

    def one(i: int) -> float:
        url, payload = body(i)
        start = time.perf_counter()
        r = client.post(url, json=payload)
        elapsed = time.perf_counter() - start
        if r.status_code != 200:
            raise RuntimeError(f"{kind} request {i}: {r.status_code} {r.text}")
        return elapsed

    one(0)  # warm-up
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - start
    return {
        "query": kind,
        "requests": requests,
        "concurrency": concurrency,
        "requests_per_s": round(requests / wall, 2),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p95_ms": round(1000 * _percentile(latencies, 0.95), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-dir", type=Path, default=Path.home() / ".cache" / "vidlit" / "demo")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--kinds", nargs="+", default=["video", "region", "box"])
    options = parser.parse_args()
    ckpt, video = ensure_demo(options.demo_dir)
    predictor = load(ckpt, device=options.device)
    app = create_app(predictor, folder=video.parent)
    server, url = _start(app)
    try:
        with httpx.Client(base_url=url, timeout=300) as client:
            video_id = client.post("/api/videos/folder", json={"name": video.name}).json()["video_id"]
            load_before = os.getloadavg()[0]
            for kind in options.kinds:
                row = bench(client, kind, video_id, options.requests, options.concurrency)
                print(json.dumps({**row, "device": options.device, "torch_threads": torch.get_num_threads()}))
            print(json.dumps({"load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)]}))
    finally:
        server.should_exit = True
        app.state.store.close()


if __name__ == "__main__":
    main()
