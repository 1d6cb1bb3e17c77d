"""The Ego4D Moment Queries contract: annotation schema, batch / prediction types, units.

The official files (``moments_train.json``, ``moments_val.json``,
``moments_test_unannotated.json``) nest ``videos -> clips -> annotations -> labels``; each label
has ``start_time`` / ``end_time`` in seconds from its clip's start, a ``label`` name and a
``primary`` flag. A clip spans ``[video_start_sec, video_end_sec]`` of its video. Rules checked
when a reader first reads a file (:func:`~vidlit.formats._schema.validate`):

- times are JSON numbers (``"1.5"`` is refused), finite and non-negative;
- ``start_time < end_time <= clip duration`` (1 ms of rounding allowed, :data:`TIME_TOLERANCE`),
  ``video_start_sec < video_end_sec``;
- a ``clip_uid`` appears once per file; it names a feature file, so it stays inside the folder;
- a val / test label is a class of the train taxonomy (context ``classes``), not a new class.

Features are one ``<clip_uid>.pt`` / ``.npy`` of shape ``[T, C]`` per clip on a
:class:`~vidlit.formats._temporal.FeatureClock` (the official SlowFast features: C = 2304,
stride 16 frames of a 32-frame window at 30 fps). Batches are
:class:`~vidlit.formats._temporal.TemporalFeatureBatch`, predictions
:class:`~vidlit.formats._temporal.SegmentPrediction` in seconds.
"""

from __future__ import annotations

from typing import TypedDict

from pydantic import StrictBool, ValidationInfo, field_validator

from vidlit.formats._ego4d import (
    TIME_TOLERANCE,
    Ego4DClip,
    check_inside_clip,
    check_known,
)
from vidlit.formats._schema import NonEmptyStr, NonNegativeFloat, Record
from vidlit.formats._temporal import (
    FeatureClock,
    SegmentPrediction,
    SegmentTarget,
    TemporalFeatureBatch,
    seconds_to_steps,
    steps_to_seconds,
)

__all__ = [
    "CHALLENGE",
    "FEATURE_DIM",
    "FEATURE_STRIDE",
    "FEATURE_WINDOW",
    "FPS",
    "FeatureClock",
    "MQAnnotation",
    "MQBatch",
    "MQClip",
    "MQDetection",
    "MQFile",
    "MQLabel",
    "MQSubmission",
    "MQVideo",
    "SegmentPrediction",
    "SegmentTarget",
    "SPLIT_FILES",
    "TIME_TOLERANCE",
    "TemporalFeatureBatch",
    "VERSION",
    "seconds_to_steps",
    "steps_to_seconds",
]

CHALLENGE = "ego4d_moment_queries"
VERSION = "1.0"
# the official SlowFast features (Ego4D episodic-memory release)
FPS = 30.0
FEATURE_STRIDE = 16
FEATURE_WINDOW = 32
FEATURE_DIM = 2304
# the official file of each split; ``predict_split`` picks val or test
SPLIT_FILES = {
    "train": "moments_train.json",
    "val": "moments_val.json",
    "test": "moments_test_unannotated.json",
}

MQBatch = TemporalFeatureBatch


class MQLabel(Record):
    """One moment: ``[start_time, end_time]`` seconds from the clip start and its class name."""

    start_time: NonNegativeFloat
    end_time: NonNegativeFloat
    label: NonEmptyStr
    primary: StrictBool = False

    @field_validator("end_time")
    @classmethod
    def _inside_clip(cls, value: float, info: ValidationInfo) -> float:
        return check_inside_clip(value, info, "start_time")

    @field_validator("label")
    @classmethod
    def _in_taxonomy(cls, value: str, info: ValidationInfo) -> str:
        return check_known(value, info, "classes", "class")


class MQAnnotation(Record):
    """One annotator's pass over a clip."""

    labels: list[MQLabel]


class MQClip(Ego4DClip):
    """One clip of a video; ``annotations`` is absent in the unannotated test file."""

    annotations: list[MQAnnotation] | None = None


class MQVideo(Record):
    """One video and its clips."""

    video_uid: str = ""
    clips: list[MQClip]


class MQFile(Record):
    """A whole ``moments_*.json`` file."""

    videos: list[MQVideo]


class MQDetection(TypedDict):
    """One detected moment of a submission: class name, score, ``[start, end]`` seconds."""

    label: str
    score: float
    segment: list[float]


class MQSubmission(TypedDict):
    """The challenge submission file ``vidlit predict`` writes.

    The Ego4D episodic-memory baseline (VSGN) also writes ``retrieve_results`` (the same layout,
    for the retrieval metric Recall@kx); vidlit writes the detections only.
    """

    version: str
    challenge: str
    detect_results: dict[str, list[MQDetection]]
