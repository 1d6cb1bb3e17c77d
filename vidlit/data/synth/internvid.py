"""Synthetic InternVid: source videos of moving shapes and captions that describe each clip.

Every source video is a sequence of clips (windows) separated by a few blank frames; each clip
shows one shape (square, circle, triangle) in one colour (red, green, blue) moving in one
direction (left, right, up, down), and the next clip of the same video shows something else, so
a reader that ignores the time window gets the wrong clip. Each clip's caption names its colour,
shape and direction in one of several paraphrases ("a red circle moving left", "a circle, red,
travelling to the left", ...), so a video-text model has to ground words in appearance and in
motion. The layout is InternVid's (:mod:`vidlit.data.internvid`)::

    out/
      videos/<YoutubeID>.mp4           H.264 source videos, 64 x 64 px, 10 fps
      train.jsonl  val.jsonl           {"YoutubeID", "Start_timestamp", "End_timestamp",
                                        "Caption", "UMT_Score", "Aesthetic_Score"}

Validation clips come from their own source videos, and their (colour, shape, direction)
combinations are distinct, so text-to-video retrieval among them has exactly one right answer
and a chance R@1 of ``1 / num_val_clips``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vidlit.data.synth import random_youtube_id
from vidlit.data.synth.videos import COLORS, MOTIONS, SHAPES, random_background, render_clip, write_video
from vidlit.formats._schema import dump
from vidlit.formats.internvid import InternVidRecord, format_timestamp

__all__ = ["caption_for", "write_internvid"]

# paraphrases: {color} {shape} {direction}, directions in several wordings
TEMPLATES = (
    "a {color} {shape} moving {dir}",
    "a {color} {shape} slides {dir}",
    "the {shape} is {color} and travels {dir}",
    "a video of a {color} {shape} going {dir}",
    "{color} {shape} heading {dir} across a dark background",
)
DIRECTIONS = {
    "left": ("left", "to the left", "leftwards"),
    "right": ("right", "to the right", "rightwards"),
    "up": ("up", "upwards", "towards the top"),
    "down": ("down", "downwards", "towards the bottom"),
}


def caption_for(color: str, shape: str, motion: str, rng: np.random.Generator) -> str:
    """A caption of one clip in a random paraphrase."""
    template = TEMPLATES[rng.integers(len(TEMPLATES))]
    direction = DIRECTIONS[motion][rng.integers(len(DIRECTIONS[motion]))]
    return template.format(color=color, shape=shape, dir=direction)


def write_internvid(
    out: str | Path,
    seed: int = 0,
    num_train_videos: int = 48,
    num_val_videos: int = 8,
    clips_per_video: int = 3,
    clip_frames: int = 16,
    gap_frames: int = 2,
    size: int = 64,
    fps: int = 10,
) -> Path:
    """Write a synthetic InternVid sample: source videos plus ``train.jsonl`` and ``val.jsonl``.

    Args:
        out: dataset folder (created).
        seed: everything is a function of it.
        num_train_videos: source videos of the training clips.
        num_val_videos: source videos of the validation clips (at most 36 clips in all: val
            combinations of colour, shape and direction are distinct).
        clips_per_video: clips (annotation lines) per source video, each with other content.
        clip_frames: frames per clip.
        gap_frames: blank frames before, between and after the clips.
        size: frame side in pixels (even).
        fps: frame rate.

    Returns:
        ``out``.
    """
    combos = [(c, s, m) for c in COLORS for s in SHAPES for m in MOTIONS]
    num_val = num_val_videos * clips_per_video
    if num_val > len(combos):
        raise ValueError(
            f"{num_val} val clips need distinct contents, but only {len(combos)} combinations exist"
        )
    if min(num_train_videos, num_val_videos, clips_per_video, clip_frames) < 1 or gap_frames < 0:
        raise ValueError("video, clip and frame counts must be positive (gap_frames >= 0)")
    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    val_combos = [combos[i] for i in rng.permutation(len(combos))[:num_val]]
    used: set[str] = set()
    for split, num_videos in (("train", num_train_videos), ("val", num_val_videos)):
        lines = []
        for v in range(num_videos):
            youtube_id = random_youtube_id(rng)
            while youtube_id in used:
                youtube_id = random_youtube_id(rng)
            used.add(youtube_id)
            background = random_background(rng, size)
            blank = np.clip(background, 0, 255).astype(np.uint8)
            frames = [blank[None].repeat(gap_frames, 0)]
            position = gap_frames
            for k in range(clips_per_video):
                if split == "val":
                    color, shape, motion = val_combos[v * clips_per_video + k]
                else:
                    color, shape, motion = combos[rng.integers(len(combos))]
                frames.append(render_clip(rng, shape, color, motion, clip_frames, size, background))
                frames.append(blank[None].repeat(gap_frames, 0))
                lines.append(
                    {
                        "YoutubeID": youtube_id,
                        "Start_timestamp": format_timestamp(position / fps),
                        "End_timestamp": format_timestamp((position + clip_frames) / fps),
                        "Caption": caption_for(color, shape, motion, rng),
                        "UMT_Score": round(float(rng.uniform(0.35, 0.5)), 4),
                        "Aesthetic_Score": round(float(rng.uniform(4.0, 6.0)), 4),
                    }
                )
                position += clip_frames + gap_frames
            write_video(out / "videos" / f"{youtube_id}.mp4", np.concatenate(frames), fps=fps)
        with open(out / f"{split}.jsonl", "w", encoding="utf-8") as f:
            # through the schema: the sample file is valid by construction
            f.writelines(json.dumps(dump(InternVidRecord.model_validate(line))) + "\n" for line in lines)
    return out
