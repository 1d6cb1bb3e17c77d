"""The Ego4D Short-Term Object Interaction Anticipation contract: schema, batch types, submission.

The official files (``fho_sta_train.json``, ``fho_sta_val.json``, ``fho_sta_test_unannotated.json``
of the Ego4D forecasting benchmark) hold::

    {"info": {..., "video_metadata": {video_uid: {"fps", "frame_width", "frame_height", ...}}},
     "noun_categories": [{"id", "name"}], "verb_categories": [{"id", "name"}],
     "annotations": [{"uid", "video_uid", "frame", "clip_uid", "clip_frame",
                      "objects": [{"box": [x1, y1, x2, y2], "noun_category_id", "verb_category_id",
                                   "time_to_contact"}]}]}

Boxes are pixels of the full-resolution frame ``frame`` of ``<video_uid>.mp4``; the test file has
no ``objects``; the category lists may also sit inside ``info``. Rules checked when a reader
first reads a file:

- frames are non-negative JSON integers; a box is four finite numbers with ``x1 <= x2``,
  ``y1 <= y2``; ``time_to_contact`` is finite and non-negative;
- noun / verb ids are ids of the taxonomy (the train file's category lists, context ``nouns`` /
  ``verbs``): ``verb_category_id: -1`` is an error naming it, not an ``IndexError`` later;
- a ``uid`` appears once per file; ``video_uid`` / ``clip_uid`` name video files, so they stay
  inside the video folder.

Submissions are :class:`STASubmission`: an entry (possibly empty) for every uid.
"""

from __future__ import annotations

from typing import Any, TypedDict

from pydantic import ValidationInfo, field_validator, model_validator
from torch import Tensor

from vidlit.formats._ego4d import check_known, check_unique
from vidlit.formats._schema import FiniteFloat, NonEmptyStr, NonNegativeFloat, NonNegativeInt, Record

__all__ = [
    "CHALLENGE",
    "VERSION",
    "STAAnnotation",
    "STABatch",
    "STACategory",
    "STAFile",
    "STAObject",
    "STAPrediction",
    "STAResult",
    "STASubmission",
    "STATarget",
    "category_names",
]

CHALLENGE = "ego4d_short_term_object_interaction_anticipation"
VERSION = "1.0"


