"""The InternVid (video-text) family's contract: caption JSONL schema, batch / target types, constants.

InternVid (Wang et al., 2023) releases captions as JSON Lines, one clip a line, cut out of a
YouTube video by timestamps (``HH:MM:SS.mmm``)::

    {"YoutubeID": "-2CVJ-Nfi5E", "Start_timestamp": "00:07:33.689", "End_timestamp": "00:07:51.085",
     "Caption": "a man is cooking in the kitchen", "UMT_Score": 0.4301, "Aesthetic_Score": 4.87}

The source video is ``<video_dir>/<YoutubeID>.<ext>`` (:data:`VIDEO_SUFFIXES`); the id may not
name a file outside ``video_dir``. Units: seconds. The same batch type comes from WebDataset
shards (:mod:`vidlit.data.shards`).

Used by :mod:`vidlit.data.internvid`, :mod:`vidlit.data.shards`, :mod:`vidlit.data.synth.internvid`
and :class:`~vidlit.tasks.video_text.VideoTextPretrain`.
"""

from __future__ import annotations

import re
from typing import Any, TypedDict

from pydantic import Field, field_validator, model_validator
from torch import Tensor

from vidlit.formats._schema import FiniteFloat, Record

__all__ = [
    "TIMESTAMP",
    "VIDEO_SUFFIXES",
    "InternVidRecord",
    "VideoTextBatch",
    "VideoTextTarget",
    "format_timestamp",
    "parse_timestamp",
]

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v")  # as yt-dlp saves them
TIMESTAMP = re.compile(r"^(\d+):([0-5]\d):([0-5]\d(?:\.\d+)?)$")


def format_timestamp(seconds: float) -> str:
    """InternVid's ``HH:MM:SS.mmm`` (milliseconds rounded); :func:`parse_timestamp` reads it back."""
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    return f"{hours:02d}:{minutes:02d}:{millis // 1000:02d}.{millis % 1000:03d}"


def parse_timestamp(value: str) -> float:
    """Seconds in an InternVid ``HH:MM:SS.mmm`` timestamp (fractional seconds optional).

    Raises:
        ValueError: anything else.
    """
    match = TIMESTAMP.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"expected a timestamp HH:MM:SS.mmm, got {value!r}")
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


class InternVidRecord(Record):
    """One line of an InternVid caption file; other keys are kept and ignored."""

    youtube_id: str = Field(alias="YoutubeID")
    start_timestamp: str = Field(alias="Start_timestamp")
    end_timestamp: str = Field(alias="End_timestamp")
    caption: str = Field(alias="Caption")
    umt_score: FiniteFloat | None = Field(default=None, alias="UMT_Score")
    aesthetic_score: FiniteFloat | None = Field(default=None, alias="Aesthetic_Score")

    @field_validator("youtube_id", "start_timestamp", "end_timestamp", "caption", mode="before")
    @classmethod
    def _non_empty(cls, value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"must be a non-empty string, got {value!r}")
        return value.strip()

    @field_validator("start_timestamp", "end_timestamp")
    @classmethod
    def _timestamp(cls, value: str) -> str:
        parse_timestamp(value)
        return value

    @property
    def start(self) -> float:
        """Window start in seconds."""
        return parse_timestamp(self.start_timestamp)

    @property
    def end(self) -> float:
        """Window end in seconds."""
        return parse_timestamp(self.end_timestamp)

    @model_validator(mode="after")
    def _window(self) -> InternVidRecord:
        if self.end <= self.start:
            raise ValueError(
                f"End_timestamp {self.end_timestamp} must be after Start_timestamp {self.start_timestamp}"
            )
        return self


class VideoTextTarget(TypedDict):
    """Ground truth of one clip for the retrieval metrics: its caption."""

    video_id: str
    caption: str


class VideoTextBatch(TypedDict, total=False):
    """A batch, as :func:`vidlit.data.internvid.collate_video_text` returns it.

    Shape legend: ``b`` clips, ``t`` frames, ``h w`` decoded size (bounded per clip by the
    configured short side); after the device transform ``video`` is float ``[b, 3, t, s, s]``.
    """

    video: Tensor  # uint8 [b, t, h, w, 3]
    frame_size: Tensor  # int64 [b, 2]
    captions: list[str]
    video_ids: list[str]
    targets: list[VideoTextTarget]
    skipped: list[str]
    skip_reasons: list[str]
    labels: Tensor  # int64 [b], -1 where unknown; only when a sample has a label
