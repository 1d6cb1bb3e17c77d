"""Video-level top-k accuracy with multi-view averaging, as Kinetics results are reported."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.utilities import rank_zero_warn

from vidlit.core.ids import stable_ids
from vidlit.metrics._inputs import check_lengths, check_pair
from vidlit.metrics._state import cat_state, first_occurrence


class TopKAccuracy(Metric):
    """Top-k accuracy over videos, averaging the scores of a video's views first.

    The Kinetics protocol (Kay et al., "The Kinetics Human Action Video Dataset", 2017; the
    ActivityNet challenge's top-1 / top-5 accuracy) as video papers apply it with multi-view
    testing (SlowFast, VideoMAE; MMAction2's ``average_clips="prob"`` and ``top_k_accuracy``):

    - Predictions are grouped by ``video_id``: the ``scores`` of all views of one video (temporal
      clips, spatial crops) are averaged, then the video is scored once. This also makes the copies
      ``DistributedSampler`` pads onto another rank harmless.
    - A video is a top-k hit when its true class is among the ``k`` highest averaged scores.
      Ties count against it: the true class must score strictly higher than all but ``k - 1``
      other classes, so a model with constant scores gets no top-1 hits (``torch.topk`` would
      decide ties arbitrarily).
    - A ``k`` of ``num_classes`` or more is not reported (top-5 of a 4-class task would always be
      1.0), except the first, headline ``k``, which is then clipped to ``num_classes``.
    - Accuracy is the fraction of videos (micro average), not the mean of per-class accuracies
      (MMAction2's ``mean_class_accuracy``).

    ``update(preds, targets)`` takes the head's ``predict`` output (``{"video_id", "scores"}``,
    ``scores`` a ``[num_classes]`` tensor, e.g. softmax probabilities; a ``"label"`` entry is
    ignored) and the batch's targets (``{"video_id", "label"}``), one dict per view, in the same
    order. State is concatenated tensors, so it syncs across processes with ``cat``; a video is
    identified by a 64-bit hash of its ``video_id``.

    Args:
        num_classes: number of classes; labels lie in ``[0, num_classes)``.
        top_k: the ``k`` values to report, as ``"top{k}"``; the first is the headline value;
            the others only when below ``num_classes``.
        kwargs: passed to :class:`torchmetrics.Metric`.

    Example:
        Two views of video ``a`` average to ``[0.5, 0.4, 0.1]``:

        >>> metric = TopKAccuracy(num_classes=3, top_k=(1, 2))
        >>> metric.update(
        ...     [{"video_id": "a", "scores": torch.tensor([0.8, 0.1, 0.1])},
        ...      {"video_id": "a", "scores": torch.tensor([0.2, 0.7, 0.1])}],
        ...     [{"video_id": "a", "label": 1}, {"video_id": "a", "label": 1}],
        ... )
        >>> metric.compute()
        {'top1': 0.0, 'top2': 1.0}
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_classes: int, top_k: Sequence[int] = (1, 5), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        ks = tuple(top_k)
        if not ks or any(not isinstance(k, int) or k < 1 for k in ks) or len(set(ks)) != len(ks):
            raise ValueError(f"top_k must be distinct positive ints, got {top_k!r}")
        self.num_classes = num_classes
        # a k >= num_classes is always 1.0 (ties aside): nothing to report, beyond the headline k
        self.top_k = ks[:1] + tuple(k for k in ks[1:] if k < num_classes)
        self.add_state("video_keys", default=[], dist_reduce_fx="cat")
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")

    def update(self, preds: Sequence[dict[str, Any]], targets: Sequence[dict[str, Any]]) -> None:
        """Add views: one prediction and one target per view, in the same order.

        Raises:
            ValueError: different lengths, mismatched ``video_id``s, missing keys, scores that
                are not ``[num_classes]``, or labels outside ``[0, num_classes)``.
        """
        check_lengths(preds, targets)
        if not preds:
            return
        keys, scores, labels = [], [], []
        for i, (pred, target) in enumerate(zip(preds, targets)):
            video_id = check_pair(i, pred, target, ("scores",), ("label",), require_str=True)
            score = torch.as_tensor(pred["scores"])
            if score.shape != (self.num_classes,):
                raise ValueError(
                    f"preds[{i}] (video_id {video_id!r})['scores'] must have shape [{self.num_classes}], "
                    f"got {list(score.shape)}"
                )
            label = int(target["label"])
            if not 0 <= label < self.num_classes:
                raise ValueError(
                    f"targets[{i}] (video_id {video_id!r})['label'] must lie in [0, {self.num_classes}), "
                    f"got {label}"
                )
            keys.append(video_id)
            scores.append(score)
            labels.append(label)
        self.video_keys.append(stable_ids(keys, device=self.device))
        self.scores.append(torch.stack(scores).to(device=self.device, dtype=torch.float64))
        self.labels.append(torch.tensor(labels, dtype=torch.long, device=self.device))

    def compute(self) -> dict[str, float]:
        """``{"top{k}": accuracy}`` for each ``k``, over videos (views averaged).

        Raises:
            ValueError: two views of one video with different labels.
        """
        names = [f"top{k}" for k in self.top_k]
        keys = cat_state(self.video_keys, dtype=torch.long)
        if keys.numel() == 0:
            rank_zero_warn("TopKAccuracy.compute() before any update: returning 0 accuracies")
            return dict.fromkeys(names, 0.0)
        scores, labels = cat_state(self.scores), cat_state(self.labels)
        first, view_to_video = first_occurrence(keys, return_inverse=True)
        n = len(first)
        summed = torch.zeros(n, self.num_classes, dtype=scores.dtype, device=scores.device)
        summed.index_add_(0, view_to_video, scores)
        mean = summed / torch.bincount(view_to_video, minlength=n)[:, None]
        video_label = labels[first]
        if (video_label[view_to_video] != labels).any():
            raise ValueError(
                "views of one video_id have different target labels (a video listed twice with two labels?)"
            )
        true_score = mean.gather(1, video_label[:, None])
        # classes other than the true one scoring at least as high: ties count against the video
        rivals = (mean >= true_score).sum(dim=1) - 1
        return {
            name: float((rivals < min(k, self.num_classes)).double().mean())
            for name, k in zip(names, self.top_k)
        }
