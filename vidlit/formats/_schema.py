"""What every task family's contract module shares: validated annotation records, one-line errors.

A family's annotation schema is a set of pydantic models; :func:`validate` checks one parsed
document (a JSON file, a JSON Lines record, a CSV row as a dict) against a model and turns the
first problem into one line that names the file, the record and the key::

    data/moments_val.json: videos[0].clips[3].annotations[0].labels[2]: key 'start_time':
        Input should be a finite number (got nan)

(one line in practice). Readers call it when they first read a file, in the data module's
``setup()``, never in ``__init__``, so the CLI parser never wraps the error. Synthetic writers
build their records through the same models, so sample data is valid by construction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

__all__ = [
    "AnnotationError",
    "FiniteFloat",
    "NonEmptyStr",
    "NonNegativeFloat",
    "NonNegativeInt",
    "Record",
    "StrictInt",
    "StrictStr",
    "dump",
    "validate",
]

# JSON numbers only: a string such as "1.5" or a bool is an error, not silently converted
FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0)]
NonNegativeInt = Annotated[int, Field(strict=True, ge=0)]
NonEmptyStr = Annotated[str, Field(strict=True, min_length=1)]

M = TypeVar("M", bound=BaseModel)


class AnnotationError(ValueError):
    """A malformed annotation file; the message is one line: ``file: record: key 'k': problem``."""


class Record(BaseModel):
    """Base of every annotation model: official files carry extra keys, which are kept, not refused.

    Cross-field rules (start < end, a label in the taxonomy) are ``model_validator`` methods on
    the family's models; numbers the family reads from context (a clip's duration, the class
    list) come in through ``validate(..., context=...)``.
    """

    model_config = ConfigDict(extra="allow", frozen=False, populate_by_name=True)


def _location(loc: Sequence[int | str]) -> tuple[str, str | None]:
    """Split a pydantic error location into the record path and the key at fault."""
    record = ""
    parts = list(loc)
    key = None
    if parts and isinstance(parts[-1], str):
        key = str(parts.pop())
    for part in parts:
        record += f"[{part}]" if isinstance(part, int) else (f".{part}" if record else str(part))
    return record, key


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_line(error: ValidationError | Mapping[str, Any], path: str | Path, where: str = "") -> str:
    """One line for the first error of a pydantic ``ValidationError`` (or one of its ``errors()``)."""
    first = error.errors(include_url=False)[0] if isinstance(error, ValidationError) else error
    record, key = _location(first["loc"])
    # a validator's own message (a cross-field rule) needs no echo of the input
    if first["type"] in ("value_error", "assertion_error"):
        message = str(first["msg"]).removeprefix("Value error, ")
    else:
        message = f"{first['msg']} (got {_short(first['input'])})"
        if first["type"] == "missing":
            message = "missing"
    place = ".".join(p for p in (where, record) if p).replace(".[", "[")
    parts = [str(path)]
    if place:
        parts.append(place)
    if key is not None:
        parts.append(f"key {key!r}")
    return ": ".join([*parts, message])


def validate(
    model: type[M],
    document: Any,
    path: str | Path,
    where: str = "",
    context: Mapping[str, Any] | None = None,
) -> M:
    """Validate ``document`` against ``model``; a problem raises one line naming file, record and key.

    Args:
        model: the family's pydantic model for this document (a whole file or one record).
        document: the parsed JSON object, JSON Lines record or CSV row.
        path: the file it came from, for the message.
        where: the record's place in the file when ``document`` is one record
            (``"line 17"``, ``"videos[0].clips[3]"``); empty for a whole file.
        context: values the model's validators read (``info.context``), e.g. the class list.

    Raises:
        AnnotationError: ``{path}: {where}.{record}: key '{key}': {problem} (got {value})``.
    """
    try:
        return model.model_validate(document, context=dict(context or {}))
    except ValidationError as e:
        raise AnnotationError(error_line(e, path, where)) from None


def dump(record: BaseModel) -> dict[str, Any]:
    """A record as the plain JSON-able dict the official file holds (extra keys kept)."""
    return record.model_dump(mode="json", by_alias=True, exclude_none=True)
