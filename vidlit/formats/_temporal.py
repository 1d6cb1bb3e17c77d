"""What the temporal-localization families share: segment targets and predictions, feature clocks.

Ego4D Moment Queries (:mod:`vidlit.formats.ego4d_mq`) and the other families that localize
segments in seconds on a clip of pre-extracted features agree on these types: collate returns a
:class:`TemporalFeatureBatch`, heads return :class:`SegmentPrediction`, and the temporal mAP
protocol (:class:`vidlit.metrics.temporal_map.TemporalActionMAP`) takes predictions and
:class:`SegmentTarget` ground truths.

Times are seconds from the clip start everywhere outside a head; a head converts to feature
steps and back through one :class:`FeatureClock` convention: step ``i`` is centred at
``offset_sec + i * step_sec``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from torch import Tensor

from vidlit.core.segments import seconds_to_steps, steps_to_seconds

__all__ = [
    "FeatureClock",
    "SegmentPrediction",
    "SegmentTarget",
    "TemporalFeatureBatch",
    "seconds_to_steps",
    "steps_to_seconds",
]


@dataclass(frozen=True)
class FeatureClock:
    """Where feature steps sit in time: one step every ``stride`` frames at ``fps``.

    Attributes:
        fps: frame rate the features were extracted at.
        stride: frames between consecutive feature steps.
        window: frames each step sees; step ``i`` is centred at
            ``(i * stride + window / 2) / fps`` seconds (0: steps start at ``i * stride / fps``).
    """

    fps: float
    stride: int
    window: int = 0

    def __post_init__(self) -> None:
        if not self.fps > 0 or self.stride < 1 or self.window < 0:
            raise ValueError(
                f"fps must be positive, stride at least 1 and window non-negative, got fps {self.fps}, "
                f"stride {self.stride}, window {self.window}"
            )

    @property
    def step_sec(self) -> float:
        """Seconds between consecutive feature steps."""
        return self.stride / self.fps

    @property
    def offset_sec(self) -> float:
        """Time in seconds of the centre of step 0."""
        return 0.5 * self.window / self.fps

    def to_steps(self, segments: Tensor) -> Tensor:
        """``[..., 2]`` seconds -> fractional feature steps (:func:`seconds_to_steps`)."""
        return seconds_to_steps(segments, self.step_sec, self.offset_sec)

    def to_seconds(self, segments: Tensor) -> Tensor:
        """``[..., 2]`` feature steps -> seconds (:func:`steps_to_seconds`)."""
        return steps_to_seconds(segments, self.step_sec, self.offset_sec)


class SegmentTarget(TypedDict):
    """Ground truth of one clip for temporal localization (Ego4D MQ, ...).

    Attributes:
        video_id: the clip's id (Ego4D ``clip_uid``).
        segments: ``[N, 2]`` float, start and end in seconds from the clip start.
        labels: ``[N]`` int64 class ids.
    """

    video_id: str
    segments: Tensor
    labels: Tensor


class SegmentPrediction(TypedDict):
    """Predictions of one clip for temporal localization, sorted by score, descending.

    Attributes:
        video_id: the clip's id.
        segments: ``[K, 2]`` float seconds.
        labels: ``[K]`` int64 class ids.
        scores: ``[K]`` float confidences.
    """

    video_id: str
    segments: Tensor
    labels: Tensor
    scores: Tensor


class TemporalFeatureBatch(TypedDict):
    """A batch of per-clip feature sequences (the ``features`` input of temporal heads).

    Shape legend: ``b`` clips, ``t`` feature steps (padded to the longest clip), ``c`` channels.

    Attributes:
        features: ``[b, t, c]`` float, zero beyond each clip's length.
        mask: ``[b, t]`` bool, True on real steps.
        video_ids: ``b`` clip ids.
        duration: ``[b]`` clip length in seconds.
        step_sec: ``[b]`` seconds between consecutive feature steps (:attr:`FeatureClock.step_sec`).
        offset_sec: ``[b]`` time in seconds of the centre of feature step 0; step ``i`` sits at
            ``offset_sec + i * step_sec``.
        targets: ``b`` ground truths in the metric's format.
    """

    features: Tensor
    mask: Tensor
    video_ids: list[str]
    duration: Tensor
    step_sec: Tensor
    offset_sec: Tensor
    targets: list[SegmentTarget]
