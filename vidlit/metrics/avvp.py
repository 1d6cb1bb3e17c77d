"""Audio-visual video parsing (LLP) F-scores: the official AVVP evaluation protocol.

Tian et al., "Unified Multisensory Perception: Weakly-Supervised Audio-Visual Video Parsing"
(ECCV 2020); the protocol is the ``eval`` function of the official ``main_avvp.py`` and
``utils/eval_metrics.py`` (``segment_level``, ``event_level``, ``extract_event``,
``event_wise_metric``) of YapengTian/AVVP-ECCV20, reproduced here step by step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import rank_zero_warn

from vidlit.core.ids import stable_ids
from vidlit.metrics._inputs import check_lengths, check_pair
from vidlit.metrics._state import cat_state, first_occurrence

# the order of the per-video score vector; "event_av" is the official "F" (Event@AV)
_PER_VIDEO = (
    "segment_audio",
    "segment_visual",
    "segment_av",
    "segment_event_av",
    "event_audio",
    "event_visual",
    "event_av",
    "event_event_av",
)


def extract_events(sequence: Tensor) -> list[tuple[int, int]]:
    """Maximal runs of positive segments, as ``(start, end)`` with ``end`` exclusive.

    The official ``extract_event``: an event is a run of consecutive 1s of one class, so two
    annotation rows that touch or overlap (``0-2`` and ``2-6``) form one event.

    >>> extract_events(torch.tensor([1, 1, 0, 0, 1, 0, 1, 1, 1, 1]))
    [(0, 2), (4, 5), (6, 10)]
    """
    events, start = [], None
    for i, positive in enumerate(sequence.bool().tolist()):
        if positive and start is None:
            start = i
        elif not positive and start is not None:
            events.append((start, i))
            start = None
    if start is not None:
        events.append((start, len(sequence)))
    return events


def _matches(a: tuple[int, int], b: tuple[int, int]) -> bool:
    # the official test, intersection >= 0.5 * union, i.e. IoU >= 0.5 on whole segments
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter >= 0.5 * union


def event_counts(pred: Tensor, gt: Tensor) -> tuple[int, int, int]:
    """``(TP, FP, FN)`` events of one class (the official ``event_wise_metric``).

    A predicted event is a true positive when some ground-truth event overlaps it with
    IoU >= 0.5, else a false positive; a ground-truth event that no predicted event overlaps
    with IoU >= 0.5 is a false negative. (Runs of one sequence are disjoint and separated, so a
    prediction can never match two ground-truth events: counting per side is one-to-one.)

    Args:
        pred: ``[T]`` binary predictions of one class.
        gt: ``[T]`` binary ground truth of the same class.
    """
    pred_events, gt_events = extract_events(pred), extract_events(gt)
    tp = sum(any(_matches(p, g) for g in gt_events) for p in pred_events)
    fn = sum(not any(_matches(g, p) for p in pred_events) for g in gt_events)
    return tp, len(pred_events) - tp, fn


def _mean_f1(tp: Tensor, fp: Tensor, fn: Tensor) -> float:
    # classes with neither predictions nor ground truth are skipped; no class left: 1.0
    # ("all true negatives" in the official code)
    valid = (tp + fp > 0) | (tp + fn > 0)
    if not valid.any():
        return 1.0
    tp, fp, fn = tp[valid].double(), fp[valid].double(), fn[valid].double()
    return float((2 * tp / (2 * tp + fn + fp)).mean())


def _segment_counts(pred: Tensor, gt: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    # pred, gt: [T, K] binary -> per-class TP, FP, FN over segments
    pred, gt = pred.long(), gt.long()
    return (pred * gt).sum(0), (pred * (1 - gt)).sum(0), ((1 - pred) * gt).sum(0)


def _event_counts(pred: Tensor, gt: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    counts = torch.zeros(3, pred.shape[1], dtype=torch.long)
    for k in range(pred.shape[1]):
        if pred[:, k].any() or gt[:, k].any():
            counts[:, k] = torch.tensor(event_counts(pred[:, k], gt[:, k]))
    return counts[0], counts[1], counts[2]


def avvp_video_scores(pred_audio: Tensor, pred_visual: Tensor, gt_audio: Tensor, gt_visual: Tensor) -> Tensor:
    """The eight F-scores of one video from binary segment-level predictions.

    Audio-visual predictions and ground truth are the segment-wise AND of audio and visual
    (``SO_av = SO_a * SO_v``, ``GT_av = GT_a * GT_v``). For each of audio, visual and
    audio-visual, the F-score of each class is ``2 TP / (2 TP + FN + FP)`` counted over segments
    (segment level) or over events (event level) and averaged over the classes that have a
    prediction or a ground truth; Event@AV sums the audio and visual counts of each class
    before its F-score.

    Args:
        pred_audio: ``[T, K]`` binary audio predictions (after thresholding and filtering).
        pred_visual: ``[T, K]`` binary visual predictions.
        gt_audio: ``[T, K]`` binary audio ground truth.
        gt_visual: ``[T, K]`` binary visual ground truth.

    Returns:
        ``[8]`` float64: segment-level audio, visual, audio-visual, Event@AV, then the same four
        at the event level.
    """
    pa, pv, ga, gv = (x.detach().cpu().bool() for x in (pred_audio, pred_visual, gt_audio, gt_visual))
    pav, gav = pa & pv, ga & gv
    scores = []
    for counts in (_segment_counts, _event_counts):
        a, v, av = counts(pa, ga), counts(pv, gv), counts(pav, gav)
        both = tuple(x + y for x, y in zip(a, v))
        scores += [_mean_f1(*a), _mean_f1(*v), _mean_f1(*av), _mean_f1(*both)]
    return torch.tensor(scores, dtype=torch.float64)


class AVVPMetrics(Metric):
    """Segment- and event-level F-scores of audio-visual video parsing (the LLP protocol).

    Implements the ``eval`` function of the official AVVP code (Tian et al., ECCV 2020,
    YapengTian/AVVP-ECCV20 ``main_avvp.py`` + ``utils/eval_metrics.py``) for every video:

    1. **Threshold, then filter by the video prediction.** Segment ``t`` is predicted positive
       for class ``k`` in modality ``m`` when ``frame_prob[t, m, k] >= threshold`` AND the
       video-level probability ``video_prob[k] >= threshold``: a class the model does not
       predict for the whole video is removed from every segment ("filter out false positive
       events with predicted weak labels"). ``filter_by_video=False`` skips the second test.
    2. Audio-visual predictions and ground truth are the segment-wise AND of audio and visual.
    3. Per video and per class: segment level counts TP/FP/FN over the ``T`` (= 10 one-second)
       segments; event level turns each class's sequence into events (maximal runs of positive
       segments, so touching annotation rows merge) and matches them at IoU >= 0.5 (see
       :func:`event_counts`). The class F-score is ``2 TP / (2 TP + FN + FP)``.
    4. **Per-video class averaging, with the official quirks:** the F-scores are averaged over
       the classes that have a prediction or a ground truth *in that video*; a class with
       neither is skipped (so true negatives never count). A video where no class has either,
       e.g. a video without any visual event and no visual prediction, scores **1.0** ("all
       true negatives"); a video without events but with a (false) prediction scores 0.0.
    5. Each figure is the mean over videos of the per-video scores (not a pooled F-score).
       ``*_type_av`` (Type@AV) is the mean of the audio, visual and audio-visual figures;
       ``*_event_av`` (Event@AV) adds each class's audio and visual counts before its F-score.

    Ground truth comes from ``AVVP_eval_audio.csv`` / ``AVVP_eval_visual.csv``: row
    ``onset offset label`` sets segments ``int(onset):int(offset)`` (end exclusive; a row with
    ``onset == offset`` marks nothing); a video without rows has an all-zero ground truth.

    ``update(preds, targets)`` takes one dict per video. ``preds``: ``{"video_id",
    "video_prob": [K], "audio_prob": [T, K], "visual_prob": [T, K]}`` (probabilities, the
    output of :meth:`vidlit.heads.llp.AVParsingHead.predict`); ``targets``: ``{"video_id",
    "audio": [T, K], "visual": [T, K]}`` binary. State is per-video score tensors concatenated
    across processes; a video seen twice (``DistributedSampler`` padding) counts once (the
    official loop would count a video listed twice in the split file twice).

    ``compute()`` returns fractions in ``[0, 1]`` (the paper prints them x100); the first key,
    ``segment_type_av`` (segment-level Type@AV), is the number the official code selects the
    best checkpoint by: ``segment_type_av``, ``segment_event_av``, ``segment_audio``,
    ``segment_visual``, ``segment_av``, then the same five for ``event_``.

    Args:
        num_classes: K (25 for LLP).
        threshold: probability threshold of both the segment and the video predictions (0.5).
        filter_by_video: apply the official filtering by the thresholded video prediction.
        kwargs: passed to :class:`torchmetrics.Metric`.

    Example:
        One class, audio predicted on segments 0-4 and the ground truth on 0-3; nothing visual:

        >>> metric = AVVPMetrics(num_classes=1)
        >>> prob = torch.tensor([[0.9]] * 5 + [[0.1]] * 5)
        >>> gt = torch.tensor([[1]] * 4 + [[0]] * 6)
        >>> metric.update(
        ...     [{"video_id": "v", "video_prob": torch.tensor([0.8]), "audio_prob": prob,
        ...       "visual_prob": torch.zeros(10, 1)}],
        ...     [{"video_id": "v", "audio": gt, "visual": torch.zeros(10, 1)}],
        ... )
        >>> scores = metric.compute()
        >>> round(scores["segment_audio"], 4), scores["segment_visual"], round(scores["segment_type_av"], 4)
        (0.8889, 1.0, 0.963)
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self, num_classes: int = 25, threshold: float = 0.5, filter_by_video: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
        self.num_classes = num_classes
        self.threshold = threshold
        self.filter_by_video = filter_by_video
        self.add_state("video_keys", default=[], dist_reduce_fx="cat")
        self.add_state("scores", default=[], dist_reduce_fx="cat")

    def binarize(self, pred: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """Official step 1: thresholded audio and visual ``[T, K]`` predictions, filtered by video."""
        audio = torch.as_tensor(pred["audio_prob"]) >= self.threshold
        visual = torch.as_tensor(pred["visual_prob"]) >= self.threshold
        if self.filter_by_video:
            video = torch.as_tensor(pred["video_prob"]).to(audio.device) >= self.threshold
            audio, visual = audio & video, visual & video
        return audio, visual

    def _check(self, i: int, pred: Any, target: Any) -> str:
        video_id = check_pair(
            i,
            pred,
            target,
            ("video_prob", "audio_prob", "visual_prob"),
            ("audio", "visual"),
            hint=" (AVVPMetrics needs segment-level ground truth: evaluate on a split with "
            "AVVP_eval_audio/visual.csv annotations)",
        )
        k = self.num_classes
        shape = torch.as_tensor(pred["audio_prob"]).shape
        if len(shape) != 2 or shape[1] != k:
            raise ValueError(
                f"preds[{i}] (video_id {video_id!r})['audio_prob'] must be [T, {k}], got {list(shape)}"
            )
        for kind, item, key in (
            ("preds", pred, "visual_prob"),
            ("targets", target, "audio"),
            ("targets", target, "visual"),
        ):
            if torch.as_tensor(item[key]).shape != shape:
                raise ValueError(
                    f"{kind}[{i}] (video_id {video_id!r})['{key}'] must have the shape of "
                    f"audio_prob {list(shape)}, got {list(torch.as_tensor(item[key]).shape)}"
                )
        if torch.as_tensor(pred["video_prob"]).shape != (k,):
            raise ValueError(f"preds[{i}] (video_id {video_id!r})['video_prob'] must be [{k}]")
        return video_id

    def update(self, preds: Sequence[dict[str, Any]], targets: Sequence[dict[str, Any]]) -> None:
        """Score videos: one prediction and one target per video, in the same order.

        Raises:
            ValueError: different lengths, missing keys, mismatched ``video_id``s or shapes.
        """
        check_lengths(preds, targets)
        if not preds:
            return
        keys, scores = [], []
        for i, (pred, target) in enumerate(zip(preds, targets)):
            video_id = self._check(i, pred, target)
            audio, visual = self.binarize(pred)
            gt_audio, gt_visual = (torch.as_tensor(target[m]) > 0 for m in ("audio", "visual"))
            keys.append(video_id)
            scores.append(avvp_video_scores(audio, visual, gt_audio, gt_visual))
        self.video_keys.append(stable_ids(keys, device=self.device))
        self.scores.append(torch.stack(scores).to(self.device))

    def compute(self) -> dict[str, float]:
        """Mean per-video F-scores (fractions), Type@AV and Event@AV, segment and event level."""
        levels = ("segment", "event")
        names = [f"{lvl}_{n}" for lvl in levels for n in ("type_av", "event_av", "audio", "visual", "av")]
        keys = cat_state(self.video_keys, dtype=torch.long)
        if keys.numel() == 0:
            rank_zero_warn("AVVPMetrics.compute() before any update: returning 0 F-scores")
            return dict.fromkeys(names, 0.0)
        scores = cat_state(self.scores)
        first = first_occurrence(keys)  # one row per video
        mean = dict(zip(_PER_VIDEO, scores[first].mean(0).tolist()))
        out = {}
        for level in levels:
            a, v, av = (mean[f"{level}_{m}"] for m in ("audio", "visual", "av"))
            out[f"{level}_type_av"] = (a + v + av) / 3
            out[f"{level}_event_av"] = mean[f"{level}_event_av"]
            out[f"{level}_audio"], out[f"{level}_visual"], out[f"{level}_av"] = a, v, av
        return out
