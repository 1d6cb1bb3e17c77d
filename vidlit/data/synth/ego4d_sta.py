"""A synthetic Ego4D Short-Term Object Interaction Anticipation dataset in the official layout.

Each video shows two coloured objects on a dark, noisy background and a skin-coloured "hand"
that approaches one of them, the next-active object, at constant speed:

- the noun is the object's colour (its shape is random, a nuisance);
- the verb is the direction the hand comes from (left, right, above, below);
- the time to contact is the hand's remaining gap to the object at the annotated frame divided
  by its speed, so it is read from the distance between hand and object.

The annotated frame is the last frame of the video, so a model sees the approach up to it and
has to anticipate the contact. The second object is a distractor (not annotated), which appears
in the detections file with a lower score.

Layout (the official v1/v2 STA files, ``EGO4D/forecasting``)::

    out/
      fho_sta_train.json, fho_sta_val.json, fho_sta_test_unannotated.json
          {"info": {..., "video_metadata": {video_uid: {fps, frame_width, frame_height, ...}}},
           "noun_categories": [{"id", "name"}], "verb_categories": [{"id", "name"}],
           "annotations": [{"uid", "video_uid", "frame", "clip_uid", "clip_frame",
                            "objects": [{"box": [x1, y1, x2, y2], "noun_category_id",
                                         "verb_category_id", "time_to_contact"}]}]}
      object_detections.json   {uid: [{"box", "score", "noun_category_id"}]}  (the baseline's
                               Faster R-CNN output layout, here ground truth jittered + distractor)
      videos/<video_uid>.mp4
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np

from vidlit.data.synth.videos import SHAPES, preferred_video_codec, random_background, shape_mask, write_video
from vidlit.formats._schema import validate
from vidlit.formats.ego4d_sta import STAFile

# a few Ego4D STA nouns and verbs, so files look like the real thing
NOUNS = {"cup": (220, 40, 40), "knife": (40, 200, 40), "bowl": (40, 70, 230), "apple": (230, 210, 40)}
VERBS = {"take": (1, 0), "put": (-1, 0), "open": (0, 1), "cut": (0, -1)}  # the hand's direction of motion
HAND_COLOR = (235, 180, 140)
OBJECT_EXTENT = 14.0
HAND_EXTENT = 12.0


def _uid(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.integers(0, 256, 16, dtype=np.uint8).tobytes(), version=4))


def _box(center: tuple[float, float], extent: float, size: int) -> list[float]:
    half = extent / 2
    x, y = center
    return [
        round(max(0.0, x - half), 2),
        round(max(0.0, y - half), 2),
        round(min(size - 1.0, x + half), 2),
        round(min(size - 1.0, y + half), 2),
    ]


def _render(
    rng: np.random.Generator,
    size: int,
    num_frames: int,
    objects: list[tuple[str, str, tuple[float, float]]],
    hand_end: tuple[float, float],
    direction: tuple[int, int],
    speed: float,
) -> np.ndarray:
    """``[T, size, size, 3]`` frames: static objects, the hand moving towards ``hand_end``."""
    background = random_background(rng, size)
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    dx, dy = direction
    for t in range(num_frames):
        frame = background + rng.integers(-4, 5, size=background.shape, dtype=np.int16)
        for noun, shape, center in objects:
            frame[shape_mask(shape, size, center, OBJECT_EXTENT)] = NOUNS[noun]
        back = (num_frames - 1 - t) * speed
        hand = (hand_end[0] - dx * back, hand_end[1] - dy * back)
        frame[shape_mask("circle", size, hand, HAND_EXTENT)] = HAND_COLOR
        frames[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return frames


def write_ego4d_sta(
    out: str | Path,
    num_train: int = 192,
    num_val: int = 64,
    num_test: int = 8,
    num_frames: int = 16,
    size: int = 64,
    fps: int = 30,
    speed: float = 1.5,
    ttc_range: tuple[float, float] = (0.1, 0.8),
    seed: int = 0,
) -> Path:
    """Write the STA annotation files, a detections file and one short video per annotation.

    Args:
        out: dataset folder (created).
        num_train: annotated frames (= videos) in ``fho_sta_train.json``.
        num_val: annotated frames in ``fho_sta_val.json``.
        num_test: frames in ``fho_sta_test_unannotated.json`` (no ``objects``).
        num_frames: frames per video; the last is the annotated frame.
        size: frame side in pixels (even).
        fps: frame rate.
        speed: the hand's speed in pixels per frame.
        ttc_range: time to contact range in seconds.
        seed: everything is a function of it.

    Returns:
        ``out``.
    """
    if size < 48 or size % 2:
        raise ValueError(f"size must be even and at least 48, got {size}")
    if num_frames < 2:
        raise ValueError(f"num_frames must be at least 2, got {num_frames}")
    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    codec = preferred_video_codec()
    nouns, verbs = list(NOUNS), list(VERBS)
    detections: dict[str, list[dict]] = {}
    reach = (OBJECT_EXTENT + HAND_EXTENT) / 2  # centre distance at contact

    def sample(index: int, annotated: bool) -> tuple[dict, dict]:
        noun = nouns[index % len(nouns)]
        verb = verbs[(index // len(nouns)) % len(verbs)]
        ttc = float(rng.uniform(*ttc_range))
        gap = ttc * fps * speed  # pixels the hand still has to travel
        dx, dy = VERBS[verb]
        margin, hand_margin = OBJECT_EXTENT / 2 + 1, HAND_EXTENT / 2 + 1
        # the whole hand is inside the frame at the annotated frame
        if dx > 0 or dy > 0:
            along_lo, along_hi = min(size - margin, hand_margin + gap + reach), size - margin
        else:
            along_lo, along_hi = margin, max(margin, size - hand_margin - gap - reach)
        along = float(rng.uniform(along_lo, max(along_lo, along_hi)))
        across = float(rng.uniform(margin, size - margin))
        center = (along, across) if dx else (across, along)
        hand_end = (center[0] - dx * (gap + reach), center[1] - dy * (gap + reach))
        # the distractor: another noun, away from the target and the hand's path
        other = nouns[(nouns.index(noun) + 1 + int(rng.integers(len(nouns) - 1))) % len(nouns)]
        for _ in range(100):
            spot = (float(rng.uniform(margin, size - margin)), float(rng.uniform(margin, size - margin)))
            off_target = max(abs(spot[0] - center[0]), abs(spot[1] - center[1])) > OBJECT_EXTENT + 2
            # perpendicular distance from the hand's line of approach
            rel = (spot[0] - center[0], spot[1] - center[1])
            off_path = abs(rel[0] * dy - rel[1] * dx) > reach + 2 or (rel[0] * dx + rel[1] * dy) > 0
            if off_target and off_path:
                break
        objects = [(noun, SHAPES[rng.integers(len(SHAPES))], center), (other, SHAPES[rng.integers(3)], spot)]
        frames = _render(rng, size, num_frames, objects, hand_end, (dx, dy), speed)
        video_uid = _uid(rng)
        write_video(out / "videos" / f"{video_uid}.mp4", frames, fps=fps, codec=codec)
        frame = num_frames - 1
        uid = f"{video_uid}_{frame:07d}"
        box, distractor_box = _box(center, OBJECT_EXTENT, size), _box(spot, OBJECT_EXTENT, size)
        record = {"uid": uid, "video_uid": video_uid, "frame": frame, "clip_id": index,
                  "clip_uid": video_uid, "clip_frame": frame}  # fmt: skip
        if annotated:
            record["objects"] = [
                {
                    "box": box,
                    "verb_category_id": verbs.index(verb),
                    "noun_category_id": nouns.index(noun),
                    "time_to_contact": round(ttc, 3),
                }
            ]
        jitter = rng.normal(0, 1.0, 4)
        detections[uid] = [
            {
                "box": [round(float(v), 2) for v in np.clip(np.array(box) + jitter, 0, size - 1)],
                "score": round(float(rng.uniform(0.6, 1.0)), 4),
                "noun_category_id": nouns.index(noun),
            },
            {
                "box": distractor_box,
                "score": round(float(rng.uniform(0.1, 0.6)), 4),
                "noun_category_id": nouns.index(other),
            },
        ]
        metadata = {"fps": fps, "frame_width": size, "frame_height": size, "num_frames": num_frames,
                    "duration_sec": num_frames / fps}  # fmt: skip
        return record, {video_uid: metadata}

    index = 0
    for split, count, file in (
        ("train", num_train, "fho_sta_train.json"),
        ("val", num_val, "fho_sta_val.json"),
        ("test", num_test, "fho_sta_test_unannotated.json"),
    ):
        annotations, metadata = [], {}
        for _ in range(count):
            record, meta = sample(index, split != "test")
            annotations.append(record)
            metadata.update(meta)
            index += 1
        document = {
            "info": {
                "version": "v2",
                "date": "synthetic",
                "description": f"vidlit synthetic Ego4D STA {split} split (not real data)",
                "split": split,
                "video_metadata": metadata,
            },
            "noun_categories": [{"id": i, "name": n} for i, n in enumerate(nouns)],
            "verb_categories": [{"id": i, "name": v} for i, v in enumerate(verbs)],
            "annotations": annotations,
        }
        # through the contract's schema: what is written is what a reader accepts
        validate(STAFile, document, out / file)
        (out / file).write_text(json.dumps(document, indent=1))
    (out / "object_detections.json").write_text(json.dumps(detections))
    return out
