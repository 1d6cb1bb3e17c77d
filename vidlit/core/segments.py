"""Operations on 1-D temporal segments ``[..., 2]`` given as (start, end)."""

from __future__ import annotations

import torch
from torch import Tensor


def segment_iou_pairs(a: Tensor, b: Tensor) -> Tensor:
    """Temporal IoU of segments paired by broadcasting, as ActivityNet's and Ego4D's code compute it.

    The union is ``len(a) + len(b) - intersection``; a pair whose union is not positive
    (two zero-length segments) has IoU 0. Computed in the inputs' dtype.

    Args:
        a: ``[..., 2]`` segments.
        b: ``[..., 2]`` segments, broadcastable against ``a``.

    Returns:
        ``[...]`` IoU of each pair.
    """
    return _iou_pairs(a, b, 0.0)


def _iou_pairs(a: Tensor, b: Tensor, length_pad: float) -> Tensor:
    """:func:`segment_iou_pairs` with every length padded by ``length_pad`` (adding 0.0 is exact)."""
    start = torch.maximum(a[..., 0], b[..., 0])
    end = torch.minimum(a[..., 1], b[..., 1])
    inter = (end - start).clamp(min=0)
    union = ((a[..., 1] - a[..., 0]) + length_pad) + ((b[..., 1] - b[..., 0]) + length_pad) - inter
    return torch.where(
        union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(union)
    )


def segment_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise temporal IoU in float32 (:func:`segment_iou_pairs` of every pair).

    Args:
        a: ``[N, 2]`` segments.
        b: ``[M, 2]`` segments.

    Returns:
        ``[N, M]`` IoU matrix.
    """
    return segment_iou_pairs(a.float()[:, None], b.float()[None])


def seconds_to_steps(segments: Tensor, step_sec: float | Tensor, offset_sec: float | Tensor) -> Tensor:
    """Express segments in seconds on the feature grid: step ``i`` is centred at ``offset + i * step``.

    Args:
        segments: ``[..., 2]`` (start, end) in seconds.
        step_sec: seconds between consecutive feature steps.
        offset_sec: time in seconds of the centre of step 0.

    Returns:
        ``[..., 2]`` segments in (fractional) feature steps.
    """
    return (segments - offset_sec) / step_sec


def steps_to_seconds(segments: Tensor, step_sec: float | Tensor, offset_sec: float | Tensor) -> Tensor:
    """Inverse of :func:`seconds_to_steps`."""
    return segments * step_sec + offset_sec
