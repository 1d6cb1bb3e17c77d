"""The Ego4D Natural Language Queries contract: annotation schema, batch / target types, units.

The official files (``nlq_train.json``, ``nlq_val.json``, ``nlq_test_unannotated.json``) nest
``videos -> clips -> annotations -> language_queries``. A clip is a window
``[video_start_sec, video_end_sec]`` of its video; each query has a ``query`` string and, except
in the test file, its answer window ``clip_start_sec`` / ``clip_end_sec`` in seconds from the clip
start. Rules checked when a reader first reads a file:

- ``query`` is a non-empty string (a missing, integer or blank query is an error naming it);
- times are finite, non-negative JSON numbers; ``clip_start_sec < clip_end_sec <= clip
  duration`` (1 ms of rounding allowed), given together or not at all;
- a ``clip_uid`` appears once per file; ``video_uid`` names a feature file, so it stays inside
  the feature folder.

Features are one ``<video_uid>.pt`` / ``.npy`` of shape ``[T, C]`` per *video* on a
:class:`~vidlit.formats._temporal.FeatureClock` with no window offset (step ``i`` starts at
``i * stride / fps``; the official SlowFast / Omnivore / EgoVLP features: stride 16 at 30 fps).
"""

from __future__ import annotations

from typing import TypedDict

from pydantic import Field, ValidationInfo, field_validator
from torch import Tensor

from vidlit.formats._ego4d import Ego4DClip, check_inside_clip
from vidlit.formats._schema import NonEmptyStr, NonNegativeFloat, Record
from vidlit.formats._temporal import FeatureClock

__all__ = [
    "CHALLENGE",
    "FEATURE_STRIDE",
    "FPS",
    "FeatureClock",
    "NLQAnnotation",
    "NLQBatch",
    "NLQClip",
    "NLQFile",
    "NLQLanguageQuery",
    "NLQPrediction",
    "NLQResult",
    "NLQSubmission",
    "NLQTarget",
    "NLQVideo",
    "TOP_K",
    "VERSION",
]

CHALLENGE = "ego4d_nlq_challenge"
VERSION = "1.0"
FPS = 30.0
FEATURE_STRIDE = 16
TOP_K = 5  # windows per query the challenge scores


class NLQLanguageQuery(Record):
    """One query; the answer window is absent in the unannotated test file."""

    query: NonEmptyStr
    clip_start_sec: NonNegativeFloat | None = None
    clip_end_sec: NonNegativeFloat | None = Field(default=None, validate_default=True)
    template: str | None = None

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the query is blank")
        return value

    @field_validator("clip_end_sec")
    @classmethod
    def _inside_clip(cls, value: float | None, info: ValidationInfo) -> float | None:
        # the window is given whole or not at all (the unannotated test file)
        if (value is None) != (info.data.get("clip_start_sec") is None) and "clip_start_sec" in info.data:
            raise ValueError(
                "missing (clip_start_sec is given)" if value is None else "given without clip_start_sec"
            )
        return None if value is None else check_inside_clip(value, info, "clip_start_sec")

    @property
    def window(self) -> tuple[float, float] | None:
        """The answer ``(start, end)`` seconds, or None when unannotated."""
        if self.clip_start_sec is None or self.clip_end_sec is None:
            return None
        return self.clip_start_sec, self.clip_end_sec


class NLQAnnotation(Record):
    """One annotator's queries on a clip."""

    annotation_uid: NonEmptyStr
    language_queries: list[NLQLanguageQuery]


class NLQClip(Ego4DClip):
    """One clip of a video."""

    annotations: list[NLQAnnotation] = []


class NLQVideo(Record):
    """One video (it names the feature file) and its clips."""

    video_uid: NonEmptyStr
    clips: list[NLQClip]


class NLQFile(Record):
    """A whole ``nlq_*.json`` file."""

    videos: list[NLQVideo]


class NLQTarget(TypedDict):
    """Ground truth of one query: its key (``clip_uid/annotation_uid/query_idx``) and window."""

    video_id: str
    window: Tensor  # [2] seconds from the clip start


class NLQBatch(TypedDict):
    """A batch of queries. Shape legend: ``b`` queries, ``t`` steps (padded), ``c`` channels.

    Attributes:
        features: ``[b, t, c]`` clip features, zero beyond each clip.
        mask: ``[b, t]`` bool, True on real steps.
        queries: ``b`` query strings.
        video_ids: ``b`` query keys.
        duration: ``[b]`` clip length in seconds.
        start_index: ``[b]`` int64 first step of the answer.
        end_index: ``[b]`` int64 last step of the answer.
        targets: ``b`` ground truths in :class:`~vidlit.metrics.recall_at_iou.RecallAtIoU`'s format.
    """

    features: Tensor
    mask: Tensor
    queries: list[str]
    video_ids: list[str]
    duration: Tensor
    start_index: Tensor
    end_index: Tensor
    targets: list[NLQTarget]


class NLQPrediction(TypedDict):
    """A head's answer to one query: windows in seconds, best first."""

    video_id: str
    windows: Tensor  # [K, 2]
    scores: Tensor  # [K]


class NLQResult(TypedDict):
    """One query of a submission."""

    clip_uid: str
    annotation_uid: str
    query_idx: int
    predicted_times: list[list[float]]


class NLQSubmission(TypedDict):
    """The challenge submission file ``vidlit predict`` writes."""

    version: str
    challenge: str
    results: list[NLQResult]
