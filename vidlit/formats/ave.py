"""The AVE (audio-visual event localization) family's contract: schema, batch / target types, constants.

Official release (Tian et al., ECCV 2018, ``YapengTian/AVE-ECCV18``): ``Annotations.txt`` and the
split files hold one event per line, ``Category&VideoID&Quality&StartTime&EndTime`` (integer
seconds, end exclusive); features and labels are h5 files under the key ``avadataset``. Units: a
video is :data:`NUM_SEGMENTS` one-second segments; segment ``t`` covers ``[t, t + 1)`` and is an
event when ``start <= t < end``. Class ``k - 1`` is background.

Used by :mod:`vidlit.data.ave`, :mod:`vidlit.data.synth.ave`, :mod:`vidlit.heads.ave` and
:mod:`vidlit.metrics.segment_accuracy`.
"""

from __future__ import annotations

from typing import Any, TypedDict

from pydantic import ValidationInfo, field_validator, model_validator
from torch import Tensor

from vidlit.formats._schema import NonEmptyStr, Record

__all__ = [
    "AVE_CATEGORIES",
    "BACKGROUND",
    "H5_KEY",
    "HEADER",
    "NUM_SEGMENTS",
    "ORDER_KEY",
    "SPLIT_FILES",
    "AVEBatch",
    "AVEEvent",
    "AVEPrediction",
    "AVETarget",
]

# the 28 event categories in the official label-column order (first appearance in Annotations.txt)
AVE_CATEGORIES = (
    "Church bell", "Male speech, man speaking", "Bark", "Fixed-wing aircraft, airplane",
    "Race car, auto racing", "Female speech, woman speaking", "Helicopter", "Violin, fiddle",
    "Flute", "Ukulele", "Frying (food)", "Truck", "Shofar", "Motorcycle", "Acoustic guitar",
    "Train horn", "Clock", "Banjo", "Goat", "Baby cry, infant cry", "Bus", "Chainsaw", "Cat",
    "Horse", "Toilet flush", "Rodents, rats, mice", "Accordion", "Mandolin",
)  # fmt: skip
BACKGROUND = "background"
NUM_SEGMENTS = 10  # one-second segments per video
H5_KEY = "avadataset"
ORDER_KEY = "order"
HEADER = "Category&VideoID&Quality&StartTime&EndTime"
SPLIT_FILES = {"train": "trainSet.txt", "val": "valSet.txt", "test": "testSet.txt"}


class AVEEvent(Record):
    """One line of an AVE annotation file (``Annotations.txt``, ``trainSet.txt``, ...).

    ``StartTime`` / ``EndTime`` are whole seconds with ``0 <= start <= end <= 10`` (a text field
    ``"1.5"`` is an error); ``Category`` must be one of the class list passed as context
    (``classes``), when given.
    """

    category: NonEmptyStr
    video_id: NonEmptyStr
    quality: str = ""
    start: int
    end: int
    line: int = 0

    @field_validator("start", "end", mode="before")
    @classmethod
    def _whole_seconds(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if not text.lstrip("-").isdigit():
                raise ValueError(f"must be whole seconds, got {value!r}")
            return int(text)
        return value

    @field_validator("category")
    @classmethod
    def _known(cls, name: str, info: ValidationInfo) -> str:
        classes = (info.context or {}).get("classes")
        if classes is not None and name not in classes:
            raise ValueError(f"unknown event category {name!r} (not in the {len(classes)}-category list)")
        return name

    @model_validator(mode="after")
    def _in_video(self) -> AVEEvent:
        if not 0 <= self.start <= self.end <= NUM_SEGMENTS:
            raise ValueError(
                f"need 0 <= StartTime <= EndTime <= {NUM_SEGMENTS}, got {self.start}..{self.end}"
            )
        return self

    def to_line(self) -> str:
        """The line as the official files write it."""
        return f"{self.category}&{self.video_id}&{self.quality}&{self.start}&{self.end}"


class AVETarget(TypedDict):
    """Ground truth of one video for :class:`~vidlit.metrics.segment_accuracy.SegmentAccuracy`."""

    video_id: str
    labels: Tensor  # int64 [t] class per segment, background = k - 1


class AVEBatch(TypedDict, total=False):
    """A batch of AVE videos, as :func:`vidlit.data.ave.collate_ave` returns it.

    Shape legend: ``b`` videos, ``t`` segments (10), ``h w`` grid (7 x 7), ``c`` visual channels,
    ``k`` classes incl. background (29). ``segment_labels`` is absent under weak supervision.
    """

    audio: Tensor  # float [b, t, 128]
    visual: Tensor  # float [b, t, h, w, c] (or [b, t, c] if stored pooled)
    video_labels: Tensor  # float [b, k] multi-hot, background included
    segment_labels: Tensor  # int64 [b, t]
    video_ids: list[str]
    targets: list[AVETarget]


class AVEPrediction(TypedDict):
    """One video's prediction: the class of each segment."""

    video_id: str
    labels: Tensor  # int64 [t] argmax class per segment
    scores: Tensor  # float [t, k] class probabilities per segment
