"""A synthetic XD-Violence dataset in the official feature-list layout.

Each video is a sequence of snippets: a per-video scene vector plus noise, the same in its five
crops up to small crop noise (as five crops of one clip are). Inside a violent video's annotated
frame ranges, a violence prototype is added to BOTH the visual and the audio features, with the
strength of the fraction of the snippet's 16 frames that lie in a range. Distractor events appear
in one modality only (a visual-only burst, an audio-only burst) in normal and violent videos
alike, so neither stream alone separates violence cleanly and the audio-visual interaction pays.
Only test videos are annotated (``annotations.txt``), as in the real dataset: training learns
from the ``_label_A`` / ``_label_B...`` names alone.

Layout written under ``out``::

    i3d-features/RGB/<video>__{0..4}.npy        [T, feature_dim] float32 (train)
    i3d-features/RGBTest/<video>__{0..4}.npy    (test)
    vggish-features/train/<video>__vggish.npy   [T, audio_dim] float32
    vggish-features/test/<video>__vggish.npy
    list/rgb.list  list/audio.list  list/rgb_test.list  list/audio_test.list  (violent first)
    list/gt.npy                                  concatenated frame labels, as make_gt.py
    annotations.txt                              <video> start end [start end ...] (violent test videos)

List entries are relative to ``out`` so the folder can be moved.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vidlit.formats.xd_violence import AUDIO_SUFFIX, CLIP_LEN, AnnotationLine

MOVIES = (
    "Bad.Boys.1995",
    "Black.Hawk.Down.2001",
    "Braveheart.1995",
    "Casino.Royale.2006",
    "Deadpool.2016",
    "Fast.Five.2011",
    "Ip.Man.2008",
    "Salt.2010",
    "A.Beautiful.Mind.2001",
    "Lord.of.War",
)
VIOLENT_LABELS = ("B1-0-0", "B2-0-0", "B4-0-0", "B5-0-0", "B6-0-0", "G-0-0", "B1-B2-0", "B2-G-0")


def _name(rng: np.random.Generator, index: int, violent: bool) -> str:
    movie = MOVIES[index % len(MOVIES)]
    start = int(rng.integers(0, 2 * 3600))
    end = start + int(rng.integers(20, 200))
    stamp = "_".join(f"{t // 3600:02d}-{t // 60 % 60:02d}-{t % 60:02d}" for t in (start, end))
    label = VIOLENT_LABELS[int(rng.integers(len(VIOLENT_LABELS)))] if violent else "A"
    # the index keeps names unique; real names are unique by their time stamps
    return f"{movie}.{index:03d}__#{stamp}_label_{label}"


def _ranges(rng: np.random.Generator, frames: int) -> list[tuple[int, int]]:
    """One or two violent frame ranges covering roughly 20-45% of the video."""
    count = 1 if frames < 30 * CLIP_LEN or rng.random() < 0.5 else 2
    ranges = []
    for part in range(count):
        lo, hi = part * frames // count, (part + 1) * frames // count
        length = int(rng.uniform(0.25, 0.55) * (hi - lo))
        start = int(rng.integers(lo, hi - length))
        ranges.append((start, start + length))
    return ranges


def _burst(rng: np.random.Generator, snippets: int) -> np.ndarray:
    """A 0/1 mask of one short run of snippets."""
    mask = np.zeros(snippets, dtype=np.float32)
    length = int(rng.integers(2, max(3, snippets // 5)))
    start = int(rng.integers(0, snippets - length))
    mask[start : start + length] = 1.0
    return mask


def write_xd_violence(
    out: str | Path,
    num_train: int = 40,
    num_test: int = 16,
    feature_dim: int = 1024,
    audio_dim: int = 128,
    num_crops: int = 5,
    min_snippets: int = 16,
    max_snippets: int = 40,
    signal: float = 0.2,
    distractor: float = 0.3,
    scene: float = 0.1,
    seed: int = 0,
) -> Path:
    """Write a small XD-Violence-style dataset (half violent, half normal per split).

    Args:
        out: dataset folder (created).
        num_train: training videos.
        num_test: test videos.
        feature_dim: I3D RGB width.
        audio_dim: VGGish width.
        num_crops: crops per video.
        min_snippets: shortest video, in 16-frame snippets.
        max_snippets: longest video.
        signal: standard deviation of each dimension of the violence prototypes (the
            per-snippet noise has 1).
        distractor: the same for the single-modality distractor bursts.
        scene: the same for each video's constant scene vector.
        seed: random seed; the same seed writes the same files.

    Returns:
        ``out``.
    """
    out = Path(out)
    rng = np.random.default_rng(seed)
    violence_v = rng.normal(0, signal, feature_dim).astype(np.float32)
    violence_a = rng.normal(0, signal, audio_dim).astype(np.float32)
    distract_v = rng.normal(0, distractor, feature_dim).astype(np.float32)
    distract_a = rng.normal(0, distractor, audio_dim).astype(np.float32)
    (out / "list").mkdir(parents=True, exist_ok=True)
    annotations, gt = [], []
    index = 0
    for split, count, rgb_dir, audio_dir, suffix in (
        ("train", num_train, "i3d-features/RGB", "vggish-features/train", ""),
        ("test", num_test, "i3d-features/RGBTest", "vggish-features/test", "_test"),
    ):
        (out / rgb_dir).mkdir(parents=True, exist_ok=True)
        (out / audio_dir).mkdir(parents=True, exist_ok=True)
        videos = []
        for i in range(count):
            violent = i < count // 2
            name = _name(rng, index, violent)
            index += 1
            snippets = int(rng.integers(min_snippets, max_snippets + 1))
            frames = snippets * CLIP_LEN
            ranges = _ranges(rng, frames) if violent else []
            frame_gt = np.zeros(frames, dtype=np.float32)
            for start, end in ranges:
                frame_gt[start:end] = 1.0
            strength = frame_gt.reshape(snippets, CLIP_LEN).mean(1)  # t
            scene_v = rng.normal(0, scene, feature_dim).astype(np.float32)
            scene_a = rng.normal(0, scene, audio_dim).astype(np.float32)
            visual = scene_v + rng.normal(0, 1, (snippets, feature_dim)).astype(np.float32)
            audio = scene_a + rng.normal(0, 1, (snippets, audio_dim)).astype(np.float32)
            visual += strength[:, None] * violence_v
            audio += strength[:, None] * violence_a
            visual += _burst(rng, snippets)[:, None] * distract_v
            audio += _burst(rng, snippets)[:, None] * distract_a
            np.save(out / audio_dir / f"{name}__vggish.npy", audio.astype(np.float32))
            for crop in range(num_crops):
                noisy = visual + rng.normal(0, 0.3, visual.shape).astype(np.float32)
                np.save(out / rgb_dir / f"{name}__{crop}.npy", noisy.astype(np.float32))
            videos.append(name)
            if split == "test":
                gt.append(frame_gt)
                if ranges:  # through the schema: the sample file is valid by construction
                    line = AnnotationLine(video=name, ranges=[(int(s), int(e)) for s, e in ranges])
                    annotations.append(" ".join([line.video, *(f"{s} {e}" for s, e in line.ranges)]))
        # make_list.py writes violent videos first, then normal ones; crops in order
        (out / "list" / f"rgb{suffix}.list").write_text(
            "".join(f"{rgb_dir}/{name}__{crop}.npy\n" for name in videos for crop in range(num_crops))
        )
        (out / "list" / f"audio{suffix}.list").write_text(
            "".join(f"{audio_dir}/{name}{AUDIO_SUFFIX}.npy\n" for name in videos)
        )
    np.save(out / "list" / "gt.npy", np.concatenate(gt))
    (out / "annotations.txt").write_text("".join(f"{line}\n" for line in annotations))
    return out
