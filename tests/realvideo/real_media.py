"""Helpers of the real-video tier: ffprobe, PyAV's header, a sequential PyAV decode.

A module with its own name (not ``conftest``) so the tier's test files can import it, as
``tests/killed_runs.py`` is imported.
"""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import numpy as np

NAMES = ("bigbuckbunny", "bikes", "carphone_pristine", "carphone_distorted")


class Probe(NamedTuple):
    """A video stream as ``ffprobe`` and PyAV's container report it."""

    num_frames: int
    fps: Fraction
    height: int
    width: int


def ffprobe_stream(path: Path, stream: str, entries: str) -> dict:
    """``ffprobe``'s fields ``entries`` (comma-separated) of the stream ``stream`` (``v:0``, ``a:0``)."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", stream, "-show_entries", f"stream={entries}",
         "-of", "json", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return json.loads(out)["streams"][0]


def ffprobe(path: Path) -> Probe:
    """The first video stream's frame count (header), average frame rate and size, from ``ffprobe``."""
    stream = ffprobe_stream(path, "v:0", "nb_frames,avg_frame_rate,width,height")
    fps = Fraction(stream["avg_frame_rate"])
    return Probe(int(stream["nb_frames"]), fps, stream["height"], stream["width"])


def pyav_probe(path: Path) -> Probe:
    """The same, from PyAV's container metadata (no decoding)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return Probe(stream.frames, Fraction(stream.average_rate), stream.height, stream.width)


def sequential_frames(path: Path, indices) -> tuple[int, dict[int, np.ndarray]]:
    """Decode the whole video with PyAV, in order, no seeking: ``(frame count, {index: rgb frame})``
    for the wanted indices. Frame ``i`` is the ``i``-th frame the decoder outputs."""
    import av

    wanted, kept, count = set(int(i) for i in indices), {}, 0
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(container.streams.video[0])):
            if i in wanted:
                kept[i] = frame.to_ndarray(format="rgb24")
            count = i + 1
    return count, kept


def probe_indices(name: str, num_frames: int) -> list[int]:
    """The frames the tier compares: first, middle, last, both sides of every keyframe of bikes
    (GOP boundaries with B-frames, where a seek goes wrong first), and a few random ones."""
    around_keyframes = [29, 30, 31, 75, 76, 77, 136, 137, 138, 186, 187, 241, 242] if name == "bikes" else []
    rng = np.random.default_rng(sum(map(ord, name)))
    random = rng.choice(num_frames, size=4, replace=False).tolist()
    chosen = {0, 1, num_frames // 2, num_frames - 2, num_frames - 1, *around_keyframes, *random}
    return sorted(i for i in chosen if i < num_frames)


class Reference(NamedTuple):
    """What the readers are checked against, for one file."""

    probe: Probe  # ffprobe
    container: Probe  # PyAV's container header
    decoded: int  # frames a full sequential PyAV decode produces
    frames: dict[int, np.ndarray]  # probe_indices -> rgb uint8 [h, w, 3] from that decode
