"""The video-classification family's contract: the video-list schema, batch / target / prediction types.

A video list names one video per row, CSV with a header (Kinetics-style ``path,label``) or JSON
Lines with the same keys: ``path`` (relative to the list's folder, or absolute: lists of real
datasets name files on other disks), ``label`` (a class name, or an integer class index),
``start`` / ``end`` (optional seconds: a window cut out of a longer video). Units: seconds.

Used by :mod:`vidlit.data.video_list`, :mod:`vidlit.data.synth.videos`,
:mod:`vidlit.heads.classification` and :mod:`vidlit.metrics.classification`. The class list is
the train taxonomy (``classes.txt``, or the train list's labels): a val / test label outside it
is an error, never a new class.

The common public dataset lists are read as they are published (``LIST_FORMATS``):

- ``kinetics``: the official Kinetics CSV (``label,youtube_id,time_start,time_end,split[,is_cc]``;
  the test CSV has no ``label``); a clip is the file ``<youtube_id>_<time_start:06d>_<time_end:06d>.mp4``
  (:func:`kinetics_clip_name`), the layout of the common download scripts.
- ``ssv2``: Something-Something v2's JSON arrays (``[{"id", "label", "template", "placeholders"}]``)
  with ``something-something-v2-labels.json`` mapping each template (brackets removed) to its
  class index; a video is ``<id>.webm``.
- ``ucf101``: ``classInd.txt`` (``1 ApplyEyeMakeup``), ``trainlist0N.txt``
  (``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1``, 1-based class) and ``testlist0N.txt`` (the
  path only; the class is its folder).
- ``hmdb51``: ``<class>_test_split<N>.txt`` files, one per class, lines ``video.avi 1|2|0``
  (1 train, 2 test, 0 unused); a video is ``<class>/<video.avi>``.
"""

from __future__ import annotations

import math
from typing import Any, NotRequired, TypedDict

from pydantic import field_validator, model_validator
from torch import Tensor

from vidlit.formats._schema import Record

__all__ = [
    "HMDB_MARKS",
    "JSONL_SUFFIXES",
    "LIST_FORMATS",
    "HMDBSplitLine",
    "KineticsRow",
    "SSv2Record",
    "UCFListLine",
    "SAMPLINGS",
    "VideoClsBatch",
    "VideoClsPrediction",
    "VideoClsTarget",
    "VideoListRow",
]

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")  # any other suffix is read as CSV
SAMPLINGS = ("dense", "segments")
# "csv" / "jsonl": vidlit's own path,label lists; the rest: the public datasets' published files
LIST_FORMATS = ("auto", "csv", "jsonl", "kinetics", "ssv2", "ucf101", "hmdb51")
HMDB_MARKS = {"train": 1, "test": 2, "unused": 0}


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


def _whole_number(value: Any, what: str) -> int:
    # a CSV / text field is a string; a JSON number may already be an int (never a bool or a float)
    if isinstance(value, bool) or (not isinstance(value, (str, int))):
        raise ValueError(f"must be {what}, got {value!r}")
    text = str(value).strip()
    if not text.lstrip("-").isdigit():
        raise ValueError(f"must be {what}, got {value!r}")
    return int(text)


def kinetics_clip_name(youtube_id: str, time_start: int, time_end: int, suffix: str = ".mp4") -> str:
    """The file name of a downloaded Kinetics clip: ``<youtube_id>_<start:06d>_<end:06d>.mp4``."""
    return f"{youtube_id}_{time_start:06d}_{time_end:06d}{suffix}"


class KineticsRow(Record):
    """One row of an official Kinetics CSV (400 / 600 / 700): the clip ``[time_start, time_end)`` s."""

    youtube_id: str
    time_start: int
    time_end: int
    label: str | None = None
    split: str | None = None

    @field_validator("youtube_id", mode="before")
    @classmethod
    def _youtube_id(cls, value: Any) -> Any:
        if _blank(value) or not isinstance(value, str):
            raise ValueError("no YouTube id (the field is empty or missing)")
        return value.strip()

    @field_validator("time_start", "time_end", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> Any:
        seconds = _whole_number(value, "a whole number of seconds")
        if seconds < 0:
            raise ValueError(f"must be a non-negative number of seconds, got {value!r}")
        return seconds

    @field_validator("label", "split", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return None if _blank(value) else str(value).strip()

    @model_validator(mode="after")
    def _window(self) -> KineticsRow:
        if self.time_end <= self.time_start:
            raise ValueError(f"time_end ({self.time_end}) must be after time_start ({self.time_start})")
        return self


class SSv2Record(Record):
    """One video of a Something-Something v2 JSON list; the test list has the ``id`` only."""

    id: str
    label: str | None = None
    template: str | None = None
    placeholders: list[str] | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (str, int)) or _blank(value):
            raise ValueError(f"must be a non-empty video id, got {value!r}")
        return str(value).strip()

    def class_name(self) -> str | None:
        """The class: the template with its ``[something]`` brackets removed (as the labels file keys it)."""
        if self.template is None:
            return None
        return self.template.replace("[", "").replace("]", "")


class UCFListLine(Record):
    """One line of a UCF101 ``trainlist0N.txt`` (``path label``, 1-based) or ``testlist0N.txt`` (``path``)."""

    path: str
    label: int | None = None

    @field_validator("label", mode="before")
    @classmethod
    def _label(cls, value: Any) -> Any:
        if _blank(value):
            return None
        index = _whole_number(value, "a 1-based class index")
        if index < 1:
            raise ValueError(f"must be a 1-based class index, got {value!r}")
        return index

    def class_folder(self) -> str | None:
        """The class the path's folder names (``ApplyEyeMakeup/v_...avi``), None for a bare file name."""
        parts = self.path.replace("\\", "/").split("/")
        return parts[0] if len(parts) > 1 else None


class HMDBSplitLine(Record):
    """One line of an HMDB51 ``<class>_test_split<N>.txt``: ``video.avi`` and 1 (train), 2 (test), 0."""

    video: str
    mark: int

    @field_validator("mark", mode="before")
    @classmethod
    def _mark(cls, value: Any) -> Any:
        mark = _whole_number(value, "1 (train), 2 (test) or 0 (unused)") if not _blank(value) else None
        if mark not in HMDB_MARKS.values():
            raise ValueError(f"must be 1 (train), 2 (test) or 0 (unused), got {value!r}")
        return mark


class VideoClsTarget(TypedDict):
    """Ground truth of one clip for :class:`~vidlit.metrics.classification.TopKAccuracy`."""

    video_id: str
    label: int
    view: NotRequired[int]  # which view of the video (clip * crops + crop); padding copies share it


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
