"""A synthetic LORIS dataset whose music is caused by the motion, in the released list layout.

Every clip is a dancer (17 COCO key points at 16 Hz) who sways slowly and, on each of its beats,
jerks a random set of limbs in one direction within one frame, then drifts back over half a
second. The clip's music is a genre chord (root, fifth and octave of a genre-specific pitch,
faded in over 0.3 s so that its start is no onset) with a percussive hit on every beat frame:
a falling-pitch kick with a short click, the same waveform every time. Beats fall in a random
subset of the clip's seconds (one per chosen second, away from the second's edges), so the
1-second beat bins of two clips differ and the rhythm is the only cue to them: the synthetic
"I3D" features carry the genre and the dancer's look, not the timing. The music is then a
function of the pose's beats and the genre, which a model can learn, and LORIS's beat metric
tells whether it did.

Layout written under ``out`` (see :mod:`vidlit.formats.loris`)::

    audio/gBR_sBM_c01_d00_mBR0_ch00.wav ...    16-bit mono at ``sample_rate``
    visual/<id>.npy                            [seconds * 2, feature_dim] float32
    pose/<id>.npy                              [seconds * 16, 17, 3] float32 (x, y, confidence)
    {train,test}_{audio,visual,pose}.txt       the three parallel lists of each split

Ids follow AIST++ names (``g<genre>``, dancer ``d``, music ``m``), so the dance reader finds the genre.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from vidlit.core.io import write_atomic
from vidlit.formats._schema import validate
from vidlit.formats.loris import LIST_KINDS, NUM_JOINTS, POSE_RATE, VISUAL_RATE, LorisClip, list_name
from vidlit.formats.music_dance import AIST_GENRES

__all__ = ["beat_frames", "render_music", "write_loris"]

# a standing COCO-17 skeleton in a 1920 x 1080 frame: nose, eyes, ears, shoulders, elbows, wrists,
# hips, knees, ankles
_SKELETON = np.array(
    [
        [960, 300], [945, 285], [975, 285], [925, 295], [995, 295], [900, 380], [1020, 380],
        [870, 480], [1050, 480], [850, 570], [1070, 570], [920, 580], [1000, 580], [915, 720],
        [1005, 720], [910, 860], [1010, 860],
    ],
    dtype=np.float64,
)  # fmt: skip
_LIMBS = (7, 8, 9, 10, 13, 14, 15, 16)  # elbows, wrists, knees, ankles


def beat_frames(rng: np.random.Generator, seconds: int, max_beats: int | None = None) -> np.ndarray:
    """Pose frames of a clip's beats: one in each of a random non-empty subset of its seconds."""
    max_beats = max(1, min(max_beats or seconds - 1, seconds))
    count = int(rng.integers(1, max_beats + 1))
    chosen = np.sort(rng.choice(seconds, size=count, replace=False))
    per_second = int(POSE_RATE)
    # frames 3..12 of a second: a detected onset stays inside its 1-s bin
    return chosen * per_second + rng.integers(3, per_second - 3, size=count)


