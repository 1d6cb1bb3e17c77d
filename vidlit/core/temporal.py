"""Pre-extracted feature sequences on a clock: slicing by seconds, resampling, span <-> time grids.

Ego4D distributes features per *video* (``<video_uid>.pt``, ``[T, C]``, one step every
``stride`` frames), while the episodic-memory tasks annotate *clips* of those videos
(``video_start_sec`` / ``video_end_sec``). Every reader that cuts clips out of video features
goes through :func:`slice_by_seconds`; heads that predict spans on a uniform grid over the clip
(VSLNet-style) use :func:`resample_features`, :func:`seconds_to_span` and :func:`span_to_seconds`.

Shape legend: ``t`` feature steps, ``c`` channels, ``n`` grid units.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vidlit.core.segments import segment_iou

__all__ = ["resample_features", "seconds_to_span", "slice_by_seconds", "span_to_seconds", "step_range"]


def step_range(
    start_sec: float, end_sec: float, step_sec: float, offset_sec: float = 0.0, num_steps: int | None = None
) -> tuple[int, int]:
    """The feature steps ``[first, last)`` that cover ``[start_sec, end_sec]``.

    Step ``i`` starts at ``offset_sec + i * step_sec``. The first step is the one the start
    falls in (floor) and the last the one the end falls in, inclusive (ceil), as the Ego4D NLQ
    baseline cuts clip features out of video features
    (``EGO4D/episodic-memory``, ``NLQ/VSLNet/utils/prepare_ego4d_dataset.py``:
    ``feature[floor(start * 30 / 16) : ceil(end * 30 / 16) + 1]``, i.e. ``step_sec = 16 / 30``,
    ``offset_sec = 0``).

    Args:
        start_sec: window start, seconds on the feature clock.
        end_sec: window end, seconds (``>= start_sec``).
        step_sec: seconds between consecutive feature steps (stride / fps).
        offset_sec: time of step 0.
        num_steps: length of the sequence; the range is clipped to ``[0, num_steps]``.

    Returns:
        ``(first, last)``, a half-open range of step indices.

    Raises:
        ValueError: ``step_sec <= 0`` or ``end_sec < start_sec``.
    """
    if step_sec <= 0:
        raise ValueError(f"step_sec must be positive, got {step_sec}")
    if end_sec < start_sec:
        raise ValueError(f"end_sec {end_sec} is before start_sec {start_sec}")
    # a tolerance so that 16/30 s * 15 lands on step 15, not 14.999... -> 14
    eps = 1e-6
    first = math.floor((start_sec - offset_sec) / step_sec + eps)
    last = math.ceil((end_sec - offset_sec) / step_sec - eps) + 1
    first = max(first, 0)
    if num_steps is not None:
        last = min(last, num_steps)
    return first, last


def slice_by_seconds(
    features: Tensor, start_sec: float, end_sec: float, step_sec: float, offset_sec: float = 0.0
) -> Tensor:
    """Cut the steps covering ``[start_sec, end_sec]`` out of a ``[T, C]`` feature sequence.

    See :func:`step_range` for which steps are kept (the Ego4D NLQ baseline's floor / ceil rule).

    Args:
        features: ``[t, c]`` features of the whole video.
        start_sec: clip start on the video clock (e.g. the clip's ``video_start_sec``).
        end_sec: clip end (``video_end_sec``).
        step_sec: seconds between feature steps.
        offset_sec: time of step 0.

    Returns:
        ``[t', c]``, a view into ``features``.

    Raises:
        ValueError: the window lies outside the sequence (no step left), or bad arguments.
    """
    first, last = step_range(start_sec, end_sec, step_sec, offset_sec, num_steps=features.shape[0])
    if last <= first:
        covered = offset_sec + features.shape[0] * step_sec
        raise ValueError(
            f"window [{start_sec:.3f}, {end_sec:.3f}] s has no feature step: the sequence covers "
            f"[{offset_sec:.3f}, {covered:.3f}) s ({features.shape[0]} steps of {step_sec:.4f} s)"
        )
    return features[first:last]


def resample_features(features: Tensor, max_len: int) -> Tensor:
    """Shorten a ``[T, C]`` sequence to at most ``max_len`` steps by averaging contiguous bins.

    VSLNet's ``visual_feature_sampling`` (Zhang et al., ACL 2020; the Ego4D NLQ baseline,
    ``NLQ/VSLNet/utils/data_util.py``): bin ``i`` spans steps
    ``[round(i * T / max_len), round((i + 1) * T / max_len))`` and is their mean (a single step
    where the bin is empty). Sequences of ``max_len`` steps or fewer are returned unchanged.

    Args:
        features: ``[t, c]``.
        max_len: the most steps to return.

    Returns:
        ``[min(t, max_len), c]``.
    """
    if max_len < 1:
        raise ValueError(f"max_len must be positive, got {max_len}")
    t = features.shape[0]
    if t <= max_len:
        return features
    # numpy's round (half to even), as the baseline
    edges = torch.round(torch.arange(max_len + 1, dtype=torch.float64) / max_len * t).long()
    edges = edges.clamp(max=t - 1)
    starts, ends = edges[:-1], edges[1:]
    # mean of each bin from a cumulative sum: legend n bins
    cumsum = torch.cat((features.new_zeros(1, features.shape[1]), features.double().cumsum(0)))
    lengths = (ends - starts).clamp(min=1)
    sums = torch.where(
        (ends > starts)[:, None], cumsum[ends] - cumsum[starts], features[starts].double()
    )  # n c
    return (sums / lengths[:, None]).to(features.dtype)


def seconds_to_span(start_sec: float, end_sec: float, num_units: int, duration: float) -> tuple[int, int]:
    """The grid span ``(s, e)`` (inclusive unit indices) with the highest IoU with a window.

    The clip ``[0, duration]`` is split into ``num_units`` equal units; span ``(s, e)`` covers
    ``[s * duration / n, (e + 1) * duration / n]``. This is VSLNet's ``time_to_index``
    (Ego4D NLQ baseline, ``NLQ/VSLNet/utils/data_util.py``), the start / end labels it trains on.
    Ties go to the smallest ``s``, then the smallest ``e``, as the baseline's ``argmax``.

    A zero-length window overlaps no span, so its IoU with every span is 0; the baseline then
    labels it ``(0, 0)``. Here it is the unit that contains the window instead.

    Args:
        start_sec: window start in seconds from the clip start.
        end_sec: window end.
        num_units: grid units (feature steps after resampling).
        duration: clip length in seconds.

    Returns:
        ``(s, e)`` with ``0 <= s <= e < num_units``.
    """
    if num_units < 1 or duration <= 0:
        raise ValueError(f"need num_units >= 1 and duration > 0, got {num_units} and {duration}")
    unit = duration / num_units
    starts = torch.arange(num_units, dtype=torch.float64) * unit
    ends = starts + unit
    s, e = torch.meshgrid(torch.arange(num_units), torch.arange(num_units), indexing="ij")
    valid = s <= e
    spans = torch.stack((starts[s[valid]], ends[e[valid]]), dim=-1)
    iou = segment_iou(spans.double(), torch.tensor([[start_sec, end_sec]], dtype=torch.float64))[:, 0]
    if iou.max() <= 0:
        centre = min(max(0.5 * (start_sec + end_sec), 0.0), duration)
        index = min(int(centre / unit), num_units - 1)
        return index, index
    best = int(torch.argmax(iou))  # first maximum, in (s, e) row-major order
    return int(s[valid][best]), int(e[valid][best])


def span_to_seconds(
    start_index: Tensor, end_index: Tensor, num_units: Tensor | int, duration: Tensor | float
):
    """Grid spans back to seconds: VSLNet's ``index_to_time``.

    ``start = s * duration / n`` and ``end = (e + 1) * duration / n``.

    Args:
        start_index: ``[...]`` start units.
        end_index: ``[...]`` end units (inclusive).
        num_units: units of the grid (broadcastable).
        duration: clip length in seconds (broadcastable).

    Returns:
        ``[..., 2]`` windows in seconds.
    """
    unit = torch.as_tensor(duration, dtype=torch.float32) / torch.as_tensor(num_units, dtype=torch.float32)
    return torch.stack((start_index.float() * unit, (end_index.float() + 1) * unit), dim=-1)
