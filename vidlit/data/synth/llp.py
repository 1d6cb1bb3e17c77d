"""A synthetic LLP (audio-visual video parsing) dataset in the official AVVP file layout.

Every 10-second video holds one to three events of distinct classes; each event is audible
only, visible only, or both (then its audio and visual extents differ a little), and an event
of a modality may occur in two separate runs. Inside its segments, an event adds its class
prototype to the features of its modality: the VGGish-like audio vector of the segment, the
eight ResNet-152-like frames of the segment and its R(2+1)D-like clip vector. Features are
otherwise unit noise plus a per-video offset. The training CSV only holds each video's labels
(weak supervision); the segment-level truth is in ``AVVP_eval_audio.csv`` /
``AVVP_eval_visual.csv`` for the val and test videos, as in the real dataset.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from vidlit.formats.llp import LLP_CATEGORIES, EventRow, WeakLabelRow

_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _youtube_id(rng: np.random.Generator) -> str:
    return "".join(_ID_ALPHABET[i] for i in rng.integers(0, len(_ID_ALPHABET), 11))


def _runs(rng: np.random.Generator, num_segments: int) -> list[tuple[int, int]]:
    """One run of 2..T segments, or (30 %) two separated runs."""
    if num_segments >= 7 and rng.random() < 0.3:
        first_end = int(rng.integers(2, num_segments - 3))
        second_start = int(rng.integers(first_end + 1, num_segments - 1))
        return [(int(rng.integers(0, first_end - 1)), first_end), (second_start, num_segments)]
    length = int(rng.integers(2, num_segments + 1))
    start = int(rng.integers(0, num_segments - length + 1))
    return [(start, start + length)]


def _jitter(
    rng: np.random.Generator, runs: list[tuple[int, int]], num_segments: int
) -> list[tuple[int, int]]:
    """The visual extent of an audible and visible event: the audio runs, boundaries moved <= 2."""
    out = []
    for start, end in runs:
        start = int(np.clip(start + rng.integers(-2, 3), 0, num_segments - 1))
        end = int(np.clip(end + rng.integers(-2, 3), start + 1, num_segments))
        out.append((start, end))
    return out


def write_llp(
    out: str | Path,
    seed: int = 0,
    num_train: int = 320,
    num_val: int = 64,
    num_test: int = 32,
    num_classes: int = 10,
    audio_dim: int = 128,
    visual_dim: int = 128,
    motion_dim: int = 64,
    num_segments: int = 10,
    frames_per_segment: int = 8,
    signal: float = 0.6,
) -> Path:
    """Write the AVVP CSVs and ``feats/{vggish,res152,r2plus1d_18}/<youtube_id>.npy``.

    Files (the official layout of YapengTian/AVVP-ECCV20): ``AVVP_train.csv``,
    ``AVVP_val_pd.csv``, ``AVVP_test_pd.csv`` (tab-separated ``filename event_labels``, labels
    comma-joined), ``AVVP_eval_audio.csv`` and ``AVVP_eval_visual.csv`` (``filename onset
    offset event_labels``, one row per event run, for the val and test videos). ``filename`` is
    ``<11-character YouTube id>_<start>_<end>`` and the features are named by the id. Feature
    shapes are ``[T, audio_dim]`` (VGGish: 128), ``[T * frames_per_segment, visual_dim]``
    (ResNet-152 at 8 fps: 2048) and ``[T, motion_dim]`` (R(2+1)D-18: 512); the defaults use
    smaller visual widths to keep the sample data small.

    Args:
        out: dataset folder (created).
        seed: everything is a function of it.
        num_train: weakly labelled training videos.
        num_val: validation videos (with segment-level truth).
        num_test: test videos (with segment-level truth).
        num_classes: event classes used, the first ``num_classes`` LLP categories.
        audio_dim: audio feature width.
        visual_dim: per-frame appearance feature width.
        motion_dim: per-segment motion feature width.
        num_segments: one-second segments per video (LLP: 10).
        frames_per_segment: appearance frames per segment (LLP: 8).
        signal: per-channel strength of an event's prototype relative to unit noise.

    Returns:
        ``out``.
    """
    if not 1 <= num_classes <= len(LLP_CATEGORIES):
        raise ValueError(f"num_classes must be in [1, {len(LLP_CATEGORIES)}], got {num_classes}")
    if num_segments < 4:
        raise ValueError(f"num_segments must be >= 4, got {num_segments}")
    out = Path(out)
    dirs = {name: out / "feats" / name for name in ("vggish", "res152", "r2plus1d_18")}
    for folder in dirs.values():
        folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def prototypes(dim: int) -> np.ndarray:
        p = rng.standard_normal((num_classes, dim))
        return p / np.linalg.norm(p, axis=1, keepdims=True) * dim**0.5 * signal

    proto_audio, proto_visual, proto_motion = (
        prototypes(audio_dim),
        prototypes(visual_dim),
        prototypes(motion_dim),
    )
    used: set[str] = set()

    def video(with_truth: bool) -> tuple[str, list[str], list[tuple], list[tuple]]:
        youtube_id = _youtube_id(rng)
        while youtube_id in used:
            youtube_id = _youtube_id(rng)
        used.add(youtube_id)
        start = int(rng.integers(0, 60)) * 10
        filename = f"{youtube_id}_{start}_{start + num_segments}"
        classes = rng.choice(num_classes, size=int(rng.integers(1, 4)), replace=False)
        audio = rng.standard_normal((num_segments, audio_dim)) + 0.5 * rng.standard_normal(audio_dim)
        frames = rng.standard_normal((num_segments * frames_per_segment, visual_dim))
        frames += 0.5 * rng.standard_normal(visual_dim)
        motion = rng.standard_normal((num_segments, motion_dim)) + 0.5 * rng.standard_normal(motion_dim)
        audio_rows, visual_rows = [], []
        for c in classes.tolist():
            kind = rng.choice(["audio", "visual", "both"], p=[0.3, 0.3, 0.4])
            audio_runs = _runs(rng, num_segments) if kind != "visual" else []
            if kind == "visual":
                visual_runs = _runs(rng, num_segments)
            else:
                visual_runs = _jitter(rng, audio_runs, num_segments) if kind == "both" else []
            for s, e in audio_runs:
                audio[s:e] += proto_audio[c]
                audio_rows.append((filename, s, e, LLP_CATEGORIES[c]))
            for s, e in visual_runs:
                frames[s * frames_per_segment : e * frames_per_segment] += proto_visual[c]
                motion[s:e] += proto_motion[c]
                visual_rows.append((filename, s, e, LLP_CATEGORIES[c]))
        np.save(dirs["vggish"] / f"{youtube_id}.npy", audio.astype(np.float32))
        np.save(dirs["res152"] / f"{youtube_id}.npy", frames.astype(np.float32))
        np.save(dirs["r2plus1d_18"] / f"{youtube_id}.npy", motion.astype(np.float32))
        labels = [LLP_CATEGORIES[c] for c in classes.tolist()]
        return filename, labels, audio_rows if with_truth else [], visual_rows if with_truth else []

    eval_audio, eval_visual = [], []
    for file, count, with_truth in (
        ("AVVP_train.csv", num_train, False),
        ("AVVP_val_pd.csv", num_val, True),
        ("AVVP_test_pd.csv", num_test, True),
    ):
        with (out / file).open("w", newline="") as f:
            writer = csv.writer(f, delimiter="\t", lineterminator="\n")
            writer.writerow(["filename", "event_labels"])
            for _ in range(count):
                filename, labels, audio_rows, visual_rows = video(with_truth)
                row = WeakLabelRow(filename=filename, event_labels=labels)  # valid by construction
                writer.writerow([row.filename, ",".join(row.event_labels)])
                eval_audio += audio_rows
                eval_visual += visual_rows
    for file, rows in (("AVVP_eval_audio.csv", eval_audio), ("AVVP_eval_visual.csv", eval_visual)):
        with (out / file).open("w", newline="") as f:
            writer = csv.writer(f, delimiter="\t", lineterminator="\n")
            writer.writerow(["filename", "onset", "offset", "event_labels"])
            for filename, onset, offset, name in rows:
                EventRow(filename=filename, onset=float(onset), offset=float(offset), event_labels=name)
                writer.writerow([filename, onset, offset, name])
    return out