def _pose(rng: np.random.Generator, frames: int, beats: np.ndarray) -> np.ndarray:
    """``[frames, 17, 3]`` key points: slow sway, a one-frame jerk per beat, a drift back."""
    t = np.arange(frames) / POSE_RATE
    scale = rng.uniform(0.8, 1.2)
    center = np.array([rng.uniform(700, 1200), rng.uniform(-60, 60)])
    xy = (_SKELETON - _SKELETON.mean(0)) * scale + _SKELETON.mean(0) + center
    xy = np.repeat(xy[None], frames, axis=0)
    phase = rng.uniform(0, 2 * math.pi, size=2)
    xy += np.stack(
        [6 * np.sin(2 * math.pi * 0.3 * t + phase[0]), 3 * np.sin(2 * math.pi * 0.2 * t + phase[1])], -1
    )[:, None]
    back = int(POSE_RATE // 2)
    for frame in beats:
        limbs = rng.choice(_LIMBS, size=int(rng.integers(3, len(_LIMBS) + 1)), replace=False)
        angle = rng.uniform(0, 2 * math.pi)
        jump = 60.0 * scale * np.array([math.cos(angle), math.sin(angle)])
        # offset: full at the beat frame, back to zero linearly over half a second
        ramp = np.zeros(frames)
        ramp[frame : frame + back] = 1.0 - np.arange(min(back, frames - frame)) / back
        xy[:, limbs] += ramp[:, None, None] * jump
    xy += rng.normal(0.0, 0.4, size=xy.shape)
    confidence = rng.uniform(0.8, 1.0, size=(frames, NUM_JOINTS, 1))
    return np.concatenate([xy, confidence], -1).astype(np.float32)


def _hit(sample_rate: int) -> np.ndarray:
    """The percussive hit: a kick falling from 300 to 60 Hz plus a 3-ms click, 0.15 s long.

    Its last 50 ms fade out: a cut-off tail would be a second onset.
    """
    t = np.arange(int(0.15 * sample_rate)) / sample_rate
    pitch = 60.0 + 240.0 * np.exp(-t / 0.02)
    kick = np.sin(2 * math.pi * np.cumsum(pitch) / sample_rate) * np.exp(-t / 0.05)
    click = np.random.default_rng(1234).uniform(-1, 1, size=len(t)) * np.exp(-t / 0.003)
    return (0.7 * kick + 0.5 * click) * np.clip((0.15 - t) / 0.05, 0.0, 1.0)


def render_music(beats: np.ndarray, genre: int, num_samples: int, sample_rate: int) -> np.ndarray:
    """``[num_samples]`` music: the genre chord plus the hit on every beat frame (deterministic)."""
    t = np.arange(num_samples) / sample_rate
    # a whole number of cycles in every 0.5 s (the reader's crop step): a crop keeps the chord's phase
    root = 4.0 * round(27.5 * 2 ** (genre / 6))
    chord = sum(0.12 / k * np.sin(2 * math.pi * f * t) for k, f in enumerate((root, 1.5 * root, 2 * root), 1))
    music = np.asarray(chord) * np.clip(t / 0.3, 0.0, 1.0)
    hit = _hit(sample_rate)
    for frame in beats:
        start = int(round(frame / POSE_RATE * sample_rate))
        end = min(num_samples, start + len(hit))
        music[start:end] += hit[: end - start]
    return music


def _wav_bytes(waveform: np.ndarray, sample_rate: int) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(waveform, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def write_loris(
    out: str | Path,
    seed: int = 0,
    num_train: int = 48,
    num_test: int = 8,
    seconds: int = 5,
    sample_rate: int = 4096,
    num_genres: int = 4,
    feature_dim: int = 1024,
) -> Path:
    """Write the synthetic LORIS dataset (see the module docstring) and return ``out``.

    Args:
        out: dataset root.
        seed: the draw.
        num_train: training clips.
        num_test: test clips (the ``test`` lists; the reader validates on them).
        seconds: clip length (whole seconds; LORIS's real clips are 25 or 50 s).
        sample_rate: audio rate (LORIS: 22,050 Hz; the sample data is smaller so CPU training is fast).
        num_genres: AIST genres used (at most 10).
        feature_dim: width of the synthetic I3D features (I3D: 1024).
    """
    out = Path(out)
    if not 1 <= num_genres <= len(AIST_GENRES):
        raise ValueError(f"num_genres must be in 1..{len(AIST_GENRES)}, got {num_genres}")
    if seconds < 2:
        raise ValueError(f"seconds must be at least 2 (beats fall in a subset of the seconds), got {seconds}")
    rng = np.random.default_rng(seed)
    genre_look = rng.normal(size=(num_genres, feature_dim))
    frames, steps, samples = int(seconds * POSE_RATE), int(seconds * VISUAL_RATE), seconds * sample_rate
    for split, count in (("train", num_train), ("test", num_test)):
        lines: dict[str, list[str]] = {kind: [] for kind in LIST_KINDS}
        for i in range(count):
            genre = i % num_genres
            code = AIST_GENRES[genre]
            clip_id = f"g{code}_sBM_c01_d{i % 30:02d}_m{code}{i % 6}_ch{i:02d}" + (
                "" if split == "train" else "_t"
            )
            beats = beat_frames(rng, seconds)
            pose = _pose(rng, frames, beats)
            look = genre_look[genre] + 0.5 * rng.normal(size=feature_dim)
            visual = (look[None] + 0.3 * rng.normal(size=(steps, feature_dim))).astype(np.float32)
            music = render_music(beats, genre, samples, sample_rate)
            record = validate(
                LorisClip,
                {
                    "audio": f"audio/{clip_id}.wav",
                    "visual": f"visual/{clip_id}.npy",
                    "pose": f"pose/{clip_id}.npy",
                },
                "synthetic LORIS clip",
                where=clip_id,
            )
            write_atomic(_wav_bytes(music, sample_rate), out / record.audio)
            for name, array in ((record.visual, visual), (record.pose, pose)):
                buffer = io.BytesIO()
                np.save(buffer, array)
                write_atomic(buffer.getvalue(), out / name)
            for kind in LIST_KINDS:
                lines[kind].append(getattr(record, kind))
        for kind in LIST_KINDS:
            write_atomic("\n".join(lines[kind]) + "\n", out / list_name(split, kind))
    return out
