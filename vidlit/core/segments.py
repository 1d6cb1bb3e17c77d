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

    For ``"linear"`` and ``"hard"`` the IoU is upstream's (``softnms_1d_cpu`` in
    ``libs/utils/csrc/nms_cpu.cpp``): each length is padded by ``1e-6``, so a pair whose exact
    IoU equals ``iou_threshold`` falls just below it and is left alone, as upstream. The
    Gaussian decay keeps the exact IoU (:func:`segment_iou_pairs`); upstream's padding would move
    its scores by about ``1e-6 / length`` (relative), far below any threshold.

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
    segments, scores, labels, _ = _soft_nms(
        segments, scores, labels, sigma, min_score, max_segments, method, iou_threshold
    )
    return segments, scores, labels


def _soft_nms(
    segments: Tensor,
    scores: Tensor,
    labels: Tensor | None,
    sigma: float,
    min_score: float,
    max_segments: int,
    method: str,
    iou_threshold: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`soft_nms` that also returns ``[K]`` indices of the kept segments into the input."""
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
    index = torch.nonzero(scores >= min_score).squeeze(1)
    segments, scores, labels = segments[index], scores[index], labels[index]
    if len(scores) == 0 or max_segments <= 0:
        return segments.new_zeros(0, 2), scores.new_zeros(0), labels.new_zeros(0), index[:0]

    # one row per class, padded with dead (-inf) entries: legend c classes, m slots
    classes, row = torch.unique(labels, return_inverse=True)
    counts = torch.bincount(row, minlength=len(classes))
    order = torch.argsort(row, stable=True)
    first = torch.cumsum(counts, 0) - counts
    col = torch.arange(len(row), device=row.device) - torch.repeat_interleave(first, counts)
    m = int(counts.max())
    seg = segments.new_zeros(len(classes), m, 2)
    live = scores.new_full((len(classes), m), float("-inf"))
    where = index.new_zeros(len(classes), m)  # each slot's index into the input
    seg[row[order], col] = segments[order]
    where[row[order], col] = index[order]
    live[row[order], col] = scores[order]

    picked_segments, picked_scores, picked_labels, picked_index = [], [], [], []
    for _ in range(min(m, max_segments)):
        best, j = live.max(dim=1)  # c
        alive = best >= min_score
        if not alive.all():
            # scores only decay: a class whose best is below min_score is done; drop its row
            if not alive.any():
                break
            live, seg, where, classes, best, j = (x[alive] for x in (live, seg, where, classes, best, j))
        rows = torch.arange(len(classes), device=live.device)
        top = seg[rows, j]  # c 2
        picked_segments.append(top)
        picked_scores.append(best)
        picked_labels.append(classes)
        picked_index.append(where[rows, j])
        live[rows, j] = float("-inf")
        if method == "gaussian":
            live = live * torch.exp(-segment_iou_pairs(top[:, None], seg).square() / sigma)
        else:
            # upstream's IoU: `areas = x2 - x1 + 1e-6` in ActionFormer's nms_cpu.cpp, same float32 order
            iou = _iou_pairs(top[:, None], seg, 1e-6)
            if method == "linear":
                live = torch.where(iou >= iou_threshold, live * (1 - iou), live)
            else:
                live = live.masked_fill(iou >= iou_threshold, float("-inf"))
        # also turns NaN (-inf * 0, from a decay that underflowed) into dead entries
        live = live.masked_fill(~(live >= min_score), float("-inf"))

    out_scores, rank = torch.cat(picked_scores).sort(descending=True, stable=True)
    rank = rank[:max_segments]
    return (
        torch.cat(picked_segments)[rank],
        out_scores[:max_segments],
        torch.cat(picked_labels)[rank],
        torch.cat(picked_index)[rank],
    )


def seg_voting(kept: Tensor, segments: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Refine kept segments by score voting: ActionFormer's ``seg_voting`` (``libs/utils/nms.py``).

    Each kept segment becomes the average of all candidates whose IoU with it is at least
    ``iou_threshold`` (itself included), weighted by ``score * IoU``: bounding-box voting
    (Gidaris and Komodakis, ICCV 2015) in 1-D, as ActionFormer's class-agnostic NMS applies it.

    Args:
        kept: ``[K, 2]`` segments that survived NMS.
        segments: ``[N, 2]`` all candidates that entered NMS.
        scores: ``[N]`` their (undecayed) scores.
        iou_threshold: the least IoU with a kept segment for a candidate to vote.

    Returns:
        ``[K, 2]`` refined segments. A kept segment with no voter (only when ``iou_threshold``
        exceeds 1 or its voters all score 0) stays as it is.
    """
    if len(kept) == 0 or len(segments) == 0:
        return kept.float()
    iou = segment_iou(kept, segments)  # k n
    weights = (iou >= iou_threshold).float() * scores.float()[None, :] * iou
    total = weights.sum(dim=1, keepdim=True)  # k 1
    refined = (weights / total.clamp(min=torch.finfo(total.dtype).tiny)) @ segments.float()
    return torch.where(total > 0, refined, kept.float())


def batched_nms(
    segments: Tensor,
    scores: Tensor,
    labels: Tensor,
    sigma: float = 0.5,
    min_score: float = 0.001,
    max_segments: int = 1000,
    multiclass: bool = True,
    voting_thresh: float = 0.0,
    method: str = "gaussian",
    iou_threshold: float = 0.1,
) -> tuple[Tensor, Tensor, Tensor]:
    """ActionFormer's post-processing NMS (``batched_nms`` of ``libs/utils/nms.py``).

    With ``multiclass`` (ActionFormer's ``multiclass_nms``, True in its configs) each class runs
    its own Soft-NMS (:func:`soft_nms`) and score voting is never applied, as upstream ("disable
    seg voting for multiclass nms"). Class-agnostic NMS runs one Soft-NMS over all segments,
    keeps each survivor's class, and then, when ``voting_thresh > 0``, refines the survivors'
    boundaries with :func:`seg_voting` over all input candidates.

    Args:
        segments: ``[N, 2]`` (start, end).
        scores: ``[N]`` confidences.
        labels: ``[N]`` class ids.
        sigma: Gaussian decay width.
        min_score: segments scoring below this (before or after decay) are dropped.
        max_segments: the most segments kept.
        multiclass: NMS per class (True) or over all classes at once.
        voting_thresh: IoU from which candidates vote (class-agnostic NMS only); 0 disables.
        method: ``"gaussian"``, ``"linear"`` or ``"hard"`` (see :func:`soft_nms`).
        iou_threshold: overlap from which ``"linear"`` and ``"hard"`` act.

    Returns:
        ``(segments [K, 2], scores [K], labels [K])`` sorted by score, descending.
    """
    if multiclass:
        return soft_nms(segments, scores, labels, sigma, min_score, max_segments, method, iou_threshold)
    kept, kept_scores, _, index = _soft_nms(
        segments, scores, None, sigma, min_score, max_segments, method, iou_threshold
    )
    if voting_thresh > 0:
        kept = seg_voting(kept, segments, scores, voting_thresh)
    return kept, kept_scores, labels.long()[index]
