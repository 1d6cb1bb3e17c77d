"""Segment-level accuracy of audio-visual event localization (the AVE protocol)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics import Metric

from vidlit.core.ids import stable_ids
from vidlit.metrics._inputs import check_lengths, check_pair
from vidlit.metrics._state import cat_state, first_occurrence


class SegmentAccuracy(Metric):
    """Fraction of one-second segments whose predicted class (background included) is right.

    The AVE protocol (Tian et al., "Audio-Visual Event Localization in Unconstrained Videos",
    ECCV 2018; ``compute_acc`` in the official ``supervised_main.py`` and the test loop of
    ``weak_supervised_main.py``): every test video has 10 one-second segments, each labelled
    with one of 28 event categories or background (class 28, the last of 29); a segment is
    correct when the predicted class equals its label, and the accuracy is taken over **all
    segments of the split pooled together** (``accuracy_score`` over ``N * 10`` segments), so
    background segments count like event segments. MPN and MM-Pyramid report this number.

    ``update(preds, targets)`` takes the head's ``predict`` output (``{"video_id", "labels"}``,
    ``labels`` a ``[T]`` int tensor of predicted classes; extra keys such as ``scores`` are
    ignored) and the batch's targets (``{"video_id", "labels"}``, ``[T]`` segment labels), one
    dict per video in the same order. A video seen twice (the copies ``DistributedSampler``
    pads onto another rank) is counted once: state is per-video counts keyed by a 64-bit hash
    of ``video_id``, concatenated across processes.

    Args:
        num_classes: classes including background (29 for AVE); labels lie in ``[0, num_classes)``.
        kwargs: passed to :class:`torchmetrics.Metric`.

    Example:
        >>> metric = SegmentAccuracy(num_classes=29)
        >>> metric.update(
        ...     [{"video_id": "a", "labels": torch.tensor([28, 3, 3, 3])}],
        ...     [{"video_id": "a", "labels": torch.tensor([28, 28, 3, 3])}],
        ... )
        >>> metric.compute()
        tensor(0.7500)
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_classes: int = 29, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2 (events + background), got {num_classes!r}")
        self.num_classes = num_classes
        self.add_state("video_keys", default=[], dist_reduce_fx="cat")
        self.add_state("correct", default=[], dist_reduce_fx="cat")
        self.add_state("total", default=[], dist_reduce_fx="cat")

    def _labels(self, item: dict[str, Any], kind: str, i: int) -> torch.Tensor:
        labels = torch.as_tensor(item["labels"])
        if labels.ndim != 1 or labels.numel() == 0 or labels.dtype.is_floating_point:
            raise ValueError(
                f"{kind}[{i}] (video_id {item['video_id']!r})['labels'] must be a non-empty [T] int "
                f"tensor, got shape {list(labels.shape)} {labels.dtype}"
            )
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(
                f"{kind}[{i}] (video_id {item['video_id']!r})['labels'] must lie in [0, {self.num_classes}), "
                f"got {labels.tolist()}"
            )
        return labels

    def update(self, preds: Sequence[dict[str, Any]], targets: Sequence[dict[str, Any]]) -> None:
        """Add videos: one prediction and one target per video, in the same order.

        Raises:
            ValueError: different lengths, missing keys, mismatched ``video_id``s, labels that
                are not ``[T]`` ints in ``[0, num_classes)``, or a different number of
                predicted and labelled segments.
        """
        check_lengths(preds, targets)
        if not preds:
            return
        keys, correct, total = [], [], []
        for i, (pred, target) in enumerate(zip(preds, targets)):
            video_id = check_pair(i, pred, target, ("labels",), ("labels",))
            p, t = self._labels(pred, "preds", i), self._labels(target, "targets", i)
            if p.shape != t.shape:
                raise ValueError(
                    f"preds[{i}] (video_id {video_id!r}) has {p.numel()} segments but its "
                    f"target has {t.numel()}"
                )
            keys.append(video_id)
            correct.append(int((p.cpu() == t.cpu()).sum()))
            total.append(t.numel())
        self.video_keys.append(stable_ids(keys, device=self.device))
        self.correct.append(torch.tensor(correct, dtype=torch.long, device=self.device))
        self.total.append(torch.tensor(total, dtype=torch.long, device=self.device))

    def compute(self) -> torch.Tensor:
        """Correct segments / all segments, each video counted once; 0 before any update."""
        keys = cat_state(self.video_keys, dtype=torch.long)
        if keys.numel() == 0:
            return torch.tensor(0.0, device=self.device)
        first = first_occurrence(keys)  # one row per video
        correct, total = cat_state(self.correct)[first], cat_state(self.total)[first]
        return correct.sum().float() / total.sum().clamp(min=1).float()
