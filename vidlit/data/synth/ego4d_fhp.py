"""A synthetic Ego4D Future Hand Prediction dataset: clips of two hands reaching for an object.

Every clip shows a dark, noisy background, an object (a blue square) and two hands (skin-toned
disks, the left one lighter) that move at constant speed from where they start towards the
object, reaching it at the contact frame. The five key frames (``pre_45``, ``pre_30``,
``pre_15``, ``pre_frame``, ``contact_frame``) come after the frames a model observes, so it has to
extrapolate the hands' motion and read the object's position. Some key-frame hands are left
unannotated (as in Ego4D), exercising the masking. Videos are written with PyAV
(:func:`vidlit.data.synth.videos.write_video`), annotations in the official ``fho_hands`` layout.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np

from vidlit.data.synth.videos import preferred_video_codec, write_video
from vidlit.formats._schema import validate
from vidlit.formats.ego4d_fhp import HANDS, KEY_FRAMES, FHPFile

HAND_COLORS = dict(zip(HANDS, ((235, 190, 150), (190, 130, 90))))
OBJECT_COLOR = (40, 90, 230)


def write_ego4d_fhp(
    out: str | Path,
    num_train: int = 256,
    num_val: int = 32,
    num_test: int = 4,
    size: int = 64,
    fps: int = 30,
    observe_frames: int = 32,
    missing_rate: float = 0.15,
    seed: int = 0,
) -> Path:
    """Write ``fho_hands_{train,val,test_unannotated}.json`` and ``clips/<clip_uid>.mp4``.

    Key frames are 15 frames apart as in Ego4D at 30 fps (``pre_45`` is 1.5 s, ``pre_30`` 1 s,
    ``pre_15`` 0.5 s before contact; ``pre_frame`` is 6 frames before contact here).

    Args:
        out: dataset folder (created).
        num_train: training clips (one action each).
        num_val: validation clips.
        num_test: clips in the unannotated test file.
        size: frame side in pixels (even); hand coordinates are pixels of these frames.
        fps: frame rate.
        observe_frames: frames before ``pre_45`` (what a model may look at).
        missing_rate: probability that a hand is unannotated at a key frame.
        seed: everything is a function of it.

    Returns:
        ``out``.
    """
    if size < 32 or size % 2:
        raise ValueError(f"size must be even and at least 32, got {size}")
    out = Path(out)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    codec = preferred_video_codec()
    pre45 = observe_frames
    key_frames = dict(zip(KEY_FRAMES, (pre45, pre45 + 15, pre45 + 30, pre45 + 39, pre45 + 45)))
    num_frames = key_frames["contact_frame"] + 3
    radius, half = size / 10, size / 12
    clip_counter = iter(range(1, 10**6))
    grid_y, grid_x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5

    def clip_record(split: str) -> dict:
        clip_id = next(clip_counter)
        clip_uid = str(uuid.UUID(bytes=rng.integers(0, 256, 16, dtype=np.uint8).tobytes(), version=4))
        target = rng.uniform(0.3 * size, 0.7 * size, size=2)
        # the hands end either side of the object, start anywhere in their half of the frame
        ends = {
            "left": target + [-1.2 * radius, 0.5 * radius],
            "right": target + [1.2 * radius, 0.5 * radius],
        }
        starts = {
            "left": rng.uniform([0.05 * size, 0.45 * size], [0.45 * size, 0.95 * size]),
            "right": rng.uniform([0.55 * size, 0.45 * size], [0.95 * size, 0.95 * size]),
        }
        contact = key_frames["contact_frame"]

        def position(hand: str, t: int) -> np.ndarray:
            a = min(t / contact, 1.0)
            return (1 - a) * starts[hand] + a * ends[hand]

        background = rng.integers(10, 45, size=(size, size, 1)).astype(np.int16)
        # all frames at once: legend t frames, y/x pixels
        times = np.arange(num_frames)
        frames = background[None] + rng.integers(-4, 5, size=(num_frames, size, size, 3), dtype=np.int16)
        cx, cy = target
        frames[:, int(cy - half) : int(cy + half), int(cx - half) : int(cx + half)] = OBJECT_COLOR
        for hand, color in HAND_COLORS.items():
            centres = np.stack([position(hand, t) for t in times])  # t 2
            inside = (grid_x[None] - centres[:, 0, None, None]) ** 2 + (
                grid_y[None] - centres[:, 1, None, None]
            ) ** 2 <= radius**2  # t y x
            frames[inside] = color
        frames = np.clip(frames, 0, 255).astype(np.uint8)
        write_video(out / "clips" / f"{clip_uid}.mp4", frames, fps=fps, codec=codec)

        video_offset = int(rng.integers(0, 30_000))
        action = {
            "action_start_sec": round((video_offset + pre45) / fps, 4),
            "action_end_sec": round((video_offset + num_frames) / fps, 4),
            "action_start_frame": video_offset + pre45,
            "action_end_frame": video_offset + num_frames,
            "action_clip_start_sec": round(pre45 / fps, 4),
            "action_clip_end_sec": round(num_frames / fps, 4),
            "action_clip_start_frame": pre45,
            "action_clip_end_frame": num_frames,
        }
        for name, t in key_frames.items():
            entry = {"frame": video_offset + t, "clip_frame": t}
            if split != "test":
                entry["boxes"] = [
                    {f"{hand}_hand": [round(float(v), 2) for v in position(hand, t)]}
                    for hand in HAND_COLORS
                    if rng.random() >= missing_rate
                ]
            action[name] = entry
        return {"clip_id": clip_id, "clip_uid": clip_uid, "video_uid": clip_uid, "frames": [action]}

    for split, count, file in (
        ("train", num_train, "fho_hands_train.json"),
        ("val", num_val, "fho_hands_val.json"),
        ("test", num_test, "fho_hands_test_unannotated.json"),
    ):
        document = {
            "version": "v1",
            "date": "synthetic",
            "description": f"vidlit synthetic Ego4D future hand prediction {split} split (not real data)",
            "manifest": "synthetic",
            "split": split,
            "clips": [clip_record(split) for _ in range(count)],
        }
        # through the contract's schema: what is written is what a reader accepts
        validate(FHPFile, document, out / file)
        (out / file).write_text(json.dumps(document, indent=1))
    return out
