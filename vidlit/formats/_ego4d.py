"""Rules every Ego4D annotation contract shares: unique ids, times inside their clip, known labels.

The rules read and write the validation context (``validate(..., context=...)``): a clip's
model records its duration there before its children are validated, so a label's ``end_time``
validator can say the label runs past the clip, and each id model registers its id, so a
repeated one is named at its second place in the file.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

from pydantic import ValidationInfo, field_validator, model_validator

from vidlit.core.io import confined_path
from vidlit.formats._schema import AnnotationError, NonEmptyStr, NonNegativeFloat, Record

# seconds a time may pass its clip's end: the files round times to 4 decimals (0.1 ms), far
# less than a frame, and a clip's duration is itself a difference of two rounded times
TIME_TOLERANCE = 1e-3

DURATION = "_clip_duration"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def set_duration(info: ValidationInfo, start: Any, end: Any) -> None:
    """Record ``end - start`` as the duration of the clip about to be validated (None when unknown)."""
    if info.context is None:
        return
    ok = _is_number(start) and _is_number(end) and abs(start) != float("inf") and abs(end) != float("inf")
    info.context[DURATION] = float(end) - float(start) if ok and end > start else None


def check_inside_clip(value: float, info: ValidationInfo, start_key: str | None = None) -> float:
    """``value`` (seconds from the clip start) is after ``start_key``'s and not past the clip's end."""
    if start_key is not None:
        start = info.data.get(start_key)
        if start is not None and not value > start:
            raise ValueError(f"{value:g} is not after {start_key} {start:g}")
    duration = (info.context or {}).get(DURATION)
    if duration is not None and value > duration + TIME_TOLERANCE:
        raise ValueError(f"{value:g} is past the end of the clip ({duration:g} s long)")
    return value


def check_unique(value: str, info: ValidationInfo, kind: str) -> str:
    """``value`` has not been seen as a ``kind`` earlier in the file."""
    if info.context is None:
        return value
    seen = info.context.setdefault(f"_seen_{kind}", set())
    if value in seen:
        raise ValueError(f"{kind} {value!r} is listed twice")
    seen.add(value)
    return value


def check_known(value: Any, info: ValidationInfo, key: str, what: str) -> Any:
    """``value`` is one of ``context[key]`` (a collection of names, or an int count of ids)."""
    known: Collection[Any] | int | None = (info.context or {}).get(key)
    if known is None:
        return value
    source = (info.context or {}).get("taxonomy_file", "the class list")
    if isinstance(known, int):
        if not 0 <= value < known:
            raise ValueError(f"{value} is not a {what} id of {source} (ids 0..{known - 1})")
    elif value not in known:
        plural = what + ("es" if what.endswith("s") else "s")
        raise ValueError(f"{value!r} is not a {what} of {source} ({len(known)} {plural})")
    return value


def confine(root: str | Path, name: str, where: str) -> Path:
    """``root / name`` for an id read from an annotation file, refused when it leaves ``root``.

    :func:`vidlit.core.io.confined_path` with its message as an :class:`AnnotationError`, so the
    CLI prints it as the one line it is.
    """
    try:
        return confined_path(root, name, where)
    except ValueError as e:
        raise AnnotationError(str(e)) from None


class Ego4DClip(Record):
    """A clip of an episodic-memory annotation file (MQ, NLQ): its uid, unique in the file, and its
    place in the video; the clip's duration becomes the context the annotations are checked in."""

    clip_uid: NonEmptyStr
    video_start_sec: NonNegativeFloat
    video_end_sec: NonNegativeFloat

    @model_validator(mode="before")
    @classmethod
    def _clock(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict):
            set_duration(info, data.get("video_start_sec"), data.get("video_end_sec"))
        return data

    @field_validator("clip_uid")
    @classmethod
    def _unique(cls, value: str, info: ValidationInfo) -> str:
        return check_unique(value, info, "clip_uid")

    @field_validator("video_end_sec")
    @classmethod
    def _after_start(cls, value: float, info: ValidationInfo) -> float:
        start = info.data.get("video_start_sec")
        if start is not None and not value > start:
            raise ValueError(f"{value:g} is not after video_start_sec {start:g}")
        return value

    @property
    def duration(self) -> float:
        """Clip length in seconds."""
        return self.video_end_sec - self.video_start_sec
