"""Checks of the ``update(preds, targets)`` lists every per-sample vidlit metric takes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def require_keys(item: Any, keys: Sequence[str], where: str, hint: str = "") -> None:
    """Raise a ValueError naming ``where`` unless ``item`` is a dict holding every key.

    Args:
        item: one entry of ``preds`` or ``targets``.
        keys: the keys it must have.
        where: how the error names it, e.g. ``"preds[3]"``.
        hint: appended to the missing-key message (what to do about it).
    """
    if not isinstance(item, dict):
        raise ValueError(f"{where} must be a dict, got {type(item).__name__}")
    missing = [k for k in keys if k not in item]
    if missing:
        raise ValueError(f"{where} misses key(s) {missing}{hint}")


def check_pair(
    i: int,
    pred: Any,
    target: Any,
    pred_keys: Sequence[str],
    target_keys: Sequence[str],
    noun: str = "video",
    id_key: str = "video_id",
    hint: str = "",
    require_str: bool = False,
) -> Any:
    """Check ``preds[i]`` and ``targets[i]`` (dicts with their keys, one sample id) and return the id.

    Args:
        i: the position in the batch, for the messages.
        pred: ``preds[i]``.
        target: ``targets[i]``.
        pred_keys: keys ``pred`` needs besides ``id_key``.
        target_keys: keys ``target`` needs besides ``id_key``.
        noun: what a sample is, for the messages (``"video"``, ``"clip"``, ``"image"``).
        id_key: the key naming the sample.
        hint: appended to a missing-key message.
        require_str: the id must be a ``str``.

    Raises:
        ValueError: an entry that is not a dict, misses a key, or names another sample.
    """
    require_keys(pred, (id_key, *pred_keys), f"preds[{i}]", hint)
    require_keys(target, (id_key, *target_keys), f"targets[{i}]", hint)
    if require_str and not isinstance(pred[id_key], str):
        raise ValueError(f"preds[{i}]['{id_key}'] must be a str, got {type(pred[id_key]).__name__}")
    if pred[id_key] != target[id_key]:
        raise ValueError(f"preds[{i}] is for {noun} {pred[id_key]!r} but targets[{i}] for {target[id_key]!r}")
    return pred[id_key]


def check_lengths(preds: Sequence[Any], targets: Sequence[Any]) -> None:
    """Raise a ValueError unless there is one target per prediction."""
    if len(preds) != len(targets):
        raise ValueError(f"got {len(preds)} predictions but {len(targets)} targets")
