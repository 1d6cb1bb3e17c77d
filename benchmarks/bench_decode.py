"""Clip decoding throughput of vidlit's video backends: decord, PyAV and torchcodec (where installed).

A training loop reads clips in random order: each sample opens a video, decodes one dense clip
(``clip_len`` frames, ``stride`` apart, at a random start, :func:`vidlit.data.sampling.dense_clip`)
and closes it. This benchmark does exactly that through :func:`vidlit.data.video.open_video`, on
synthetic H.264 videos (:func:`vidlit.data.synth.videos.write_synthetic_videos`: a keyframe every 8
frames, B-frames), for every backend the same sequence of (video, start) requests:

- ``workers 0``: in the main process, one decoder thread and one torch thread;
- ``workers N``: through a ``DataLoader`` with ``N`` worker processes (``batch_size=None``, so
  nothing is collated), the way a data module feeds a trainer; the workers are started and
  warmed up before the clock starts.

    python benchmarks/bench_decode.py                          # 32 videos, 64 frames, 128 px
    python benchmarks/bench_decode.py --clip-lens 16 --stride 4 --workers 0 4 --repeats 5
    python benchmarks/bench_decode.py --videos-dir data/my_videos      # your own .mp4 files

Printed: clips/s and frames/s (median over ``--repeats``; the backends take turns within each
repeat) per backend, clip length and worker count, the throughput relative to decord on the same
requests, and the load average, since other processes on the machine skew the figures.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vidlit.data.sampling import dense_clip
from vidlit.data.synth.videos import write_synthetic_videos
from vidlit.data.video import BACKENDS, backend_available, open_video

_PACKAGES = {"decord": "decord", "pyav": "av", "torchcodec": "torchcodec"}


@dataclass
class Result:
    backend: str
    clip_len: int
    workers: int
    clips_per_s: float
    frames_per_s: float
    vs_decord: float | None = None


class ClipRequests(Dataset):
    """A fixed sequence of random (video, dense clip) requests, decoded by one backend.

    Args:
        paths: the videos.
        num_frames: frames of each video.
        clip_len: frames per clip.
        stride: frames between consecutive clip frames.
        count: requests.
        backend: the decoder.
        seed: picks the videos and the clip starts (the same for every backend).
    """

    def __init__(
        self,
        paths: list[Path],
        num_frames: list[int],
        clip_len: int,
        stride: int,
        count: int,
        backend: str,
        seed: int,
    ):
        rng = np.random.default_rng(seed)
        self.backend = backend
        self.requests = []
        for _ in range(count):
            video = int(rng.integers(len(paths)))
            clip = dense_clip(num_frames[video], clip_len, stride, train=True, rng=rng)
            self.requests.append((paths[video], clip))

    def __len__(self) -> int:
        return len(self.requests)

    def __getitem__(self, i: int) -> torch.Tensor:
        path, indices = self.requests[i]
        with open_video(path, backend=self.backend, num_threads=1) as reader:
            return reader.get_frames(indices)


def _one_pass(source: ClipRequests | DataLoader) -> float:
    """Seconds to read every clip of a dataset (in this process) or a loader (in its workers)."""
    start = time.perf_counter()
    if isinstance(source, DataLoader):
        for _ in source:
            pass
    else:
        for i in range(len(source)):
            source[i]
    return time.perf_counter() - start


def measure(datasets: dict[str, ClipRequests], workers: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per pass for each backend, ``repeats`` times.

    The backends take turns within every repeat, so a change in the machine's load during the run
    hits them alike and their ratios stay meaningful.
    """
    sources: dict[str, ClipRequests | DataLoader] = dict(datasets)
    if workers > 0:
        sources = {
            name: DataLoader(dataset, batch_size=None, num_workers=workers, persistent_workers=True)
            for name, dataset in datasets.items()
        }
    for source in sources.values():
        _one_pass(source)  # warm-up: imports, the workers' start, the page cache
    times: dict[str, list[float]] = {name: [] for name in sources}
    for _ in range(repeats):
        for name, source in sources.items():
            times[name].append(_one_pass(source))
    return times


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or platform.machine()


