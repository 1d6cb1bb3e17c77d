"""The Ego4D Future Hand Prediction contract: annotation schema, batch / target types, constants.

The official files (``fho_hands_train.json``, ``fho_hands_val.json``,
``fho_hands_test_unannotated.json``) hold ``{"version", "date", "description", "manifest",
"split", "clips": [{"clip_id", "clip_uid", "video_uid", "frames": [action, ...]}]}``. Each action
has up to five key frames (:data:`KEY_FRAMES`), each ``{"frame": video frame, "clip_frame": clip
frame, "boxes": [{"left_hand": [x, y]}, {"right_hand": [x, y]}]}``, a hand left out when it was
not annotated (or no ``boxes`` at all); ``pre_45`` is required, observation ends there. Rules
checked when a reader first reads a file:

- frame numbers are non-negative JSON integers; a hand is ``[x, y]`` of finite JSON numbers
  (pixels of the original frame);
- ``clip_id`` is an integer and ``clip_uid`` appears once per file; ``clip_uid`` names the video
  file, so it stays inside the video folder.

The task (Ego4D paper, Sec. I.1): from the frames before ``pre_45``, predict both hands'
positions at the five key frames, 20 values. Submissions are ``{"<clip_id>_<pre45 frame - 1>":
[l_x, l_y, r_x, r_y] x 5}``.
"""

from __future__ import annotations

from typing import Annotated, TypedDict

from pydantic import Field, StrictInt, ValidationInfo, field_validator
from torch import Tensor

from vidlit.formats._ego4d import check_unique
from vidlit.formats._schema import FiniteFloat, NonEmptyStr, NonNegativeInt, Record

__all__ = [
    "HANDS",
    "KEY_FRAMES",
    "FHPAction",
    "FHPBatch",
    "FHPClip",
    "FHPFile",
    "FHPHandBox",
    "FHPKeyFrame",
    "FHPPrediction",
    "FHPTarget",
    "FHPSubmission",
]

KEY_FRAMES = ("pre_45", "pre_30", "pre_15", "pre_frame", "contact_frame")
HANDS = ("left", "right")

# ``[x, y]`` pixels
Point = Annotated[list[FiniteFloat], Field(min_length=2, max_length=2)]


class FHPHandBox(Record):
    """One entry of a key frame's ``boxes``: a hand's ``[x, y]`` pixel position."""

    left_hand: Point | None = None
    right_hand: Point | None = None


class FHPKeyFrame(Record):
    """A key frame: its index in the video and in the clip, and the annotated hands."""

    frame: NonNegativeInt
    clip_frame: NonNegativeInt
    boxes: list[FHPHandBox] | None = None


class FHPAction(Record):
    """One action to forecast hands for: its five key frames (``pre_45`` required)."""

    pre_45: FHPKeyFrame
    pre_30: FHPKeyFrame | None = None
    pre_15: FHPKeyFrame | None = None
    pre_frame: FHPKeyFrame | None = None
    contact_frame: FHPKeyFrame | None = None


class FHPClip(Record):
    """One clip (``clip_uid`` names the video file) and its actions."""

    clip_id: StrictInt
    clip_uid: NonEmptyStr
    video_uid: str = ""
    frames: list[FHPAction]

    @field_validator("clip_uid")
    @classmethod
    def _unique(cls, value: str, info: ValidationInfo) -> str:
        return check_unique(value, info, "clip_uid")


class FHPFile(Record):
    """A whole ``fho_hands_*.json`` file."""

    clips: list[FHPClip]


class FHPTarget(TypedDict):
    """Ground truth of one view: submission key, ``hands [5, 2, 2]`` pixels, ``valid [5, 2]`` bool."""

    video_id: str
    hands: Tensor
    valid: Tensor


class FHPBatch(TypedDict):
    """A batch of views. Shape legend: ``b`` views, ``t`` frames, ``h w c`` pixels.

    Attributes:
        video: ``[b, t, h, w, c]`` uint8 (normalized to float ``[b, c, t, h, w]`` on the device).
        hands: ``[b, 5, 2, 2]`` key frame, hand (left, right), (x, y) pixels; 0 where missing.
        valid: ``[b, 5, 2]`` bool, which hands are annotated.
        video_ids: ``b`` submission keys.
        targets: ``b`` ground truths in :class:`~vidlit.metrics.hand_displacement.HandDisplacement`'s format.
    """

    video: Tensor
    hands: Tensor
    valid: Tensor
    video_ids: list[str]
    targets: list[FHPTarget]


class FHPPrediction(TypedDict):
    """A head's forecast for one view: ``hands [5, 2, 2]`` pixels."""

    video_id: str
    hands: Tensor


FHPSubmission = dict[str, list[float]]
"""``{"<clip_id>_<pre45 frame - 1>": 20 floats}``, views summed (the official evaluator divides)."""
