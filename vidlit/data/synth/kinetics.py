"""Synthetic Kinetics: the official CSV layout, with class names a caption-trained model can read.

Zero-shot classification needs class *names* that mean something to the text tower. The clips
are the coloured shapes of :mod:`vidlit.data.synth.videos`, and a class is named by the
attributes ``label_by`` picks, in the words of the synthetic captions
(:mod:`vidlit.data.synth.internvid`): ``"red square"``, ``"blue circle"``, ... (``color shape``,
the default), ``"moving left"`` (``motion``). The layout is a Kinetics download's::

    out/
      annotations/val.csv    label,youtube_id,time_start,time_end,split   (the official columns)
      videos/val/<youtube_id>_<time_start:06d>_<time_end:06d>.mp4
      classes.txt            one class name per line (mmaction2's label_map_k400.txt format)

``recipes/zeroshot_cls.yaml`` reads it with :class:`~vidlit.data.VideoListDataModule`
(``list_format: kinetics``, ``video_dir: videos/{split}``). Rows are built through
:class:`~vidlit.formats.video_cls.KineticsRow`; ``annotations/val.csv`` is written last.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from itertools import product
from pathlib import Path

import numpy as np

from vidlit.data.synth import random_youtube_id
from vidlit.data.synth.videos import LABEL_ATTRIBUTES, render_clip, write_video
from vidlit.formats._schema import dump
from vidlit.formats.video_cls import KineticsRow, kinetics_clip_name

__all__ = ["KINETICS_COLUMNS", "class_name", "write_kinetics"]

KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")


def class_name(attributes: dict[str, str], label_by: Sequence[str]) -> str:
    """The class name of a clip: its ``label_by`` attributes in caption words (``"red square"``)."""
    words = {
        "color": attributes["color"],
        "shape": attributes["shape"],
        "motion": f"moving {attributes['motion']}",
    }
    return " ".join(words[a] for a in label_by)


def write_kinetics(
    out: str | Path,
    seed: int = 0,
    label_by: Sequence[str] = ("color", "shape"),
    clips_per_class: int = 4,
    frames: int = 16,
    size: int = 64,
    fps: int = 10,
) -> Path:
    """Write a synthetic Kinetics validation set in the official layout.

    Args:
        out: dataset folder (created).
        seed: everything is a function of it.
        label_by: the attributes that name a class, in order (``"color"``, ``"shape"``, ``"motion"``).
        clips_per_class: validation clips of each class (the other attributes random).
        frames: frames per clip.
        size: frame side in pixels (even).
        fps: frame rate.

    Returns:
        ``out``.
    """
    unknown = [a for a in label_by if a not in LABEL_ATTRIBUTES]
    if not label_by or unknown or len(set(label_by)) != len(label_by):
        raise ValueError(f"label_by must be distinct attributes of {tuple(LABEL_ATTRIBUTES)}, got {label_by}")
    if clips_per_class < 1:
        raise ValueError(f"clips_per_class must be positive, got {clips_per_class}")
    out = Path(out)
    (out / "videos" / "val").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    classes = [dict(zip(label_by, values)) for values in product(*(LABEL_ATTRIBUTES[a] for a in label_by))]
    names = [class_name({"color": "", "shape": "", "motion": "", **c}, label_by) for c in classes]
    rows = []
    for _ in range(clips_per_class):
        for fixed, name in zip(classes, names):
            attributes = {a: values[rng.integers(len(values))] for a, values in LABEL_ATTRIBUTES.items()}
            attributes.update(fixed)
            youtube_id = random_youtube_id(rng)
            start = int(rng.integers(0, 300))
            row = KineticsRow.model_validate(
                {
                    "label": name,
                    "youtube_id": youtube_id,
                    "time_start": start,
                    "time_end": start + 10,
                    "split": "val",
                }
            )
            clip = render_clip(
                rng, attributes["shape"], attributes["color"], attributes["motion"], frames, size
            )
            write_video(
                out / "videos" / "val" / kinetics_clip_name(youtube_id, start, start + 10), clip, fps=fps
            )
            rows.append(dump(row))
    (out / "classes.txt").write_text("".join(f"{name}\n" for name in names))
    with open(out / "annotations" / "val.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=KINETICS_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return out
