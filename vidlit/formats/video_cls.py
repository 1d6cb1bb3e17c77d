"""The video-classification family's contract: the video-list schema, batch / target / prediction types.

A video list names one video per row, CSV with a header (Kinetics-style ``path,label``) or JSON
Lines with the same keys: ``path`` (relative to the list's folder, or absolute: lists of real
datasets name files on other disks), ``label`` (a class name, or an integer class index),
``start`` / ``end`` (optional seconds: a window cut out of a longer video). Units: seconds.

Used by :mod:`vidlit.data.video_list`, :mod:`vidlit.data.synth.videos`,
:mod:`vidlit.heads.classification` and :mod:`vidlit.metrics.classification`. The class list is
the train taxonomy (``classes.txt``, or the train list's labels): a val / test label outside it
is an error, never a new class.
"""

from __future__ import annotations

import math
from typing import Any, TypedDict

from pydantic import field_validator, model_validator
from torch import Tensor

from vidlit.formats._schema import Record

__all__ = [
    "JSONL_SUFFIXES",
    "SAMPLINGS",
    "VideoClsBatch",
    "VideoClsPrediction",
    "VideoClsTarget",
    "VideoListRow",
]

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")  # any other suffix is read as CSV
SAMPLINGS = ("dense", "segments")


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


class VideoListRow(Record):
    """One row of a video list (a CSV row as a dict of strings, or a JSONL object)."""

    path: str
    label: str | None = None
    start: float | None = None
    end: float | None = None

    @field_validator("path", mode="before")
    @classmethod
    def _path(cls, value: Any) -> Any:
        if _blank(value) or not isinstance(value, str):
            raise ValueError("no video path (the 'path' field is empty or missing)")
        return value.strip()

    @field_validator("label", mode="before")
    @classmethod
    def _label(cls, value: Any) -> Any:
        # a JSON number is an index, kept as its text; a bool or a float is neither a name nor an index
        if _blank(value):
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValueError(f"must be a class name or an integer index, got {value!r}")
        return str(value).strip()

    @field_validator("start", "end", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> Any:
        if _blank(value):
            return None
        if isinstance(value, bool):
            raise ValueError(f"must be a number of seconds, got {value!r}")
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"must be a number of seconds, got {value!r}") from None
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"must be a finite, non-negative number of seconds, got {value!r}")
        return seconds

    @model_validator(mode="after")
    def _window(self) -> VideoListRow:
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError(f"end ({self.end} s) must be after start ({self.start} s)")
        return self


class VideoClsTarget(TypedDict):
    """Ground truth of one clip for :class:`~vidlit.metrics.classification.TopKAccuracy`."""

    video_id: str
    label: int


class VideoClsBatch(TypedDict, total=False):
    """A batch, as :func:`vidlit.data.video_list.collate_video_clips` returns it (``frame_size``) and
    as the head sees it after the device transform (``video`` normalized float ``[b, 3, t, s, s]``).

    Shape legend: ``b`` clips (views of one video are consecutive and share its id), ``t`` frames,
    ``h w`` decoded size (bounded per clip by the configured short side), ``s`` crop size.
    """

    video: Tensor  # uint8 [b, t, h, w, 3] collated; float [b, 3, t, s, s] after the transform
    frame_size: Tensor  # int64 [b, 2] each clip's true (h, w) inside the zero-padded batch
    labels: Tensor  # int64 [b], -1 unlabelled
    soft_labels: Tensor  # float [b, k] mixup / cutmix targets, training only (vidlit.data.augment)
    video_ids: list[str]
    targets: list[VideoClsTarget]
    skipped: list[str]  # unreadable videos of this batch
    skip_reasons: list[str]


class VideoClsPrediction(TypedDict):
    """One clip's prediction, as :class:`~vidlit.heads.classification.LinearProbeHead` returns it."""

    video_id: str
    label: int  # the top class
    scores: Tensor  # float [k] class probabilities