def _version(backend: str) -> str:
    try:
        return importlib.metadata.version(_PACKAGES[backend])
    except importlib.metadata.PackageNotFoundError:
        return "?"


def main(argv: list[str] | None = None) -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=32, help="synthetic videos to write")
    parser.add_argument("--frames", type=int, default=64, help="frames per video")
    parser.add_argument("--size", type=int, default=128, help="frame height and width of synthetic videos")
    parser.add_argument("--videos-dir", type=Path, help="decode the .mp4 files in this folder instead")
    parser.add_argument("--clip-lens", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--stride", type=int, default=2, help="frames between clip frames")
    parser.add_argument("--clips", type=int, default=256, help="clips per timed pass")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[0, 2], help="DataLoader workers (0: inline)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed passes; the median is reported")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    backends = [b for b in args.backends if backend_available(b)]
    skipped = [b for b in args.backends if b not in backends]
    with tempfile.TemporaryDirectory() as tmp:
        if args.videos_dir is not None:
            paths = sorted(args.videos_dir.glob("*.mp4"))
            if not paths:
                raise FileNotFoundError(f"--videos-dir {args.videos_dir}: no .mp4 files")
            lengths = []
            for path in paths:
                with open_video(path) as reader:
                    lengths.append(len(reader))
            print(f"{len(paths)} videos from {args.videos_dir}, {min(lengths)}-{max(lengths)} frames")
        else:
            start = time.perf_counter()
            records = write_synthetic_videos(tmp, args.videos, num_frames=args.frames, size=args.size)
            paths = [Path(r["path"]) for r in records]
            lengths = [args.frames] * len(paths)
            what = f"{len(paths)} videos ({args.frames} frames, {args.size} px, {records[0]['codec']})"
            print(f"wrote {what} in {time.perf_counter() - start:.0f} s")
        print(
            f"CPU: {cpu_model()}, {torch.get_num_threads()} torch thread, Python {platform.python_version()}"
        )
        print(f"load average at the start: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print("backends: " + ", ".join(f"{b} {_version(b)}" for b in backends))
        if skipped:
            print("not installed, skipped: " + ", ".join(skipped))
        print(
            f"{args.clips} random dense clips a pass, stride {args.stride}, median of {args.repeats} passes\n"
        )

        results = []
        for clip_len in args.clip_lens:
            for workers in args.workers:
                datasets = {
                    backend: ClipRequests(
                        paths, lengths, clip_len, args.stride, args.clips, backend, args.seed
                    )
                    for backend in backends
                }
                for backend, times in measure(datasets, workers, args.repeats).items():
                    clips_per_s = args.clips / statistics.median(times)
                    results.append(Result(backend, clip_len, workers, clips_per_s, clips_per_s * clip_len))
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"load average at the end: {load} (other processes on the machine skew the figures)\n")

    decord = {(r.clip_len, r.workers): r.clips_per_s for r in results if r.backend == "decord"}
    for r in results:
        if (r.clip_len, r.workers) in decord:
            r.vs_decord = r.clips_per_s / decord[(r.clip_len, r.workers)]
    header = f"{'backend':<11} {'clip':>4} {'workers':>7} {'clips/s':>9} {'frames/s':>9} {'vs decord':>9}"
    print(header)
    print("-" * len(header))
    for r in results:
        ratio = f"{r.vs_decord:.2f}x" if r.vs_decord is not None else "-"
        speed = f"{r.clips_per_s:>9.1f} {r.frames_per_s:>9.0f}"
        print(f"{r.backend:<11} {r.clip_len:>4} {r.workers:>7} {speed} {ratio:>9}")
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return results


if __name__ == "__main__":
    main()
