"""Operations on 1-D temporal segments ``[..., 2]`` given as (start, end)."""

from __future__ import annotations

import torch
from torch import Tensor


def segment_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise temporal IoU, as ActivityNet's and Ego4D's evaluation code compute it.

    The union is ``len(a) + len(b) - intersection``; a pair whose union is not positive
    (two zero-length segments) has IoU 0.

    Args:
        a: ``[N, 2]`` segments.
        b: ``[M, 2]`` segments.

    Returns:
        ``[N, M]`` IoU matrix.
    """
    a, b = a.float(), b.float()
    start = torch.maximum(a[:, None, 0], b[None, :, 0])
    end = torch.minimum(a[:, None, 1], b[None, :, 1])
    inter = (end - start).clamp(min=0)
    union = (a[:, 1] - a[:, 0])[:, None] + (b[:, 1] - b[:, 0])[None, :] - inter
    return torch.where(
        union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(union)
    )


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


def soft_nms(
    segments: Tensor,
    scores: Tensor,
    labels: Tensor | None = None,
    sigma: float = 0.5,
    min_score: float = 0.001,
    max_segments: int = 1000,
    method: str = "gaussian",
    iou_threshold: float = 0.1,
) -> tuple[Tensor, Tensor, Tensor]:
    """Soft-NMS over 1-D segments, run independently for each class.

    Soft-NMS (Bodla et al., ICCV 2017) repeatedly selects the highest-scoring segment and decays
    the scores of the rest by their IoU with it instead of discarding them. This follows the
    ``batched_nms(..., use_soft_nms=True, multiclass=True)`` post-processing of ActionFormer
    (Zhang et al., ECCV 2022, Sec. 4 / their ``nms_1d_cpu.softnms``):

    - ``"gaussian"``: every remaining segment is multiplied by ``exp(-iou**2 / sigma)``;
      ``iou_threshold`` is not used (as in ActionFormer).
    - ``"linear"``: segments with ``iou >= iou_threshold`` are multiplied by ``1 - iou``.
    - ``"hard"``: segments with ``iou >= iou_threshold`` are dropped (classic NMS).

    A segment whose (decayed) score falls below ``min_score`` is dropped; at most
    ``max_segments`` are kept per class, and at most ``max_segments`` overall (the highest
    scores). The selection loop runs for all classes at once, so its length is the number of
    segments kept for the most frequent class, not the total.

    Args:
        segments: ``[N, 2]`` (start, end).
        scores: ``[N]`` confidences.
        labels: ``[N]`` class ids; None treats all segments as one class.
        sigma: Gaussian decay width.
        min_score: segments scoring below this (before or after decay) are dropped.
        max_segments: the most segments kept, per class and in total.
        method: ``"gaussian"``, ``"linear"`` or ``"hard"``.
        iou_threshold: overlap from which ``"linear"`` and ``"hard"`` act.

    Returns:
        ``(segments [K, 2], scores [K], labels [K])`` with the decayed scores, sorted by score,
        descending. ``labels`` is all zeros when None was given.
    """
    if method not in ("gaussian", "linear", "hard"):
        raise ValueError(f"soft_nms method must be 'gaussian', 'linear' or 'hard', got {method!r}")
    if method == "gaussian" and sigma <= 0:
        raise ValueError(f"soft_nms sigma must be positive, got {sigma}")
    if segments.ndim != 2 or segments.shape[-1] != 2 or scores.shape != segments.shape[:1]:
        raise ValueError(
            "soft_nms expects segments [N, 2] and scores [N], "
            f"got {tuple(segments.shape)} and {tuple(scores.shape)}"
        )
    if labels is None:
        labels = torch.zeros(len(scores), dtype=torch.long, device=scores.device)
    segments, scores, labels = segments.float(), scores.float(), labels.long()
    keep = scores >= min_score
    segments, scores, labels = segments[keep], scores[keep], labels[keep]
    if len(scores) == 0 or max_segments <= 0:
        return segments.new_zeros(0, 2), scores.new_zeros(0), labels.new_zeros(0)

    # one row per class, padded with dead (-inf) entries: legend c classes, m slots
    classes, row = torch.unique(labels, return_inverse=True)
    counts = torch.bincount(row, minlength=len(classes))
    order = torch.argsort(row, stable=True)
    first = torch.cumsum(counts, 0) - counts
    col = torch.arange(len(row), device=row.device) - torch.repeat_interleave(first, counts)
    m = int(counts.max())
    seg = segments.new_zeros(len(classes), m, 2)
    live = scores.new_full((len(classes), m), float("-inf"))
    seg[row[order], col] = segments[order]
    live[row[order], col] = scores[order]
    length = seg[..., 1] - seg[..., 0]
    tiny = torch.finfo(live.dtype).tiny

    picked_segments, picked_scores, picked_labels = [], [], []
    for _ in range(min(m, max_segments)):
        best, j = live.max(dim=1)  # c
        alive = best >= min_score
        if not alive.all():
            # scores only decay: a class whose best is below min_score is done; drop its row
            if not alive.any():
                break
            live, seg, length, classes, best, j = (x[alive] for x in (live, seg, length, classes, best, j))
        rows = torch.arange(len(classes), device=live.device)
        top = seg[rows, j]  # c 2
        picked_segments.append(top)
        picked_scores.append(best)
        picked_labels.append(classes)
        live[rows, j] = float("-inf")
        inter = torch.minimum(top[:, None, 1], seg[..., 1]) - torch.maximum(top[:, None, 0], seg[..., 0])
        inter = inter.clamp(min=0)
        # a zero union has a zero intersection too: IoU 0, as segment_iou
        iou = inter / ((top[:, 1] - top[:, 0])[:, None] + length - inter).clamp(min=tiny)
        if method == "gaussian":
            live = live * torch.exp(-iou.square() / sigma)
        elif method == "linear":
            live = torch.where(iou >= iou_threshold, live * (1 - iou), live)
        else:
            live = live.masked_fill(iou >= iou_threshold, float("-inf"))
        # also turns NaN (-inf * 0, from a decay that underflowed) into dead entries
        live = live.masked_fill(~(live >= min_score), float("-inf"))

    out_scores, rank = torch.cat(picked_scores).sort(descending=True, stable=True)
    rank = rank[:max_segments]
    return torch.cat(picked_segments)[rank], out_scores[:max_segments], torch.cat(picked_labels)[rank]
