"""Temporal action detection mAP and Recall@kx, as the Ego4D Moment Queries benchmark scores them."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import rank_zero_warn

from vidlit.core.device import torch_threads
from vidlit.core.ids import stable_ids
from vidlit.core.segments import segment_iou
from vidlit.formats._temporal import SegmentPrediction, SegmentTarget
from vidlit.metrics._inputs import check_lengths, check_pair
from vidlit.metrics._state import cat_state, first_occurrence, occurrence_tags, rows_tags

# Pairs per pairwise-IoU block in `compute`: a block spans several clips, and all but the pairs
# within a clip are wasted, so small blocks (a few clips) balance that waste against call overhead.
_IOU_BLOCK = 1 << 14
_PRED_KEYS = ("segments", "labels", "scores")  # a target has the first two


def _format(x: float) -> str:
    return f"{x:g}"


class TemporalActionMAP(Metric):
    """Mean average precision over tIoU thresholds and Recall@kx: the Ego4D Moment Queries protocol.

    Reproduces the official evaluation of the Ego4D Episodic Memory Moment Queries benchmark
    (Grauman et al., "Ego4D: Around the World in 3,000 Hours of Egocentric Video", CVPR 2022),
    repository ``EGO4D/episodic-memory``, folder ``MQ/Evaluation``:

    **mAP** (``ego4d/eval_detection.py``: ``ANETdetection`` and ``compute_average_precision_detection``;
    ``utils.py``: ``interpolated_prec_rec``; the ActivityNet detection code with small changes):

    - AP is computed per class over the whole dataset: all predictions of a class, from every clip,
      are ranked by score, descending.
    - Going down that ranking, a prediction is a true positive if some ground truth of its class in
      its clip, not yet matched at this threshold, has ``tIoU >= threshold`` (inclusive, ``tiou <
      thr`` is the official miss test); of several it takes the one with the highest tIoU. Otherwise
      it is a false positive: a second detection of an already matched ground truth, a prediction in
      a clip with no ground truth of its class, and a prediction in a clip with no ground truth at
      all are all false positives.
    - AP is the VOC-2011 all-point interpolated area: precision is replaced by its running maximum
      from the right (the envelope) and summed over the points where recall increases, with
      ``npos`` = every ground-truth instance of the class. A class with ground truth but no
      prediction has AP 0.
    - ``mAP@t`` averages AP over the classes that have ground truth (the official ``activity_index``
      is built from the ground-truth file only). Classes without ground truth are skipped, and so
      are their predictions (the official code drops them with "Category ... is not in groundtruth
      set!"). ``mAP`` is the mean of ``mAP@t`` over the thresholds.

    **Recall@kx** (``ego4d/get_retrieval_performance.py``: ``Moment_Retrieval.evaluate`` and ``iou``;
    ``ego4d/generate_retrieval.py`` writes each clip's predictions sorted by score, descending):

    - For each clip and each class ``c`` in its ground truth, with ``N_c`` ground-truth instances of
      ``c`` in that clip, keep the ``k * N_c`` highest-scoring predictions of class ``c`` in that clip.
    - A ground-truth instance is retrieved if one of them has ``tIoU > recall_tiou``: strictly
      greater, unlike mAP's ``>=`` (some re-implementations, e.g. ``compute_topkx_recall_detection``
      in ActionFormer-derived code, use ``>=``), and without one-to-one matching (one prediction
      may retrieve several instances).
    - Recall is pooled over every ground-truth instance of the dataset (one ``mean`` over a flat list
      of hits), not averaged per class or per clip. A ground-truth class with no prediction in the
      clip counts as misses.

    Where the official code is unspecified or fails, this metric decides as follows:

    - Ties in score, and ties in tIoU between ground truths, are ordered by numpy's ``argsort``
      (introsort, not stable) in the official code, so their order is implementation-defined. Here
      predictions with equal scores keep their input order and, of ground truths with equal tIoU,
      the first is matched.
    - The official recall raises ``KeyError`` for a clip with ground truth but no prediction entry;
      here that clip's instances are misses.
    - The official mAP (and ``mean`` of an empty list for recall) is NaN without any ground truth;
      here every value is 0 and a warning is issued.
    - tIoU comes from :func:`vidlit.core.segments.segment_iou`, in float32 where the official code
      uses float64, so a tIoU within float32 rounding (~1e-7) of a threshold may be decided
      differently; values that are exact in both (e.g. 5 s of a 10 s segment, 0.5) are decided alike.
      The official union for recall, ``max(end) - min(start)``, equals the length-sum union whenever
      the segments overlap, so both give the same tIoU. Two zero-length segments at the same
      instant have tIoU 0/0 = NaN officially, which the mAP code counts as a match and the recall
      code as a miss; here it is 0, a miss for both.
    - The official pipeline caps and filters predictions before scoring (Soft-NMS and the top 200
      per clip in ``generate_detection.py`` / ``generate_retrieval.py``); that is the head's
      ``predict``'s job. This metric scores the predictions it is given, for both mAP and recall.

    State is stored as concatenated tensors so it syncs across processes with ``cat``. Each clip
    is identified by a 64-bit hash of its ``video_id`` (strings cannot be gathered); a clip seen
    more than once (e.g. the copy ``DistributedSampler`` pads onto another rank, or the same clip
    in two metrics joined by ``merge_state``) is scored once, from its first occurrence (lowest
    rank, then earliest ``update``).

    Args:
        num_classes: number of classes; labels must lie in ``[0, num_classes)``.
        tiou_thresholds: tIoU thresholds of the mAP, each in ``[0, 1]``.
        recall_tiou: tIoU that a retrieval must exceed for Recall@kx.
        recall_k: ``k`` of Recall@kx.
        kwargs: passed to :class:`torchmetrics.Metric` (``dist_sync_on_step``, ``process_group``, ...).

    Example:
        >>> metric = TemporalActionMAP(num_classes=2)
        >>> metric.update(
        ...     [{"video_id": "a", "segments": torch.tensor([[0.0, 5.0]]), "labels": torch.tensor([1]),
        ...       "scores": torch.tensor([0.9])}],
        ...     [{"video_id": "a", "segments": torch.tensor([[0.0, 5.0]]), "labels": torch.tensor([1])}],
        ... )
        >>> metric.compute()["mAP"]
        1.0
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        num_classes: int,
        tiou_thresholds: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5),
        recall_tiou: float = 0.5,
        recall_k: int = 1,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        thresholds = [float(t) for t in tiou_thresholds]
        if not thresholds or any(not 0.0 <= t <= 1.0 for t in thresholds):
            raise ValueError(
                f"tiou_thresholds must be a non-empty sequence in [0, 1], got {tiou_thresholds!r}"
            )
        if len({_format(t) for t in thresholds}) != len(thresholds):
            raise ValueError(f"tiou_thresholds must be distinct, got {tiou_thresholds!r}")
        if not 0.0 <= recall_tiou <= 1.0:
            raise ValueError(f"recall_tiou must be in [0, 1], got {recall_tiou!r}")
        if not isinstance(recall_k, int) or recall_k < 1:
            raise ValueError(f"recall_k must be a positive int, got {recall_k!r}")
        self.num_classes = num_classes
        self.tiou_thresholds = tuple(thresholds)
        self.recall_tiou = float(recall_tiou)
        self.recall_k = recall_k
        self.map_keys = [f"mAP@{_format(t)}" for t in thresholds]
        self.recall_key = f"R{recall_k}x@{_format(recall_tiou)}"

        # One row per clip occurrence: the video_id hash, and a tag unique to this occurrence
        # (:func:`vidlit.metrics._state.occurrence_tags`) that the predictions and ground truths point to.
        self.add_state("clip_key", default=[], dist_reduce_fx="cat")
        self.add_state("clip_tag", default=[], dist_reduce_fx="cat")
        self.add_state("pred_tag", default=[], dist_reduce_fx="cat")
        self.add_state("pred_segments", default=[], dist_reduce_fx="cat")
        self.add_state("pred_labels", default=[], dist_reduce_fx="cat")
        self.add_state("pred_scores", default=[], dist_reduce_fx="cat")
        self.add_state("gt_tag", default=[], dist_reduce_fx="cat")
        self.add_state("gt_segments", default=[], dist_reduce_fx="cat")
        self.add_state("gt_labels", default=[], dist_reduce_fx="cat")

    # ------------------------------------------------------------------ update

    def _check(self, item: dict, i: int, kind: str, with_scores: bool) -> tuple[Tensor, ...]:
        """Shapes and dtypes of one clip (no device sync); values are checked per batch."""
        where = f"{kind}[{i}] (video_id {item['video_id']!r})"
        for k in _PRED_KEYS[: 3 if with_scores else 2]:
            if not isinstance(item[k], Tensor):
                raise ValueError(f"{where}['{k}'] must be a Tensor, got {type(item[k]).__name__}")
        segments, labels = item["segments"], item["labels"]
        if segments.ndim != 2 or segments.shape[1] != 2:
            raise ValueError(f"{where}['segments'] must have shape [N, 2], got {list(segments.shape)}")
        n = segments.shape[0]
        if labels.shape != (n,):
            raise ValueError(
                f"{where}['labels'] must have shape [{n}] like segments, got {list(labels.shape)}"
            )
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise ValueError(f"{where}['labels'] must be an integer tensor, got {labels.dtype}")
        out = [segments.detach().to(self.device, torch.float32), labels.detach().to(self.device, torch.long)]
        if with_scores:
            scores = item["scores"]
            if scores.shape != (n,):
                raise ValueError(
                    f"{where}['scores'] must have shape [{n}] like segments, got {list(scores.shape)}"
                )
            out.append(scores.detach().to(self.device, torch.float32))
        return tuple(out)

    def _check_values(self, kind: str, items: Sequence[dict], columns: Sequence[list[Tensor]]) -> None:
        """Labels in range, finite segments with start <= end, finite scores: one device sync per batch.

        Only when the batch fails are its clips checked one by one, to name the first bad one.
        """
        segments, labels = torch.cat(columns[0]), torch.cat(columns[1])
        bad = (labels < 0).any() | (labels >= self.num_classes).any()
        bad |= ~torch.isfinite(segments).all() | (segments[:, 1] < segments[:, 0]).any()
        if len(columns) > 2:
            bad |= ~torch.isfinite(torch.cat(columns[2])).all()
        if not bad:
            return
        for i, item in enumerate(items):
            where = f"{kind}[{i}] (video_id {item['video_id']!r})"
            seg, lab = columns[0][i], columns[1][i]
            if len(lab) and (lab.min() < 0 or lab.max() >= self.num_classes):
                raise ValueError(
                    f"{where}['labels'] must lie in [0, {self.num_classes}), got {item['labels'].tolist()}"
                )
            if not torch.isfinite(seg).all() or (seg[:, 1] < seg[:, 0]).any():
                raise ValueError(f"{where}['segments'] must be finite with start <= end")
            if len(columns) > 2 and not torch.isfinite(columns[2][i]).all():
                raise ValueError(f"{where}['scores'] must be finite")

    def update(self, preds: Sequence[SegmentPrediction], targets: Sequence[SegmentTarget]) -> None:
        """Add a batch of clips.

        Args:
            preds: one :class:`SegmentPrediction` per clip.
            targets: one :class:`SegmentTarget` per clip, in the same order as ``preds``.

        Raises:
            ValueError: on mismatched lengths or clip ids, missing keys, wrong shapes or dtypes,
                labels outside ``[0, num_classes)``, or non-finite or reversed segments.
        """
        if not isinstance(preds, Sequence) or not isinstance(targets, Sequence):
            raise ValueError("preds and targets must be lists with one dict per clip")
        check_lengths(preds, targets)
        keys = []
        p_seg, p_lab, p_score, g_seg, g_lab = [], [], [], [], []
        for i, (pred, target) in enumerate(zip(preds, targets, strict=True)):
            video_id = check_pair(i, pred, target, _PRED_KEYS, _PRED_KEYS[:2], "clip", require_str=True)
            seg, lab, score = self._check(pred, i, "preds", with_scores=True)
            gseg, glab = self._check(target, i, "targets", with_scores=False)
            keys.append(video_id)
            p_seg.append(seg)
            p_lab.append(lab)
            p_score.append(score)
            g_seg.append(gseg)
            g_lab.append(glab)
        if not keys:
            return
        # preds first, then targets, as the per-clip checks ran before
        self._check_values("preds", preds, (p_seg, p_lab, p_score))
        self._check_values("targets", targets, (g_seg, g_lab))
        tags = occurrence_tags(len(keys), device=self.device)
        self.clip_key.append(stable_ids(keys, device=self.device))
        self.clip_tag.append(tags)
        self.pred_tag.append(rows_tags(tags, p_lab))
        self.pred_segments.append(torch.cat(p_seg))
        self.pred_labels.append(torch.cat(p_lab))
        self.pred_scores.append(torch.cat(p_score))
        self.gt_tag.append(rows_tags(tags, g_lab))
        self.gt_segments.append(torch.cat(g_seg))
        self.gt_labels.append(torch.cat(g_lab))

    # ----------------------------------------------------------------- compute

    def _state(self, name: str, tail: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        # Scored on the CPU: the matching below is many small steps, not a few big kernels.
        return cat_state(getattr(self, name), tail, dtype).cpu()

    def compute(self) -> dict[str, float]:
        """Score everything seen since the last reset.

        Runs with one torch thread: the scoring is many small CPU steps, which intra-op threads
        only slow down when the other cores are busy (data-loader workers, training).

        Returns:
            ``{"mAP": ..., "mAP@0.1": ..., ..., "R1x@0.5": ...}`` as Python floats in ``[0, 1]``,
            keys named after the configured thresholds.
        """
        with torch_threads(1):
            return self._compute()

    def _compute(self) -> dict[str, float]:
        thr = torch.tensor(self.tiou_thresholds, dtype=torch.float32)
        zeros = {"mAP": 0.0, **dict.fromkeys(self.map_keys, 0.0), self.recall_key: 0.0}

        clip_key = self._state("clip_key", (), torch.long)
        clip_tag = self._state("clip_tag", (), torch.long)
        p_tag, g_tag = self._state("pred_tag", (), torch.long), self._state("gt_tag", (), torch.long)
        p_seg = self._state("pred_segments", (2,), torch.float32)
        g_seg = self._state("gt_segments", (2,), torch.float32)
        p_lab, g_lab = self._state("pred_labels", (), torch.long), self._state("gt_labels", (), torch.long)
        p_score = self._state("pred_scores", (), torch.float32)

        # Keep one occurrence per clip id: the one with the smallest tag (lowest rank, then earliest).
        kept = clip_tag[first_occurrence(clip_key, order=clip_tag)]  # sorted
        # From here on a clip is its index in `kept`.
        p_clip, p_rows = self._lookup(kept, p_tag)
        g_clip, g_rows = self._lookup(kept, g_tag)
        p_seg, p_lab, p_score = p_seg[p_rows], p_lab[p_rows], p_score[p_rows]
        g_seg, g_lab = g_seg[g_rows], g_lab[g_rows]

        num_gt = len(g_lab)
        if num_gt == 0:
            rank_zero_warn(f"{type(self).__name__}: no ground truth to score against; every value is 0.")
            return zeros

        # Only classes with ground truth are scored; predictions of other classes cannot matter.
        classes, npos = torch.unique(g_lab, return_counts=True)
        is_evaluated = torch.zeros(self.num_classes, dtype=torch.bool)
        is_evaluated[classes] = True
        rows = torch.nonzero(is_evaluated[p_lab]).squeeze(1)
        p_seg, p_lab, p_score, p_clip = (x[rows] for x in (p_seg, p_lab, p_score, p_clip))
        num_p = len(p_lab)

        # A prediction's position in the official ranking: score descending, ties in input order.
        score_rank = torch.empty(num_p, dtype=torch.long)
        score_rank[torch.sort(p_score, descending=True, stable=True).indices] = torch.arange(num_p)

        # Groups = (clip, class) pairs with ground truth; `slot` numbers the ground truths of a group.
        g_key = g_clip * self.num_classes + g_lab
        g_order = torch.argsort(g_key, stable=True)
        g_seg, g_lab, g_clip, g_key = g_seg[g_order], g_lab[g_order], g_clip[g_order], g_key[g_order]
        group_keys, group_size = torch.unique_consecutive(g_key, return_counts=True)
        num_groups, max_size = len(group_keys), int(group_size.max())

        # Predictions whose group has ground truth, sorted by (group, score rank): `q` rows.
        p_key = p_clip * self.num_classes + p_lab
        p_group = torch.searchsorted(group_keys, p_key).clamp(max=num_groups - 1)
        in_group = group_keys[p_group] == p_key
        q_idx = torch.nonzero(in_group).squeeze(1)
        q_idx = q_idx[torch.argsort(p_group[q_idx] * num_p + score_rank[q_idx])]
        q_group = p_group[q_idx]
        q_size = group_size[q_group]
        group_start_q = torch.searchsorted(q_group, torch.arange(num_groups))
        q_rank = torch.arange(len(q_idx)) - group_start_q[q_group]  # rank within the group

        iou = self._group_iou(
            p_seg[q_idx], p_lab[q_idx], p_clip[q_idx], g_seg, g_lab, g_clip, q_size, max_size
        )

        tp = self._match(iou, thr, q_idx, q_group, num_groups, max_size, num_p)
        map_t = self._average_precision(tp, p_lab, score_rank, classes, npos)
        recall = self._recall(iou, q_rank, q_size, q_group, num_groups, max_size, num_gt)

        return {
            "mAP": map_t.mean().item(),
            **{k: v.item() for k, v in zip(self.map_keys, map_t, strict=True)},
            self.recall_key: recall,
        }

    @staticmethod
    def _match(
        iou: Tensor, thr: Tensor, q_idx: Tensor, q_group: Tensor, num_groups: int, max_size: int, num_p: int
    ) -> Tensor:
        """True positives ``[t, p]`` of the greedy one-to-one matching, per threshold.

        ``iou`` is ``[q, max_size]`` (:meth:`_group_iou`), ``q`` rows sorted by (group, score rank).
        """
        num_t = len(thr)
        # Greedy matching, vectorized across groups: step r takes the r-th best prediction of every
        # group at once (groups share no ground truth, so their matches cannot conflict). Only
        # predictions that reach the lowest threshold with some ground truth can match; the rest
        # are false positives and skip the sequential part.
        m_idx = torch.nonzero(iou.max(1).values >= thr.min()).squeeze(1)  # rows of q, still sorted
        m_group = q_group[m_idx]
        m_rank = torch.arange(len(m_idx)) - torch.searchsorted(m_group, m_group)
        tp_q = torch.zeros(num_t, len(q_idx), dtype=torch.bool)
        locked = torch.zeros(num_groups, num_t, max_size, dtype=torch.bool)
        t_idx = torch.arange(num_t)[None, :]
        by_rank = torch.argsort(m_rank, stable=True)
        for rows in torch.split(m_idx[by_rank], torch.bincount(m_rank).tolist()) if len(m_idx) else ():
            g = q_group[rows]
            cand = (iou[rows, None, :] >= thr[None, :, None]) & ~locked[g]  # [a, t, s]
            best = torch.where(cand, iou[rows, None, :], -1.0).argmax(-1)  # first of equal tIoUs
            hit = cand.any(-1)
            tp_q[:, rows] = hit.T
            locked[g[:, None], t_idx, best] |= hit
        tp = torch.zeros(num_t, num_p, dtype=torch.bool)  # [t, p]: scans run along contiguous memory
        tp[:, q_idx] = tp_q
        return tp

    def _average_precision(
        self, tp: Tensor, p_lab: Tensor, score_rank: Tensor, classes: Tensor, npos: Tensor
    ) -> Tensor:
        """Mean over the classes with ground truth of the interpolated AP, per threshold: ``[t]``."""
        num_t, num_p = tp.shape
        # Per-class interpolated AP over the dataset-wide ranking of the class. Recall grows by
        # 1/npos at each true positive, and the envelope (max precision at or after a point) is
        # reached at a true positive, so only the true positives are needed: the m-th one of a
        # class, at rank n of the class, has precision m / n.
        by_class = torch.argsort(p_lab * num_p + score_rank)
        sorted_lab = p_lab[by_class]
        class_size = torch.bincount(p_lab, minlength=self.num_classes)
        class_start = torch.cumsum(class_size, 0) - class_size
        ap = torch.zeros(len(classes), num_t, dtype=torch.float64)
        for t in range(num_t):
            at = torch.nonzero(tp[t, by_class]).squeeze(1)  # positions in the class-major ranking
            label = sorted_lab[at]
            tp_count = torch.bincount(label, minlength=self.num_classes)
            m = torch.arange(len(at)) - (torch.cumsum(tp_count, 0) - tp_count)[label] + 1
            precision = m / (at - class_start[label] + 1).double()
            per_class = torch.split(precision, tp_count.tolist())
            for c, (cls, total) in enumerate(zip(classes.tolist(), npos.tolist(), strict=True)):
                if len(per_class[cls]):  # else AP 0, e.g. a class with no prediction
                    envelope = per_class[cls].flip(0).cummax(0).values
                    ap[c, t] = envelope.sum() / total
        return ap.mean(0)

    def _recall(
        self,
        iou: Tensor,
        q_rank: Tensor,
        q_size: Tensor,
        q_group: Tensor,
        num_groups: int,
        max_size: int,
        num_gt: int,
    ) -> float:
        """Recall@kx pooled over every ground-truth instance."""
        # Recall@kx: the top k*N_c predictions of each group, tIoU strictly above recall_tiou.
        top = q_rank < self.recall_k * q_size
        retrieved = torch.zeros(num_groups, max_size)
        recall_thr = torch.tensor(self.recall_tiou, dtype=torch.float32)  # compared in float32, as thr
        retrieved.index_add_(0, q_group[top], (iou[top] > recall_thr).float())
        return (retrieved > 0).sum().item() / num_gt

    @staticmethod
    def _lookup(kept: Tensor, tags: Tensor) -> tuple[Tensor, Tensor]:
        """Index in the sorted ``kept`` of each tag found there, and the positions of those tags."""
        if len(kept) == 0:
            return torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)
        index = torch.searchsorted(kept, tags).clamp(max=len(kept) - 1)
        rows = torch.nonzero(kept[index] == tags).squeeze(1)
        return index[rows], rows

    @staticmethod
    def _group_iou(
        q_seg: Tensor,
        q_lab: Tensor,
        q_clip: Tensor,
        g_seg: Tensor,
        g_lab: Tensor,
        g_clip: Tensor,
        q_size: Tensor,
        max_size: int,
    ) -> Tensor:
        """tIoU of each prediction with each ground truth of its group, padded with -1: ``[q, max_size]``.

        ``q`` rows are sorted by clip and ground truths by (clip, class), so masking a pairwise block
        to the same clip and class, in row-major order, lists each row's group in slot order.
        Blocks span whole clips and hold at most ``_IOU_BLOCK`` pairs (or one clip).
        """
        out = torch.full((len(q_lab), max_size), -1.0)
        if len(q_lab) == 0:
            return out
        num_clips = int(max(q_clip.max(), g_clip.max())) + 1
        q_per_clip = torch.bincount(q_clip, minlength=num_clips).tolist()
        g_per_clip = torch.bincount(g_clip, minlength=num_clips).tolist()
        values, q0, g0, nq, ng = [], 0, 0, 0, 0

        def flush() -> None:
            qs, gs = slice(q0, q0 + nq), slice(g0, g0 + ng)
            same = (q_clip[qs, None] == g_clip[None, gs]) & (q_lab[qs, None] == g_lab[None, gs])
            values.append(torch.masked_select(segment_iou(q_seg[qs], g_seg[gs]), same))

        for a, b in zip(q_per_clip, g_per_clip, strict=True):
            if nq and (nq + a) * (ng + b) > _IOU_BLOCK:
                flush()
                q0, g0, nq, ng = q0 + nq, g0 + ng, 0, 0
            if nq == 0 and a == 0:
                g0 += b  # no prediction points to this clip's ground truths: leave them out of the block
                continue
            nq, ng = nq + a, ng + b
        if nq:
            flush()
        rows = torch.repeat_interleave(torch.arange(len(q_lab)), q_size)
        starts = torch.repeat_interleave(torch.cumsum(q_size, 0) - q_size, q_size)
        out[rows, torch.arange(len(rows)) - starts] = torch.cat(values)
        return out
