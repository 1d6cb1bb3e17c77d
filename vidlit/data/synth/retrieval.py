"""Synthetic text-video retrieval benchmarks in MSR-VTT, DiDeMo and ActivityNet Captions' formats.

The videos are the coloured shapes of :mod:`vidlit.data.synth.videos` (a square, circle or
triangle in red, green or blue, moving left, right, up or down) and every caption names what a
segment shows in one of InternVid's synthetic paraphrases (:func:`vidlit.data.synth.internvid.caption_for`),
so a model pretrained on ``vidlit data synth internvid`` can be evaluated zero-shot on them:

- ``write_msrvtt``: ``MSRVTT_JSFUSION_test.csv`` (``key,vid_key,video_id,sentence``, one caption
  per video) and ``videos/all/video<N>.mp4``, each one clip;
- ``write_activitynet``: ``val_1.json`` (``{"v_<id>": {"duration", "timestamps", "sentences"}}``)
  and ``videos/<id>.mp4``, each video ``segments`` clips of 5 s with one sentence each;
- ``write_didemo``: ``test_data.json`` (``[{"video", "description", "times", ...}]``, four
  annotators' 5-second segment indices per moment) and ``videos/<flickr id>.mp4``, each video
  ``segments`` moments of 5 s (the annotation names the original ``.mov``, the file is the
  transcoded ``.mp4``, as in most downloads).

The first segment's (colour, shape, direction) differs between all videos of a dataset, so
retrieval has one right answer and a chance R@1 of ``1 / num_videos``. Records are built through
:mod:`vidlit.formats.retrieval`'s models. The annotation file is written last: a folder that has
it is complete.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from vidlit.data.synth import random_youtube_id
from vidlit.data.synth.internvid import caption_for
from vidlit.data.synth.videos import COLORS, MOTIONS, SHAPES, random_background, render_clip, write_video
from vidlit.formats._schema import dump
from vidlit.formats.retrieval import (
    DIDEMO_NUM_SEGMENTS,
    DIDEMO_SEGMENT_SECONDS,
    MSRVTT_COLUMNS,
    ActivityNetCaptionsVideo,
    DiDeMoMoment,
    MSRVTTRow,
)

__all__ = ["write_activitynet", "write_didemo", "write_msrvtt"]

_COMBOS = [(c, s, m) for c in COLORS for s in SHAPES for m in MOTIONS]


def _contents(rng: np.random.Generator, num_videos: int, segments: int) -> list[list[tuple[str, str, str]]]:
    """Each video's segment contents: distinct first segments, the others different from the first."""
    if not 1 <= num_videos <= len(_COMBOS):
        raise ValueError(f"num_videos must be in [1, {len(_COMBOS)}] (distinct contents), got {num_videos}")
    if segments < 1:
        raise ValueError(f"segments must be positive, got {segments}")
    firsts = rng.permutation(len(_COMBOS))[:num_videos]
    videos = []
    for first in firsts:
        others = [i for i in rng.permutation(len(_COMBOS)) if i != first][: segments - 1]
        videos.append([_COMBOS[i] for i in (first, *others)])
    return videos


def _render(
    rng: np.random.Generator, contents: list[tuple[str, str, str]], frames: int, size: int
) -> np.ndarray:
    background = random_background(rng, size)
    clips = [
        render_clip(rng, shape, color, motion, frames, size, background) for color, shape, motion in contents
    ]
    return np.concatenate(clips)


def write_msrvtt(
    out: str | Path, seed: int = 0, num_videos: int = 24, frames: int = 16, size: int = 64, fps: int = 10
) -> Path:
    """Write a synthetic MSR-VTT 1k-A-style test set: one clip and one caption per video.

    Args:
        out: dataset folder (created): ``MSRVTT_JSFUSION_test.csv`` and ``videos/all/``.
        seed: everything is a function of it.
        num_videos: videos (at most 36: contents are distinct).
        frames: frames per video.
        size: frame side in pixels (even).
        fps: frame rate.

    Returns:
        ``out``.
    """
    out = Path(out)
    (out / "videos" / "all").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    numbers = rng.choice(10_000, size=num_videos, replace=False)
    rows = []
    for i, (contents, number) in enumerate(zip(_contents(rng, num_videos, 1), numbers)):
        video_id = f"video{number}"
        write_video(out / "videos" / "all" / f"{video_id}.mp4", _render(rng, contents, frames, size), fps=fps)
        row = {
            "key": f"ret{i}",
            "vid_key": f"msr{number}",
            "video_id": video_id,
            "sentence": caption_for(*contents[0], rng),
        }
        rows.append(dump(MSRVTTRow.model_validate(row)))
    with open(out / "MSRVTT_JSFUSION_test.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=MSRVTT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return out


def write_activitynet(
    out: str | Path, seed: int = 0, num_videos: int = 24, segments: int = 2, size: int = 64, fps: int = 4
) -> Path:
    """Write a synthetic ActivityNet Captions validation set (paragraph retrieval).

    Args:
        out: dataset folder (created): ``val_1.json`` and ``videos/<id>.mp4``.
        seed: everything is a function of it.
        num_videos: videos (at most 36).
        segments: 5-second segments (and sentences) per video.
        size: frame side in pixels (even).
        fps: frame rate.

    Returns:
        ``out``.
    """
    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    frames = round(DIDEMO_SEGMENT_SECONDS * fps)
    document = {}
    for contents in _contents(rng, num_videos, segments):
        youtube_id = random_youtube_id(rng)
        write_video(out / "videos" / f"{youtube_id}.mp4", _render(rng, contents, frames, size), fps=fps)
        step = frames / fps
        record = {
            "duration": round(len(contents) * step, 2),
            "timestamps": [[round(k * step, 2), round((k + 1) * step, 2)] for k in range(len(contents))],
            "sentences": [caption_for(*content, rng) + "." for content in contents],
        }
        document[f"v_{youtube_id}"] = dump(ActivityNetCaptionsVideo.model_validate(record))
    (out / "val_1.json").write_text(json.dumps(document))
    return out


def write_didemo(
    out: str | Path, seed: int = 0, num_videos: int = 24, segments: int = 2, size: int = 64, fps: int = 4
) -> Path:
    """Write a synthetic DiDeMo test set (paragraph retrieval).

    Args:
        out: dataset folder (created): ``test_data.json`` and ``videos/<flickr id>.mp4``.
        seed: everything is a function of it.
        num_videos: videos (at most 36).
        segments: 5-second moments per video (at most 6: DiDeMo annotates the first 30 s).
        size: frame side in pixels (even).
        fps: frame rate.

    Returns:
        ``out``.
    """
    if segments > DIDEMO_NUM_SEGMENTS:
        raise ValueError(f"segments must be at most {DIDEMO_NUM_SEGMENTS}, got {segments}")
    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    frames = round(DIDEMO_SEGMENT_SECONDS * fps)
    moments = []
    for contents in _contents(rng, num_videos, segments):
        stem = f"{rng.integers(10**7, 10**8)}@N0{rng.integers(10)}_{rng.integers(10**9, 10**10)}"
        write_video(out / "videos" / f"{stem}.mp4", _render(rng, contents, frames, size), fps=fps)
        for k, content in enumerate(contents):
            # four annotators, the last one a segment longer where there is one
            times = [[k, k]] * 3 + [[k, min(k + 1, segments - 1)]]
            moment = {
                "video": f"{stem}.mov",
                "description": caption_for(*content, rng),
                "times": times,
                "annotation_id": len(moments),
            }
            moments.append(dump(DiDeMoMoment.model_validate(moment)))
    (out / "test_data.json").write_text(json.dumps(moments))
    return out
