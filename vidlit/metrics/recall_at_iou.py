"""Recall@k at temporal IoU thresholds and mean IoU: the Ego4D Natural Language Queries protocol."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat, rank_zero_warn

from vidlit.core.ids import stable_id
from vidlit.core.segments import segment_iou


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
        self._updates = 0

    def _windows(self, item: Any, key: str, i: int, kind: str, shape: str) -> tuple[str, Tensor]:
        where = f"{kind}[{i}]"
        if not isinstance(item, dict) or "video_id" not in item or key not in item:
            raise ValueError(f"{where} must be a dict with keys 'video_id' and '{key}'")
        video_id = item["video_id"]
        value = item[key]
        if not isinstance(value, Tensor):
            value = torch.as_tensor(value, dtype=torch.float32)
        value = value.detach().to(self.device, torch.float32)
        expected = 2 if shape == "[2]" else None
        ok = value.shape == (2,) if expected else (value.ndim == 2 and value.shape[-1] == 2)
        if not ok and not (shape == "[K, 2]" and value.numel() == 0):
            raise ValueError(
                f"{where} (video_id {video_id!r})['{key}'] must have shape {shape}, got {list(value.shape)}"
            )
        value = value.reshape(-1, 2)
        if not torch.isfinite(value).all() or (value[:, 1] < value[:, 0]).any():
            raise ValueError(f"{where} (video_id {video_id!r})['{key}'] must be finite with start <= end")
        return str(video_id), value

    def update(self, preds: list[dict[str, Any]], targets: list[dict[str, Any]]) -> None:
        """Score a batch of queries (see the class docstring for the formats)."""
        if len(preds) != len(targets):
            raise ValueError(f"got {len(preds)} predictions for {len(targets)} targets")
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        keys, hits, ious = [], [], []
        for i, (pred, target) in enumerate(zip(preds, targets)):
            pred_id, windows = self._windows(pred, "windows", i, "preds", "[K, 2]")
            target_id, window = self._windows(target, "window", i, "targets", "[2]")
            if pred_id != target_id:
                raise ValueError(f"preds[{i}] is for {pred_id!r} but targets[{i}] for {target_id!r}")
            iou = segment_iou(windows, window)[:, 0] if len(windows) else windows.new_zeros(0)
            row = torch.zeros(len(self.thresholds), len(self.top_k), dtype=torch.bool, device=self.device)
            for a, threshold in enumerate(self.thresholds):
                for b, k in enumerate(self.top_k):
                    row[a, b] = bool((iou[:k] > threshold).any())
            keys.append(stable_id(target_id))
            hits.append(row)
            ious.append(iou[0] if len(iou) else iou.new_zeros(()))
        if not keys:
            return
        n = len(keys)
        self.query_key.append(torch.tensor(keys, dtype=torch.int64, device=self.device))
        # (rank, update, position): the first occurrence of a query wins at compute time
        position = torch.arange(n, device=self.device, dtype=torch.int64)
        self.order.append((rank << 48) + (self._updates << 24) + position)
        self._updates += 1
        self.hits.append(torch.stack(hits))
        self.top1_iou.append(torch.stack(ious))

    def compute(self) -> dict[str, Tensor]:
        """``{"R{k}@{t}": recall, ..., "mIoU": mean top-1 IoU}``, as fractions in ``[0, 1]``."""
        if isinstance(self.query_key, list) and not self.query_key:
            rank_zero_warn("RecallAtIoU.compute() called without any query; returning zeros")
            zero = torch.tensor(0.0, device=self.device)
            return {**dict.fromkeys(self.keys, zero), "mIoU": zero}
        keys, order = dim_zero_cat(self.query_key), dim_zero_cat(self.order)
        hits, ious = dim_zero_cat(self.hits), dim_zero_cat(self.top1_iou)
        # keep each query's first occurrence
        by_order = torch.argsort(order)
        keys, hits, ious = keys[by_order], hits[by_order], ious[by_order]
        _, inverse = torch.unique(keys, return_inverse=True)
        first = torch.full((int(inverse.max()) + 1,), len(keys), dtype=torch.long, device=keys.device)
        first = first.scatter_reduce(0, inverse, torch.arange(len(keys), device=keys.device), reduce="amin")
        hits, ious = hits[first].float(), ious[first]
        recall = hits.mean(0)  # thresholds k
        out = {
            f"R{k}@{_format(t)}": recall[a, b]
            for b, k in enumerate(self.top_k)
            for a, t in enumerate(self.thresholds)
        }
        out["mIoU"] = ious.mean()
        return out
