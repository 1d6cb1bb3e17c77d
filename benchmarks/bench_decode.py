"""Clip decoding: vidlit's readers vs a naive decord ``get_batch`` loop, per-pass ratios.

A training loop reads clips in random order: each request opens a video, decodes one dense clip
(16 frames, 2 apart, at a random start) delivered at 224 px on the short side, and closes it. The
peer is the loop a user writes first:

    vr = decord.VideoReader(path, num_threads=1)
    clip = torch.from_numpy(vr.get_batch(indices).asnumpy())      # full size
    clip = F.interpolate(clip, size=(224, ...), mode="bilinear", antialias=True)   # to 224 short side

vidlit's side is ``open_video(path, backend, resize=224).get_frames(indices)`` for each backend
(decord and torchcodec scale inside FFmpeg while decoding; PyAV decodes and scales with FFmpeg's
``reformat``). A second, stricter reference is the same naive loop without the resize (frames at
the stored size, which a model cannot take as they are).

Every side gets the same requests. Rounds alternate the order of the sides, and each round's
ratio is taken per pass (peer seconds / vidlit seconds: > 1 means vidlit is faster), so a change
in the machine's load hits both sides of a ratio alike. The load average (``os.getloadavg``) is
printed at the start and the end: this machine is shared.

    python benchmarks/bench_decode.py                       # 6 synthetic 640x360 H.264 videos
    python benchmarks/bench_decode.py --clips-per-video 4   # + readers kept open (ReaderCache)
    python benchmarks/bench_decode.py --videos-dir DIR      # your own .mp4 files
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _rounds import timed

from vidlit.data.sampling import dense_clip
from vidlit.data.video import BACKENDS, ReaderCache, backend_available, open_video, output_size


def write_videos(out: Path, count: int, width: int, height: int, seconds: int) -> list[Path]:
    """H.264 test-pattern videos (30 fps, a keyframe every 30 frames, B-frames) written by ffmpeg."""
    paths = []
    for i in range(count):
        path = out / f"v{i}.mp4"
        subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i",
             f"testsrc2=size={width}x{height}:rate=30,hue=H={i}", "-t", str(seconds), "-c:v", "libx264",
             "-preset", "veryfast", "-g", "30", "-pix_fmt", "yuv420p", "-y", str(path)],
            check=True,
        )  # fmt: skip
        paths.append(path)
    return paths


def naive_decord(requests, short_side: int | None) -> Callable[[], None]:
    import decord

    def run() -> None:
        for path, indices in requests:
            reader = decord.VideoReader(str(path), num_threads=1)
            clip = torch.from_numpy(reader.get_batch(indices).asnumpy())
            if short_side is not None:
                size = output_size(clip.shape[1], clip.shape[2], short_side)
                clip = F.interpolate(clip.permute(0, 3, 1, 2).float(), size, mode="bilinear", antialias=True)
                clip = clip.round().clamp(0, 255).to(torch.uint8)

    return run


def vidlit_reader(requests, backend: str, short_side: int) -> Callable[[], None]:
    def run() -> None:
        for path, indices in requests:
            with open_video(path, backend, resize=short_side, num_threads=1) as reader:
                reader.get_frames(indices)

    return run


def vidlit_cached(requests, backend: str, short_side: int) -> Callable[[], None]:
    """One reader kept open (``ReaderCache(size=1)``): consecutive clips of one video share it."""

    def run() -> None:
        cache = ReaderCache(size=1)
        for path, indices in requests:
            cache.open(path, backend, resize=short_side, num_threads=1).get_frames(indices)
        cache.close()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos-dir", type=Path, help="decode the .mp4 files here instead")
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clips", type=int, default=24, help="clips per pass")
    parser.add_argument("--clip-len", type=int, default=16)
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--short-side", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument(
        "--clips-per-video", type=int, default=1, help="consecutive clips of one video (multi-view reading)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        if args.videos_dir is not None:
            paths = sorted(args.videos_dir.glob("*.mp4"))
            if not paths:
                raise FileNotFoundError(f"--videos-dir {args.videos_dir}: no .mp4 files")
        else:
            paths = write_videos(Path(tmp), args.videos, args.width, args.height, args.seconds)
        lengths = []
        for path in paths:
            with open_video(path) as reader:
                lengths.append(len(reader))
        rng = np.random.default_rng(args.seed)
        requests = []
        while len(requests) < args.clips:
            v = int(rng.integers(len(paths)))
            for _ in range(args.clips_per_video):
                clip = dense_clip(lengths[v], args.clip_len, args.stride, train=True, rng=rng)
                requests.append((paths[v], clip))
        requests = requests[: args.clips]
        sides = {
            "naive decord + resize": naive_decord(requests, args.short_side),
            "naive decord, stored size": naive_decord(requests, None),
        }
        sides |= {
            f"vidlit {b}": vidlit_reader(requests, b, args.short_side)
            for b in BACKENDS
            if backend_available(b)
        }
        if args.clips_per_video > 1:
            sides |= {
                f"vidlit {b}, ReaderCache": vidlit_cached(requests, b, args.short_side)
                for b in BACKENDS
                if backend_available(b)
            }
        print(
            f"{len(paths)} videos, {min(lengths)}-{max(lengths)} frames; {args.clips} clips of "
            f"{args.clip_len} frames per pass at {args.short_side} short side; "
            "1 decoder thread, 1 torch thread"
        )
        print(f"load average at start {os.getloadavg()}")
        for run in sides.values():
            run()  # warm-up: imports, the page cache, size probes
        times: dict[str, list[float]] = {name: [] for name in sides}
        names = list(sides)
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                times[name].append(timed(sides[name]))
        peer = times["naive decord + resize"]
        strict = times["naive decord, stored size"]
        print("| side | ms per clip | vs naive + resize (median, min-max) | vs naive at stored size |")
        print("|---|---:|---:|---:|")
        for name, seconds in times.items():
            ratios = [p / s for p, s in zip(peer, seconds, strict=True)]
            strict_ratios = [p / s for p, s in zip(strict, seconds, strict=True)]
            print(
                f"| {name} | {1e3 * statistics.median(seconds) / args.clips:.1f} | "
                f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) | "
                f"{statistics.median(strict_ratios):.2f}x |"
            )
        print(f"load average at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
