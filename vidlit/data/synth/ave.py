"""A synthetic AVE dataset in the official layout, learnable only by fusing audio and vision.

Every category has an audio prototype (in the 128-d VGGish space) and a visual prototype (in
the 512-channel VGG-19 map, placed on a 3 x 3 "object" patch of the 7 x 7 grid that moves
between videos, so spatial attention pays off). In an event video of category ``c``, the
event seconds carry both prototypes of ``c``; the other seconds are **background** as AVE
defines it (the event is not both audible and visible): they carry ``c`` in one modality only
(an off-screen sound or a silent object), or nothing. The extra background-only videos of the
weakly supervised setting (``*_noisy.h5``) carry single-modality prototypes throughout, so a
model trained from video-level labels alone also has to learn that one modality is not enough.

A head that looks at one modality only, or that cannot tell where both agree, stays near the
majority (background) rate of about 0.4 segment accuracy; fusing both reaches well above 0.8.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from vidlit.formats.ave import AVE_CATEGORIES, HEADER, NUM_SEGMENTS, SPLIT_FILES, AVEEvent


def _features(
    rng: np.random.Generator,
    audio_on: np.ndarray,
    visual_on: np.ndarray,
    classes: np.ndarray,
    audio_protos: np.ndarray,
    visual_protos: np.ndarray,
    grid: int,
    noise: float,
    noise_floor: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``[10, A]`` audio and ``[10, grid, grid, C]`` visual features of one video."""
    audio = rng.standard_normal((NUM_SEGMENTS, audio_protos.shape[1]), dtype=np.float32) * noise
    audio[audio_on] += audio_protos[classes[audio_on]]
    visual = rng.standard_normal((NUM_SEGMENTS, grid, grid, visual_protos.shape[1]), dtype=np.float32)
    visual = (visual - noise_floor) * noise
    y, x = rng.integers(0, grid - 2, size=2)
    for t in np.nonzero(visual_on)[0]:
        visual[t, y : y + 3, x : x + 3] += visual_protos[classes[t]]
    # VGG pool5 maps are post-ReLU: non-negative and mostly zeros
    return audio, np.maximum(visual, 0.0)


