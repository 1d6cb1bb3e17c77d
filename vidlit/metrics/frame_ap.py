"""Frame-level average precision (PR-AUC) of weakly supervised violence detection, as on XD-Violence."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import rank_zero_warn

from vidlit.core.ids import stable_ids
from vidlit.formats.xd_violence import CLIP_LEN
from vidlit.metrics._inputs import check_lengths, check_pair
from vidlit.metrics._state import cat_state, first_occurrence


def pr_auc(labels: Tensor, scores: Tensor) -> float:
    """Area under the precision-recall curve, computed exactly as the XD-Violence code does.

    The official evaluation (Wu et al., "Not only Look, but also Listen", ECCV 2020,
    ``Roc-Ng/XDVioDet/test.py``; MACIL-SD's ``test.py`` copies it) calls
    ``sklearn.metrics.precision_recall_curve(gt, scores)`` and then ``auc(recall, precision)``:

    - one operating point per distinct score (ties form one point), precision
      ``tp / (tp + fp)`` and recall ``tp / P`` at threshold ``score >= s``;
    - the point ``(recall 0, precision 1)`` is appended;
    - the area is the *trapezoidal* integral over recall, not the step-wise sum
      ``sum (R_n - R_{n-1}) P_n`` of ``average_precision_score``; it is reported as "AP" in
      the papers. (Older scikit-learn stopped the curve at full recall; the points it dropped
      all have recall 1, so they add no area and both versions give the same number.)

    Args:
        labels: ``[N]`` binary frame labels.
        scores: ``[N]`` frame scores.

    Returns:
        The PR-AUC; 0.0 (with a warning) when no label is positive, where recall is undefined.
    """
    labels = labels.flatten().double()
    scores = scores.flatten().double()
    positives = labels.sum()
    if labels.numel() == 0 or positives == 0:
        rank_zero_warn(
            "FrameLevelAP: no positive frame in the ground truth, PR-AUC is undefined; returning 0"
        )
        return 0.0
    # scikit-learn's _binary_clf_curve: a stable descending sort, one point per distinct score
    order = torch.sort(scores, descending=True, stable=True).indices
    scores, labels = scores[order], labels[order]
    last_of_tie = torch.nonzero(scores[1:] != scores[:-1]).flatten()
    ends = torch.cat((last_of_tie, torch.tensor([scores.numel() - 1])))
    tps = torch.cumsum(labels, 0)[ends]
    fps = (ends + 1).double() - tps
    precision = torch.cat((torch.ones(1, dtype=torch.float64), tps / (tps + fps)))
    recall = torch.cat((torch.zeros(1, dtype=torch.float64), tps / positives))
    return float(torch.trapezoid(precision, recall))


def repeat_to_frames(snippet_scores: Tensor, clip_len: int = CLIP_LEN) -> Tensor:
    """Snippet scores to frame scores: each of the ``T`` scores repeated ``clip_len`` times.

    This is ``np.repeat(pred, 16)`` of the official test: one I3D snippet covers 16 frames.
    """
    return torch.repeat_interleave(snippet_scores.flatten(), clip_len)


class FrameLevelAP(Metric):
    """Frame-level AP (PR-AUC) over all test frames: the XD-Violence protocol.

    The official evaluation (Wu et al., ECCV 2020, ``Roc-Ng/XDVioDet``; used unchanged by
    MACIL-SD, Yu et al., ACM MM 2022, ``JustinYuu/MACIL_SD``) and its quirks:

    - a video's snippet scores are averaged over its crops (the five I3D crops ``__0..__4``
      are scored separately and ``torch.mean(sig, 0)``-ed): predictions sharing a
      ``video_id`` are averaged here, so a head may send one prediction per video or one per crop;
    - each snippet score is repeated ``clip_len`` (16) times to give frame scores
      (``np.repeat(pred, 16)``), so a 16-frame snippet that is only partly violent scores its
      normal frames like its violent ones;
    - the frames of all videos are pooled into one ranking (not a mean over videos) and scored
      by :func:`pr_auc`: ``precision_recall_curve`` + trapezoidal ``auc``;
    - the ground truth of a video of ``T`` snippets has ``T * clip_len`` frames (``list/gt.npy``
      drops each video's last frame and the ``(frames - 1) % 16`` frames after the last full
      snippet, so it lines up with the features); a length mismatch is an error here rather than
      a shifted alignment of every later video.

    ``update(preds, targets)`` takes ``{"video_id", "scores": [T]}`` (probabilities of violence
    per snippet) and ``{"video_id", "frame_labels": [T * clip_len]}`` (0/1 per frame), one dict
    each per prediction, in the same order. State is concatenated tensors (``cat`` across
    processes); the copies ``DistributedSampler`` pads onto a rank average away.

    Args:
        clip_len: frames per snippet (16 for the official I3D features).
        kwargs: passed to :class:`torchmetrics.Metric`.

    Example:
        Two snippets of one video, the second violent from frame 20 on:

        >>> labels = torch.zeros(32)
        >>> labels[20:] = 1
        >>> metric = FrameLevelAP()
        >>> metric.update([{"video_id": "v", "scores": torch.tensor([0.2, 0.9])}],
        ...               [{"video_id": "v", "frame_labels": labels}])
        >>> round(metric.compute()["AP"], 4)  # P = 12/16 at R = 1, trapezoid from (0, 1)
        0.875
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, clip_len: int = CLIP_LEN, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(clip_len, int) or clip_len < 1:
            raise ValueError(f"clip_len must be a positive int, got {clip_len!r}")
        self.clip_len = clip_len
        self.add_state("video_keys", default=[], dist_reduce_fx="cat")
        self.add_state("lengths", default=[], dist_reduce_fx="cat")
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")

    def update(self, preds: Sequence[dict[str, Any]], targets: Sequence[dict[str, Any]]) -> None:
        """Add predictions and their ground truths, one pair per video (or per crop of a video).

        Raises:
            ValueError: different lengths, mismatched ``video_id``s, missing keys, scores that are
                not 1-D, or ``frame_labels`` that do not have ``clip_len`` frames per snippet.
        """
        check_lengths(preds, targets)
        keys, lengths, scores, labels = [], [], [], []
        for i, (pred, target) in enumerate(zip(preds, targets)):
            video_id = check_pair(i, pred, target, ("scores",), ("frame_labels",))
            score = torch.as_tensor(pred["scores"]).detach()
            label = torch.as_tensor(target["frame_labels"]).detach().flatten()
            if score.ndim != 1 or score.numel() == 0:
                raise ValueError(
                    f"preds[{i}] (video_id {video_id!r})['scores'] must be a non-empty [T] tensor of "
                    f"snippet scores, got shape {list(score.shape)}"
                )
            if label.numel() != score.numel() * self.clip_len:
                raise ValueError(
                    f"targets[{i}] (video_id {video_id!r}): {label.numel()} frame labels for "
                    f"{score.numel()} snippets; expected {score.numel()} * {self.clip_len} = "
                    f"{score.numel() * self.clip_len}"
                )
            keys.append(video_id)
            lengths.append(score.numel())
            scores.append(score.double())
            labels.append(label.bool())
        if not keys:
            return
        self.video_keys.append(stable_ids(keys, device=self.device))
        self.lengths.append(torch.tensor(lengths, dtype=torch.long, device=self.device))
        self.scores.append(torch.cat(scores).to(self.device))
        self.labels.append(torch.cat(labels).to(self.device))

    def compute(self) -> dict[str, float]:
        """``{"AP": frame-level PR-AUC}`` over every frame of every video.

        Raises:
            ValueError: two predictions of one video with different lengths or labels.
        """
        keys = cat_state(self.video_keys, dtype=torch.long).cpu()
        if keys.numel() == 0:
            rank_zero_warn("FrameLevelAP.compute() before any update: returning AP 0")
            return {"AP": 0.0}
        lengths = cat_state(self.lengths).cpu()
        scores, labels = cat_state(self.scores).cpu(), cat_state(self.labels).cpu()
        score_parts = torch.split(scores, lengths.tolist())
        label_parts = torch.split(labels, (lengths * self.clip_len).tolist())
        # videos in first-seen order, each with the predictions (crops, padded copies) made for it
        _, video = first_occurrence(keys, return_inverse=True)
        by_video = torch.split(torch.argsort(video, stable=True), torch.bincount(video).tolist())
        video_scores, video_labels = [], []
        for indices in by_video:
            first, *others = indices.tolist()
            for other in others:
                if lengths[other] != lengths[first] or not torch.equal(
                    label_parts[other], label_parts[first]
                ):
                    raise ValueError(
                        f"two predictions of one video (id hash {int(keys[first])}) disagree in length or "
                        "frame labels"
                    )
            mean = torch.stack([score_parts[i] for i in (first, *others)]).mean(0)
            video_scores.append(repeat_to_frames(mean, self.clip_len))
            video_labels.append(label_parts[first])
        return {"AP": pr_auc(torch.cat(video_labels), torch.cat(video_scores))}
