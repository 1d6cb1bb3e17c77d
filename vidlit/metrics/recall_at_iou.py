"""Recall@k at temporal IoU thresholds and mean IoU: the Ego4D Natural Language Queries protocol."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from torchmetrics import Metric
from torchmetrics.utilities import rank_zero_warn

from vidlit.core.ids import stable_ids
from vidlit.core.segments import segment_iou_pairs
from vidlit.metrics._inputs import check_lengths, check_pair
from vidlit.metrics._state import cat_state, first_occurrence, occurrence_tags


def _format(x: float) -> str:
    return f"{x:g}"


class RecallAtIoU(Metric):
    """Recall@k at IoU thresholds and mean IoU of ranked temporal windows, one query at a time.

    Reproduces the official evaluation of the Ego4D Episodic Memory Natural Language Queries
    benchmark (Grauman et al., "Ego4D: Around the World in 3,000 Hours of Egocentric Video",
    CVPR 2022; ``EGO4D/episodic-memory``, ``NLQ/VSLNet/utils/evaluate_ego4d_nlq.py``:
    ``evaluate_nlq_performance`` and ``compute_IoU``), the challenge's Recall@{1, 5} at
    IoU {0.3, 0.5}:

    - Each query has one ground-truth window ``[clip_start_sec, clip_end_sec]`` and a list of
      predicted windows ranked best first (the challenge takes the top 5).
    - ``R{k}@{t}``: the fraction of queries for which *any* of the first ``k`` predicted windows
      has ``IoU > t``, strictly greater. A query with fewer than ``k`` predictions is scored on
      the ones it has; one without any prediction is a miss.
    - ``mIoU``: the official code averages ``np.sort(overlap[0])[-3:]``, and ``overlap[0]`` holds
      only the *first* prediction's IoU, so ``mIoU`` is the mean IoU of the top-1 window (not of
      the best of three, as the code seems to intend). A query without predictions counts as 0.
    - Queries are averaged over the predictions evaluated (the official code reports
      ``Evaluated: n / N instances`` and averages over ``n``); here every ``update`` target is a
      query, and a query seen more than once (e.g. the copy ``DistributedSampler`` pads onto
      another rank) is counted once, from its first occurrence (lowest rank, then earliest update).

    IoU is ``intersection / union`` with the official union ``max(end) - min(start)``, which equals
    the length-sum union whenever two windows overlap (:func:`vidlit.core.segments.segment_iou`).
    Edge case, zero-length windows: a zero-length ground truth (about 14% of NLQ v1 annotations
    have near-zero windows, a known dataset issue) has IoU 0 with every window of positive
    length, so it can never be retrieved at any positive threshold; two zero-length windows at
    the same instant have IoU ``0 / 0``, NaN in the official code (a miss, but it turns ``mIoU``
    into NaN), and 0 here.

    ``update(preds, targets)`` takes lists of dicts, one per query, matched by position:

    - ``preds[i]``: ``{"video_id": str, "windows": [K, 2] float seconds, ranked best first}``
      (extra keys such as ``"scores"`` are ignored);
    - ``targets[i]``: ``{"video_id": str, "window": [2] float seconds}``; ``video_id`` names the
      query (unique per query, e.g. ``clip_uid/annotation_uid/query_idx``).

    Args:
        thresholds: IoU thresholds, each in ``[0, 1]``.
        top_k: the ``k`` of Recall@k, each ``>= 1``.
        kwargs: passed to :class:`torchmetrics.Metric`.

    Example:
        >>> metric = RecallAtIoU()
        >>> metric.update(
        ...     [{"video_id": "q", "windows": torch.tensor([[0.0, 4.0], [2.0, 6.0]])}],
        ...     [{"video_id": "q", "window": torch.tensor([2.0, 6.0])}],
        ... )
        >>> {k: round(float(v), 3) for k, v in metric.compute().items()}
        {'R1@0.3': 1.0, 'R1@0.5': 0.0, 'R5@0.3': 1.0, 'R5@0.5': 1.0, 'mIoU': 0.333}
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self, thresholds: Sequence[float] = (0.3, 0.5), top_k: Sequence[int] = (1, 5), **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        thresholds = [float(t) for t in thresholds]
        if not thresholds or any(not 0.0 <= t <= 1.0 for t in thresholds):
            raise ValueError(f"thresholds must be a non-empty sequence in [0, 1], got {thresholds!r}")
        top_k = list(top_k)
        if not top_k or any(not isinstance(k, int) or k < 1 for k in top_k):
            raise ValueError(f"top_k must be a non-empty sequence of positive ints, got {top_k!r}")
        if len(set(thresholds)) != len(thresholds) or len(set(top_k)) != len(top_k):
            raise ValueError(f"thresholds and top_k must be distinct, got {thresholds} and {top_k}")
        self.thresholds = tuple(thresholds)
        self.top_k = tuple(top_k)
        # headline first (the Ego4D NLQ leaderboard ranks by R1@0.3): k outer, threshold inner
        self.keys = [f"R{k}@{_format(t)}" for k in self.top_k for t in self.thresholds]
        self.add_state("query_key", default=[], dist_reduce_fx="cat")
        self.add_state("order", default=[], dist_reduce_fx="cat")
        self.add_state("hits", default=[], dist_reduce_fx="cat")
        self.add_state("top1_iou", default=[], dist_reduce_fx="cat")

    def _windows(self, item: dict[str, Any], key: str, i: int, kind: str, shape: str) -> Tensor:
        value = torch.as_tensor(item[key], dtype=torch.float32).detach().to(self.device, torch.float32)
        ok = value.shape == (2,) if shape == "[2]" else (value.ndim == 2 and value.shape[-1] == 2)
        if not ok and not (shape == "[K, 2]" and value.numel() == 0):
            raise ValueError(
                f"{kind}[{i}] (video_id {item['video_id']!r})['{key}'] must have shape {shape}, "
                f"got {list(value.shape)}"
            )
        return value.reshape(-1, 2)

    def update(self, preds: list[dict[str, Any]], targets: list[dict[str, Any]]) -> None:
        """Score a batch of queries (see the class docstring for the formats)."""
        check_lengths(preds, targets)
        if not preds:
            return
        ids, windows, gts = [], [], []
        for i, (pred, target) in enumerate(zip(preds, targets)):
            ids.append(str(check_pair(i, pred, target, ("windows",), ("window",), "query")))
            windows.append(self._windows(pred, "windows", i, "preds", "[K, 2]"))
            gts.append(self._windows(target, "window", i, "targets", "[2]"))
        # q queries, padded to k predictions each (`valid` marks the real ones)
        counts = torch.tensor([len(w) for w in windows], device=self.device)
        padded = pad_sequence(windows, batch_first=True)  # q k 2
        valid = torch.arange(padded.shape[1], device=self.device)[None, :] < counts[:, None]  # q k
        gt = torch.cat(gts)  # q 2
        self._check_values(padded, valid, gt, ids)

        # q k; padding gets -1, which never passes a threshold in [0, 1]
        iou = torch.where(valid, segment_iou_pairs(padded, gt[:, None]), -1.0)

        thresholds = torch.tensor(self.thresholds, device=self.device)
        above = iou[:, None, :] > thresholds[None, :, None]  # q t k
        hits = torch.stack([above[..., :k].any(-1) for k in self.top_k], dim=-1)  # q t top_k
        top1 = iou[:, 0].clamp(min=0) if iou.shape[1] else iou.new_zeros(len(ids))
        self.query_key.append(stable_ids(ids, device=self.device))
        self.order.append(occurrence_tags(len(ids), device=self.device))
        self.hits.append(hits)
        self.top1_iou.append(top1)

    @staticmethod
    def _check_values(padded: Tensor, valid: Tensor, gt: Tensor, ids: list[str]) -> None:
        """Raise for the first query with a non-finite or reversed window (one device sync)."""
        bad_windows = ~(torch.isfinite(padded).all(-1) & (padded[..., 1] >= padded[..., 0]))  # q k
        bad_pred = (bad_windows & valid).any(-1)
        bad_gt = ~(torch.isfinite(gt).all(-1) & (gt[:, 1] >= gt[:, 0]))
        bad = bad_pred | bad_gt
        if bad.any():
            i = int(torch.nonzero(bad)[0])
            kind, key = ("preds", "windows") if bad_pred[i] else ("targets", "window")
            raise ValueError(f"{kind}[{i}] (video_id {ids[i]!r})['{key}'] must be finite with start <= end")

    def compute(self) -> dict[str, Tensor]:
        """``{"R{k}@{t}": recall, ..., "mIoU": mean top-1 IoU}``, as fractions in ``[0, 1]``."""
        keys = cat_state(self.query_key, dtype=torch.long)
        if keys.numel() == 0:
            rank_zero_warn("RecallAtIoU.compute() called without any query; returning zeros")
            zero = torch.tensor(0.0, device=self.device)
            return {**dict.fromkeys(self.keys, zero), "mIoU": zero}
        # keep each query's first occurrence
        first = first_occurrence(keys, order=cat_state(self.order, dtype=torch.long))
        hits, ious = cat_state(self.hits)[first].float(), cat_state(self.top1_iou)[first]
        recall = hits.mean(0)  # thresholds top_k
        out = {
            f"R{k}@{_format(t)}": recall[a, b]
            for b, k in enumerate(self.top_k)
            for a, t in enumerate(self.thresholds)
        }
        out["mIoU"] = ious.mean()
        return out
