"""Music-dance evaluation: retrieval both ways, dance-genre accuracy and in-sync accuracy.

The metrics of :class:`vidlit.heads.MuDaRHead`, over its ``predict`` outputs: music-to-dance and
dance-to-music Recall@K / median rank (the retrieval protocol of
:class:`vidlit.metrics.RetrievalRecall`, AIST++ style: several dances share one music track),
dance-genre top-k accuracy and the accuracy of the in-sync classifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics import Metric

from vidlit.metrics._inputs import check_lengths, check_pair
from vidlit.metrics.classification import TopKAccuracy
from vidlit.metrics.retrieval import RetrievalRecall

__all__ = ["GenreAccuracy", "MusicDanceRetrieval", "SyncAccuracy"]


class MusicDanceRetrieval(RetrievalRecall):
    """Music-to-dance and dance-to-music retrieval over ``predict`` outputs.

    The protocol of :class:`vidlit.metrics.retrieval.RetrievalRecall` with dances as the ``a``
    items and music windows as the ``b`` items, grouped by ``music_id``: a dance query has one
    correct music window (``d2m``), a music query is ranked by the best of its dances (``m2d``).
    Keys: ``d2m/R@1``, ``d2m/R@5``, ``d2m/R@10``, ``d2m/MdR``, ``d2m/MnR`` and the same for ``m2d``.

    Args:
        ks: the K of R@K.
        kwargs: passed to :class:`~vidlit.metrics.retrieval.RetrievalRecall`, e.g.
            ``v2t="per_video_max"`` to rank, for a music query, the other tracks by their best dance
            (CLIP4Clip's convention) instead of every dance (the default).
    """

    def __init__(self, ks: Sequence[int] = (1, 5, 10), **kwargs: Any) -> None:
        super().__init__(ks=ks, names=("d", "m"), **kwargs)

    def update(self, preds: Sequence[dict[str, Any]], targets: Sequence[dict[str, Any]]) -> None:  # type: ignore[override]
        check_lengths(preds, targets)
        if not preds:
            return
        for i, (pred, target) in enumerate(zip(preds, targets)):
            check_pair(i, pred, target, ("dance_embedding", "music_embedding"), ("music_id",))
        dance = torch.stack([torch.as_tensor(p["dance_embedding"]) for p in preds]).to(self.device)
        music = torch.stack([torch.as_tensor(p["music_embedding"]) for p in preds]).to(self.device)
        super().update(dance, music, [t["music_id"] for t in targets])


class GenreAccuracy(TopKAccuracy):
    """Dance-genre top-k accuracy (:class:`TopKAccuracy`), keys prefixed ``genre/`` (``genre/top1``)."""

    def __init__(self, num_classes: int, top_k: Sequence[int] = (1,), **kwargs: Any) -> None:
        super().__init__(num_classes=num_classes, top_k=top_k, **kwargs)

    def compute(self) -> dict[str, float]:
        return {f"genre/{k}": v for k, v in super().compute().items()}


class SyncAccuracy(Metric):
    """In-sync accuracy: each window's true pair should score above 0.5 and its shifted pair below.

    ``update(preds, targets)`` reads ``pred["sync_scores"]`` (``[2]`` probabilities: true pair,
    shifted pair); ``compute()`` returns ``{"sync_acc": correct decisions / (2 * windows)}``.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("correct", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Sequence[dict[str, Any]], targets: Sequence[dict[str, Any]]) -> None:
        check_lengths(preds, targets)
        for i, pred in enumerate(preds):
            scores = torch.as_tensor(pred.get("sync_scores", torch.empty(0)))
            if scores.shape != (2,):
                raise ValueError(
                    f"preds[{i}]['sync_scores'] must be [2] (true, shifted), got {list(scores.shape)}"
                )
            self.correct += int(scores[0] > 0.5) + int(scores[1] < 0.5)
            self.total += 2

    def compute(self) -> dict[str, float]:
        if int(self.total) == 0:
            return {"sync_acc": 0.0}
        return {"sync_acc": float(self.correct) / float(self.total)}
