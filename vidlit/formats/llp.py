"""The LLP (audio-visual video parsing) family's contract: CSV schema, batch / target types, constants.

Official files (Tian et al., ECCV 2020, ``YapengTian/AVVP-ECCV20``), tab-separated with a header:
``AVVP_{train,val_pd,test_pd}.csv`` (``filename event_labels``: comma-joined category names, the
video-level labels) and ``AVVP_eval_{audio,visual}.csv`` (``filename onset offset event_labels``:
one event per row, seconds). Units: a video is :data:`NUM_SEGMENTS` one-second segments; segment
``t`` is positive for an event with ``int(onset) <= t < int(offset)``.

Used by :mod:`vidlit.data.llp`, :mod:`vidlit.data.synth.llp`, :mod:`vidlit.heads.llp` and
:mod:`vidlit.metrics.avvp`. The class list comes in through ``validate(..., context={"classes":
...})``; a label outside it is an error, never a new class.
"""

from __future__ import annotations

from typing import Any, TypedDict

from pydantic import ValidationInfo, field_validator, model_validator
from torch import Tensor

from vidlit.formats._schema import FiniteFloat, NonEmptyStr, Record

__all__ = [
    "FEATURE_DIRS",
    "LLP_CATEGORIES",
    "NUM_SEGMENTS",
    "EventRow",
    "LLPBatch",
    "LLPPrediction",
    "LLPTarget",
    "WeakLabelRow",
]

NUM_SEGMENTS = 10  # one-second segments per video
# feature folders of the official release: VGGish per second, ResNet-152 at 8 fps, R(2+1)D-18 per second
FEATURE_DIRS = {"audio": "feats/vggish", "visual": "feats/res152", "motion": "feats/r2plus1d_18"}
# the 25 LLP categories in the official label order (dataloader.py, main_avvp.py)
LLP_CATEGORIES = (
    "Speech", "Car", "Cheering", "Dog", "Cat", "Frying_(food)", "Basketball_bounce", "Fire_alarm",
    "Chainsaw", "Cello", "Banjo", "Singing", "Chicken_rooster", "Violin_fiddle", "Vacuum_cleaner",
    "Baby_laughter", "Accordion", "Lawn_mower", "Motorcycle", "Helicopter", "Acoustic_guitar",
    "Telephone_bell_ringing", "Baby_cry_infant_cry", "Blender", "Clapping",
)  # fmt: skip


def _known(name: str, info: ValidationInfo) -> str:
    classes = (info.context or {}).get("classes")
    if classes is not None and name not in classes:
        raise ValueError(f"unknown category {name!r} (not in the {len(classes)}-class list)")
    return name


class WeakLabelRow(Record):
    """A row of ``AVVP_{train,val_pd,test_pd}.csv``: a video and its video-level labels."""

    filename: NonEmptyStr
    event_labels: list[NonEmptyStr]

    @field_validator("event_labels", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        # the file joins names with commas; a list (built by the synthetic writer) passes through
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @field_validator("event_labels")
    @classmethod
    def _in_taxonomy(cls, names: list[str], info: ValidationInfo) -> list[str]:
        if not names:
            raise ValueError("no event label (every video has at least one)")
        return [_known(name, info) for name in names]


class EventRow(Record):
    """A row of ``AVVP_eval_{audio,visual}.csv``: one event of one modality, in seconds.

    ``0 <= onset <= offset <= duration`` (``duration`` from context, :data:`NUM_SEGMENTS` by
    default); ``onset == offset`` occurs in the official files and marks no segment.
    """

    filename: NonEmptyStr
    onset: FiniteFloat
    offset: FiniteFloat
    event_labels: NonEmptyStr

    @field_validator("onset", "offset", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        # a CSV field is text: "1.5" is a number here, "abc" is not
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise ValueError(f"must be a number of seconds, got {value!r}") from None
        return value

    @field_validator("event_labels")
    @classmethod
    def _in_taxonomy(cls, name: str, info: ValidationInfo) -> str:
        return _known(name, info)

    @model_validator(mode="after")
    def _in_video(self, info: ValidationInfo) -> EventRow:
        duration = (info.context or {}).get("duration", NUM_SEGMENTS)
        if not 0 <= self.onset <= self.offset <= duration:
            raise ValueError(
                f"need 0 <= onset <= offset <= {duration} s (the video), got {self.onset:g}-{self.offset:g}"
            )
        return self


class LLPTarget(TypedDict, total=False):
    """Ground truth of one video: ``labels`` always, segment truth on val / test."""

    video_id: str
    labels: Tensor  # float [k] video-level multi-hot
    audio: Tensor  # uint8 [t, k] audio events per segment
    visual: Tensor  # uint8 [t, k] visual events per segment


class LLPBatch(TypedDict):
    """What :func:`vidlit.data.llp.collate_llp` returns. Shape legend: ``b`` videos, ``t`` segments,
    ``k`` classes, ``ca`` / ``cv`` audio / visual widths."""

    audio: Tensor  # float [b, t, ca]
    visual: Tensor  # float [b, t, cv]
    mask: Tensor  # bool [b, t]
    labels: Tensor  # float [b, k]
    video_ids: list[str]
    targets: list[LLPTarget]


class LLPPrediction(TypedDict):
    """One video's parse, as :class:`~vidlit.heads.llp.LLPHead` ``predict`` returns it."""

    video_id: str
    video_prob: Tensor  # float [k] video-level event probabilities
    audio_prob: Tensor  # float [t, k] audio event probabilities per segment
    visual_prob: Tensor  # float [t, k] visual event probabilities per segment
