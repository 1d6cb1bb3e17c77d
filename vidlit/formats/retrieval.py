"""The text-video retrieval family's contract: MSR-VTT, DiDeMo and ActivityNet Captions annotations.

The benchmark files as video-text papers (CLIP4Clip, ViCLIP, InternVideo) read them:

- ``msrvtt``: the 1k-A test split, ``MSRVTT_JSFUSION_test.csv`` (CSV with a header,
  ``key,vid_key,video_id,sentence``; one caption per video, e.g.
  ``ret0,msr7579,video7579,a girl wearing red top and black trouser is putting a sweater on a dog``).
  The video is ``<video_dir>/<video_id>.mp4`` (``MSRVTT/videos/all/``).
- ``activitynet``: ActivityNet Captions ``val_1.json``, an object keyed by video id
  (``"v_uqiMw7tQ1Cc": {"duration": 55.15, "timestamps": [[0.28, 55.15], [13.79, 54.32]],
  "sentences": ["A weight lifting tutorial is given.", "  The coach helps the guy ..."]}``).
  Paragraph retrieval: a video's sentences joined into one paragraph, against the whole video.
  The video file is named by the id without its ``v_`` prefix (``uqiMw7tQ1Cc.mp4``; CLIP4Clip's
  layout) or with it.
- ``didemo``: ``test_data.json``, a list of moments (``{"video": "<flickr id>.mov",
  "description": "...", "times": [[2, 2], [2, 3], [2, 2], [2, 2]], ...}``; ``times`` are each
  annotator's first and last 5-second segment, 0-5). Paragraph retrieval: a video's descriptions,
  in file order, joined into one paragraph, against the video's first 30 s (videos were cut at
  30 s for annotation). The file is the ``video`` name, or its stem with another video suffix.

Other keys are kept and ignored. Quirks of the real files that are accepted: ActivityNet
timestamps that end after ``duration`` or start after they end (a few videos), DiDeMo moments
annotated by fewer than four people. Units: seconds, except DiDeMo's segment indices.

Batches are :class:`~vidlit.formats.internvid.VideoTextBatch` (``captions``, ``video_ids``), as
for InternVid: one item per caption (or paragraph) and its video.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import field_validator, model_validator

from vidlit.formats._schema import FiniteFloat, Record, StrictInt
from vidlit.formats.internvid import VideoTextBatch, VideoTextTarget

__all__ = [
    "DIDEMO_MAX_SECONDS",
    "DIDEMO_NUM_SEGMENTS",
    "DIDEMO_SEGMENT_SECONDS",
    "MSRVTT_COLUMNS",
    "RETRIEVAL_FORMATS",
    "ActivityNetCaptionsVideo",
    "DiDeMoMoment",
    "MSRVTTRow",
    "RetrievalBatch",
    "VideoTextTarget",
    "paragraph",
]

RETRIEVAL_FORMATS = ("msrvtt", "didemo", "activitynet")
MSRVTT_COLUMNS = ("key", "vid_key", "video_id", "sentence")
DIDEMO_SEGMENT_SECONDS = 5.0  # a DiDeMo time index is a 5-second segment
DIDEMO_NUM_SEGMENTS = 6
DIDEMO_MAX_SECONDS = DIDEMO_SEGMENT_SECONDS * DIDEMO_NUM_SEGMENTS  # annotation stopped at 30 s

RetrievalBatch = VideoTextBatch


def paragraph(sentences: Sequence[str]) -> str:
    """One paragraph of a video's sentences (stripped, joined by a space, in the given order), as
    CLIP4Clip builds DiDeMo and ActivityNet paragraph queries."""
    return " ".join(s.strip() for s in sentences)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, got {value!r}")
    return value.strip()


class MSRVTTRow(Record):
    """One row of ``MSRVTT_JSFUSION_test.csv`` (a CSV row as a dict of strings)."""

    key: str | None = None
    vid_key: str | None = None
    video_id: str
    sentence: str

    @field_validator("video_id", "sentence", mode="before")
    @classmethod
    def _non_empty(cls, value: Any) -> str:
        return _text(value)


class DiDeMoMoment(Record):
    """One moment of DiDeMo's ``{train,val,test}_data.json``: a description and its annotators' times."""

    video: str
    description: str
    times: list[tuple[StrictInt, StrictInt]]

    @field_validator("video", "description", mode="before")
    @classmethod
    def _non_empty(cls, value: Any) -> str:
        return _text(value)

    @field_validator("times")
    @classmethod
    def _segments(cls, times: list[tuple[int, int]]) -> list[tuple[int, int]]:
        if not times:
            raise ValueError("no annotator times")
        for start, end in times:
            if not 0 <= start <= end < DIDEMO_NUM_SEGMENTS:
                raise ValueError(
                    f"segment pair [{start}, {end}] must satisfy "
                    f"0 <= start <= end <= {DIDEMO_NUM_SEGMENTS - 1}"
                )
        return times


class ActivityNetCaptionsVideo(Record):
    """One video of ActivityNet Captions' ``train.json`` / ``val_1.json`` / ``val_2.json``."""

    duration: FiniteFloat
    timestamps: list[tuple[FiniteFloat, FiniteFloat]]
    sentences: list[str]

    @field_validator("duration")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError(f"must be a positive number of seconds, got {value}")
        return value

    @field_validator("sentences")
    @classmethod
    def _sentences(cls, sentences: list[str]) -> list[str]:
        if not sentences:
            raise ValueError("no sentences")
        for i, sentence in enumerate(sentences):
            if not sentence.strip():
                raise ValueError(f"sentence {i} is empty")
        return sentences

    @field_validator("timestamps")
    @classmethod
    def _times(cls, timestamps: list[tuple[float, float]]) -> list[tuple[float, float]]:
        for start, end in timestamps:
            if start < 0 or end < 0:
                raise ValueError(f"timestamp [{start}, {end}] is negative")
        return timestamps

    @model_validator(mode="after")
    def _one_timestamp_per_sentence(self) -> ActivityNetCaptionsVideo:
        if len(self.timestamps) != len(self.sentences):
            raise ValueError(f"{len(self.timestamps)} timestamps for {len(self.sentences)} sentences")
        return self