def write_ave(
    out: str | Path,
    seed: int = 0,
    num_categories: int = 4,
    videos_per_category: tuple[int, int, int] = (12, 5, 2),
    num_noisy: int = 16,
    audio_dim: int = 128,
    visual_dim: int = 512,
    grid: int = 7,
    signal: float = 1.0,
    noise: float = 1.0,
    noise_floor: float = 0.0,
) -> Path:
    """Write the AVE annotation text files and feature/label/order h5 files under ``out``.

    Files (as in the official release): ``Annotations.txt``, ``trainSet.txt``, ``valSet.txt``,
    ``testSet.txt``; ``audio_feature.h5`` ``[N, 10, audio_dim]``, ``visual_feature.h5``
    ``[N, 10, grid, grid, visual_dim]``, ``labels.h5`` ``[N, 10, 29]``, ``mil_labels.h5``
    ``[N, 29]`` (key ``avadataset``); ``{train,val,test}_order.h5`` (key ``order``); and
    ``audio_feature_noisy.h5``, ``visual_feature_noisy.h5``, ``labels_noisy.h5`` ``[M, 29]``.
    Feature files are gzip-compressed, one chunk per video (any h5py reader reads them as is); the
    defaults, 92 videos in the official shapes, take about 58 MB.

    Args:
        out: dataset folder (created).
        seed: random seed; equal seeds write equal files.
        num_categories: AVE categories used (the first ``num_categories`` of the 28); the label
            files keep all 29 columns.
        videos_per_category: train, val and test videos of each category.
        num_noisy: background-only extra training videos (weak supervision).
        audio_dim: audio channels (VGGish: 128).
        visual_dim: visual channels (VGG-19 pool5: 512).
        grid: spatial size of the visual maps (7).
        signal: standard deviation of the audio prototypes' entries (visual: twice that, made
            non-negative); higher is easier.
        noise: standard deviation of the per-channel noise.
        noise_floor: visual noise below ``noise_floor * noise`` is cut to zero (the ReLU of
            pool5): 0 leaves half of it non-zero; 1.0 only about 16 %, sparser maps that compress
            about 2.5x better, but change the figures the recipes' headers quote.

    Returns:
        ``out``.
    """
    if not 1 <= num_categories <= len(AVE_CATEGORIES):
        raise ValueError(f"num_categories must be in [1, {len(AVE_CATEGORIES)}], got {num_categories}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    k = len(AVE_CATEGORIES) + 1
    background = k - 1
    audio_protos = rng.normal(0.0, signal, (num_categories, audio_dim)).astype(np.float32)
    visual_protos = np.abs(rng.normal(0.0, 2 * signal, (num_categories, visual_dim))).astype(np.float32)

    # event videos, category-major as in the official Annotations.txt; each split gets its share
    videos, split_of = [], []
    for c in range(num_categories):
        for split, count in zip(("train", "val", "test"), videos_per_category, strict=True):
            videos += [c] * count
            split_of += [split] * count
    n = len(videos)
    audio = np.zeros((n, NUM_SEGMENTS, audio_dim), dtype=np.float32)
    visual = np.zeros((n, NUM_SEGMENTS, grid, grid, visual_dim), dtype=np.float32)
    labels = np.zeros((n, NUM_SEGMENTS, k), dtype=np.float32)
    lines, ids = [], []
    for i, c in enumerate(videos):
        video_id = "".join(
            rng.choice(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), 11)
        )
        ids.append(video_id)
        length = int(rng.integers(2, 8)) if rng.random() < 0.9 else NUM_SEGMENTS
        start = int(rng.integers(0, NUM_SEGMENTS - length + 1))
        event = np.zeros(NUM_SEGMENTS, dtype=bool)
        event[start : start + length] = True
        # background seconds: the category in one modality only, or nothing
        kind = rng.choice(3, NUM_SEGMENTS, p=(0.45, 0.45, 0.1))
        audio_on = event | (~event & (kind == 0))
        visual_on = event | (~event & (kind == 1))
        audio[i], visual[i] = _features(
            rng,
            audio_on,
            visual_on,
            np.full(NUM_SEGMENTS, c),
            audio_protos,
            visual_protos,
            grid,
            noise,
            noise_floor,
        )
        labels[i, :, background] = ~event
        labels[i, event, c] = 1.0
        # through the schema: the sample file is valid by construction
        record = AVEEvent(
            category=AVE_CATEGORIES[c],
            video_id=video_id,
            quality="good",
            start=int(start),
            end=int(start + length),
        )
        lines.append(record.to_line())

    mil = labels.max(axis=1)
    noisy_audio = np.zeros((num_noisy, NUM_SEGMENTS, audio_dim), dtype=np.float32)
    noisy_visual = np.zeros((num_noisy, NUM_SEGMENTS, grid, grid, visual_dim), dtype=np.float32)
    for i in range(num_noisy):
        classes = rng.integers(0, num_categories, NUM_SEGMENTS)
        kind = rng.integers(0, 3, NUM_SEGMENTS)
        noisy_audio[i], noisy_visual[i] = _features(
            rng, kind == 0, kind == 1, classes, audio_protos, visual_protos, grid, noise, noise_floor
        )
    noisy_labels = np.zeros((num_noisy, k), dtype=np.float32)
    noisy_labels[:, background] = 1.0

    (out / "Annotations.txt").write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    for split, name in SPLIT_FILES.items():
        rows = [i for i, s in enumerate(split_of) if s == split]
        (out / name).write_text("\n".join([HEADER, *(lines[i] for i in rows)]) + "\n", encoding="utf-8")
        with h5py.File(out / f"{split}_order.h5", "w") as f:
            f.create_dataset("order", data=np.asarray(rows, dtype=np.int64))
    for name, data in (
        ("audio_feature", audio),
        ("visual_feature", visual),
        ("labels", labels),
        ("mil_labels", mil),
        ("audio_feature_noisy", noisy_audio),
        ("visual_feature_noisy", noisy_visual),
        ("labels_noisy", noisy_labels),
    ):
        with h5py.File(out / f"{name}.h5", "w") as f:
            # gzip (transparent to any h5py reader) in one chunk per video: the half-zero maps
            # shrink about 1.6x and a row still reads alone
            chunks = (1, *data.shape[1:]) if len(data) else None
            f.create_dataset("avadataset", data=data, chunks=chunks, compression="gzip", shuffle=True)
    return out
