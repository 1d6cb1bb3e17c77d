"""A synthetic music-dance dataset in the AIST++ / AIST Dance Video Database layout.

Every music track is a 16 kHz mono ``.wav``: a genre-specific drone (timbre: fundamental and
harmonics) under percussive clicks on the track's beats. Beats follow a genre tempo with an
irregular, music-specific pattern of inter-beat intervals (half, one or one and a half beat
periods), so two windows of one track, or two tracks of one genre, have different rhythms.

Every dance video (H.264, 64 x 64, 25 fps) shows one dancer, a disc whose colour, size and
rest position belong to the dancer (``dXX``), that "hits" on every beat of its music: at each beat
it is kicked along a genre-specific direction and springs back, so its velocity changes abruptly
exactly on the music's beats (the visual onsets). Half the genres hit one way, the other half
alternate sides on successive beats. Dances start with their music at time 0, as AIST++ aligns
motion and music.

So music-to-dance retrieval needs the rhythm (several tracks per genre in every split, several
windows per track), and dance-genre classification needs the motion pattern or the music timbre.

Layout written under ``out`` (as ``aist_plusplus_final`` plus the AIST videos and musics)::

    videos/gBR_sBM_c01_d01_mBR0_ch01.mp4 ...   one camera (c01) per dance sequence
    all_musics/mBR0.wav ...                    the music of each sequence, by music id
    splits/crossmodal_{train,val,test}.txt     sequence names (camera ``cAll``)
    ignore_list.txt                            sequences to skip (one broken training sequence)

Val and test share their musics (music index ``0 .. eval_musics - 1`` of each genre, as the AIST++
cross-modal split shares ``mBR0``, ``mPO1``, ...) with different dancers; training uses the others.
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np

from vidlit.data.synth.videos import write_video
from vidlit.formats.music_dance import AIST_GENRES, SAMPLE_RATE, SPLIT_FILE

# the ten AIST genre codes, in the database's order


def _beat_times(rng: np.random.Generator, period: float, duration: float) -> np.ndarray:
    """Irregular beats: intervals of 0.5, 1 or 1.5 periods, the first within one period."""
    times, t = [], float(rng.uniform(0.1, period))
    while t < duration:
        times.append(t)
        t += period * float(rng.choice((0.5, 1.0, 1.5), p=(0.25, 0.5, 0.25)))
    return np.asarray(times)


def _music(rng: np.random.Generator, genre: int, beats: np.ndarray, duration: float) -> np.ndarray:
    """``[n]`` float waveform: a genre drone plus a decaying click per beat."""
    t = np.arange(int(round(duration * SAMPLE_RATE))) / SAMPLE_RATE
    f0 = 110.0 * 2 ** (genre / 4)
    drone = sum(0.25 / h * np.sin(2 * math.pi * h * f0 * t + rng.uniform(0, 2 * math.pi)) for h in (1, 2, 3))
    click_hz = 1200.0 + 250.0 * genre
    wave_ = np.asarray(drone, dtype=np.float64)
    for b in beats:
        start = int(b * SAMPLE_RATE)
        tau = np.arange(min(int(0.12 * SAMPLE_RATE), len(t) - start)) / SAMPLE_RATE
        burst = np.sin(2 * math.pi * click_hz * tau) + 0.5 * rng.standard_normal(len(tau))
        wave_[start : start + len(tau)] += 0.4 * burst * np.exp(-tau / 0.02)
    wave_ += 0.003 * rng.standard_normal(len(t))
    return np.clip(wave_, -1.0, 1.0)


def _write_wav(path: Path, waveform: np.ndarray) -> None:
    pcm = (np.clip(waveform, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(SAMPLE_RATE)
        f.writeframes(pcm.tobytes())


def _dance(
    rng: np.random.Generator,
    genre: int,
    beats: np.ndarray,
    duration: float,
    fps: int,
    size: int,
    dancer: dict,
) -> np.ndarray:
    """``[T, size, size, 3]`` uint8 frames of a disc kicked along the genre's direction on each beat."""
    angle = math.pi * (genre // 2) / 5
    direction = np.array([math.cos(angle), math.sin(angle)])
    alternate = genre % 2 == 1
    num_frames = int(round(duration * fps))
    times = np.arange(num_frames) / fps
    # kick response: zero before the beat, a fast rise to 1 at `rise` seconds, then a decay
    rise = 0.07
    offset = np.zeros(num_frames)
    for k, b in enumerate(beats):
        tau = np.clip(times - b, 0.0, None) / rise
        sign = -1.0 if alternate and k % 2 else 1.0
        offset += sign * tau * np.exp(1.0 - tau)
    amplitude = size * 0.16 * dancer["amplitude"]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    background = rng.integers(10, 40, size=(size, size, 1)).repeat(3, axis=2).astype(np.int16)
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for i in range(num_frames):
        cx, cy = dancer["center"] + amplitude * offset[i] * direction
        frame = background + rng.integers(-3, 4, size=background.shape, dtype=np.int16)
        frame[(xx - cx) ** 2 + (yy - cy) ** 2 <= dancer["radius"] ** 2] = dancer["color"]
        frames[i] = np.clip(frame, 0, 255).astype(np.uint8)
    return frames


def write_music_dance(
    out: str | Path,
    seed: int = 0,
    num_genres: int = 10,
    train_musics: int = 2,
    eval_musics: int = 2,
    train_dances: int = 3,
    eval_dances: int = 2,
    duration: float = 4.0,
    fps: int = 25,
    size: int = 64,
) -> Path:
    """Write the synthetic AIST++-layout music-dance dataset (module docstring) under ``out``.

    Args:
        out: dataset folder (created).
        seed: random seed; equal seeds write equal files.
        num_genres: genres used, the first ``num_genres`` of :data:`AIST_GENRES`.
        train_musics: training music tracks per genre.
        eval_musics: music tracks per genre shared by val and test.
        train_dances: dance sequences per training track.
        eval_dances: dance sequences per evaluation track in each of val and test.
        duration: seconds of every dance video (music tracks are 1 s longer).
        fps: video frame rate.
        size: frame side in pixels (even).

    Returns:
        ``out``.
    """
    if not 1 <= num_genres <= len(AIST_GENRES):
        raise ValueError(f"num_genres must be in [1, {len(AIST_GENRES)}], got {num_genres}")
    if train_musics + eval_musics > 10:
        raise ValueError(
            f"AIST music ids have one digit: need train_musics + eval_musics <= 10, got "
            f"{train_musics} + {eval_musics}"
        )
    out = Path(out)
    for sub in ("videos", "all_musics", "splits"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    dancer_count = 0
    for g in range(num_genres):
        genre = AIST_GENRES[g]
        period = 60.0 / (90.0 + 8.0 * g)
        for m in range(eval_musics + train_musics):
            music_id = f"m{genre}{m}"
            beats = _beat_times(rng, period, duration + 1.0)
            _write_wav(out / "all_musics" / f"{music_id}.wav", _music(rng, g, beats, duration + 1.0))
            plan = (
                [("val", eval_dances), ("test", eval_dances)]
                if m < eval_musics
                else [("train", train_dances)]
            )
            for split, count in plan:
                for c in range(count):
                    dancer_count += 1
                    dancer = {
                        "color": rng.integers(90, 256, size=3),
                        "radius": float(rng.uniform(size * 0.09, size * 0.14)),
                        "center": rng.uniform(size * 0.35, size * 0.65, size=2),
                        "amplitude": float(rng.uniform(0.8, 1.2)),
                    }
                    dancer_id = (dancer_count - 1) % 30 + 1
                    name = f"g{genre}_sBM_cAll_d{dancer_id:02d}_{music_id}_ch{c + 1:02d}"
                    frames = _dance(rng, g, beats, duration, fps, size, dancer)
                    write_video(out / "videos" / f"{name.replace('_cAll_', '_c01_')}.mp4", frames, fps=fps)
                    splits[split].append(name)
    # AIST++ lists sequences with broken annotations in ignore_list.txt; the loader must skip them
    ignored = splits["train"][-1] if splits["train"] else None
    for split, names in splits.items():
        (out / SPLIT_FILE.format(split=split)).write_text("".join(f"{n}\n" for n in names))
    (out / "ignore_list.txt").write_text(f"{ignored}\n" if ignored else "")
    if ignored:
        # its video is unreadable: only skipping it per ignore_list.txt keeps the loader happy
        (out / "videos" / f"{ignored.replace('_cAll_', '_c01_')}.mp4").write_bytes(b"")
    return out
