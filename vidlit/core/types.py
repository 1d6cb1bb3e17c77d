"""Batch formats: where datasets and heads meet.

A head never imports a dataset and a dataset never imports a head; both agree on one of
these documented dictionaries. Every batch carries ``targets``, a list with one dict per
sample in the exact format the task's metric ``update(preds, targets)`` takes, so the task
module can feed the metric without knowing the task.
"""

from __future__ import annotations

from typing import TypedDict

from torch import Tensor


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
        step_sec: ``[b]`` seconds between consecutive feature steps (stride / fps).
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
