"""Ego4D Short-Term Object Interaction Anticipation: the challenge's top-5 mAP."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import rank_zero_warn

from vidlit.core.ids import stable_ids
from vidlit.metrics._inputs import check_lengths, check_pair
from vidlit.metrics._state import cat_state, first_occurrence, occurrence_tags, rows_tags

# Names of the four mAPs, the challenge's headline ("All", Noun + Verb + TTC) first; the official
# ``STAMeanAveragePrecision.short_names`` order is noun, noun_verb, noun_ttc, noun_verb_ttc.
STA_MAP_NAMES = ("map_box_noun_verb_ttc", "map_box_noun", "map_box_noun_verb", "map_box_noun_ttc")
# official column order: noun, noun+verb, noun+ttc, noun+verb+ttc
_COLUMNS = ("map_box_noun", "map_box_noun_verb", "map_box_noun_ttc", "map_box_noun_verb_ttc")


def sta_box_iou(preds: Tensor, gts: Tensor, inclusive: bool = True) -> Tensor:
    """IoU matrix ``[NP, NG]`` of ``x1 y1 x2 y2`` boxes, as Ego4D's ``sta_metrics.compute_iou``.

    Args:
        preds: ``[NP, 4]`` boxes.
        gts: ``[NG, 4]`` boxes.
        inclusive: the official pixel-inclusive convention (PASCAL VOC): a box's width is
            ``x2 - x1 + 1``, so is the intersection's (clamped at 0), and the ratio is
            ``inter / (area_p + area_g - inter + 1e-11)``. False: continuous coordinates
            (``x2 - x1``), as :func:`torchvision.ops.box_iou`, for normalized boxes.

    Returns:
        float64 IoUs.
    """
    preds, gts = preds.double()[:, None, :], gts.double()[None, :, :]
    one = 1.0 if inclusive else 0.0

    def area(x1: Tensor, y1: Tensor, x2: Tensor, y2: Tensor) -> Tensor:
        return (x2 - x1 + one).clamp(min=0) * (y2 - y1 + one).clamp(min=0)

    inter = area(
        torch.maximum(preds[..., 0], gts[..., 0]),
        torch.maximum(preds[..., 1], gts[..., 1]),
        torch.minimum(preds[..., 2], gts[..., 2]),
        torch.minimum(preds[..., 3], gts[..., 3]),
    )
    area_p = area(*preds.unbind(-1))
    area_g = area(*gts.unbind(-1))
    return inter / (area_p + area_g - inter + 1e-11)


def _descending(scores: Tensor) -> Tensor:
    # numpy's ``scores.argsort()[::-1]``: for the short arrays of one frame numpy sorts stably, so
    # equal scores come out last-index-first; this is that order, made deterministic for any length
    return torch.argsort(scores, stable=True).flip(0)


def voc_average_precision(tp: Tensor, scores: Tensor, num_gt: int) -> float:
    """All-point interpolated AP (the "Python implementation of Matlab VOC AP code" in Ego4D).

    Predictions are ranked by score, descending; precision is made monotonically decreasing
    from the right and integrated over the points where recall changes, recall padded with 0
    and 1 and precision with 0 and 0.

    Args:
        tp: ``[P]`` 1 for a true positive, 0 for a false positive.
        scores: ``[P]`` confidences.
        num_gt: ground-truth instances of the class.
    """
    tps = tp[_descending(scores)].double()
    tp_cum, fp_cum = tps.cumsum(0), (1 - tps).cumsum(0)
    total = tp_cum + fp_cum
    prec = torch.where(total > 0, tp_cum / total.clamp(min=1e-300), torch.zeros_like(total))
    rec = tp_cum / num_gt if num_gt > 0 else torch.zeros_like(tp_cum)
    mrec = torch.cat([rec.new_zeros(1), rec, rec.new_ones(1)])
    mpre = torch.cat([prec.new_zeros(1), prec, prec.new_zeros(1)])
    mpre = mpre.flip(0).cummax(0).values.flip(0)
    changes = torch.nonzero(mrec[1:] != mrec[:-1]).squeeze(1) + 1
    return float(((mrec[changes] - mrec[changes - 1]) * mpre[changes]).sum())


def match_frame(
    pred: dict[str, Tensor],
    gt: dict[str, Tensor],
    iou_threshold: float = 0.5,
    ttc_threshold: float = 0.25,
    top_k: int | None = 5,
    inclusive_iou: bool = True,
) -> tuple[Tensor, Tensor]:
    """Match one frame's predictions to its ground truth, as ``AbstractMeanAveragePrecision.add``.

    Args:
        pred: ``boxes [P, 4]``, ``nouns [P]``, ``verbs [P]``, ``ttcs [P]``, ``scores [P]``.
        gt: ``boxes [G, 4]``, ``nouns [G]``, ``verbs [G]``, ``ttcs [G]``.
        iou_threshold: a match needs box IoU strictly above this.
        ttc_threshold: a TTC match needs ``|pred - gt| <= ttc_threshold`` seconds.
        top_k: the top-k criterion: up to ``(top_k - 1) * G`` highest-scoring false positives of
            the frame are ignored; None or 1 ignores none.
        inclusive_iou: see :func:`sta_box_iou`.

    Returns:
        ``(tp, order)``: ``tp [P, 4]`` float64 for the columns noun, noun+verb, noun+ttc,
        noun+verb+ttc, 1 true positive, 0 false positive, NaN ignored, rows in ``order``,
        the order in which the official code stores the frame's predictions.
    """
    num_p, num_g = len(pred["scores"]), len(gt["nouns"])
    tp = torch.zeros(num_p, 4, dtype=torch.float64)
    if num_g == 0:
        return tp, torch.arange(num_p)
    ious = sta_box_iou(pred["boxes"], gt["boxes"], inclusive_iou)  # p g
    box_ok = ious > iou_threshold
    noun_ok = pred["nouns"][:, None] == gt["nouns"][None, :]
    verb_ok = pred["verbs"][:, None] == gt["verbs"][None, :]
    ttc_ok = (pred["ttcs"].double()[:, None] - gt["ttcs"].double()[None, :]).abs() <= ttc_threshold
    base = box_ok & noun_ok
    candidates = torch.stack([base, base & verb_ok, base & ttc_ok, base & verb_ok & ttc_ok], dim=-1)  # p g 4
    gt_matched = torch.zeros(num_g, 4, dtype=torch.bool)
    columns = torch.arange(4)
    for i in _descending(pred["scores"]).tolist():
        matchable = candidates[i] & ~gt_matched  # g 4
        overlaps = torch.where(matchable, ious[i][:, None], torch.full_like(ious[i][:, None], -1.0))
        best = overlaps.argmax(0)  # the first of equal IoUs, as numpy
        hit = matchable[best, columns]
        tp[i, hit] = 1.0
        gt_matched[best[hit], columns[hit]] = True
    order = torch.arange(num_p)
    if top_k is not None and top_k > 1:
        budget = (top_k - 1) * num_g
        order = _descending(pred["scores"])
        tp = tp[order]
        fp = 1.0 - tp
        tp[(fp.cumsum(0) <= budget) & (fp == 1.0)] = float("nan")
    return tp, order


class ShortTermAnticipationMAP(Metric):
    """Top-5 mAP of Ego4D Short-Term Object Interaction Anticipation (STA).

    Reproduces the challenge scoring of Grauman et al., "Ego4D: Around the World in 3,000 Hours
    of Egocentric Video" (CVPR 2022, Sec. 5 / Appendix "Forecasting"): repository
    ``EGO4D/forecasting``, ``ego4d/evaluation/sta_metrics.py`` (``STAMeanAveragePrecision``,
    ``AbstractMeanAveragePrecision``, ``compute_iou``) driven by
    ``tools/short_term_anticipation/evaluate_short_term_anticipation_results.py``.

    Four mAPs, all averaged over noun classes (``map_box_noun``, ``map_box_noun_verb``,
    ``map_box_noun_ttc`` and the challenge metric ``map_box_noun_verb_ttc``, "All"). Protocol:

    - Per frame, predictions are visited by score, descending. Independently for each of the
      four criteria, a prediction matches the not-yet-matched ground truth with the highest box
      IoU among those that satisfy the criterion: box IoU strictly above ``iou_threshold``, the
      same noun, plus the same verb and/or ``|TTC error| <= ttc_threshold`` (inclusive).
    - IoU uses the pixel-inclusive PASCAL VOC convention (``x2 - x1 + 1``; see
      :func:`sta_box_iou`), with ``1e-11`` added to the union.
    - Top-k criterion: in a frame with ``N_gt`` ground-truth objects, up to ``(top_k - 1) * N_gt``
      of its highest-scoring false positives are ignored (4 x N_gt for the top-5 mAP), per
      criterion, counted over all nouns of the frame.
    - AP per noun class over the whole dataset: the class's predictions (by predicted noun) from
      every frame, ignored ones removed, ranked by score; VOC all-point interpolated AP
      (:func:`voc_average_precision`) with ``N_gt`` the class's ground-truth count.
    - The mean runs over the noun classes present in the ground truth (``count_all_classes`` off);
      a class with ground truth but no prediction has AP 0.

    Quirks of the official code, reproduced (flags give the corrected behaviour where it is a
    bug):

    - **A frame with no prediction is dropped entirely**: the evaluation script passes ``{}`` for
      an empty prediction list and ``add`` then records nothing, not even the frame's ground
      truth, so its objects count in no class's ``N_gt`` and a submission that leaves out hard
      frames is not penalized. ``count_unpredicted_frames=True`` counts their ground truth (as
      misses).
    - **A frame with no ground truth**: the official script fails on it (``np.vstack`` of an empty
      ``objects`` list); ``add`` with no labels, which is what this metric follows, keeps the
      frame's predictions as false positives of their nouns, with none ignored by the top-k rule.
    - Ties in score: the official code ranks with numpy's ``argsort()[::-1]``, whose order of
      equal scores depends on numpy's sort implementation (not stable; SIMD sorts on recent
      numpy). Here equal scores are ranked later-prediction-first (a stable ascending sort,
      reversed), in the per-frame matching, the top-k rule and the per-class ranking alike; with
      that tie rule the official code and this metric agree to 1e-15 on random frames.
    - The official evaluator raises without any ground truth (``np.concatenate`` of no labels);
      here every value is 0 and a warning is issued.
    - Scores are fractions in ``[0, 1]`` as every vidlit metric (the official script prints
      percentages; ``percentages=True`` multiplies by 100).

    Inputs (``update(preds, targets)``, one dict per annotated frame): ``preds`` hold
    ``video_id`` (the annotation ``uid``), ``boxes [P, 4]`` (``x1 y1 x2 y2`` in the frame's
    pixels), ``nouns [P]``, ``verbs [P]``, ``ttcs [P]`` (seconds) and ``scores [P]``; ``targets``
    the same without ``scores``. A frame seen twice (``DistributedSampler`` padding) is scored once.

    Args:
        iou_threshold: box IoU a match must exceed.
        ttc_threshold: largest TTC error in seconds of a match.
        top_k: the K of the top-K mAP; None or 1 is the plain mAP.
        count_all_classes: also average over nouns that are only predicted (AP 0).
        count_unpredicted_frames: count the ground truth of frames without predictions (fixes the
            official behaviour described above).
        inclusive_iou: the official ``+ 1`` pixel convention for box IoU.
        percentages: report 0-100 instead of 0-1.
        kwargs: passed to :class:`torchmetrics.Metric`.

    Example:
        >>> metric = ShortTermAnticipationMAP()
        >>> box = torch.tensor([[10.0, 10.0, 50.0, 50.0]])
        >>> gt = {"video_id": "v_1", "boxes": box, "nouns": torch.tensor([3]), "verbs": torch.tensor([1]),
        ...       "ttcs": torch.tensor([0.5])}
        >>> metric.update([{**gt, "ttcs": torch.tensor([0.7]), "scores": torch.tensor([0.9])}], [gt])
        >>> metric.compute()["map_box_noun_verb_ttc"]
        1.0
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        iou_threshold: float = 0.5,
        ttc_threshold: float = 0.25,
        top_k: int | None = 5,
        count_all_classes: bool = False,
        count_unpredicted_frames: bool = False,
        inclusive_iou: bool = True,
        percentages: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold!r}")
        if ttc_threshold < 0:
            raise ValueError(f"ttc_threshold must be >= 0, got {ttc_threshold!r}")
        if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
        self.iou_threshold = float(iou_threshold)
        self.ttc_threshold = float(ttc_threshold)
        self.top_k = top_k
        self.count_all_classes = count_all_classes
        self.count_unpredicted_frames = count_unpredicted_frames
        self.inclusive_iou = inclusive_iou
        self.scale = 100.0 if percentages else 1.0
        for name in ("frame_key", "frame_tag", "pred_tag", "pred_tp", "pred_scores", "pred_nouns"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self.add_state("gt_tag", default=[], dist_reduce_fx="cat")
        self.add_state("gt_nouns", default=[], dist_reduce_fx="cat")

    @staticmethod
    def _check(item: dict[str, Any], i: int, kind: str, keys: tuple[str, ...]) -> dict[str, Tensor]:
        where = f"{kind}[{i}] (video_id {item['video_id']!r})"
        out = {}
        for k in keys:
            value = item[k]
            if not isinstance(value, Tensor):
                value = torch.as_tensor(value)
            out[k] = value.detach().cpu()
        boxes = out["boxes"].reshape(-1, 4) if out["boxes"].numel() == 0 else out["boxes"]
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"{where}['boxes'] must have shape [N, 4], got {list(boxes.shape)}")
        out["boxes"] = boxes.double()
        n = boxes.shape[0]
        for k in keys[1:]:
            if out[k].shape != (n,):
                raise ValueError(f"{where}['{k}'] must have shape [{n}] like boxes, got {list(out[k].shape)}")
        for k in ("nouns", "verbs"):
            if out[k].is_floating_point():
                raise ValueError(f"{where}['{k}'] must be integer class ids, got {out[k].dtype}")
            out[k] = out[k].long()
        for k in ("ttcs", "scores"):
            if k in out:
                out[k] = out[k].double()
                if not torch.isfinite(out[k]).all():
                    raise ValueError(f"{where}['{k}'] must be finite")
        return out

    def update(self, preds: Sequence[dict[str, Any]], targets: Sequence[dict[str, Any]]) -> None:
        """Match a batch of annotated frames.

        Raises:
            ValueError: mismatched lengths or ids, missing keys, wrong shapes or dtypes.
        """
        check_lengths(preds, targets)
        target_keys = ("boxes", "nouns", "verbs", "ttcs")
        pred_keys = (*target_keys, "scores")
        rows: dict[str, list[Tensor]] = {k: [] for k in ("tp", "score", "noun", "g_noun")}
        keys = []
        for i, (pred, target) in enumerate(zip(preds, targets, strict=True)):
            frame_id = check_pair(i, pred, target, pred_keys, target_keys, "frame")
            p = self._check(pred, i, "preds", pred_keys)
            g = self._check(target, i, "targets", target_keys)
            if len(p["scores"]) == 0 and not self.count_unpredicted_frames:
                continue  # the official `add({}, labels)` records nothing
            keys.append(frame_id)
            tp, order = match_frame(
                p, g, self.iou_threshold, self.ttc_threshold, self.top_k, self.inclusive_iou
            )
            rows["tp"].append(tp)
            rows["score"].append(p["scores"][order])
            rows["noun"].append(p["nouns"][order])
            rows["g_noun"].append(g["nouns"])
        if not keys:
            return
        device = self.device
        tags = occurrence_tags(len(keys), device=device)
        self.frame_key.append(stable_ids(keys, device=device))
        self.frame_tag.append(tags)
        self.pred_tag.append(rows_tags(tags, rows["tp"]))
        self.pred_tp.append(torch.cat(rows["tp"]).to(device))
        self.pred_scores.append(torch.cat(rows["score"]).to(device))
        self.pred_nouns.append(torch.cat(rows["noun"]).to(device))
        self.gt_tag.append(rows_tags(tags, rows["g_noun"]))
        self.gt_nouns.append(torch.cat(rows["g_noun"]).to(device))

    def _state(self, name: str, tail: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        return cat_state(getattr(self, name), tail, dtype).cpu()

    def compute(self) -> dict[str, float]:
        """The four mAPs, ``map_box_noun_verb_ttc`` (the challenge metric) first."""
        frame_key = self._state("frame_key", (), torch.long)
        frame_tag = self._state("frame_tag", (), torch.long)
        # one occurrence per frame id: the smallest tag (lowest rank, then earliest update)
        kept = frame_tag[first_occurrence(frame_key, order=frame_tag)]
        p_rows = torch.isin(self._state("pred_tag", (), torch.long), kept)
        g_rows = torch.isin(self._state("gt_tag", (), torch.long), kept)
        tp = self._state("pred_tp", (4,), torch.float64)[p_rows]
        scores = self._state("pred_scores", (), torch.float64)[p_rows]
        p_nouns = self._state("pred_nouns", (), torch.long)[p_rows]
        g_nouns = self._state("gt_nouns", (), torch.long)[g_rows]
        classes = torch.unique(torch.cat([g_nouns, p_nouns]) if self.count_all_classes else g_nouns)
        if len(classes) == 0:
            rank_zero_warn(f"{type(self).__name__}: no ground truth to score against; every value is 0.")
            return dict.fromkeys(STA_MAP_NAMES, 0.0)
        values = {}
        for column, name in enumerate(_COLUMNS):
            aps = []
            for c in classes.tolist():
                mine = p_nouns == c
                col_tp, col_scores = tp[mine, column], scores[mine]
                valid = ~torch.isnan(col_tp)
                col_tp, col_scores = col_tp[valid], col_scores[valid]
                num_gt = int((g_nouns == c).sum())
                if len(col_tp) > 0 and num_gt > 0:
                    aps.append(voc_average_precision(col_tp, col_scores, num_gt))
                elif not (len(col_tp) == 0 and num_gt == 0):
                    aps.append(0.0)
            values[name] = self.scale * sum(aps) / len(aps) if aps else 0.0
        return {name: values[name] for name in STA_MAP_NAMES}
