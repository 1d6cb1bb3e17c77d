"""A synthetic Ego4D State Change Object Detection dataset in the official annotation layout.

Every clip shows a few coloured shapes on a dark, noisy background. One of them, the object of
change, switches colour at the clip's PNR (point-of-no-return) frame while a skin-coloured "hand"
reaches it; the distractor shapes never change. All objects stay put, so the object of change
is only told apart by what happens over time: a detector has to look at the clip, not at one
frame, to find it.

Written layout (the Ego4D FHO ``scod`` files, plus the COCO files the official baselines build)::

    out/
      fho_scod_train.json  fho_scod_val.json  fho_scod_test_unannotated.json
      clips/<clip_uid>.mp4                       (indexed by each frame's clip_frame_number)
      coco_annotations/train.json  val.json      (PNR frames, one category: object_of_change)

Each clip of the JSON has ``pre_frame`` / ``pnr_frame`` / ``post_frame`` entries with
``frame_number`` (in the parent video), ``clip_frame_number``, ``width``, ``height`` and a
``bbox`` list of ``{"object_type", "structured_noun", "instance_number", "bbox": {"x", "y",
"width", "height"}}`` in pixels; ``object_type`` is ``object_of_change`` or ``right_hand``. The
unannotated test file leaves out every ``bbox`` list, as the challenge's test file does.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from vidlit.data.synth.videos import SHAPES, preferred_video_codec, random_background, shape_mask, write_video
from vidlit.formats._schema import validate
from vidlit.formats.ego4d_scod import OBJECT_OF_CHANGE, SCODFile, scod_to_coco

PALETTE = {
    "red": (220, 40, 40),
    "green": (40, 200, 40),
    "blue": (40, 70, 230),
    "yellow": (230, 210, 40),
    "white": (235, 235, 235),
}
HAND_COLOR = (224, 172, 140)
NOUNS = ("dough", "onion", "paper", "cloth", "wood", "egg")
PNR_OFFSET = 6  # clip frames between pre and PNR, and between PNR and post


def _uid(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def _bbox(mask: np.ndarray) -> dict[str, float]:
    """The tight ``{"x", "y", "width", "height"}`` pixel box of a mask (pixel edges, not centres)."""
    ys, xs = np.nonzero(mask)
    x0, y0 = float(xs.min()), float(ys.min())
    return {"x": x0, "y": y0, "width": float(xs.max() + 1) - x0, "height": float(ys.max() + 1) - y0}


def _place(rng: np.random.Generator, size: int, extents: list[float]) -> list[tuple[float, float]]:
    """Centres for shapes of the given extents, inside the frame and apart from each other."""
    centres: list[tuple[float, float]] = []
    for extent in extents:
        for _ in range(200):
            c = tuple(rng.uniform(extent / 2 + 1, size - extent / 2 - 1, size=2))
            if all(
                np.hypot(c[0] - o[0], c[1] - o[1]) > (extent + e) / 2 + 2 for o, e in zip(centres, extents)
            ):
                break
        centres.append(c)
    return centres


def _render_clip(
    rng: np.random.Generator, num_frames: int, size: int, pnr: int, num_distractors: int
) -> tuple:
    """``[T, H, W, 3]`` frames and, per frame, the object-of-change and hand masks."""
    extents = list(rng.uniform(size * 0.22, size * 0.34, size=1 + num_distractors))
    centres = _place(rng, size, extents)
    shapes = [SHAPES[i] for i in rng.integers(len(SHAPES), size=len(extents))]
    colors = list(PALETTE)
    before, after = rng.choice(len(colors), size=2, replace=False)
    distractor_colors = rng.integers(len(colors), size=num_distractors)
    masks = [shape_mask(s, size, c, e) for s, c, e in zip(shapes, centres, extents)]
    # the hand slides in from the bottom edge and rests on the object from the PNR frame on
    target = centres[0]
    start = (float(rng.uniform(size * 0.2, size * 0.8)), size + size * 0.1)
    hand_extent = size * 0.2
    background = random_background(rng, size)
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    hand_masks = []
    for t in range(num_frames):
        frame = background + rng.integers(-4, 5, size=background.shape, dtype=np.int16)
        for k in range(num_distractors, 0, -1):
            frame[masks[k]] = PALETTE[colors[distractor_colors[k - 1]]]
        frame[masks[0]] = PALETTE[colors[after if t >= pnr else before]]
        progress = min(t / max(pnr, 1), 1.0)
        hand_centre = (
            start[0] + (target[0] - start[0]) * progress,
            start[1] + (target[1] + extents[0] * 0.4 - start[1]) * progress,
        )
        hand = shape_mask("circle", size, hand_centre, hand_extent)
        frame[hand] = HAND_COLOR
        hand_masks.append(hand)
        frames[t] = np.clip(frame, 0, 255).astype(np.uint8)
    # the hand covers part of the object: its visible pixels are what an annotator boxes
    object_masks = [masks[0] & ~hand for hand in hand_masks]
    return frames, object_masks, hand_masks


def _frame_entry(
    name: str, clip_frame: int, parent_start: int, size: int, boxes: list[dict[str, Any]] | None
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "frame_number": parent_start + clip_frame,
        "clip_frame_number": clip_frame,
        "width": size,
        "height": size,
    }
    if boxes is not None:
        entry["bbox"] = boxes
    return entry


def write_ego4d_scod(
    out: str | Path,
    seed: int = 0,
    num_train: int = 128,
    num_val: int = 32,
    num_test: int = 8,
    num_frames: int = 32,
    size: int = 64,
    fps: int = 15,
    num_distractors: int = 2,
) -> Path:
    """Write ``fho_scod_{train,val,test_unannotated}.json``, ``clips/*.mp4`` and COCO files.

    Args:
        out: dataset folder (created).
        seed: everything is a function of it.
        num_train: training clips.
        num_val: validation clips.
        num_test: clips of the unannotated test file.
        num_frames: frames per clip video (at least ``2 * PNR_OFFSET + 13``: the PNR frame is drawn from
            ``[PNR_OFFSET + 8, num_frames - PNR_OFFSET - 4)``).
        size: frame side in pixels (even).
        fps: frame rate of the clip videos.
        num_distractors: shapes besides the object of change that never change.

    Returns:
        ``out``.
    """
    if num_frames < 2 * PNR_OFFSET + 13:
        raise ValueError(f"num_frames must be at least {2 * PNR_OFFSET + 13}, got {num_frames}")
    if size < 32 or size % 2:
        raise ValueError(f"size must be even and at least 32, got {size}")
    out = Path(out)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    codec = preferred_video_codec()
    clip_id = 0
    for split, count in (("train", num_train), ("val", num_val), ("test_unannotated", num_test)):
        clips = []
        for _ in range(count):
            # the PNR sits mid-clip, with room for an 8-frame window at stride 2 around it
            pnr = int(rng.integers(PNR_OFFSET + 8, num_frames - PNR_OFFSET - 4))
            frames, object_masks, hand_masks = _render_clip(rng, num_frames, size, pnr, num_distractors)
            clip_uid, video_uid = _uid(rng), _uid(rng)
            write_video(out / "clips" / f"{clip_uid}.mp4", frames, fps=fps, codec=codec)
            parent_start = int(rng.integers(0, 20)) * 300
            noun = NOUNS[int(rng.integers(len(NOUNS)))]
            clip: dict[str, Any] = {
                "clip_id": clip_id,
                "clip_uid": clip_uid,
                "video_uid": video_uid,
                "clip_parent_start_sec": parent_start / fps,
                "clip_parent_end_sec": (parent_start + num_frames) / fps,
                "clip_parent_start_frame": parent_start,
                "clip_parent_end_frame": parent_start + num_frames,
            }
            clip_id += 1
            for name, frame in (
                ("pre_frame", pnr - PNR_OFFSET),
                ("pnr_frame", pnr),
                ("post_frame", pnr + PNR_OFFSET),
            ):
                boxes = None
                if split != "test_unannotated":
                    boxes = [
                        {
                            "object_type": OBJECT_OF_CHANGE,
                            "structured_noun": noun,
                            "instance_number": 1,
                            "bbox": _bbox(object_masks[frame]),
                        },
                        {
                            "object_type": "right_hand",
                            "structured_noun": None,
                            "instance_number": 1,
                            "bbox": _bbox(hand_masks[frame]),
                        },
                    ]
                clip[name] = _frame_entry(name, frame, parent_start, size, boxes)
            clips.append(clip)
        doc = {
            "version": "v1",
            "description": "SYNTHETIC sample in the Ego4D FHO State Change Object Detection layout (vidlit)",
            "split": split.split("_")[0],
            "clips": clips,
        }
        path = out / f"fho_scod_{split}.json"
        # through the contract's schema: what is written is what a reader accepts
        records = validate(SCODFile, doc, path)
        path.write_text(json.dumps(doc, indent=1))
        if split != "test_unannotated":
            (out / "coco_annotations").mkdir(exist_ok=True)
            coco = scod_to_coco(records.clips)
            (out / "coco_annotations" / f"{split}.json").write_text(json.dumps(coco))
    return out
