"""Non-maximum suppression of 1-D temporal segments: Soft-NMS, ActionFormer's batched NMS, voting.

The selection loop is compiled with numba and runs per class in the order of the final output
(the highest remaining score of any class next), so it stops as soon as ``max_segments``
segments are decided: scores only decay, so nothing decided later can rank above them. The
Gaussian decay ``exp(-iou**2 / sigma)`` is evaluated by ``torch.exp`` on the rows a pick needs,
in batches, so the decayed scores are bit-identical to applying the decay step by step with
torch: every other operation is the same float32 operation in the same order.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from torch import Tensor

from vidlit.core.segments import segment_iou

__all__ = ["batched_nms", "seg_voting", "soft_nms"]

METHODS = {"hard": 0, "linear": 1, "gaussian": 2}
_F32_TINY = np.float32(np.finfo(np.float32).tiny)
_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)
_NEG_INF = np.float32(-np.inf)
# upstream's IoU for "linear" / "hard": `areas = x2 - x1 + 1e-6` in ActionFormer's nms_cpu.cpp
_UPSTREAM_PAD = np.float32(1e-6)
# rows of decay factors computed ahead of need: first batch, then doubling (a few round trips per clip)
_FIRST_BATCH = 256


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
    Gaussian decay keeps the exact IoU (:func:`~vidlit.core.segments.segment_iou_pairs`);
    upstream's padding would move its scores by about ``1e-6 / length`` (relative), far below
    any threshold.

    A segment whose (decayed) score falls below ``min_score`` is dropped; at most
    ``max_segments`` are kept per class, and at most ``max_segments`` overall (the highest
    scores; ties keep the earlier selection step, then the smaller class id, then input order).
    The work is proportional to ``max_segments`` times the size of the picked segments'
    classes, not to the number of candidates squared.

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
        descending, on the input's device. ``labels`` is all zeros when None was given.
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
    if method not in METHODS:
        raise ValueError(f"soft_nms method must be 'gaussian', 'linear' or 'hard', got {method!r}")
    if method == "gaussian" and sigma <= 0:
        raise ValueError(f"soft_nms sigma must be positive, got {sigma}")
    if segments.ndim != 2 or segments.shape[-1] != 2 or scores.shape != segments.shape[:1]:
        raise ValueError(
            "soft_nms expects segments [N, 2] and scores [N], "
            f"got {tuple(segments.shape)} and {tuple(scores.shape)}"
        )
    device = scores.device
    seg = segments.detach().float().cpu().numpy()
    score = scores.detach().float().cpu().numpy()
    label = np.zeros(len(score), np.int64) if labels is None else labels.detach().long().cpu().numpy()
    min32 = np.float32(min_score)
    index = np.flatnonzero(score >= min32)
    if len(index) == 0 or max_segments <= 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return segments.new_zeros(0, 2).float(), scores.new_zeros(0).float(), empty, empty
    # candidates grouped by class (classes ascending, input order within a class)
    classes, row = np.unique(label[index], return_inverse=True)
    order = np.argsort(row, kind="stable")
    index = index[order]
    bounds = np.concatenate([[0], np.cumsum(np.bincount(row, minlength=len(classes)))]).astype(np.int64)
    starts = np.ascontiguousarray(seg[index, 0])
    ends = np.ascontiguousarray(seg[index, 1])
    picked, picked_scores = _select(
        starts, ends, score[index].copy(), bounds, METHODS[method],
        np.float32(sigma), min32, np.float32(iou_threshold), int(max_segments),
    )  # fmt: skip
    kept = index[picked]
    cls_of = np.repeat(np.arange(len(classes)), np.diff(bounds))
    return (
        torch.from_numpy(np.stack([starts[picked], ends[picked]], axis=1).reshape(-1, 2)).to(device),
        torch.from_numpy(picked_scores).to(device),
        torch.from_numpy(classes[cls_of[picked]].astype(np.int64)).to(device),
        torch.from_numpy(kept.astype(np.int64)).to(device),
    )


def _select(
    starts: np.ndarray,
    ends: np.ndarray,
    live: np.ndarray,
    bounds: np.ndarray,
    method: int,
    sigma: np.float32,
    min_score: np.float32,
    iou_threshold: np.float32,
    max_segments: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Drive the compiled selection, computing decay rows (one per picked segment) on demand."""
    n = len(live)
    num_classes = len(bounds) - 1
    cls_of = np.repeat(np.arange(num_classes), np.diff(bounds)).astype(np.int64)
    row_start = np.full(n, -1, np.int64)
    row_len = np.zeros(n, np.int64)
    cols = np.zeros(0, np.int64)
    factors = np.zeros(0, np.float32)
    best = np.empty(num_classes, np.int64)
    _init_best(live, bounds, best)
    picks = np.zeros(num_classes, np.int64)
    out = np.empty(min(n, max_segments), np.int64)
    out_scores = np.empty(min(n, max_segments), np.float32)
    count, batch = 0, _FIRST_BATCH
    while True:
        count, need = _run(
            live, bounds, cls_of, best, picks, row_start, row_len, cols, factors, method,
            min_score, out, out_scores, count,
        )  # fmt: skip
        if need < 0:
            return out[:count], out_scores[:count]
        # the needed row, plus the rows of the best live candidates still without one
        missing = np.flatnonzero((row_start < 0) & (live >= min_score))
        # never more rows ahead than picks remain: memory stays O(max_segments x class size)
        batch = min(batch, len(out) - count)
        if len(missing) > batch:
            missing = missing[np.argpartition(-live[missing], batch)[:batch]]
        rows = np.unique(np.append(missing, need))
        batch = 2 * max(batch, _FIRST_BATCH // 2)
        lengths = _row_lengths(starts, ends, bounds, cls_of, rows, method, iou_threshold)
        offsets = np.concatenate([[0], np.cumsum(lengths)])[:-1] + len(cols)
        new_cols = np.empty(int(lengths.sum()), np.int64)
        new_vals = np.empty(len(new_cols), np.float32)
        _fill_rows(starts, ends, bounds, cls_of, rows, method, sigma, iou_threshold, new_cols, new_vals)
        if method == METHODS["gaussian"]:
            # torch's exp, as the step-by-step torch formulation applies it (bit-identical scores)
            new_vals = torch.from_numpy(new_vals).exp().numpy()
        row_start[rows], row_len[rows] = offsets, lengths
        cols = np.concatenate([cols, new_cols])
        factors = np.concatenate([factors, new_vals])


@numba.njit(cache=True, nogil=True)
def _init_best(live, bounds, best):  # pragma: no cover - compiled
    for c in range(len(bounds) - 1):
        j = bounds[c]
        for k in range(bounds[c] + 1, bounds[c + 1]):
            if live[k] > live[j]:
                j = k
        best[c] = j


@numba.njit(cache=True, nogil=True)
def _pair_iou(s0, e0, s1, e1, pad):  # pragma: no cover - compiled
    """`_iou_pairs` of vidlit.core.segments in scalar float32, operation for operation."""
    inter = min(e0, e1) - max(s0, s1)
    if inter < _ZERO:
        inter = _ZERO
    union = ((e0 - s0) + pad) + ((e1 - s1) + pad) - inter
    if union > _ZERO:
        return inter / max(union, _F32_TINY)
    return _ZERO


@numba.njit(cache=True, nogil=True)
def _affects(iou, method, iou_threshold):  # pragma: no cover - compiled
    # a Gaussian factor of a zero IoU is exp(-0) == 1: such pairs need no row entry
    return iou > _ZERO if method == 2 else iou >= iou_threshold


@numba.njit(cache=True, nogil=True)
def _row_lengths(starts, ends, bounds, cls_of, rows, method, iou_threshold):  # pragma: no cover
    pad = _ZERO if method == 2 else _UPSTREAM_PAD
    lengths = np.zeros(len(rows), np.int64)
    for r in range(len(rows)):
        p = rows[r]
        c = cls_of[p]
        for k in range(bounds[c], bounds[c + 1]):
            if k != p and _affects(
                _pair_iou(starts[p], ends[p], starts[k], ends[k], pad), method, iou_threshold
            ):
                lengths[r] += 1
    return lengths


@numba.njit(cache=True, nogil=True)
def _fill_rows(
    starts, ends, bounds, cls_of, rows, method, sigma, iou_threshold, cols, vals
):  # pragma: no cover
    """Each row's columns and, per method: the exponent ``-iou**2 / sigma``, ``1 - iou``, or 0 (drop)."""
    pad = _ZERO if method == 2 else _UPSTREAM_PAD
    at = 0
    for r in range(len(rows)):
        p = rows[r]
        c = cls_of[p]
        for k in range(bounds[c], bounds[c + 1]):
            if k == p:
                continue
            iou = _pair_iou(starts[p], ends[p], starts[k], ends[k], pad)
            if _affects(iou, method, iou_threshold):
                cols[at] = k
                if method == 2:
                    vals[at] = (-(iou * iou)) / sigma
                elif method == 1:
                    vals[at] = _ONE - iou
                else:
                    vals[at] = _ZERO
                at += 1


@numba.njit(cache=True, nogil=True)
def _run(
    live,
    bounds,
    cls_of,
    best,
    picks,
    row_start,
    row_len,
    cols,
    factors,
    method,
    min_score,
    out,
    out_scores,
    count,
):  # pragma: no cover - compiled
    """Pick segments in output order until done; returns ``(count, need)``, ``need`` >= 0 a missing row."""
    num_classes = len(bounds) - 1
    while count < len(out):
        # the class whose best live segment ranks first: highest score, then fewest picks, then class
        chosen = -1
        for c in range(num_classes):
            if bounds[c] == bounds[c + 1]:
                continue
            s = live[best[c]]
            if not s >= min_score:
                continue
            if chosen < 0:
                chosen = c
                continue
            t = live[best[chosen]]
            if s > t or (s == t and picks[c] < picks[chosen]):
                chosen = c
        if chosen < 0:
            return count, -1
        p = best[chosen]
        if row_start[p] < 0:
            return count, p
        out[count] = p
        out_scores[count] = live[p]
        count += 1
        picks[chosen] += 1
        live[p] = _NEG_INF
        for e in range(row_start[p], row_start[p] + row_len[p]):
            k = cols[e]
            if live[k] == _NEG_INF:
                continue
            if method == 0:
                live[k] = _NEG_INF
            else:
                live[k] = live[k] * factors[e]
                if not live[k] >= min_score:
                    live[k] = _NEG_INF
        j = bounds[chosen]
        for k in range(bounds[chosen] + 1, bounds[chosen + 1]):
            if live[k] > live[j]:
                j = k
        best[chosen] = j
    return count, -1


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
        kept = seg_voting(kept, segments.to(kept.device), scores.to(kept.device), voting_thresh)
    return kept, kept_scores, labels.long().to(index.device)[index]