class STAObject(Record):
    """One next-active object: its box, noun, verb and time to contact (seconds)."""

    box: tuple[FiniteFloat, FiniteFloat, FiniteFloat, FiniteFloat]
    noun_category_id: NonNegativeInt
    verb_category_id: NonNegativeInt
    time_to_contact: NonNegativeFloat

    @field_validator("box")
    @classmethod
    def _ordered(cls, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        if box[2] < box[0] or box[3] < box[1]:
            raise ValueError(f"box must be [x1, y1, x2, y2] with x1 <= x2 and y1 <= y2, got {list(box)}")
        return box

    @field_validator("noun_category_id")
    @classmethod
    def _known_noun(cls, value: int, info: ValidationInfo) -> int:
        return check_known(value, info, "nouns", "noun")

    @field_validator("verb_category_id")
    @classmethod
    def _known_verb(cls, value: int, info: ValidationInfo) -> int:
        return check_known(value, info, "verbs", "verb")


class STAAnnotation(Record):
    """One annotated frame (``video_id`` is read as ``video_uid`` too)."""

    uid: NonEmptyStr
    video_uid: NonEmptyStr
    frame: NonNegativeInt
    clip_uid: NonEmptyStr | None = None
    clip_frame: NonNegativeInt | None = None
    objects: list[STAObject] = []

    @model_validator(mode="before")
    @classmethod
    def _video_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and "video_uid" not in data and "video_id" in data:
            data = {**data, "video_uid": data["video_id"]}
        return data

    @field_validator("uid")
    @classmethod
    def _unique(cls, value: str, info: ValidationInfo) -> str:
        return check_unique(value, info, "uid")


class STACategory(Record):
    """A noun or verb category."""

    id: NonNegativeInt
    name: str | None = None


def _check_ids(categories: list[STACategory] | None) -> list[STACategory] | None:
    seen: set[int] = set()
    for category in categories or []:
        if category.id in seen:
            raise ValueError(f"category id {category.id} is listed twice")
        seen.add(category.id)
    return categories


def _count(raw: Any) -> int | None:
    """``max id + 1`` of a raw category list, or None when it is not a well-formed one."""
    if not isinstance(raw, list) or not raw:
        return None
    ids = [c.get("id") if isinstance(c, dict) else None for c in raw]
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        return None
    return max(ids) + 1


class STAFile(Record):
    """A whole ``fho_sta_*.json`` file.

    Noun / verb ids of the objects are checked against the context's ``nouns`` / ``verbs`` counts
    when given (the train taxonomy, for val and test files), else against this file's own lists.
    """

    info: dict[str, Any] | None = None
    noun_categories: list[STACategory] | None = None
    verb_categories: list[STACategory] | None = None
    annotations: list[STAAnnotation]

    @model_validator(mode="before")
    @classmethod
    def _taxonomy(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict) and info.context is not None:
            inner = data.get("info") if isinstance(data.get("info"), dict) else {}
            for key, name in (("noun_categories", "nouns"), ("verb_categories", "verbs")):
                if name not in info.context:
                    info.context[name] = _count(data.get(key, inner.get(key)))
            if isinstance(inner, dict):
                # categories inside ``info`` (some releases) are read like top-level ones
                for key in ("noun_categories", "verb_categories"):
                    if key not in data and key in inner:
                        data = {**data, key: inner[key]}
        return data

    @field_validator("noun_categories", "verb_categories")
    @classmethod
    def _unique_ids(cls, categories: list[STACategory] | None) -> list[STACategory] | None:
        return _check_ids(categories)

    @property
    def video_metadata(self) -> dict[str, dict[str, Any]]:
        """``info.video_metadata``: fps, frame_width, frame_height per video."""
        return (self.info or {}).get("video_metadata") or {}


def category_names(categories: list[STACategory] | None) -> list[str]:
    """Name of each id (index = id); an id the list skips is named by its number."""
    names = {c.id: c.name if c.name is not None else str(c.id) for c in categories or []}
    return [names.get(i, str(i)) for i in range(max(names) + 1)] if names else []


class STATarget(TypedDict):
    """Ground truth of one frame in :class:`~vidlit.metrics.sta_map.ShortTermAnticipationMAP`'s format."""

    video_id: str
    boxes: Tensor  # [N, 4] x1 y1 x2 y2 pixels
    nouns: Tensor  # [N] int64
    verbs: Tensor  # [N] int64
    ttcs: Tensor  # [N] seconds


class STABatch(TypedDict):
    """A batch of annotated frames. Shape legend: ``b`` frames, ``t`` clip frames, ``h w`` pixels.

    Attributes:
        video: ``[b, t, h, w, 3]`` uint8 (normalized to float ``[b, 3, t, h, w]`` on the device).
        boxes: ``b`` tensors ``[n_i, 4]`` normalized xyxy, the boxes the head labels.
        orig_boxes: ``b`` tensors ``[n_i, 4]`` pixels.
        box_scores: ``b`` tensors ``[n_i]`` detector scores (1 for ground-truth boxes).
        video_ids: ``b`` uids.
        targets: ``b`` ground truths.
    """

    video: Tensor
    boxes: list[Tensor]
    orig_boxes: list[Tensor]
    box_scores: list[Tensor]
    video_ids: list[str]
    targets: list[STATarget]


class STAPrediction(TypedDict):
    """A head's predictions on one frame: pixel boxes with noun, verb, time to contact and score."""

    video_id: str
    boxes: Tensor  # [K, 4]
    nouns: Tensor  # [K]
    verbs: Tensor  # [K]
    ttcs: Tensor  # [K]
    scores: Tensor  # [K]


class STAResult(TypedDict):
    """One predicted interaction of a submission."""

    box: list[float]
    noun_category_id: int
    verb_category_id: int
    time_to_contact: float
    score: float


class STASubmission(TypedDict):
    """The challenge submission file ``vidlit predict`` writes."""

    version: str
    challenge: str
    results: dict[str, list[STAResult]]
